//! A linearizability checker for histories of znode operations, after Wing & Gong, with
//! Lowe's cache of visited (linearized set, state) pairs, as Porcupine and Knossos search.
//!
//! The history is first split into independent parts (P-compositionality): operations on
//! znodes that can never affect one another are checked apart. Two operations share a
//! part when they touch a common znode; a create or delete also touches its parent when the
//! parent changes or is listed in the history (otherwise the parent holds still and the
//! siblings are independent); a multi touches all its znodes; a session's close touches its
//! ephemerals. Each part's search then backtracks over the order of concurrent operations.
//!
//! Visited pairs are remembered by hash: the linearized set as a Zobrist hash, the state
//! by its 64-bit hash. Two different pairs with equal hashes would prune a branch
//! unexplored (a chance of about 2^-64 per pair); memory stays at 16 bytes per pair.
//!
//! An operation of unknown outcome may take effect anywhere after its invocation or never;
//! an unknown read is dropped (it changed nothing). Sequential creates of unknown outcome
//! take effect on no visible name: a history should not list the children of a parent
//! that gets sequential creates, nor name a child it did not see created.

pub mod history;
pub mod model;

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use history::{Event, Op, Outcome, Ret};
use model::{parent, Ctx, Node, State};

/// Why a history was not decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Some order of the operations, each taking effect between its invocation and its
    /// completion, explains every result.
    Linearizable { ops: usize, parts: usize },
    /// No order does: the part that failed, and the operations the search got stuck on.
    Violation(Report),
    /// A part needed more than the budget of search steps.
    Unknown { part_ops: usize },
    /// The history itself is malformed: an outcome that disagrees with its completion
    /// time (unknown exactly when it never returned), or a return before its call.
    Invalid { reason: String },
}

/// The part of a history that no order explains.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The znodes of the part.
    pub keys: Vec<String>,
    /// The longest prefix of operations linearized, in order.
    pub longest: Vec<Event>,
    /// Operations completed by then that could not come next.
    pub stuck: Vec<Event>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "not linearizable: znodes {:?}", self.keys)?;
        writeln!(
            f,
            "longest linearizable prefix ({} ops), last 10:",
            self.longest.len()
        )?;
        for e in self.longest.iter().rev().take(10).rev() {
            writeln!(f, "  {}", show(e))?;
        }
        writeln!(f, "could not be placed next:")?;
        for e in &self.stuck {
            writeln!(f, "  {}", show(e))?;
        }
        Ok(())
    }
}

fn show(e: &Event) -> String {
    let done = e
        .complete
        .map_or("?".to_string(), |c| format!("{:.3}ms", c as f64 / 1e6));
    format!(
        "client {} session {:#x} [{:.3}ms..{done}] {:?} -> {:?}",
        e.client,
        e.session,
        e.invoke as f64 / 1e6,
        e.op,
        e.outcome
    )
}

/// Budget of one check.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Search steps (operations tried) per part before giving up.
    pub max_steps: u64,
    /// Distinct (linearized set, state) pairs remembered per part before giving up: 16
    /// bytes each, plus the set's overhead.
    pub max_states: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 50_000_000,
            max_states: 50_000_000,
        }
    }
}

/// Checks `events` against a tree that starts as `initial` (the root included).
pub fn check(events: &[Event], initial: &BTreeMap<String, Node>, limits: Limits) -> Verdict {
    if let Some(e) = events.iter().find(|e| {
        (e.outcome == Outcome::Unknown) != e.complete.is_none()
            || e.complete.is_some_and(|c| c < e.invoke)
    }) {
        return Verdict::Invalid {
            reason: format!("an event's outcome and completion disagree: {}", show(e)),
        };
    }
    let events: Vec<&Event> = events
        .iter()
        .filter(|e| !(e.outcome == Outcome::Unknown && is_read(&e.op)))
        .collect();
    let parts = partition(&events, initial);
    let n_parts = parts.len();
    for (keys, members) in parts {
        let owned: HashSet<String> = keys.iter().cloned().collect();
        let ctx = Ctx {
            initial,
            owned: &owned,
        };
        let mut start = State::default();
        for k in &keys {
            if let Some(n) = initial.get(k) {
                start.nodes.insert(k.clone(), n.clone());
            }
        }
        let part: Vec<&Event> = members.iter().map(|&i| events[i]).collect();
        match search(&part, &ctx, start, limits) {
            Search::Ok => {}
            Search::Budget => {
                return Verdict::Unknown {
                    part_ops: part.len(),
                }
            }
            Search::Fail { longest, stuck } => {
                let mut keys = keys;
                keys.sort();
                keys.truncate(20);
                return Verdict::Violation(Report {
                    keys,
                    longest: longest.into_iter().map(|i| part[i].clone()).collect(),
                    stuck: stuck.into_iter().map(|i| part[i].clone()).collect(),
                });
            }
        }
    }
    Verdict::Linearizable {
        ops: events.len(),
        parts: n_parts,
    }
}

fn is_read(op: &Op) -> bool {
    matches!(op, Op::GetData { .. } | Op::GetChildren { .. })
}

/// The znodes an operation touches directly (its parent is added by `partition`).
fn keys_of(e: &Event, out: &mut Vec<String>) {
    keys_of_op(&e.op, answer(e), out);
}

fn keys_of_op(op: &Op, ret: Option<&Ret>, out: &mut Vec<String>) {
    match op {
        Op::Create {
            path, sequential, ..
        } => match (sequential, ret) {
            (true, Some(Ret::Created(n))) => out.push(n.clone()),
            (true, _) => out.push(parent(path).unwrap_or("/").to_string()),
            (false, _) => out.push(path.clone()),
        },
        Op::Delete { path, .. }
        | Op::SetData { path, .. }
        | Op::Check { path, .. }
        | Op::GetData { path }
        | Op::GetChildren { path } => out.push(path.clone()),
        Op::Multi(ops) => {
            for (i, o) in ops.iter().enumerate() {
                keys_of_op(o, nth(ret, i), out);
            }
        }
        Op::CloseSession => {}
    }
}

/// The answer an operation returned, when it succeeded.
fn answer(e: &Event) -> Option<&Ret> {
    match &e.outcome {
        Outcome::Ok(r) => Some(r),
        _ => None,
    }
}

/// The answers of a multi's operations, when it succeeded.
fn nth(ret: Option<&Ret>, i: usize) -> Option<&Ret> {
    match ret {
        Some(Ret::Multi(r)) => r.get(i),
        _ => None,
    }
}

/// Marks the znodes whose children interact: those created (the names sequential
/// creates returned too), deleted or listed, and the parents of sequential creates.
fn mark<'a>(op: &'a Op, ret: Option<&'a Ret>, d: &mut HashSet<&'a str>) {
    match op {
        Op::Create {
            path, sequential, ..
        } => {
            if *sequential {
                d.insert(parent(path).unwrap_or("/"));
                if let Some(Ret::Created(n)) = ret {
                    d.insert(n);
                }
            } else {
                d.insert(path);
            }
        }
        Op::Delete { path, .. } | Op::GetChildren { path } => {
            d.insert(path);
        }
        Op::Multi(ops) => {
            for (i, o) in ops.iter().enumerate() {
                mark(o, nth(ret, i), d);
            }
        }
        _ => {}
    }
}

/// The ephemerals an operation may create (inside a multi too).
fn ephemerals_of(op: &Op, ret: Option<&Ret>, out: &mut Vec<String>) {
    match op {
        Op::Create {
            ephemeral: true, ..
        } => keys_of_op(op, ret, out),
        Op::Multi(ops) => {
            for (i, o) in ops.iter().enumerate() {
                ephemerals_of(o, nth(ret, i), out);
            }
        }
        _ => {}
    }
}

/// Splits the history into parts that cannot affect one another: (keys, event indexes).
fn partition(
    events: &[&Event],
    initial: &BTreeMap<String, Node>,
) -> Vec<(Vec<String>, Vec<usize>)> {
    let mut dynamic: HashSet<&str> = HashSet::new();
    for e in events {
        mark(&e.op, answer(e), &mut dynamic);
    }
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut uf: Vec<usize> = Vec::new();
    fn find(uf: &mut [usize], mut x: usize) -> usize {
        while uf[x] != x {
            uf[x] = uf[uf[x]];
            x = uf[x];
        }
        x
    }
    let mut id = |k: &str, uf: &mut Vec<usize>| -> usize {
        if let Some(&i) = ids.get(k) {
            return i;
        }
        let i = uf.len();
        uf.push(i);
        ids.insert(k.to_string(), i);
        i
    };
    // A session's ephemerals: those of the initial tree and those it may create.
    let mut ephemerals: HashMap<u64, Vec<String>> = HashMap::new();
    for (path, n) in initial {
        if n.owner != 0 {
            ephemerals.entry(n.owner).or_default().push(path.clone());
        }
    }
    let mut first_key = Vec::with_capacity(events.len());
    for e in events {
        let mut keys = Vec::new();
        keys_of(e, &mut keys);
        let mut with_parents = keys.clone();
        for k in &keys {
            if let Some(p) = parent(k) {
                if dynamic.contains(p) {
                    with_parents.push(p.to_string());
                }
            }
        }
        let mut own = Vec::new();
        ephemerals_of(&e.op, answer(e), &mut own);
        if !own.is_empty() {
            ephemerals.entry(e.session).or_default().extend(own);
        }
        let root = with_parents.first().map(|k| id(k, &mut uf));
        for k in &with_parents {
            let (a, b) = (root.unwrap_or(0), id(k, &mut uf));
            let (ra, rb) = (find(&mut uf, a), find(&mut uf, b));
            uf[rb] = ra;
        }
        first_key.push(root);
    }
    // A close joins its session's ephemerals, and their parents when those change or are
    // listed (or stands alone).
    for (i, e) in events.iter().enumerate() {
        if e.op == Op::CloseSession {
            let mut keys = ephemerals.get(&e.session).cloned().unwrap_or_default();
            let parents: Vec<String> = keys
                .iter()
                .filter_map(|k| parent(k))
                .filter(|p| dynamic.contains(p))
                .map(str::to_string)
                .collect();
            keys.extend(parents);
            let anchor = keys
                .first()
                .cloned()
                .unwrap_or_else(|| format!("\0session {}", e.session));
            let a = id(&anchor, &mut uf);
            for k in &keys {
                let b = id(k, &mut uf);
                let (ra, rb) = (find(&mut uf, a), find(&mut uf, b));
                uf[rb] = ra;
            }
            first_key[i] = Some(a);
        }
    }
    let mut parts: HashMap<usize, (Vec<String>, Vec<usize>)> = HashMap::new();
    for (k, &i) in &ids {
        let r = find(&mut uf, i);
        parts.entry(r).or_default().0.push(k.clone());
    }
    for (i, k) in first_key.iter().enumerate() {
        let r = find(&mut uf, k.unwrap_or(0));
        parts.entry(r).or_default().1.push(i);
    }
    let mut out: Vec<_> = parts
        .into_values()
        .filter(|(_, ev)| !ev.is_empty())
        .collect();
    // A close answered at a known time also goes to every other part holding operations
    // of its session, where it only ends the session: nothing the session asks after it
    // takes effect there either. (A close of unknown time may come last in every part, so
    // it restricts nothing outside its own.)
    let known_closes: Vec<usize> = (0..events.len())
        .filter(|&i| events[i].op == Op::CloseSession && events[i].complete.is_some())
        .collect();
    for (_, members) in &mut out {
        let sessions: HashSet<u64> = members.iter().map(|&i| events[i].session).collect();
        let here: HashSet<usize> = members.iter().copied().collect();
        for &c in &known_closes {
            if sessions.contains(&events[c].session) && !here.contains(&c) {
                members.push(c);
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

enum Search {
    Ok,
    Budget,
    Fail {
        longest: Vec<usize>,
        stuck: Vec<usize>,
    },
}

/// One entry of the time line: an operation's call or return.
#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    call: bool,
    /// Neighbours in the list of entries still to place.
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

/// SplitMix64: the Zobrist word of operation `i`.
fn splitmix(i: u64) -> u64 {
    let mut z = i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hash_state(s: &State) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Wing–Gong–Lowe over one part.
fn search(part: &[&Event], ctx: &Ctx, start: State, limits: Limits) -> Search {
    let n = part.len();
    // Calls and returns by time; an unknown outcome returns after everything.
    let mut times: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, e) in part.iter().enumerate() {
        times.push((e.invoke, true, i));
        times.push((e.complete.unwrap_or(u64::MAX), false, i));
    }
    // At equal times calls come first: such operations count as concurrent.
    times.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let len = times.len();
    let mut entries: Vec<Entry> = times
        .iter()
        .enumerate()
        .map(|(k, &(_, call, op))| Entry {
            op,
            call,
            prev: if k == 0 { NIL } else { k - 1 },
            next: if k + 1 == len { NIL } else { k + 1 },
        })
        .collect();
    let mut ret_of = vec![0usize; n];
    let mut call_of = vec![0usize; n];
    for (k, e) in entries.iter().enumerate() {
        if e.call {
            call_of[e.op] = k;
        } else {
            ret_of[e.op] = k;
        }
    }
    let mut head = if len == 0 { NIL } else { 0 };
    let unlink = |entries: &mut Vec<Entry>, head: &mut usize, k: usize| {
        let (p, nx) = (entries[k].prev, entries[k].next);
        if p == NIL {
            *head = nx;
        } else {
            entries[p].next = nx;
        }
        if nx != NIL {
            entries[nx].prev = p;
        }
    };
    let relink = |entries: &mut Vec<Entry>, head: &mut usize, k: usize| {
        let (p, nx) = (entries[k].prev, entries[k].next);
        if p == NIL {
            *head = k;
        } else {
            entries[p].next = k;
        }
        if nx != NIL {
            entries[nx].prev = k;
        }
    };
    // The set of operations linearized, as a Zobrist hash (a random word per operation,
    // XORed in and out): a cache entry is 16 bytes whatever the part's size.
    let zobrist: Vec<u64> = (0..n as u64).map(splitmix).collect();
    let mut linearized = 0u64;
    let mut cache: HashSet<(u64, u64)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut state = start;
    let mut longest: Vec<usize> = Vec::new();
    let mut steps = 0u64;
    let mut cur = head;
    while head != NIL {
        let e = entries[cur];
        if e.call {
            steps += 1;
            if steps > limits.max_steps {
                return Search::Budget;
            }
            let ev = part[e.op];
            let mut placed = false;
            if let Some(next) = ctx.step(&state, ev.session, &ev.op, &ev.outcome) {
                linearized ^= zobrist[e.op];
                if cache.len() as u64 >= limits.max_states {
                    return Search::Budget;
                }
                if cache.insert((linearized, hash_state(&next))) {
                    stack.push((e.op, std::mem::replace(&mut state, next)));
                    unlink(&mut entries, &mut head, call_of[e.op]);
                    unlink(&mut entries, &mut head, ret_of[e.op]);
                    placed = true;
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|(o, _)| *o).collect();
                    }
                    cur = head;
                } else {
                    linearized ^= zobrist[e.op];
                }
            }
            if !placed {
                cur = e.next;
            }
        } else {
            // A return whose call was not placed: every operation still unplaced here
            // after is of unknown outcome (they return last), and may never have happened.
            if part[e.op].complete.is_none() {
                return Search::Ok;
            }
            let Some((op, prev)) = stack.pop() else {
                return fail(part, &longest);
            };
            state = prev;
            linearized ^= zobrist[op];
            relink(&mut entries, &mut head, ret_of[op]);
            relink(&mut entries, &mut head, call_of[op]);
            cur = entries[call_of[op]].next;
        }
        if cur == NIL && head != NIL {
            // Walked past every entry without reaching a return: only unknown calls left
            // unplaced.
            return Search::Ok;
        }
    }
    Search::Ok
}

fn fail(part: &[&Event], longest: &[usize]) -> Search {
    // The operations left out of the longest prefix that completed first: the search
    // could place none of them next.
    let placed: HashSet<usize> = longest.iter().copied().collect();
    let mut stuck: Vec<usize> = (0..part.len())
        .filter(|i| !placed.contains(i) && part[*i].complete.is_some())
        .collect();
    stuck.sort_by_key(|&i| part[i].complete);
    stuck.truncate(5);
    Search::Fail {
        longest: longest.to_vec(),
        stuck,
    }
}

#[cfg(test)]
mod tests;
