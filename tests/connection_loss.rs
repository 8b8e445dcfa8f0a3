//! A raft leader crash with writes in flight: every write is answered at once —
//! applied, or `ConnectionLoss` (outcome unknown) — not after the request timeout, and
//! the session goes on in a new epoch.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{retry, Cluster, ELECTION_TIMEOUT, REQUEST_TIMEOUT};
use zkraft::{CreateMode, Error};

/// A 3-node cluster and a session (30 s timeout) hosted by a follower, which created `dir`; the
/// leader's appends to both followers delayed by 300 ms, so writes stay in flight.
/// Returns the cluster, the leader's id and the session.
fn slow_leader_with_a_follower_session(dir: &str) -> (Cluster, u64, zkraft::Session) {
    let c = Cluster::new(3);
    let leader = c.wait_leader();
    let followers: Vec<u64> = c.ids.iter().copied().filter(|id| *id != leader).collect();
    let session = c
        .node(followers[0])
        .session_with_timeout(Duration::from_secs(30))
        .unwrap();
    retry(|| session.create(dir, b"", CreateMode::Persistent));
    for f in followers {
        c.net.delay(leader, f, Duration::from_millis(300)).unwrap();
    }
    (c, leader, session)
}

#[test]
fn a_leader_crash_answers_every_write_in_flight_within_an_election() {
    let (mut c, leader, session) = slow_leader_with_a_follower_session("/w");
    let session = Arc::new(session);

    let writers: Vec<_> = (0..100)
        .map(|i| {
            let session = session.clone();
            std::thread::spawn(move || {
                let res = session.create(
                    &format!("/w/n-{i:03}-"),
                    b"",
                    CreateMode::PersistentSequential,
                );
                (Instant::now(), res)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let crashed = Instant::now();
    c.stop(leader);
    let mut lost = 0;
    let mut applied = 0;
    for w in writers {
        let (at, res) = w.join().unwrap();
        let after = at.saturating_duration_since(crashed);
        assert!(
            after < ELECTION_TIMEOUT * 3,
            "answered {after:?} after the crash ({res:?}); the request timeout is {REQUEST_TIMEOUT:?}"
        );
        match res {
            Ok(_) => applied += 1,
            Err(Error::ConnectionLoss(_)) => lost += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(
        lost > 0,
        "the crash caught writes in flight ({applied} applied)"
    );
    // The session goes on (a new epoch); the survivors agree.
    c.net.heal();
    retry(|| session.create("/w/after", b"", CreateMode::Persistent));
    let image = c.wait_converged(Duration::from_secs(10));
    let created = image.keys().filter(|p| p.starts_with("/w/n-")).count();
    assert!(
        created >= applied,
        "{created} created, {applied} acknowledged"
    );
    println!(
        "{applied} applied and acknowledged, {lost} answered ConnectionLoss, {created} created"
    );
}

/// What a pipelined session heard.
#[derive(Default)]
struct Answers(std::sync::Mutex<Vec<(i64, zkraft::Result<zkraft::Reply>)>>);

impl zkraft::Sink for Answers {
    fn reply(&self, xid: i64, reply: zkraft::Result<zkraft::Reply>) {
        self.0.lock().unwrap().push((xid, reply));
    }
}

#[test]
fn a_leader_crash_under_a_pipelined_session_never_applies_a_write_after_a_later_one() {
    let (mut c, leader, session) = slow_leader_with_a_follower_session("/q");
    let answers = Arc::new(Answers::default());
    let sink: Arc<dyn zkraft::Sink> = answers.clone();
    // 100 writes in flight from one thread; the data says which request each was.
    for xid in 0..100i64 {
        let op = zkraft::Op::create(
            "/q/e-",
            xid.to_string().into_bytes(),
            CreateMode::PersistentSequential,
        );
        session.submit(xid, zkraft::Request::Write(op), &sink);
    }
    std::thread::sleep(Duration::from_millis(100));
    let crashed = Instant::now();
    c.stop(leader);
    let deadline = crashed + ELECTION_TIMEOUT * 3;
    while answers.0.lock().unwrap().len() < 100 {
        assert!(
            Instant::now() < deadline,
            "not every write was answered within three election timeouts"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let heard = answers.0.lock().unwrap();
    assert_eq!(
        heard.iter().map(|(x, _)| *x).collect::<Vec<_>>(),
        (0..100).collect::<Vec<_>>(),
        "answered in submission order"
    );
    for (xid, r) in heard.iter() {
        assert!(
            matches!(r, Ok(_) | Err(Error::ConnectionLoss(_))),
            "request {xid}: {r:?}"
        );
    }
    let acknowledged: Vec<i64> = heard
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(x, _)| *x)
        .collect();
    drop(heard);
    c.net.heal();
    retry(|| session.create("/q/after", b"", CreateMode::Persistent));
    let image = c.wait_converged(Duration::from_secs(10));
    // In apply order (the sequence numbers), the requests applied must be in submission
    // order: none after a later one.
    let mut applied: Vec<(String, i64)> = image
        .iter()
        .filter(|(p, _)| p.starts_with("/q/e-"))
        .map(|(p, (data, _))| {
            (
                p.clone(),
                String::from_utf8_lossy(data.as_deref().unwrap_or_default())
                    .parse()
                    .unwrap(),
            )
        })
        .collect();
    applied.sort();
    let order: Vec<i64> = applied.iter().map(|(_, x)| *x).collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "applied out of order: {order:?}"
    );
    for x in &acknowledged {
        assert!(order.contains(x), "acknowledged write {x} missing");
    }
    println!(
        "{} acknowledged, {} applied in order",
        acknowledged.len(),
        order.len()
    );
}

/// Writes cut short by their own node's shutdown answer `Shutdown` — the node is gone,
/// not the connection to a leader — whatever their place in their session's order, on a
/// follower and on the leader.
#[test]
fn writes_cut_short_by_the_local_shutdown_answer_shutdown() {
    for on_leader in [false, true] {
        let (mut c, leader, follower_session) = slow_leader_with_a_follower_session("/s");
        let (host, session) = if on_leader {
            drop(follower_session);
            let leader = c.wait_leader();
            let s = retry(|| c.node(leader).session_with_timeout(Duration::from_secs(30)));
            (leader, s)
        } else {
            let host = c
                .ids
                .iter()
                .copied()
                .find(|id| *id != leader && c.node(*id).hosted_sessions() > 0)
                .expect("the session's host");
            (host, follower_session)
        };
        let session = Arc::new(session);
        let writers: Vec<_> = (0..50)
            .map(|i| {
                let session = session.clone();
                std::thread::spawn(move || {
                    session.create(&format!("/s/n{i}"), b"", CreateMode::Persistent)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let node = c.detach(host);
        node.shutdown();
        let mut outcomes = Vec::new();
        for w in writers {
            outcomes.push(w.join().unwrap());
        }
        for r in &outcomes {
            assert!(
                matches!(r, Ok(_) | Err(Error::Shutdown)),
                "a write cut short by its node's shutdown (leader: {on_leader}) answered {r:?}"
            );
        }
        assert!(outcomes.iter().any(|r| matches!(r, Err(Error::Shutdown))));
    }
}
