//! A seeded run on an in-process ensemble: members over a [`LocalNetwork`], clients on
//! threads using the sync API (one session each, on one member), the [`Schedule`]'s faults
//! injected meanwhile, and the history they record checked for linearizability.
//!
//! Reads are `sync` then `get_data` on the client's member, which zkraft makes
//! linearizable. With [`Options::stale_reads`] they skip the `sync`: a planted bug (a
//! member behind the leader answers from what it has), which the checker must catch.
//!
//! A membership fault removes a follower with `Node::remove_member`, stops it and clears
//! its directory; when the fault ends it starts afresh (`joining`) and is added back with
//! `Node::add_member`, catching up by snapshot.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use zkraft::{CreateMode, Error, LocalNetwork, Node, Session};

use crate::checker::history::{ErrKind, Event, Op, Outcome, Recorder, Ret};
use crate::checker::model::Node as ModelNode;
use crate::checker::{check, Limits, Verdict};
use crate::schedule::{Fault, Kind, Plan, Schedule};

/// What a run does.
#[derive(Debug, Clone)]
pub struct Options {
    pub members: usize,
    pub duration: Duration,
    pub clients: usize,
    pub keys: usize,
    pub kinds: Vec<Kind>,
    /// The planted bug: reads without `sync`.
    pub stale_reads: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            members: 5,
            duration: Duration::from_secs(10),
            clients: 10,
            keys: 4,
            kinds: Kind::ALL.to_vec(),
            stale_reads: false,
        }
    }
}

/// What a run found.
#[derive(Debug)]
pub struct RunReport {
    pub seed: u64,
    pub faults: usize,
    pub ops: usize,
    pub unknown: usize,
    /// Members removed from the ensemble and added back.
    pub readded: usize,
    /// The voters when the load stopped, as a running member saw them.
    pub voters_at_end: Vec<u64>,
    pub verdict: Verdict,
}

const ROOT: &str = "/k";
const TICK: Duration = Duration::from_millis(20);
const SESSION_TIMEOUT: Duration = Duration::from_millis(1500);

/// What ends a fault: members to restart from their directories, and one removed from
/// the ensemble, to start afresh and add back.
#[derive(Default)]
struct Undo {
    crashed: Vec<usize>,
    removed: Option<usize>,
}

struct Ensemble {
    net: LocalNetwork,
    ids: Vec<u64>,
    dir: tempfile::TempDir,
    slots: Vec<RwLock<Option<Arc<Node>>>>,
}

impl Ensemble {
    fn start(members: usize) -> zkraft::Result<Ensemble> {
        let ids: Vec<u64> = (1..=members as u64).collect();
        let e = Ensemble {
            net: LocalNetwork::new(),
            dir: tempfile::tempdir()?,
            slots: ids.iter().map(|_| RwLock::new(None)).collect(),
            ids,
        };
        for i in 0..members {
            e.boot(i)?;
        }
        Ok(e)
    }

    fn boot(&self, i: usize) -> zkraft::Result<()> {
        self.boot_as(i, false)
    }

    /// Starts member `i` from its directory; `joining`, as a new member with an empty
    /// configuration that waits to be added.
    fn boot_as(&self, i: usize, joining: bool) -> zkraft::Result<()> {
        let id = self.ids[i];
        let mut b = Node::builder(id)
            .data_dir(self.dir.path().join(id.to_string()))
            .voters(self.ids.clone())
            .transport(self.net.clone())
            .tick_interval(TICK);
        if joining {
            b = b.joining();
        }
        *self.slots[i].write() = Some(Arc::new(b.start()?));
        Ok(())
    }

    /// A running member other than `id`.
    fn other_than(&self, id: u64) -> Option<Arc<Node>> {
        (0..self.ids.len())
            .filter(|&i| self.ids[i] != id)
            .find_map(|i| self.node(i))
    }

    /// Removes a follower (`member`, or another when it leads) from the ensemble, stops
    /// it and clears its directory; `None` when the removal was refused.
    fn remove(&self, member: u64) -> Option<usize> {
        let leader = self.leader();
        let m = if Some(member) == leader {
            self.ids.iter().copied().find(|&i| Some(i) != leader)?
        } else {
            member
        };
        self.other_than(m)?.remove_member(m).ok()?;
        let i = self.index(m);
        self.crash(i);
        let _ = std::fs::remove_dir_all(self.dir.path().join(m.to_string()));
        Some(i)
    }

    /// Starts removed member `i` afresh and adds it back (it catches up by snapshot);
    /// tries for a few seconds, as an operator would. Whether it was added.
    fn add_back(&self, i: usize) -> bool {
        let id = self.ids[i];
        if self.boot_as(i, true).is_err() {
            return false;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let added = self.other_than(id).map(|n| n.add_member(id, "127.0.0.1:1"));
            if let Some(Ok(())) = added {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn node(&self, i: usize) -> Option<Arc<Node>> {
        self.slots[i].read().clone()
    }

    fn leader(&self) -> Option<u64> {
        (0..self.ids.len()).find_map(|i| self.node(i).and_then(|n| n.leader()))
    }

    fn crash(&self, i: usize) {
        if let Some(n) = self.slots[i].write().take() {
            n.shutdown();
        }
    }

    fn index(&self, id: u64) -> usize {
        self.ids.iter().position(|&x| x == id).unwrap_or(0)
    }

    /// Injects `f`; returns what to undo when it ends.
    fn inject(&self, f: &Fault) -> Undo {
        let net = &self.net;
        match f {
            Fault::Partition { minority } => {
                let rest: Vec<u64> = self
                    .ids
                    .iter()
                    .copied()
                    .filter(|i| !minority.contains(i))
                    .collect();
                net.partition(&[minority, &rest]);
            }
            Fault::Bridge { left, right, .. } => {
                for &a in left {
                    for &b in right {
                        net.cut(a, b);
                    }
                }
            }
            Fault::IsolateLeader => {
                if let Some(l) = self.leader() {
                    net.isolate(l);
                }
            }
            Fault::Drop { links, ratio } => {
                for &(a, b) in links {
                    net.drop_rate(a, b, *ratio);
                }
            }
            Fault::Delay { links, by } => {
                for &(a, b) in links {
                    let _ = net.delay(a, b, *by);
                }
            }
            // A thread cannot be paused: its member is cut off instead, as is the host of
            // the sessions to expire.
            Fault::Pause { member } => net.isolate(*member),
            Fault::ExpireSession => net.isolate(self.ids[self.ids.len() - 1]),
            Fault::Crash { member } => {
                let i = self.index(*member);
                self.crash(i);
                return Undo {
                    crashed: vec![i],
                    removed: None,
                };
            }
            Fault::CrashAll => {
                (0..self.ids.len()).for_each(|i| self.crash(i));
                return Undo {
                    crashed: (0..self.ids.len()).collect(),
                    removed: None,
                };
            }
            Fault::Membership { member } => {
                return Undo {
                    crashed: Vec::new(),
                    removed: self.remove(*member),
                }
            }
        }
        Undo::default()
    }

    fn shutdown(&self) {
        self.net.heal();
        (0..self.ids.len()).for_each(|i| self.crash(i));
    }
}

/// Runs schedule `seed` under `opts`, then checks the history.
pub fn run(seed: u64, opts: &Options) -> zkraft::Result<RunReport> {
    let ens = Arc::new(Ensemble::start(opts.members)?);
    let mut plan = Plan::new(ens.ids.clone(), opts.duration, &opts.kinds);
    plan.expire_len = SESSION_TIMEOUT + Duration::from_millis(1000);
    let schedule = Schedule::generate(seed, &plan);
    // The root of the keys, made before the history starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let made = ens
            .node(0)
            .map(|n| n.create(ROOT, b"", CreateMode::Persistent));
        match made {
            Some(Ok(_)) | Some(Err(Error::NodeExists(_))) => break,
            _ if Instant::now() > deadline => return Err(Error::Timeout(Duration::from_secs(30))),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let recorder = Arc::new(Recorder::new());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..opts.clients)
        .map(|c| {
            let (ens, recorder, stop, opts) =
                (ens.clone(), recorder.clone(), stop.clone(), opts.clone());
            std::thread::spawn(move || client(c, seed, &ens, &recorder, &stop, &opts))
        })
        .collect();
    let started = Instant::now();
    let readded = std::sync::atomic::AtomicUsize::new(0);
    for step in &schedule.steps {
        sleep_until(started + step.at);
        let undo = ens.inject(&step.fault);
        sleep_until(started + step.at + step.lasts);
        ens.net.heal();
        if let Some(i) = undo.removed {
            if ens.add_back(i) {
                readded.fetch_add(1, Ordering::SeqCst);
            }
        }
        for i in undo.crashed {
            // A restart that fails leaves the member down for the rest of the run.
            let _ = ens.boot(i);
        }
    }
    sleep_until(started + schedule.duration);
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let _ = c.join();
    }
    let voters_at_end = (0..ens.ids.len())
        .find_map(|i| ens.node(i))
        .map(|n| n.members())
        .unwrap_or_default();
    ens.shutdown();
    let events = recorder.events();
    let unknown = events
        .iter()
        .filter(|e| e.outcome == Outcome::Unknown)
        .count();
    let mut initial = BTreeMap::new();
    for p in ["/", ROOT] {
        initial.insert(
            p.to_string(),
            ModelNode {
                data: vec![],
                version: 0,
                owner: 0,
            },
        );
    }
    let verdict = check(&events, &initial, Limits::default());
    Ok(RunReport {
        seed,
        faults: schedule.steps.len(),
        ops: events.len(),
        unknown,
        readded: readded.load(Ordering::SeqCst),
        voters_at_end,
        verdict,
    })
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn err_kind(e: &Error) -> Option<ErrKind> {
    Some(match e {
        Error::NoNode(_) => ErrKind::NoNode,
        Error::NodeExists(_) => ErrKind::NodeExists,
        Error::BadVersion { .. } => ErrKind::BadVersion,
        Error::NotEmpty(_) => ErrKind::NotEmpty,
        Error::NoChildrenForEphemerals(_) => ErrKind::NoChildrenForEphemerals,
        _ => return None,
    })
}

/// One client: a session on member `c % members`, random operations until stopped.
fn client(c: usize, seed: u64, ens: &Ensemble, rec: &Recorder, stop: &AtomicBool, opts: &Options) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (c as u64).wrapping_mul(0x9e37_79b9));
    let member = c % opts.members;
    // The member, the session, and since when it is known alive: opened, or the
    // invocation of its last operation the ensemble answered (its close, if it expires,
    // comes after that).
    let mut session: Option<(Arc<Node>, Session, u64)> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let Some((node, s, alive)) = session.take().or_else(|| {
            let node = ens.node(member)?;
            let opened = rec.now();
            let s = node.session_with_timeout(SESSION_TIMEOUT).ok()?;
            Some((node, s, opened))
        }) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let sid = s.id() as u64;
        n += 1;
        let key = format!("{ROOT}/{}", rng.gen_range(0..opts.keys));
        // Ephemerals only on the client's own key: a session's close then ties one key,
        // and the history splits into a part per key for the checker.
        let own = format!("{ROOT}/{}", c % opts.keys);
        let value = format!("c{c}-{n}").into_bytes();
        let roll = rng.gen_range(0..10);
        let op = match roll {
            0 => {
                let ephemeral = rng.gen_bool(0.3);
                Op::Create {
                    path: if ephemeral { own.clone() } else { key.clone() },
                    data: value.clone(),
                    ephemeral,
                    sequential: false,
                }
            }
            1 => Op::Delete {
                path: key.clone(),
                version: None,
            },
            2 | 3 => Op::SetData {
                path: key.clone(),
                data: value.clone(),
                version: None,
            },
            4 => Op::SetData {
                path: key.clone(),
                data: value.clone(),
                version: Some(rng.gen_range(0..3)),
            },
            _ => Op::GetData { path: key.clone() },
        };
        let p = rec.invoke(c as u32, sid, op.clone());
        let invoked = p.invoked();
        let result: Result<Ret, Error> = match &op {
            Op::Create {
                path, ephemeral, ..
            } => {
                let mode = if *ephemeral {
                    CreateMode::Ephemeral
                } else {
                    CreateMode::Persistent
                };
                s.create(path, &value, mode).map(Ret::Created)
            }
            Op::Delete { path, version } => s.delete(path, *version).map(|()| Ret::Done),
            Op::SetData {
                path,
                data,
                version,
            } => s
                .set_data(path, data, *version)
                .map(|st| Ret::Version(st.version)),
            Op::GetData { path } => {
                let synced = if opts.stale_reads {
                    Ok(())
                } else {
                    s.sync(path)
                };
                synced
                    .and_then(|()| s.get_data_or_null(path, None))
                    .map(|(d, st)| Ret::Data(Some((d.unwrap_or_default(), st.version))))
                    .or_else(|e| match e {
                        Error::NoNode(_) => Ok(Ret::Data(None)),
                        e => Err(e),
                    })
            }
            _ => Ok(Ret::Done),
        };
        match result {
            Ok(r) => {
                rec.complete(p, Outcome::Ok(r));
                session = Some((node, s, invoked));
            }
            Err(e) => {
                if let Some(k) = err_kind(&e) {
                    rec.complete(p, Outcome::Err(k));
                    session = Some((node, s, invoked));
                    continue;
                }
                rec.complete(p, Outcome::Unknown);
                if matches!(
                    e,
                    Error::SessionExpired | Error::SessionClosed | Error::Shutdown
                ) || node.is_stopped()
                {
                    // The session ends (expired, or its member stopped and it will
                    // expire), after it was last known alive: its ephemerals go then.
                    rec.push(Event {
                        client: c as u32,
                        session: sid,
                        op: Op::CloseSession,
                        invoke: alive,
                        complete: None,
                        outcome: Outcome::Unknown,
                    });
                } else {
                    session = Some((node, s, alive));
                }
            }
        }
    }
    if let Some((_, s, alive)) = session {
        // It may have expired unseen since it was last known alive.
        rec.push(Event {
            client: c as u32,
            session: s.id() as u64,
            op: Op::CloseSession,
            invoke: alive,
            complete: None,
            outcome: Outcome::Unknown,
        });
        let _ = s.close();
    }
}
