//! Watches on an in-process ensemble: every watch type fires once with the right event on
//! the node where it was registered, in zxid order, before the session can read newer
//! data; persistent and recursive watches; removal; contained panics.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_until, Cluster};
use zkraft::watch::watcher;
use zkraft::{AddWatchMode, CreateMode, Error, EventType, WatchedEvent, WatcherType};

const WAIT: Duration = Duration::from_secs(5);

fn recv(rx: &Receiver<WatchedEvent>) -> (EventType, String) {
    let e = rx.recv_timeout(WAIT).expect("an event");
    (e.event_type, e.path)
}

fn quiet(rx: &Receiver<WatchedEvent>) {
    assert!(
        rx.recv_timeout(Duration::from_millis(150)).is_err(),
        "no further event"
    );
}

#[test]
fn one_shot_watches_fire_once_with_zookeeper_events() {
    let c = Cluster::new(3);
    let leader = c.leader();
    let watcher_node = c.follower();
    let s = watcher_node.session().unwrap();
    let other = leader.session().unwrap();
    leader.create("/w", b"", CreateMode::Persistent).unwrap();
    s.sync("/").unwrap();

    // exists on a missing node watches for its creation.
    let (tx, rx) = channel();
    let t = Mutex::new(tx.clone());
    assert_eq!(
        s.exists("/w/a", watcher(move |e| t.lock().unwrap().send(e).unwrap()))
            .unwrap(),
        None
    );
    // get_children watches the parent.
    let t = Mutex::new(tx.clone());
    s.get_children("/w", watcher(move |e| t.lock().unwrap().send(e).unwrap()))
        .unwrap();
    other.create("/w/a", b"1", CreateMode::Persistent).unwrap();
    let mut got = vec![recv(&rx), recv(&rx)];
    got.sort();
    assert_eq!(
        got,
        [
            (EventType::NodeCreated, "/w/a".to_string()),
            (EventType::NodeChildrenChanged, "/w".to_string())
        ]
    );
    other.create("/w/b", b"", CreateMode::Persistent).unwrap();
    quiet(&rx); // one-shot: the child watch is gone

    // get_data watches data changes: fires once for two changes.
    let t = Mutex::new(tx.clone());
    s.get_data("/w/a", watcher(move |e| t.lock().unwrap().send(e).unwrap()))
        .unwrap();
    other.set_data("/w/a", b"2", None).unwrap();
    other.set_data("/w/a", b"3", None).unwrap();
    assert_eq!(recv(&rx), (EventType::NodeDataChanged, "/w/a".into()));
    quiet(&rx);

    // exists on an existing node and get_children both fire on delete.
    let t = Mutex::new(tx.clone());
    s.exists("/w/b", watcher(move |e| t.lock().unwrap().send(e).unwrap()))
        .unwrap();
    let t = Mutex::new(tx.clone());
    s.get_children("/w/b", watcher(move |e| t.lock().unwrap().send(e).unwrap()))
        .unwrap();
    other.delete("/w/b", None).unwrap();
    assert_eq!(recv(&rx), (EventType::NodeDeleted, "/w/b".into()));
    assert_eq!(recv(&rx), (EventType::NodeDeleted, "/w/b".into()));
    quiet(&rx);

    // No watch is left behind on get_data/get_children of a missing node.
    assert!(matches!(
        s.get_data("/w/zz", watcher(|_| {})),
        Err(Error::NoNode(_))
    ));
    assert!(matches!(
        s.get_children("/w/zz", watcher(|_| {})),
        Err(Error::NoNode(_))
    ));
    assert_eq!(watcher_node.watch_count(), 0);
    // Watches live on the node where they were registered.
    for n in c.running().filter(|n| n.id() != watcher_node.id()) {
        assert_eq!(n.watch_count(), 0);
    }
}

#[test]
fn events_arrive_in_zxid_order_and_recursive_watches_see_everything_below() {
    let c = Cluster::new(3);
    let s = c.follower().session().unwrap();
    let writer = c.leader().session().unwrap();
    writer.create("/r", b"", CreateMode::Persistent).unwrap();
    s.sync("/").unwrap(); // the follower has applied /r before the watch is set
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    s.add_watch("/r", AddWatchMode::PersistentRecursive, move |e| {
        seen2.lock().unwrap().push(e)
    })
    .unwrap();
    let mut writes = 0;
    for i in 0..20 {
        writer
            .create(&format!("/r/{i}"), b"", CreateMode::Persistent)
            .unwrap();
        writer
            .create(&format!("/r/{i}/deep"), b"", CreateMode::Persistent)
            .unwrap();
        writer
            .set_data(&format!("/r/{i}/deep"), b"x", None)
            .unwrap();
        writes += 3;
    }
    writer.delete("/r/0/deep", None).unwrap();
    writes += 1;
    s.sync("/").unwrap(); // sync returns after the session's events up to here are delivered
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        writes,
        "one event per change below /r, no children events"
    );
    assert!(seen.windows(2).all(|w| w[0].zxid < w[1].zxid), "zxid order");
    assert!(seen
        .iter()
        .all(|e| e.event_type != EventType::NodeChildrenChanged));
    assert_eq!(seen.last().unwrap().event_type, EventType::NodeDeleted);
}

#[test]
fn persistent_watch_stays_and_can_be_removed() {
    let c = Cluster::new(1);
    let n = c.leader();
    let s = n.session().unwrap();
    s.create("/p", b"", CreateMode::Persistent).unwrap();
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    s.add_watch("/p", AddWatchMode::Persistent, move |e| {
        tx.lock().unwrap().send(e).unwrap()
    })
    .unwrap();
    s.set_data("/p", b"1", None).unwrap();
    s.create("/p/c", b"", CreateMode::Persistent).unwrap();
    s.create("/p/c/grandchild", b"", CreateMode::Persistent)
        .unwrap(); // not on /p itself
    s.set_data("/p", b"2", None).unwrap();
    assert_eq!(recv(&rx), (EventType::NodeDataChanged, "/p".into()));
    assert_eq!(recv(&rx), (EventType::NodeChildrenChanged, "/p".into()));
    assert_eq!(recv(&rx), (EventType::NodeDataChanged, "/p".into()));
    quiet(&rx);
    s.remove_watches("/p", WatcherType::Persistent).unwrap();
    assert_eq!(recv(&rx), (EventType::PersistentWatchRemoved, "/p".into()));
    s.set_data("/p", b"3", None).unwrap();
    quiet(&rx);
    assert_eq!(
        s.remove_watches("/p", WatcherType::Any),
        Err(Error::NoWatcher("/p".into()))
    );
    // One-shot watches can be removed too, and are told.
    let (tx2, rx2) = channel();
    let t = Mutex::new(tx2);
    s.get_data("/p", watcher(move |e| t.lock().unwrap().send(e).unwrap()))
        .unwrap();
    s.remove_watches("/p", WatcherType::Data).unwrap();
    assert_eq!(recv(&rx2), (EventType::DataWatchRemoved, "/p".into()));
    assert_eq!(n.watch_count(), 0);
}

#[test]
fn a_session_hears_the_event_before_it_can_read_the_new_data() {
    let c = Cluster::new(3);
    let reader_node = c.follower();
    let s = reader_node.session().unwrap();
    let writer = c.leader();
    writer.create("/x", b"old", CreateMode::Persistent).unwrap();
    s.sync("/").unwrap();
    for round in 0..5 {
        let delivered = Arc::new(AtomicBool::new(false));
        let d = delivered.clone();
        s.get_data(
            "/x",
            watcher(move |_| {
                // A slow watcher widens the window a wrong implementation would show.
                std::thread::sleep(Duration::from_millis(50));
                d.store(true, Ordering::SeqCst);
            }),
        )
        .unwrap();
        writer
            .set_data("/x", format!("new{round}").as_bytes(), None)
            .unwrap();
        // Poll the session until it sees the new data: by then the watcher has run.
        loop {
            let (data, _) = s.get_data("/x", None).unwrap();
            if data == format!("new{round}").as_bytes() {
                assert!(
                    delivered.load(Ordering::SeqCst),
                    "read new data before the event"
                );
                break;
            }
            assert!(!delivered.load(Ordering::SeqCst) || data != b"old");
        }
    }
}

#[test]
fn a_panicking_watcher_is_contained() {
    let c = Cluster::new(1);
    let s = c.leader().session().unwrap();
    s.create("/boom", b"", CreateMode::Persistent).unwrap();
    let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let r = ran.clone();
    s.get_data(
        "/boom",
        watcher(move |_| {
            r.store(true, std::sync::atomic::Ordering::SeqCst);
            panic!("bug in a watcher")
        }),
    )
    .unwrap();
    s.set_data("/boom", b"1", None).unwrap();
    wait_until(WAIT, "the panicking watcher ran", || {
        ran.load(std::sync::atomic::Ordering::SeqCst)
    });
    let (tx, rx) = channel();
    let t = Mutex::new(tx);
    s.get_data(
        "/boom",
        watcher(move |e| t.lock().unwrap().send(e).unwrap()),
    )
    .unwrap();
    s.set_data("/boom", b"2", None).unwrap();
    assert_eq!(recv(&rx), (EventType::NodeDataChanged, "/boom".into()));
}

#[test]
fn watchers_may_call_back_into_their_session() {
    let c = Cluster::new(1);
    let s = Arc::new(c.leader().session().unwrap());
    s.create("/cb", b"", CreateMode::Persistent).unwrap();
    let (tx, rx) = channel();
    let s2 = s.clone();
    let tx = Mutex::new(tx);
    s.get_children(
        "/cb",
        watcher(move |_| {
            // Runs on the dispatcher thread: reading (and re-arming) must not deadlock.
            let kids = s2.get_children("/cb", None).unwrap();
            tx.lock().unwrap().send(kids).unwrap();
        }),
    )
    .unwrap();
    s.create("/cb/1", b"", CreateMode::Persistent).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), ["1"]);
    wait_until(WAIT, "watch consumed", || c.leader().watch_count() == 0);
}

#[test]
fn watchers_owning_their_session_do_not_hang_expiry_or_shutdown() {
    let mut c = Cluster::new(3);
    let host = c.follower().id();
    let s = Arc::new(
        c.node(host)
            .session_with_timeout(Duration::from_millis(400))
            .unwrap(),
    );
    s.create("/own", b"", CreateMode::Persistent).unwrap();
    // The only long-lived handles to these sessions are inside their own watchers.
    let s2 = s.clone();
    s.get_data("/own", watcher(move |_| drop(s2))).unwrap();
    drop(s);
    let s = Arc::new(c.node(host).session().unwrap());
    let s3 = s.clone();
    s.add_watch("/own", AddWatchMode::Persistent, move |_| {
        let _ = s3.id();
    })
    .unwrap();
    drop(s);
    // Expire the first (isolate its host), then stop the host: nothing may hang.
    c.net.isolate(host);
    std::thread::sleep(Duration::from_millis(800));
    c.net.heal();
    c.leader().set_data("/own", b"x", None).unwrap();
    c.wait_converged(WAIT);
    c.stop(host);
    assert!(c.running().all(|n| n.exists("/own").unwrap().is_some()));
}

#[test]
fn an_unregistered_watcher_is_dropped_outside_the_node_locks() {
    let c = Cluster::new(1);
    let n = c.leader();
    let s = n.session().unwrap();
    // The watcher owns the last handle to another session; get_data on a missing node
    // does not register it, so it is dropped — and that session closes — without hanging.
    let other = n.session().unwrap();
    let started = std::time::Instant::now();
    let r = s.get_data("/missing", watcher(move |_| drop(other)));
    assert!(matches!(r, Err(Error::NoNode(_))));
    let r = s.get_children("/missing", None);
    assert!(matches!(r, Err(Error::NoNode(_))));
    assert!(started.elapsed() < common::REQUEST_TIMEOUT);
    // Dropping a session closes it in the background.
    common::wait_until(WAIT, "the dropped session closed", || {
        n.hosted_sessions() == 1
    });
}

#[test]
fn watchers_calling_each_others_sessions_do_not_deadlock() {
    let c = Cluster::new(1);
    let n = c.leader();
    let a = Arc::new(n.session().unwrap());
    let b = Arc::new(n.session().unwrap());
    a.create("/x", b"", CreateMode::Persistent).unwrap();
    let (tx, rx) = channel();
    for (me, other) in [(a.clone(), b.clone()), (b.clone(), a.clone())] {
        let tx = Mutex::new(tx.clone());
        me.get_data(
            "/x",
            watcher(move |_| {
                // Each watcher reads through the other session while the other's
                // dispatcher is busy doing the same.
                std::thread::sleep(Duration::from_millis(50));
                let (d, _) = other.get_data("/x", None).unwrap();
                tx.lock().unwrap().send(d).unwrap();
            }),
        )
        .unwrap();
    }
    a.set_data("/x", b"1", None).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), b"1");
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), b"1");
}

#[test]
fn a_session_may_opt_out_of_waiting_for_its_watchers() {
    let c = Cluster::new(1);
    let n = c.leader();
    let s = n.session_builder().wait_for_watchers(false).open().unwrap();
    s.create("/slow", b"", CreateMode::Persistent).unwrap();
    let gate = Arc::new(Mutex::new(()));
    let g = gate.clone();
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    s.get_data(
        "/slow",
        watcher(move |e| {
            let _held = g.lock().unwrap(); // blocks while the caller holds the gate
            tx.lock().unwrap().send(e).unwrap();
        }),
    )
    .unwrap();
    {
        let _held = gate.lock().unwrap();
        // Holding a lock the watcher needs: the call must still return.
        s.set_data("/slow", b"1", None).unwrap();
        s.get_data("/slow", None).unwrap();
    }
    assert_eq!(recv(&rx), (EventType::NodeDataChanged, "/slow".into()));
}

/// Sends on a channel when dropped.
struct DropSignal(Mutex<std::sync::mpsc::Sender<()>>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.0.lock().unwrap().send(());
    }
}

#[test]
fn sessions_owning_each_other_through_watchers_end_cleanly() {
    let c = Cluster::new(1);
    let n = c.leader();
    let a = Arc::new(n.session().unwrap());
    let b = Arc::new(n.session().unwrap());
    a.create("/m", b"", CreateMode::Persistent).unwrap();
    // a's watcher owns b and b's owns a: at shutdown each dispatcher drops the other's
    // session; neither may wait for the other. Each payload signals once fully dropped.
    let (tx, rx) = channel();
    let pa = (b.clone(), DropSignal(Mutex::new(tx.clone())));
    let pb = (a.clone(), DropSignal(Mutex::new(tx)));
    a.get_data("/m", watcher(move |_| drop(pa))).unwrap();
    b.get_data("/m", watcher(move |_| drop(pb))).unwrap();
    drop((a, b));
    n.shutdown();
    for _ in 0..2 {
        rx.recv_timeout(WAIT)
            .expect("a dispatcher is stuck dropping a session");
    }
}

#[test]
fn close_does_not_wait_for_watchers_when_opted_out() {
    let c = Cluster::new(1);
    let n = c.leader();
    let s = n.session_builder().wait_for_watchers(false).open().unwrap();
    s.create("/g", b"", CreateMode::Persistent).unwrap();
    let gate = Arc::new(Mutex::new(()));
    let g = gate.clone();
    s.get_data("/g", watcher(move |_| drop(g.lock().unwrap())))
        .unwrap();
    let held = gate.lock().unwrap();
    s.set_data("/g", b"1", None).unwrap(); // the watcher now waits for the gate
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        s.close().unwrap(); // must not wait for the blocked watcher
        drop(s);
        tx.send(()).unwrap();
    });
    let closed = rx.recv_timeout(WAIT);
    drop(held);
    closed.expect("close waited for a watcher");
}
