//! Recipes over in-process ensembles: leader election (one leader, failover on crash and
//! on close, no herd, fencing tokens), the lock (mutual exclusion across nodes and
//! threads), group membership, the double barrier and the queue.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{wait_until, Cluster, ELECTION_TIMEOUT, SESSION_TIMEOUT, TICK};
use zkraft::recipes::barrier::DoubleBarrier;
use zkraft::recipes::election::LeaderElection;
use zkraft::recipes::group::Group;
use zkraft::recipes::lock::DistributedLock;
use zkraft::recipes::queue::DistributedQueue;
use zkraft::Error;

const WAIT: Duration = Duration::from_secs(10);

fn leaders(cands: &[(u64, LeaderElection)]) -> Vec<u64> {
    cands
        .iter()
        .filter(|(_, e)| e.is_leader())
        .map(|(id, _)| *id)
        .collect()
}

#[test]
fn election_has_one_leader_and_fails_over_when_its_node_dies() {
    let mut c = Cluster::new(3);
    c.wait_leader();
    let mut cands: Vec<(u64, LeaderElection)> = c
        .ids
        .clone()
        .into_iter()
        .map(|id| {
            let s = Arc::new(c.node(id).session().unwrap());
            let e = LeaderElection::join(s, "/election", format!("node-{id}").as_bytes()).unwrap();
            (id, e)
        })
        .collect();
    wait_until(WAIT, "a leader", || leaders(&cands).len() == 1);
    let first = leaders(&cands)[0];
    let first_token = cands
        .iter()
        .find(|(i, _)| *i == first)
        .unwrap()
        .1
        .fencing_token();
    for (_, e) in &cands {
        assert_eq!(
            e.leader_data().unwrap(),
            Some(format!("node-{first}").into_bytes())
        );
    }
    // Crash the leader's node: no close, its heartbeats stop.
    let crashed = Instant::now();
    c.stop(first);
    let idx = cands.iter().position(|(i, _)| *i == first).unwrap();
    let (_, dead) = cands.remove(idx);
    let took = wait_until(WAIT, "a successor", || leaders(&cands).len() == 1);
    let second = leaders(&cands)[0];
    assert_ne!(second, first);
    assert!(
        took <= SESSION_TIMEOUT + ELECTION_TIMEOUT * 2 + TICK * 10,
        "failover took {took:?} after {:?}",
        crashed.elapsed()
    );
    // Never two leaders (a stalled node may briefly be Suspended and claim none); the
    // successor's token is larger.
    for _ in 0..20 {
        assert!(leaders(&cands).len() <= 1);
        std::thread::sleep(TICK);
    }
    wait_until(WAIT, "the successor leads", || leaders(&cands) == [second]);
    let second_token = cands
        .iter()
        .find(|(i, _)| *i == second)
        .unwrap()
        .1
        .fencing_token();
    assert!(second_token > first_token);
    drop(dead);
}

#[test]
fn election_successor_takes_over_when_the_leader_closes_its_session() {
    let c = Cluster::new(3);
    let n = c.follower();
    let s1 = Arc::new(n.session().unwrap());
    let s2 = Arc::new(c.leader().session().unwrap());
    let e1 = LeaderElection::join(s1.clone(), "/svc/leader", b"a").unwrap();
    let e2 = LeaderElection::join(s2, "/svc/leader", b"b").unwrap();
    assert!(e1.await_leadership(WAIT).unwrap());
    assert!(!e2.await_leadership(Duration::from_millis(100)).unwrap());
    s1.close().unwrap();
    assert!(e2.await_leadership(WAIT).unwrap());
    assert!(!e1.is_leader());
    assert!(matches!(
        e1.await_leadership(WAIT),
        Err(Error::SessionClosed)
    ));
}

#[test]
fn election_wakes_only_the_next_candidate() {
    let c = Cluster::new(3);
    let cands: Vec<LeaderElection> = (0..6)
        .map(|i| {
            let node = c.running().nth(i % 3).unwrap();
            LeaderElection::join(Arc::new(node.session().unwrap()), "/herd", b"").unwrap()
        })
        .collect();
    assert!(cands[0].await_leadership(WAIT).unwrap());
    cands[0].resign().unwrap();
    assert!(cands[1].await_leadership(WAIT).unwrap());
    // Let any stray notification arrive before counting.
    for cand in &cands[1..] {
        cand.leader_data().unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let wakeups: Vec<u64> = cands.iter().map(LeaderElection::wakeups).collect();
    assert_eq!(
        wakeups,
        [0, 1, 0, 0, 0, 0],
        "only the successor was notified"
    );
    // A candidate in the middle leaving wakes only the one behind it, which stays a follower.
    cands[3].resign().unwrap();
    wait_until(WAIT, "candidate 4 re-armed", || cands[4].wakeups() == 1);
    assert!(!cands[4].is_leader());
    assert!(cands[1].await_leadership(WAIT).unwrap());
    let tokens: Vec<i64> = cands.iter().map(LeaderElection::fencing_token).collect();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn lock_is_mutually_exclusive_across_nodes_and_threads() {
    let c = Cluster::new(3);
    let inside = AtomicUsize::new(0);
    let max_inside = AtomicUsize::new(0);
    let tokens = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for n in c.running() {
            for _ in 0..3 {
                let (inside, max_inside, tokens) = (&inside, &max_inside, &tokens);
                scope.spawn(move || {
                    let lock = DistributedLock::new(Arc::new(n.session().unwrap()), "/locks/x");
                    for _ in 0..5 {
                        let g = lock.acquire(Duration::from_secs(30)).unwrap();
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        max_inside.fetch_max(now, Ordering::SeqCst);
                        tokens.lock().unwrap().push(g.fencing_token());
                        std::thread::sleep(Duration::from_millis(2));
                        inside.fetch_sub(1, Ordering::SeqCst);
                        g.release().unwrap();
                    }
                });
            }
        }
    });
    assert_eq!(max_inside.load(Ordering::SeqCst), 1, "two holders at once");
    let tokens = tokens.into_inner().unwrap();
    assert_eq!(tokens.len(), 45);
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens grow holder to holder"
    );
}

#[test]
fn lock_acquire_times_out_and_cleans_up() {
    let c = Cluster::new(1);
    let n = c.leader();
    let holder = DistributedLock::new(Arc::new(n.session().unwrap()), "/l");
    let g = holder.acquire(WAIT).unwrap();
    let waiter = DistributedLock::new(Arc::new(n.session().unwrap()), "/l");
    assert!(matches!(
        waiter.acquire(Duration::from_millis(200)),
        Err(Error::Timeout(_))
    ));
    assert_eq!(
        n.get_children("/l").unwrap().len(),
        1,
        "the waiter's znode is gone"
    );
    drop(g);
    waiter.acquire(WAIT).unwrap();
}

#[test]
fn group_membership_reports_joins_leaves_and_crashes() {
    let mut c = Cluster::new(3);
    let leader = c.wait_leader();
    let others: Vec<u64> = c.ids.iter().copied().filter(|&i| i != leader).collect();
    let observer = Group::new(Arc::new(c.node(leader).session().unwrap()), "/workers").unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    assert!(observer
        .watch(move |m| seen2.lock().unwrap().push(m))
        .unwrap()
        .is_empty());
    let g1 = Group::new(Arc::new(c.node(others[0]).session().unwrap()), "/workers").unwrap();
    let g2 = Group::new(Arc::new(c.node(others[1]).session().unwrap()), "/workers").unwrap();
    let m1 = g1.join("w1", b"10.0.0.1").unwrap();
    let _m2 = g2.join("w2", b"10.0.0.2").unwrap();
    assert!(matches!(g2.join("w1", b""), Err(Error::NodeExists(_))));
    wait_until(WAIT, "two members", || {
        seen.lock().unwrap().last().map(Vec::len) == Some(2)
    });
    assert_eq!(observer.member_data("w2").unwrap(), b"10.0.0.2");
    m1.leave().unwrap();
    wait_until(WAIT, "w1 left", || {
        seen.lock().unwrap().last() == Some(&vec!["w2".to_string()])
    });
    // w2's node crashes: it leaves when its session expires.
    c.stop(others[1]);
    wait_until(WAIT, "w2 expired", || {
        seen.lock().unwrap().last() == Some(&Vec::<String>::new())
    });
    observer.unwatch();
}

#[test]
fn double_barrier_holds_until_everyone_entered_and_left() {
    let c = Cluster::new(3);
    let entered = AtomicUsize::new(0);
    let order = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for (i, n) in c.running().enumerate() {
            let (entered, order) = (&entered, &order);
            scope.spawn(move || {
                let b = DoubleBarrier::new(
                    Arc::new(n.session().unwrap()),
                    "/barrier",
                    &format!("p{i}"),
                    3,
                )
                .unwrap();
                std::thread::sleep(Duration::from_millis(50 * i as u64));
                entered.fetch_add(1, Ordering::SeqCst);
                b.enter(WAIT).unwrap();
                // Nobody gets through before all three are in.
                assert_eq!(entered.load(Ordering::SeqCst), 3);
                order.lock().unwrap().push("in");
                b.leave(WAIT).unwrap();
                order.lock().unwrap().push("out");
            });
        }
    });
    let order = order.into_inner().unwrap();
    assert_eq!(order.len(), 6);
    assert!(order[..3].iter().all(|s| *s == "in"), "{order:?}");
    assert!(c.leader().get_children("/barrier").unwrap().is_empty());
}

#[test]
fn queue_hands_each_item_to_exactly_one_consumer_in_order() {
    let c = Cluster::new(3);
    let producer = DistributedQueue::new(Arc::new(c.leader().session().unwrap()), "/q").unwrap();
    for i in 0..30 {
        producer.offer(format!("{i:02}").as_bytes()).unwrap();
    }
    assert_eq!(producer.len().unwrap(), 30);
    let got = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for n in c.running() {
            let got = &got;
            scope.spawn(move || {
                let q = DistributedQueue::new(Arc::new(n.session().unwrap()), "/q").unwrap();
                let mine: Vec<String> = std::iter::from_fn(|| q.poll().unwrap())
                    .map(|b| String::from_utf8(b).unwrap())
                    .collect();
                assert!(
                    mine.windows(2).all(|w| w[0] < w[1]),
                    "each consumer sees FIFO order"
                );
                got.lock().unwrap().extend(mine);
            });
        }
    });
    let got = got.into_inner().unwrap();
    assert_eq!(got.len(), 30);
    assert_eq!(
        got.iter().collect::<BTreeSet<_>>().len(),
        30,
        "no item twice"
    );
    // take waits for an item.
    let consumer = DistributedQueue::new(Arc::new(c.follower().session().unwrap()), "/q").unwrap();
    assert!(matches!(
        consumer.take(Duration::from_millis(100)),
        Err(Error::Timeout(_))
    ));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            producer.offer(b"late").unwrap();
        });
        assert_eq!(consumer.take(WAIT).unwrap(), b"late");
    });
}

#[test]
fn a_leader_cut_off_from_the_ensemble_stops_believing_it_leads() {
    let mut c = Cluster::new(3);
    let raft_leader = c.wait_leader();
    let host = c.follower().id();
    let s = Arc::new(c.node(host).session().unwrap());
    let e = LeaderElection::join(s.clone(), "/el", b"").unwrap();
    assert!(e.await_leadership(WAIT).unwrap());
    // Partitioned: the host loses its raft leader within an election timeout, long before
    // its session can expire.
    c.net.isolate(host);
    let took = wait_until(WAIT, "leadership suspended", || !e.is_leader());
    assert!(took < SESSION_TIMEOUT, "took {took:?}");
    assert_eq!(s.state(), zkraft::SessionState::Suspended);
    // Meanwhile the others elect someone else once the session expires.
    let s2 = Arc::new(c.node(raft_leader).session().unwrap());
    let e2 = LeaderElection::join(s2, "/el", b"").unwrap();
    assert!(e2.await_leadership(WAIT).unwrap());
    assert!(!e.is_leader());
    // A stopped node's candidate never leads again either.
    c.net.heal();
    c.stop(host);
    assert!(!e.is_leader());
}

#[test]
fn a_lock_znode_whose_create_timed_out_is_adopted_not_orphaned() {
    let c = Cluster::new(3);
    let leader = c.wait_leader();
    let host = c.follower().id();
    let s = Arc::new(
        c.node(host)
            .session_with_timeout(Duration::from_secs(5))
            .unwrap(),
    );
    zkraft::recipes::ensure_path(&s, "/lk").unwrap();
    // Requests from the host reach the leader only after the request timeout (3 s).
    c.net
        .delay(host, leader, Duration::from_millis(3500))
        .unwrap();
    let lock = DistributedLock::new(s.clone(), "/lk");
    let guard = lock.acquire(WAIT).unwrap();
    c.net.heal();
    let kids = c.node(leader).get_children("/lk").unwrap();
    assert_eq!(kids.len(), 1, "exactly one lock znode: {kids:?}");
    guard.release().unwrap();
    let other = DistributedLock::new(Arc::new(c.node(leader).session().unwrap()), "/lk");
    other.acquire(WAIT).unwrap();
}

#[test]
fn a_leader_whose_heartbeats_do_not_reach_the_leader_is_suspended() {
    let c = Cluster::new(3);
    let raft_leader = c.wait_leader();
    let host = c.follower().id();
    let s = Arc::new(c.node(host).session().unwrap());
    let e = LeaderElection::join(s.clone(), "/asym", b"").unwrap();
    assert!(e.await_leadership(WAIT).unwrap());
    // One-way loss: the host still hears the raft leader (and knows it), but its pings are
    // lost, so the ensemble will expire its session. It must stop leading before that.
    c.net.drop_rate(host, raft_leader, 1.0);
    let took = wait_until(WAIT, "leadership suspended", || !e.is_leader());
    assert!(took < SESSION_TIMEOUT, "took {took:?}");
    assert_eq!(c.node(host).leader(), Some(raft_leader));
    assert_eq!(s.state(), zkraft::SessionState::Suspended);
    c.net.heal();
}

#[test]
fn await_leadership_on_a_stopped_node_says_shutdown() {
    let mut c = Cluster::new(3);
    c.wait_leader();
    let host = c.follower().id();
    let first = LeaderElection::join(Arc::new(c.leader().session().unwrap()), "/st", b"").unwrap();
    assert!(first.await_leadership(WAIT).unwrap());
    let second =
        LeaderElection::join(Arc::new(c.node(host).session().unwrap()), "/st", b"").unwrap();
    c.stop(host);
    assert!(matches!(
        second.await_leadership(WAIT),
        Err(Error::Shutdown)
    ));
}
