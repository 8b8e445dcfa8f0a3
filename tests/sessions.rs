//! Sessions and ephemeral znodes across an in-process ensemble: close, crash expiry,
//! leader changes, ended-session errors, concurrent sequential creates.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, Cluster, ELECTION_TIMEOUT, SESSION_TIMEOUT, TICK};
use zkraft::{CreateMode, Error, SessionEvent, SessionState};

fn gone_everywhere(c: &Cluster, path: &str) -> bool {
    c.running().all(|n| n.exists(path).unwrap().is_none())
}

#[test]
fn ephemerals_vanish_on_close_at_once_on_every_replica() {
    let c = Cluster::new(3);
    let node = c.follower();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let s = node
        .session_builder()
        .watcher(move |e| ev.lock().unwrap().push(e))
        .open()
        .unwrap();
    s.create("/svc", b"", CreateMode::Persistent).unwrap();
    let (p, stat) = s
        .create_with_stat("/svc/me", b"up", CreateMode::Ephemeral)
        .unwrap();
    assert_eq!(stat.ephemeral_owner, s.id());
    assert_eq!(s.get_ephemerals("/svc").unwrap(), vec![p.clone()]);
    c.wait_converged(Duration::from_secs(5));
    s.close().unwrap();
    // Gone on the calling node the moment close returns…
    assert!(node.exists(&p).unwrap().is_none());
    // …and on every replica once it applied the same entry.
    let img = c.wait_converged(Duration::from_secs(5));
    assert!(!img.contains_key(&p));
    assert!(c
        .running()
        .all(|n| n.with_tree(|t| t.sessions().is_empty())));
    assert_eq!(s.state(), SessionState::Closed);
    assert_eq!(
        s.create("/svc/x", b"", CreateMode::Persistent),
        Err(Error::SessionClosed)
    );
    assert_eq!(s.get_data("/svc", None), Err(Error::SessionClosed));
    assert_eq!(node.hosted_sessions(), 0);
    assert_eq!(
        *events.lock().unwrap(),
        [SessionEvent::Connected, SessionEvent::Closed]
    );
}

fn crash_detection(host_is_leader: bool) -> Duration {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader();
    let host = if host_is_leader {
        leader
    } else {
        c.follower().id()
    };
    let s = c.node(host).session().unwrap();
    assert_eq!(s.timeout(), SESSION_TIMEOUT);
    s.create("/owner", b"", CreateMode::Ephemeral).unwrap();
    c.wait_converged(Duration::from_secs(5));
    c.stop(host); // no close: heartbeats just stop
    let took = wait_until(Duration::from_secs(10), "ephemeral to vanish", || {
        gone_everywhere(&c, "/owner")
    });
    assert!(c
        .running()
        .all(|n| n.with_tree(|t| t.sessions().is_empty())));
    drop(s);
    took
}

#[test]
fn ephemerals_vanish_when_their_host_crashes() {
    let took = crash_detection(false);
    // Expired by the leader within the timeout of the last heartbeat (plus a tick or two).
    // Slack: a few ticks for the expiry check, the commit and the apply on a loaded box.
    assert!(took <= SESSION_TIMEOUT + TICK * 20, "took {took:?}");
}

#[test]
fn ephemerals_vanish_when_the_crashed_host_was_the_leader() {
    let took = crash_detection(true);
    // A new leader is elected (within one election timeout), then gives every session a
    // fresh full timeout. The slack covers a heartbeat interval and a few ticks.
    assert!(
        took <= SESSION_TIMEOUT + ELECTION_TIMEOUT + TICK * 20,
        "took {took:?}"
    );
}

#[test]
fn session_survives_leader_change() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader();
    let host = c.follower().id();
    let s = c.node(host).session().unwrap();
    s.create("/alive", b"", CreateMode::Ephemeral).unwrap();
    c.stop(leader);
    let survivors: Vec<u64> = c.ids.iter().copied().filter(|&i| i != leader).collect();
    c.wait_leader_among(&survivors, Duration::from_secs(10));
    // Well past the session timeout: the host keeps heartbeating the new leader.
    std::thread::sleep(SESSION_TIMEOUT * 3);
    wait_until(Duration::from_secs(5), "connected", || {
        s.state() == SessionState::Connected
    });
    assert!(s.exists("/alive", None).unwrap().is_some());
    s.create("/alive2", b"", CreateMode::Ephemeral).unwrap();
    for &id in &survivors {
        c.node(id).sync("/").unwrap();
        assert!(c.node(id).exists("/alive2").unwrap().is_some());
    }
}

#[test]
fn expired_session_is_told_and_refuses_calls() {
    let c = Cluster::new(3);
    let host = c.follower().id();
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let s = c
        .node(host)
        .session_builder()
        .timeout(Duration::from_millis(500))
        .watcher(move |e| ev.lock().unwrap().push(e))
        .open()
        .unwrap();
    s.create("/lease", b"", CreateMode::Ephemeral).unwrap();
    // The host answered once it applied the create; the others may not have yet, and "gone
    // on the majority" below must mean expired, not "not there yet".
    c.wait_applied(c.node(host).applied_index(), Duration::from_secs(10));
    // Cut the host off: the majority's leader stops hearing the session and expires it.
    c.net.isolate(host);
    let others: Vec<u64> = c.ids.iter().copied().filter(|&i| i != host).collect();
    wait_until(Duration::from_secs(10), "expiry on the majority", || {
        others
            .iter()
            .all(|&i| c.node(i).exists("/lease").unwrap().is_none())
    });
    // The host learns of it when it hears the log again.
    c.net.heal();
    wait_until(Duration::from_secs(10), "host to apply the expiry", || {
        s.state() == SessionState::Expired
    });
    assert_eq!(
        s.create("/x", b"", CreateMode::Persistent),
        Err(Error::SessionExpired)
    );
    assert_eq!(s.exists("/", None), Err(Error::SessionExpired));
    assert_eq!(s.close(), Ok(()));
    wait_until(Duration::from_secs(5), "state events", || {
        events.lock().unwrap().len() == 2
    });
    assert_eq!(
        *events.lock().unwrap(),
        [SessionEvent::Connected, SessionEvent::Expired]
    );
}

#[test]
fn ephemerals_cannot_have_children_and_timeouts_are_negotiated() {
    let c = Cluster::new(1);
    let n = c.leader();
    let s = n.session_with_timeout(Duration::from_secs(3600)).unwrap();
    assert_eq!(
        s.timeout(),
        Duration::from_secs(30),
        "clamped to the maximum"
    );
    let short = n.session_with_timeout(Duration::from_millis(1)).unwrap();
    assert_eq!(
        short.timeout(),
        Duration::from_millis(300),
        "clamped to the minimum"
    );
    s.create("/e", b"", CreateMode::Ephemeral).unwrap();
    let before = common::image(n);
    for mode in [
        CreateMode::Persistent,
        CreateMode::Ephemeral,
        CreateMode::EphemeralSequential,
    ] {
        assert_eq!(
            s.create("/e/child", b"", mode),
            Err(Error::NoChildrenForEphemerals("/e".into()))
        );
    }
    assert_eq!(common::image(n), before);
    // The sessionless node API cannot create ephemerals.
    assert!(matches!(
        n.create("/e2", b"", CreateMode::Ephemeral),
        Err(Error::BadArguments(_))
    ));
}

#[test]
fn sequential_names_are_unique_and_ordered_under_concurrent_creators() {
    let c = Cluster::new(3);
    c.leader()
        .create("/seq", b"", CreateMode::Persistent)
        .unwrap();
    let per_thread = 25;
    let all: Vec<Vec<String>> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for n in c.running() {
            for _ in 0..3 {
                handles.push(scope.spawn(move || {
                    let s = n.session().unwrap();
                    let names: Vec<String> = (0..per_thread)
                        .map(|_| {
                            s.create("/seq/e-", b"", CreateMode::EphemeralSequential)
                                .unwrap()
                        })
                        .collect();
                    // Keep the session (and its ephemerals) until every thread is done.
                    std::thread::sleep(Duration::from_millis(300));
                    names
                }));
            }
        }
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut everything = BTreeSet::new();
    for names in &all {
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "one creator's names increase"
        );
        everything.extend(names.iter().cloned());
    }
    let total = all.len() * per_thread;
    assert_eq!(everything.len(), total, "no name handed out twice");
    let expected: BTreeSet<String> = (0..total).map(|i| format!("/seq/e-{i:010}")).collect();
    assert_eq!(everything, expected, "no gaps");
    // Every session is closed (in the background) once its thread ended: all ephemerals
    // go, everywhere.
    common::wait_until(Duration::from_secs(10), "every ephemeral gone", || {
        c.running()
            .all(|n| n.get_children("/seq").is_ok_and(|c| c.is_empty()))
    });
    let img = c.wait_converged(Duration::from_secs(10));
    assert_eq!(img["/seq"].1.num_children, 0);
}

#[test]
fn leader_reaps_empty_containers_and_expired_ttl_znodes() {
    let c = Cluster::new(3);
    let s = c.follower().session().unwrap();
    s.create("/jobs", b"", CreateMode::Container).unwrap();
    s.create("/jobs/1", b"", CreateMode::Persistent).unwrap();
    s.create_ttl(
        "/cache",
        b"",
        CreateMode::PersistentWithTtl,
        Duration::from_millis(300),
    )
    .unwrap();
    assert!(matches!(
        s.create("/bad", b"", CreateMode::PersistentWithTtl),
        Err(Error::BadArguments(_))
    ));
    // A container with a child stays; the TTL znode goes after its TTL.
    wait_until(Duration::from_secs(5), "TTL znode reaped", || {
        gone_everywhere(&c, "/cache")
    });
    assert!(s.exists("/jobs", None).unwrap().is_some());
    s.delete("/jobs/1", None).unwrap();
    wait_until(Duration::from_secs(5), "empty container reaped", || {
        gone_everywhere(&c, "/jobs")
    });
}
