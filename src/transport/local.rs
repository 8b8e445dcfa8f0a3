//! [`LocalNetwork`]: an in-process transport with fault injection (the way raft-rs's test
//! harness and etcd's `rafttest` network do it): cut links or partition the ensemble, drop
//! a fraction of messages, delay them, and heal. A node that leaves the network (it
//! stopped) is reported lost to the nodes its links still reach, as a process's exit
//! closes its connections.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use super::{Envelope, Inbox, Transport};
use crate::error::{Error, Result};

#[derive(Default)]
struct Faults {
    /// Directed links that deliver nothing.
    cut: HashSet<(u64, u64)>,
    /// Directed links that drop this fraction of envelopes.
    drop: HashMap<(u64, u64), f64>,
    /// Directed links that delay every envelope.
    delay: HashMap<(u64, u64), Duration>,
    rng: u64,
}

impl Faults {
    /// xorshift64*: deterministic enough for tests, no dependency.
    fn next_f64(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Delayed {
    at: Instant,
    seq: u64,
    to: u64,
    envelope: Envelope,
}

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Min-heap on (time, sequence): FIFO among equal deadlines.
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Default)]
struct DelayQueue {
    heap: Mutex<(BinaryHeap<Delayed>, u64, bool)>,
    wake: Condvar,
}

struct Inner {
    inboxes: RwLock<HashMap<u64, Inbox>>,
    faults: Mutex<Faults>,
    delayed: Arc<DelayQueue>,
    delayer: Mutex<Option<JoinHandle<()>>>,
    sent: std::sync::atomic::AtomicU64,
    dropped: std::sync::atomic::AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.delayed.heap.lock().2 = true;
        self.delayed.wake.notify_all();
        if let Some(h) = self.delayer.get_mut().take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}

/// In-process network connecting any number of nodes, with controls to partition, drop,
/// delay and heal. Cloning gives another handle to the same network.
///
/// ```
/// use zkraft::LocalNetwork;
/// let net = LocalNetwork::new();
/// net.partition(&[&[1, 2], &[3]]); // 3 can reach nobody, nobody can reach 3
/// net.drop_rate(1, 2, 0.5);         // half of 1→2 is lost
/// net.heal();                       // everything delivers again
/// ```
#[derive(Clone)]
pub struct LocalNetwork {
    inner: Arc<Inner>,
}

impl Default for LocalNetwork {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LocalNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalNetwork")
            .field(
                "nodes",
                &self.inner.inboxes.read().keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl LocalNetwork {
    /// A network with no nodes and no faults.
    pub fn new() -> LocalNetwork {
        LocalNetwork {
            inner: Arc::new(Inner {
                inboxes: RwLock::new(HashMap::new()),
                faults: Mutex::new(Faults {
                    rng: 0x9e37_79b9_7f4a_7c15,
                    ..Faults::default()
                }),
                delayed: Arc::new(DelayQueue::default()),
                delayer: Mutex::new(None),
                sent: Default::default(),
                dropped: Default::default(),
            }),
        }
    }

    /// Cuts every link between nodes of different groups (both directions). Nodes not named
    /// in any group keep their links.
    pub fn partition(&self, groups: &[&[u64]]) {
        let mut f = self.inner.faults.lock();
        for (i, a) in groups.iter().enumerate() {
            for (j, b) in groups.iter().enumerate() {
                if i != j {
                    for &x in a.iter() {
                        for &y in b.iter() {
                            f.cut.insert((x, y));
                        }
                    }
                }
            }
        }
    }

    /// Cuts `id` off from every other registered node, both directions.
    pub fn isolate(&self, id: u64) {
        let others: Vec<u64> = self.inner.inboxes.read().keys().copied().collect();
        let mut f = self.inner.faults.lock();
        for o in others.into_iter().filter(|&o| o != id) {
            f.cut.insert((id, o));
            f.cut.insert((o, id));
        }
    }

    /// Cuts the link between `a` and `b`, both directions.
    pub fn cut(&self, a: u64, b: u64) {
        let mut f = self.inner.faults.lock();
        f.cut.insert((a, b));
        f.cut.insert((b, a));
    }

    /// Resets the connections between `a` and `b` without stopping either, as a TCP reset
    /// between two live processes: each is told the other looks gone
    /// ([`Inbox::peer_lost`]). Links keep delivering.
    pub fn reset(&self, a: u64, b: u64) {
        let (to_a, to_b) = {
            let inboxes = self.inner.inboxes.read();
            (inboxes.get(&a).cloned(), inboxes.get(&b).cloned())
        };
        if let Some(inbox) = to_a {
            inbox.peer_lost(b);
        }
        if let Some(inbox) = to_b {
            inbox.peer_lost(a);
        }
    }

    /// Drops `ratio` (0.0–1.0) of the envelopes sent from `from` to `to`.
    pub fn drop_rate(&self, from: u64, to: u64, ratio: f64) {
        self.inner.faults.lock().drop.insert((from, to), ratio);
    }

    /// Delays every envelope sent from `from` to `to` by `delay`. The first delay starts
    /// the network's delivery thread; [`Error::Io`] if it cannot be started.
    pub fn delay(&self, from: u64, to: u64, delay: Duration) -> Result<()> {
        self.ensure_delayer()?;
        self.inner.faults.lock().delay.insert((from, to), delay);
        Ok(())
    }

    /// Removes every fault: all links deliver, nothing is dropped or delayed.
    pub fn heal(&self) {
        let mut f = self.inner.faults.lock();
        f.cut.clear();
        f.drop.clear();
        f.delay.clear();
    }

    /// Envelopes handed to the network and envelopes it dropped (cut, dropped, or no such
    /// node), since it was created.
    pub fn counters(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.inner.sent.load(Relaxed),
            self.inner.dropped.load(Relaxed),
        )
    }

    fn ensure_delayer(&self) -> Result<()> {
        let mut slot = self.inner.delayer.lock();
        if slot.is_some() {
            return Ok(());
        }
        let queue = self.inner.delayed.clone();
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        *slot = Some(
            std::thread::Builder::new()
                .name("zkraft-net-delay".into())
                .spawn(move || run_delayer(queue, weak))?,
        );
        Ok(())
    }
}

fn run_delayer(queue: Arc<DelayQueue>, net: Weak<Inner>) {
    let mut guard = queue.heap.lock();
    loop {
        if guard.2 {
            return;
        }
        let now = Instant::now();
        match guard.0.peek() {
            Some(d) if d.at <= now => {
                let d = guard.0.pop().expect("peeked");
                drop(guard);
                if let Some(inner) = net.upgrade() {
                    let inbox = inner.inboxes.read().get(&d.to).cloned();
                    drop(inner);
                    if let Some(inbox) = inbox {
                        inbox.deliver(d.envelope);
                    }
                }
                guard = queue.heap.lock();
            }
            Some(d) => {
                let at = d.at;
                queue.wake.wait_until(&mut guard, at);
            }
            None => {
                queue.wake.wait_for(&mut guard, Duration::from_millis(200));
            }
        }
    }
}

impl Transport for LocalNetwork {
    fn register(&self, id: u64, inbox: Inbox) -> Result<()> {
        let mut inboxes = self.inner.inboxes.write();
        if inboxes.contains_key(&id) {
            return Err(Error::Config(format!(
                "node {id} is already on this network"
            )));
        }
        inboxes.insert(id, inbox);
        Ok(())
    }

    fn deregister(&self, id: u64, inbox: &Inbox) {
        let mut inboxes = self.inner.inboxes.write();
        if inboxes.get(&id).is_some_and(|current| current.same(inbox)) {
            inboxes.remove(&id);
            // As when a process exits: its peers' connections to it are closed at once,
            // where a link still carries the news.
            let cut = self.inner.faults.lock().cut.clone();
            let others: Vec<Inbox> = inboxes
                .iter()
                .filter(|(other, _)| !cut.contains(&(id, **other)))
                .map(|(_, inbox)| inbox.clone())
                .collect();
            drop(inboxes);
            for other in others {
                other.peer_lost(id);
            }
        }
    }

    fn send(&self, to: u64, envelope: Envelope) {
        use std::sync::atomic::Ordering::Relaxed;
        self.inner.sent.fetch_add(1, Relaxed);
        let link = (envelope.from(), to);
        let delay = {
            let mut f = self.inner.faults.lock();
            if f.cut.contains(&link) {
                self.inner.dropped.fetch_add(1, Relaxed);
                return;
            }
            if let Some(&ratio) = f.drop.get(&link) {
                if f.next_f64() < ratio {
                    self.inner.dropped.fetch_add(1, Relaxed);
                    return;
                }
            }
            f.delay.get(&link).copied()
        };
        if let Some(delay) = delay {
            let mut q = self.inner.delayed.heap.lock();
            q.1 += 1;
            let seq = q.1;
            q.0.push(Delayed {
                at: crate::time::deadline_in(delay),
                seq,
                to,
                envelope,
            });
            self.inner.delayed.wake.notify_all();
            return;
        }
        let inbox = self.inner.inboxes.read().get(&to).cloned();
        match inbox {
            Some(inbox) => inbox.deliver(envelope),
            None => {
                self.inner.dropped.fetch_add(1, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::Message;
    use std::sync::mpsc;

    fn msg(from: u64, to: u64) -> Envelope {
        Envelope::Raft(crate::transport::RaftMessage(Message {
            from,
            to,
            ..Message::default()
        }))
    }

    fn wire(net: &LocalNetwork, ids: &[u64]) -> HashMap<u64, mpsc::Receiver<Envelope>> {
        ids.iter()
            .map(|&id| {
                let (tx, rx) = mpsc::channel();
                let tx = Mutex::new(tx);
                net.register(id, Inbox::new(move |e| tx.lock().send(e).unwrap()))
                    .unwrap();
                (id, rx)
            })
            .collect()
    }

    #[test]
    fn partition_cut_and_heal() {
        let net = LocalNetwork::new();
        let rx = wire(&net, &[1, 2, 3]);
        net.partition(&[&[1, 2], &[3]]);
        net.send(2, msg(1, 2));
        net.send(3, msg(1, 3));
        net.send(1, msg(3, 1));
        assert!(rx[&2].try_recv().is_ok());
        assert!(rx[&3].try_recv().is_err());
        assert!(rx[&1].try_recv().is_err());
        net.heal();
        net.send(3, msg(1, 3));
        assert!(rx[&3].try_recv().is_ok());
        net.isolate(2);
        net.send(2, msg(1, 2));
        assert!(rx[&2].try_recv().is_err());
        assert_eq!(net.counters(), (5, 3));
    }

    #[test]
    fn only_the_registration_that_made_it_is_released() {
        let net = LocalNetwork::new();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let old = Inbox::new(|_| {});
        net.register(2, old.clone()).unwrap();
        assert!(net.register(2, Inbox::new(|_| {})).is_err(), "one per id");
        net.deregister(2, &old);
        let new = Inbox::new(move |e| tx.lock().send(e).unwrap());
        net.register(2, new.clone()).unwrap();
        net.deregister(2, &old); // a stale handle: nothing happens
        net.deregister(2, &Inbox::new(|_| {}));
        net.send(2, msg(1, 2));
        assert!(rx.try_recv().is_ok(), "the new registration still delivers");
        net.deregister(2, &new.clone());
        net.send(2, msg(1, 2));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn drop_rate_drops_about_that_fraction() {
        let net = LocalNetwork::new();
        let rx = wire(&net, &[1, 2]);
        net.drop_rate(1, 2, 0.3);
        for _ in 0..1000 {
            net.send(2, msg(1, 2));
        }
        let got = rx[&2].try_iter().count();
        assert!((600..800).contains(&got), "{got}");
    }

    #[test]
    fn delay_delivers_later_in_order() {
        let net = LocalNetwork::new();
        let rx = wire(&net, &[1, 2]);
        net.delay(1, 2, Duration::from_millis(50)).unwrap();
        let start = Instant::now();
        for i in 0..3 {
            let m = Message {
                from: 1,
                to: 2,
                index: i,
                ..Message::default()
            };
            net.send(2, Envelope::Raft(crate::transport::RaftMessage(m)));
        }
        assert!(rx[&2].try_recv().is_err());
        let got: Vec<u64> = (0..3)
            .map(
                |_| match rx[&2].recv_timeout(Duration::from_secs(2)).unwrap() {
                    Envelope::Raft(crate::transport::RaftMessage(m)) => m.index,
                    other => panic!("unexpected {other:?}"),
                },
            )
            .collect();
        assert_eq!(got, [0, 1, 2]);
        assert!(start.elapsed() >= Duration::from_millis(50));
    }
}
