//! The sequential specification the history is checked against: a tree of znodes with data,
//! versions and owning sessions, as ZooKeeper's `DataTree` behaves, seen through the
//! operations of [`Op`]. Pure: a step takes a state and gives the next.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::history::{ErrKind, Op, Outcome, Ret};

/// One znode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Node {
    pub data: Vec<u8>,
    pub version: i32,
    /// The session that owns it (ephemeral), or 0.
    pub owner: u64,
}

/// The znodes of one partition, the last sequential suffix handed out under each
/// parent, and the sessions that have ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct State {
    pub nodes: BTreeMap<String, Node>,
    pub last_seq: BTreeMap<String, i64>,
    /// Sessions closed or expired: nothing they ask afterwards takes effect.
    pub closed: BTreeSet<u64>,
}

/// What a step reads beside the state: the znodes no operation of the partition
/// touches, which hold as they were at the start.
pub struct Ctx<'a> {
    pub initial: &'a BTreeMap<String, Node>,
    pub owned: &'a HashSet<String>,
}

/// The parent of `path` (`None` for `/`).
pub fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        _ if path == "/" => None,
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

impl Ctx<'_> {
    fn node<'s>(&'s self, s: &'s State, p: &str) -> Option<&'s Node> {
        if self.owned.contains(p) {
            s.nodes.get(p)
        } else {
            self.initial.get(p)
        }
    }

    fn children(&self, s: &State, p: &str) -> Vec<String> {
        let mut out: Vec<String> = s
            .nodes
            .keys()
            .chain(self.initial.keys().filter(|k| !self.owned.contains(*k)))
            .filter(|k| parent(k) == Some(p))
            .map(|k| k[k.rfind('/').map_or(0, |i| i + 1)..].to_string())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Applies `op` of `session` to `s`, the way ZooKeeper would. `answer` is what the
    /// operation was answered with when it succeeded: the name a sequential create made
    /// comes from it (a sequential create without one — failed, or of unknown outcome —
    /// runs the parent's checks and takes effect on no name anyone can see).
    fn apply(
        &self,
        s: &mut State,
        session: u64,
        op: &Op,
        answer: Option<&Ret>,
    ) -> Result<Ret, ErrKind> {
        match op {
            Op::Create {
                path,
                data,
                ephemeral,
                sequential,
            } => {
                let name = match (sequential, answer) {
                    (false, _) => path.clone(),
                    (true, Some(Ret::Created(n))) => n.clone(),
                    (true, _) => {
                        self.parent_takes_children(s, path)?;
                        return Ok(Ret::Done);
                    }
                };
                let p = self.parent_takes_children(s, &name)?;
                if self.node(s, &name).is_some() {
                    return Err(ErrKind::NodeExists);
                }
                if *sequential {
                    let suffix = name
                        .strip_prefix(path.as_str())
                        .filter(|d| d.len() == 10)
                        .and_then(|d| d.parse::<i64>().ok())
                        .ok_or(ErrKind::NodeExists)?;
                    let last = s.last_seq.entry(p).or_insert(-1);
                    if suffix <= *last {
                        return Err(ErrKind::NodeExists);
                    }
                    *last = suffix;
                }
                s.nodes.insert(
                    name.clone(),
                    Node {
                        data: data.clone(),
                        version: 0,
                        owner: if *ephemeral { session } else { 0 },
                    },
                );
                Ok(Ret::Created(name))
            }
            Op::Delete { path, version } => {
                let n = self.node(s, path).ok_or(ErrKind::NoNode)?;
                if version.is_some_and(|v| v != n.version) {
                    return Err(ErrKind::BadVersion);
                }
                if !self.children(s, path).is_empty() {
                    return Err(ErrKind::NotEmpty);
                }
                s.nodes.remove(path);
                Ok(Ret::Done)
            }
            Op::SetData {
                path,
                data,
                version,
            } => {
                let n = self.node(s, path).ok_or(ErrKind::NoNode)?;
                if version.is_some_and(|v| v != n.version) {
                    return Err(ErrKind::BadVersion);
                }
                let mut n = n.clone();
                n.version += 1;
                n.data = data.clone();
                let v = n.version;
                s.nodes.insert(path.clone(), n);
                Ok(Ret::Version(v))
            }
            Op::Check { path, version } => {
                let n = self.node(s, path).ok_or(ErrKind::NoNode)?;
                if n.version != *version {
                    return Err(ErrKind::BadVersion);
                }
                Ok(Ret::Done)
            }
            Op::GetData { path } => Ok(Ret::Data(
                self.node(s, path).map(|n| (n.data.clone(), n.version)),
            )),
            Op::GetChildren { path } => Ok(Ret::Children(
                self.node(s, path).map(|_| self.children(s, path)),
            )),
            Op::Multi(ops) => {
                let answers = match answer {
                    Some(Ret::Multi(r)) => Some(r),
                    _ => None,
                };
                let mut next = s.clone();
                let mut rets = Vec::with_capacity(ops.len());
                for (i, o) in ops.iter().enumerate() {
                    let a = answers.and_then(|r| r.get(i));
                    rets.push(self.apply(&mut next, session, o, a)?);
                }
                *s = next;
                Ok(Ret::Multi(rets))
            }
            Op::CloseSession => {
                s.nodes.retain(|_, n| n.owner != session);
                s.closed.insert(session);
                Ok(Ret::Done)
            }
        }
    }

    /// The parent of `path` (a path or a sequential prefix), if it exists and may have
    /// children: ZooKeeper's checks before any create.
    fn parent_takes_children(&self, s: &State, path: &str) -> Result<String, ErrKind> {
        let p = parent(path).ok_or(ErrKind::NodeExists)?;
        match self.node(s, p) {
            None => Err(ErrKind::NoNode),
            Some(n) if n.owner != 0 => Err(ErrKind::NoChildrenForEphemerals),
            Some(_) => Ok(p.to_string()),
        }
    }

    /// The state after `op` of `session` ended with `outcome`, or `None` when that outcome
    /// is impossible in `s`. An unknown outcome takes effect here (the search tries "never"
    /// by not linearizing it).
    ///
    /// Once its session has ended, an operation cannot have been answered (the server
    /// answers "session expired"), and one of unknown outcome changed nothing.
    pub fn step(&self, s: &State, session: u64, op: &Op, outcome: &Outcome) -> Option<State> {
        if s.closed.contains(&session) {
            return match outcome {
                Outcome::Unknown => Some(s.clone()),
                _ => None,
            };
        }
        let mut next = s.clone();
        let answer = match outcome {
            Outcome::Ok(r) => Some(r),
            _ => None,
        };
        let got = self.apply(&mut next, session, op, answer);
        match (outcome, got) {
            (Outcome::Unknown, Ok(_)) => Some(next),
            (Outcome::Unknown, Err(_)) => Some(s.clone()),
            (Outcome::Ok(want), Ok(ret)) if *want == ret => Some(next),
            (Outcome::Err(want), Err(e)) if *want == e => Some(s.clone()),
            _ => None,
        }
    }
}
