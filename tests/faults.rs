//! Fault injection on in-process clusters: leader loss, partitions, message loss and delay,
//! lagging followers.

mod common;

use std::time::{Duration, Instant};

use common::{image, Cluster, TICK};
use zkraft::{CreateMode, Error, Role};

#[test]
fn leader_killed_new_leader_elected_and_writes_go_on() {
    let mut c = Cluster::new(3);
    let old = c.wait_leader();
    c.node(old)
        .create("/before", b"1", CreateMode::Persistent)
        .unwrap();
    let killed_at = Instant::now();
    c.stop(old);
    let survivors: Vec<u64> = c.ids.iter().copied().filter(|&i| i != old).collect();
    let new = c.wait_leader_among(&survivors, Duration::from_secs(10));
    let failover = killed_at.elapsed();
    assert_ne!(new, old);
    // Election timeout is 10–20 ticks; allow a few timeouts.
    assert!(failover < TICK * 20 * 5, "failover took {failover:?}");
    for &id in &survivors {
        c.node(id)
            .create(&format!("/after-{id}"), b"2", CreateMode::Persistent)
            .unwrap();
    }
    // The old leader comes back as a follower and catches up.
    c.net.heal();
    c.start(old);
    let img = c.wait_converged(Duration::from_secs(10));
    assert!(img.contains_key("/before"));
    for &id in &survivors {
        assert!(img.contains_key(&format!("/after-{id}")));
    }
    assert_ne!(c.node(old).role(), Role::Leader);
}

/// Elections after 100–200 ticks (2–4 s): only the news that the leader's connections
/// closed can elect sooner.
fn slow_elections(b: zkraft::NodeBuilder) -> zkraft::NodeBuilder {
    b.election_tick(100)
}

#[test]
fn a_crashed_leader_is_replaced_before_the_election_timeout() {
    let mut c = Cluster::with(3, slow_elections);
    let old = c.wait_leader();
    c.node(old)
        .create("/before", b"1", CreateMode::Persistent)
        .unwrap();
    let crashed_at = Instant::now();
    c.crash(old);
    let survivors: Vec<u64> = c.ids.iter().copied().filter(|&i| i != old).collect();
    let new = c.wait_leader_among(&survivors, Duration::from_secs(20));
    let failover = crashed_at.elapsed();
    assert_ne!(new, old);
    assert!(
        failover < TICK * 100,
        "failover took {failover:?}, no sooner than the election timeout"
    );
    c.node(new)
        .create("/after", b"2", CreateMode::Persistent)
        .unwrap();
    let img = c.wait_converged(Duration::from_secs(10));
    assert!(img.contains_key("/before") && img.contains_key("/after"));
}

#[test]
fn a_reset_connection_to_a_live_leader_changes_nothing() {
    let c = Cluster::with(3, slow_elections);
    let leader = c.wait_leader();
    let term = c.node(leader).term();
    // Both followers in turn: each pre-votes, the other one, still hearing the leader,
    // refuses, and the leader's next heartbeat (every 2 ticks) brings it back.
    for follower in c.ids.iter().copied().filter(|&i| i != leader) {
        c.net.reset(leader, follower);
        std::thread::sleep(TICK * 15);
    }
    assert_eq!(c.wait_leader(), leader);
    assert_eq!(c.node(leader).term(), term, "a pre-vote changes no term");
    c.node(leader)
        .create("/still", b"", CreateMode::Persistent)
        .unwrap();
}

#[test]
fn minority_partition_cannot_write_majority_can_and_heal_converges() {
    let c = Cluster::new(5);
    let leader = c.wait_leader();
    c.leader()
        .create("/p", b"", CreateMode::Persistent)
        .unwrap();
    c.wait_converged(Duration::from_secs(10));
    // The leader and one follower on the minority side.
    let buddy = c.ids.iter().copied().find(|&i| i != leader).unwrap();
    let minority = [leader, buddy];
    let majority: Vec<u64> = c
        .ids
        .iter()
        .copied()
        .filter(|i| !minority.contains(i))
        .collect();
    c.net.partition(&[&minority, &majority]);

    // Neither the old leader nor its follower can complete a write.
    for &id in &minority {
        let err = c
            .node(id)
            .create(&format!("/p/minority-{id}"), b"", CreateMode::Persistent)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Timeout(_) | Error::NoQuorum(_) | Error::ConnectionLoss(_)
            ),
            "minority write on {id} gave {err:?}"
        );
    }
    // The majority elects a leader and writes.
    let new = c.wait_leader_among(&majority, Duration::from_secs(10));
    assert!(!minority.contains(&new));
    for &id in &majority {
        c.node(id)
            .create(&format!("/p/majority-{id}"), b"", CreateMode::Persistent)
            .unwrap();
    }
    // With check-quorum the old leader has stepped down.
    assert_ne!(c.node(leader).role(), Role::Leader);

    c.net.heal();
    let img = c.wait_converged(Duration::from_secs(15));
    for &id in &majority {
        assert!(img.contains_key(&format!("/p/majority-{id}")));
    }
    for &id in &minority {
        assert!(
            !img.contains_key(&format!("/p/minority-{id}")),
            "a write that was reported failed must not appear"
        );
    }
    // And the healed ensemble still writes from any node.
    for &id in &minority {
        c.node(id)
            .create(&format!("/p/healed-{id}"), b"", CreateMode::Persistent)
            .unwrap();
    }
}

#[test]
fn writes_survive_message_loss_and_delay() {
    let c = Cluster::new(3);
    let leader = c.wait_leader();
    for &a in &c.ids {
        for &b in &c.ids {
            if a != b {
                c.net.drop_rate(a, b, 0.2);
                c.net.delay(a, b, Duration::from_millis(3)).unwrap();
            }
        }
    }
    let mut done = 0;
    for i in 0..40 {
        // Through the leader, so a lost forward cannot lose the request itself; raft
        // retransmits lost appends.
        let l = c.wait_leader();
        match c
            .node(l)
            .create(&format!("/lossy-{i}"), b"x", CreateMode::Persistent)
        {
            Ok(_) => done += 1,
            // Leadership may move under heavy loss; the outcome is then unknown.
            Err(Error::Timeout(_) | Error::NoQuorum(_) | Error::ConnectionLoss(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        done >= 30,
        "only {done} of 40 writes completed (leader was {leader})"
    );
    c.net.heal();
    let img = c.wait_converged(Duration::from_secs(15));
    assert!(img.keys().filter(|k| k.starts_with("/lossy-")).count() >= done);
    let (sent, dropped) = c.net.counters();
    assert!(dropped > 0 && sent > dropped);
}

#[test]
fn follower_far_behind_catches_up() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader();
    let lagging = c.ids.iter().copied().find(|&i| i != leader).unwrap();
    // One follower is cut off while the others take many writes…
    c.net.isolate(lagging);
    let l = c.node(leader);
    l.create("/bulk", b"", CreateMode::Persistent).unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for i in 0..100 {
                    l.create(
                        &format!("/bulk/{t}-{i}"),
                        &[t as u8; 100],
                        CreateMode::Persistent,
                    )
                    .unwrap();
                }
            });
        }
    });
    assert!(c.node(lagging).applied_index() + 800 <= l.applied_index());
    // …and catches up when it can hear the leader again.
    c.net.heal();
    let img = c.wait_converged(Duration::from_secs(20));
    assert_eq!(img["/bulk"].1.num_children, 800);

    // A follower that was down catches up after restart too.
    c.stop(lagging);
    c.net.heal();
    for i in 0..100 {
        c.leader()
            .set_data("/bulk", format!("{i}").as_bytes(), Some(i))
            .unwrap();
    }
    c.start(lagging);
    let img = c.wait_converged(Duration::from_secs(20));
    assert_eq!(img["/bulk"].1.version, 100);
    assert_eq!(
        image(c.node(lagging))["/bulk"].0.as_deref(),
        Some(&b"99"[..])
    );
}
