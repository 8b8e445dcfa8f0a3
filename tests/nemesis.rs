//! A small Jepsen-style run: writers on every node while the network is repeatedly
//! partitioned at random and healed. Afterwards every replica holds the same tree, every
//! acknowledged write is in it exactly once, and no write is in it twice.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::Cluster;
use zkraft::{CreateMode, Error};

/// The nemesis: `rounds` random 2|3 splits of 400 ms each, with short healed gaps.
fn nemesis(c: &Cluster, mut seed: u64, rounds: usize) {
    for _ in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut ids = c.ids.clone();
        ids.sort_by_key(|id| (seed.rotate_left(*id as u32 * 7)) & 0xff);
        c.net.partition(&[&ids[..2], &ids[2..]]);
        std::thread::sleep(Duration::from_millis(400));
        c.net.heal();
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn random_partitions_lose_nothing_acknowledged_and_apply_nothing_twice() {
    let c = Cluster::new(5);
    c.leader()
        .create("/log", b"", CreateMode::Persistent)
        .unwrap();
    c.wait_converged(Duration::from_secs(10));
    let stop = AtomicBool::new(false);
    let acked = Mutex::new(Vec::new());
    let unknown = Mutex::new(0usize);
    std::thread::scope(|s| {
        for n in c.running() {
            let (stop, acked, unknown) = (&stop, &acked, &unknown);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let value = format!("{}-{i}", n.id());
                    // Sequential creates: a write applied twice would show up twice.
                    match n.create(
                        "/log/e-",
                        value.as_bytes(),
                        CreateMode::PersistentSequential,
                    ) {
                        Ok(_) => acked.lock().unwrap().push(value),
                        Err(Error::Timeout(_))
                        | Err(Error::NoQuorum(_))
                        | Err(Error::ConnectionLoss(_)) => *unknown.lock().unwrap() += 1,
                        Err(e) => panic!("unexpected {e}"),
                    }
                    i += 1;
                }
            });
        }
        nemesis(&c, 0x2545_f491_4f6c_dd1du64, 10);
        stop.store(true, Ordering::SeqCst);
    });
    c.net.heal();
    let img = c.wait_converged(Duration::from_secs(20));
    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for (p, (data, _)) in &img {
        if p.starts_with("/log/") {
            *seen.entry(data.clone().unwrap_or_default()).or_default() += 1;
        }
    }
    assert!(seen.values().all(|&n| n == 1), "a write was applied twice");
    let acked = acked.into_inner().unwrap();
    assert!(acked.len() > 20, "only {} writes acknowledged", acked.len());
    for v in &acked {
        assert_eq!(
            seen.get(v.as_bytes()),
            Some(&1),
            "acknowledged write {v} lost"
        );
    }
    // Unknown outcomes may or may not have been applied; nothing else may be there.
    assert!(seen.len() <= acked.len() + *unknown.lock().unwrap());
}

/// What one pipelined session heard: (request number, acknowledged?).
#[derive(Default)]
struct Heard(Mutex<Vec<(i64, bool)>>);

impl zkraft::Sink for Heard {
    fn reply(&self, xid: i64, reply: zkraft::Result<zkraft::Reply>) {
        let ok = match reply {
            Ok(_) => true,
            Err(Error::Timeout(_) | Error::NoQuorum(_) | Error::ConnectionLoss(_)) => false,
            Err(e) => panic!("unexpected {e}"),
        };
        self.0.lock().unwrap().push((xid, ok));
    }
}

#[test]
fn random_partitions_under_pipelined_sessions_keep_each_sessions_order() {
    let c = Cluster::new(5);
    c.leader()
        .create("/plog", b"", CreateMode::Persistent)
        .unwrap();
    c.wait_converged(Duration::from_secs(10));
    let stop = AtomicBool::new(false);
    let sessions: Vec<_> = c
        .running()
        .map(|n| {
            let s = n.session_with_timeout(Duration::from_secs(20)).unwrap();
            (n.id(), s, std::sync::Arc::new(Heard::default()))
        })
        .collect();
    let submitted: Vec<i64> = std::thread::scope(|scope| {
        let writers: Vec<_> = sessions
            .iter()
            .map(|(id, s, heard)| {
                let stop = &stop;
                scope.spawn(move || {
                    let sink: std::sync::Arc<dyn zkraft::Sink> = heard.clone();
                    let mut xid = 0i64;
                    while !stop.load(Ordering::SeqCst) {
                        // At most 8 in flight per session.
                        if xid - heard.0.lock().unwrap().len() as i64 >= 8 {
                            std::thread::sleep(Duration::from_millis(1));
                            continue;
                        }
                        let op = zkraft::Op::create(
                            "/plog/e-",
                            format!("{id}-{xid}").into_bytes(),
                            CreateMode::PersistentSequential,
                        );
                        s.submit(xid, zkraft::Request::Write(op), &sink);
                        xid += 1;
                    }
                    xid
                })
            })
            .collect();
        nemesis(&c, 0x1234_5678_9abc_def1u64, 8);
        stop.store(true, Ordering::SeqCst);
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    c.net.heal();
    // Every request is answered (by its deadline at the latest), in order.
    for ((id, _, heard), n) in sessions.iter().zip(&submitted) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while (heard.0.lock().unwrap().len() as i64) < *n {
            assert!(
                std::time::Instant::now() < deadline,
                "session on {id} left requests unanswered"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let xids: Vec<i64> = heard.0.lock().unwrap().iter().map(|(x, _)| *x).collect();
        assert_eq!(
            xids,
            (0..*n).collect::<Vec<_>>(),
            "answers in order on {id}"
        );
    }
    let img = c.wait_converged(Duration::from_secs(20));
    // In apply order (sequence numbers): nothing twice, and each session's requests in
    // the order it submitted them.
    let mut applied: Vec<(&String, String)> = img
        .iter()
        .filter(|(p, _)| p.starts_with("/plog/"))
        .map(|(p, (data, _))| {
            (
                p,
                String::from_utf8_lossy(data.as_deref().unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    applied.sort();
    let mut seen = std::collections::HashSet::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    for (_, v) in &applied {
        assert!(seen.insert(v.clone()), "{v} applied twice");
        let (node, n) = v.split_once('-').unwrap();
        let n: i64 = n.parse().unwrap();
        if let Some(prev) = last.insert(node.to_string(), n) {
            assert!(
                prev < n,
                "session on node {node}: request {n} applied after {prev}"
            );
        }
    }
    let mut acked = 0;
    for (id, _, heard) in &sessions {
        for (xid, ok) in heard.0.lock().unwrap().iter() {
            if *ok {
                acked += 1;
                assert!(
                    seen.contains(&format!("{id}-{xid}")),
                    "acknowledged {id}-{xid} lost"
                );
            }
        }
    }
    assert!(acked > 20, "only {acked} acknowledged");
}
