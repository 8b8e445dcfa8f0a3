//! Sessions that move between members: re-attached elsewhere with their id and password,
//! they keep their ephemerals and armed watches and outlive their old node; the old
//! handle answers `SessionMoved`; a wrong password changes nothing.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{retry, Cluster};
use zkraft::{watch::watcher, CreateMode, Error, EventType, SessionState};

#[test]
fn a_moved_session_keeps_its_ephemerals_and_watches_and_outlives_its_old_node() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader();
    let (a, b) = {
        let f: Vec<u64> = c.ids.iter().copied().filter(|i| *i != leader).collect();
        (f[0], f[1])
    };
    let old = c
        .node(a)
        .session_with_timeout(Duration::from_secs(1))
        .unwrap();
    let eph = old.create("/eph", b"", CreateMode::Ephemeral).unwrap();
    retry(|| old.create("/w", b"", CreateMode::Persistent));
    retry(|| old.create("/data", b"0", CreateMode::Persistent));
    let (tx, rx) = mpsc::channel();
    let t = tx.clone();
    old.get_children("/w", watcher(move |e| t.send(e).unwrap()))
        .unwrap();
    let t = tx.clone();
    old.exists("/later", watcher(move |e| t.send(e).unwrap()))
        .unwrap();
    let t = tx.clone();
    old.get_data("/data", watcher(move |e| t.send(e).unwrap()))
        .unwrap();

    let moved = old.move_to(c.node(b)).unwrap();
    assert_eq!(moved.id(), old.id());
    assert_eq!(moved.node_id(), b);
    assert_eq!(old.state(), SessionState::Moved);
    assert!(matches!(
        old.create("/x", b"", CreateMode::Persistent),
        Err(Error::SessionMoved)
    ));
    assert_eq!(c.node(a).hosted_sessions(), 0);
    assert_eq!(c.node(b).hosted_sessions(), 1);

    // Its watches fire from their new node.
    moved
        .create("/w/child", b"", CreateMode::Persistent)
        .unwrap();
    moved.create("/later", b"", CreateMode::Persistent).unwrap();
    moved.set_data("/data", b"1", None).unwrap();
    let mut got: Vec<(EventType, String)> = (0..3)
        .map(|_| {
            let e = rx
                .recv_timeout(Duration::from_secs(5))
                .expect("watch fired");
            (e.event_type, e.path)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (EventType::NodeCreated, "/later".to_string()),
            (EventType::NodeDataChanged, "/data".to_string()),
            (EventType::NodeChildrenChanged, "/w".to_string()),
        ]
    );

    // Its old node dies; the session (1 s timeout) lives on, heartbeated by its new one.
    c.stop(a);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(moved.state(), SessionState::Connected);
    let stat = c
        .node(b)
        .exists(&eph)
        .unwrap()
        .expect("the ephemeral stayed");
    assert_eq!(stat.ephemeral_owner, moved.id());
    moved.close().unwrap();
    assert!(c.node(b).exists(&eph).unwrap().is_none());
}

#[test]
fn a_wrong_password_is_refused_and_changes_nothing() {
    let c = Cluster::new(3);
    c.wait_leader();
    let s = c.node(1).session().unwrap();
    let eph = s.create("/mine", b"", CreateMode::Ephemeral).unwrap();
    let mut wrong = s.password().to_vec();
    wrong[0] ^= 1;
    for bad in [wrong.as_slice(), b"", b"0123456789abcdef0"] {
        let err = c.node(2).attach_session(s.id(), bad).unwrap_err();
        assert!(matches!(err, Error::SessionExpired), "{err:?}");
    }
    assert!(matches!(
        c.node(2).attach_session(424242, s.password()),
        Err(Error::SessionExpired)
    ));
    // Still hosted where it was, and working.
    assert_eq!(s.state(), SessionState::Connected);
    s.set_data(&eph, b"still mine", None).unwrap();
    assert_eq!(c.node(1).hosted_sessions(), 1);
    assert_eq!(c.node(2).hosted_sessions(), 0);
    // The right password works from another member.
    let there = c.node(2).attach_session(s.id(), s.password()).unwrap();
    there.set_data(&eph, b"from node 2", None).unwrap();
    assert!(matches!(
        s.set_data(&eph, b"old", None),
        Err(Error::SessionMoved)
    ));
}

#[test]
fn re_attaching_on_the_same_node_retires_the_old_handle() {
    let c = Cluster::new(1);
    c.wait_leader();
    let node = c.node(1);
    let old = node.session().unwrap();
    let eph = old.create("/here", b"", CreateMode::Ephemeral).unwrap();
    let new = node.attach_session(old.id(), old.password()).unwrap();
    assert_eq!(old.state(), SessionState::Moved);
    assert_eq!(node.hosted_sessions(), 1);
    drop(old); // must not close the session it no longer holds
    new.set_data(&eph, b"still here", None).unwrap();
    assert_eq!(new.state(), SessionState::Connected);
    // And back and forth within the process, ending where it started.
    let moved = new.move_to(node).unwrap();
    moved.create("/again", b"", CreateMode::Persistent).unwrap();
    assert!(node.exists(&eph).unwrap().is_some());
    moved.close().unwrap();
    assert!(node.exists(&eph).unwrap().is_none());
}
