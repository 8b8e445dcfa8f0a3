//! A raft leader crash with writes in flight: every write is answered at once —
//! applied, or `ConnectionLoss` (outcome unknown) — not after the request timeout, and
//! the session goes on in a new epoch.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{retry, Cluster, ELECTION_TIMEOUT, REQUEST_TIMEOUT};
use zkraft::{CreateMode, Error};

#[test]
fn a_leader_crash_answers_every_write_in_flight_within_an_election() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader();
    let host = c.ids.iter().copied().find(|id| *id != leader).unwrap();
    let other = c
        .ids
        .iter()
        .copied()
        .find(|id| *id != leader && *id != host)
        .unwrap();
    let session = Arc::new(
        c.node(host)
            .session_with_timeout(Duration::from_secs(30))
            .unwrap(),
    );
    retry(|| session.create("/w", b"", CreateMode::Persistent));
    // The leader's appends take a while to arrive, so the writes stay in flight.
    c.net
        .delay(leader, host, Duration::from_millis(300))
        .unwrap();
    c.net
        .delay(leader, other, Duration::from_millis(300))
        .unwrap();

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
