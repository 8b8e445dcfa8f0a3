//! Pipelined sessions: many requests in flight from one thread, answered in submission
//! order; reads wait for the session's earlier writes; a watch event always comes before
//! an answer that reflects its change.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{retry, Cluster};
use zkraft::{watch::watcher, CreateMode, Op, Reply, Request, Result, Sink};

/// Everything a session hears, in the order it hears it.
#[derive(Default)]
struct Log(Mutex<Vec<Heard>>);

#[derive(Debug, Clone)]
enum Heard {
    Answer(i64, std::result::Result<Reply, String>),
    Event(i64),
}

impl Sink for Log {
    fn reply(&self, xid: i64, reply: Result<Reply>) {
        self.0
            .lock()
            .unwrap()
            .push(Heard::Answer(xid, reply.map_err(|e| e.to_string())));
    }
}

fn wait_for(log: &Log, n: usize) -> Vec<Heard> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = log.0.lock().unwrap().clone();
        if got
            .iter()
            .filter(|h| matches!(h, Heard::Answer(..)))
            .count()
            >= n
        {
            return got;
        }
        assert!(Instant::now() < deadline, "only {} answers", got.len());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_thousand_pipelined_mixed_requests_are_answered_in_order() {
    let c = Cluster::new(3);
    let leader = c.wait_leader();
    let host = c.ids.iter().copied().find(|i| *i != leader).unwrap();
    let session = c.node(host).session().unwrap();
    retry(|| session.create("/p", b"", CreateMode::Persistent));
    let log = Arc::new(Log::default());
    let sink: Arc<dyn Sink> = log.clone();
    // From one thread, without waiting: per key, create, read, set, read, delete, read.
    let mut expected = Vec::new();
    let mut xid = 0i64;
    let mut send = |req: Request, expect: &str| {
        session.submit(xid, req, &sink);
        expected.push((xid, expect.to_string()));
        xid += 1;
    };
    for k in 0..167 {
        let p = format!("/p/k{k}");
        send(
            Request::Write(Op::create(
                p.clone(),
                b"v0".to_vec(),
                CreateMode::Persistent,
            )),
            "created",
        );
        send(
            Request::GetData {
                path: p.clone(),
                watcher: None,
            },
            "v0",
        );
        send(
            Request::Write(Op::set_data(p.clone(), b"v1".to_vec(), Some(0))),
            "set",
        );
        send(
            Request::GetData {
                path: p.clone(),
                watcher: None,
            },
            "v1",
        );
        send(Request::Write(Op::delete(p.clone(), Some(1))), "deleted");
        send(
            Request::Exists {
                path: p,
                watcher: None,
            },
            "gone",
        );
    }
    assert!(xid >= 1000);
    let heard = wait_for(&log, expected.len());
    let answers: Vec<(i64, std::result::Result<Reply, String>)> = heard
        .into_iter()
        .filter_map(|h| match h {
            Heard::Answer(x, r) => Some((x, r)),
            Heard::Event(_) => None,
        })
        .collect();
    assert_eq!(
        answers.iter().map(|(x, _)| *x).collect::<Vec<_>>(),
        expected.iter().map(|(x, _)| *x).collect::<Vec<_>>(),
        "answers in submission order"
    );
    for ((xid, reply), (_, want)) in answers.iter().zip(&expected) {
        let ok = match (want.as_str(), reply) {
            ("created", Ok(Reply::Write(zkraft::OpResult::Create { .. }))) => true,
            ("set", Ok(Reply::Write(zkraft::OpResult::SetData { .. }))) => true,
            ("deleted", Ok(Reply::Write(zkraft::OpResult::Delete))) => true,
            ("gone", Ok(Reply::Exists(None))) => true,
            (v, Ok(Reply::Data(data, _))) => data.as_deref() == Some(v.as_bytes()),
            _ => false,
        };
        assert!(ok, "request {xid}: wanted {want}, got {reply:?}");
    }
}

#[test]
fn a_watch_event_always_comes_before_an_answer_that_reflects_it() {
    let c = Cluster::new(3);
    let leader = c.wait_leader();
    let host = c.ids.iter().copied().find(|i| *i != leader).unwrap();
    let reader = c.node(host).session().unwrap();
    let writer = c.node(leader).session().unwrap();
    retry(|| writer.create("/x", b"0", CreateMode::Persistent));
    reader.sync("/x").unwrap();
    let log = Arc::new(Log::default());
    let sink: Arc<dyn Sink> = log.clone();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut xid = 0;
    let mut arming = std::collections::HashSet::new();
    std::thread::scope(|s| {
        let writer = &writer;
        let w = s.spawn(move || {
            for i in 1..=200u32 {
                writer
                    .set_data("/x", i.to_string().as_bytes(), None)
                    .unwrap();
                if i % 7 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        while !w.is_finished() {
            // Arm a watch (its answer says which change it waits for), then read a few
            // times, a few requests apart.
            let l = log.clone();
            let armed = watcher(move |e| l.0.lock().unwrap().push(Heard::Event(e.zxid)));
            reader.submit(
                xid,
                Request::GetData {
                    path: "/x".into(),
                    watcher: armed,
                },
                &sink,
            );
            arming.insert(xid);
            xid += 1;
            for _ in 0..rnd(5) {
                reader.submit(
                    xid,
                    Request::GetData {
                        path: "/x".into(),
                        watcher: None,
                    },
                    &sink,
                );
                xid += 1;
            }
            std::thread::sleep(Duration::from_micros(rnd(500)));
        }
    });
    let heard = wait_for(&log, xid as usize);
    // Walk the log as the session heard it: once a watch is armed at mzxid m, no answer
    // may show an mzxid above m before the watch's event has been heard.
    // Each arming request's answer arms a watch at the mzxid it shows; the watch fires on
    // the next change after that. Walking what the session heard, in order: no answer may
    // show a change newer than an armed watch's mzxid before that watch's event.
    let mut armed: Vec<i64> = Vec::new();
    let mut checked = 0;
    for h in &heard {
        match h {
            // One change fires every watch armed before it, in one go.
            Heard::Event(zxid) => armed.retain(|m| m >= zxid),
            Heard::Answer(x, Ok(Reply::Data(_, stat))) => {
                if let Some(oldest) = armed.iter().min() {
                    assert!(
                        stat.mzxid <= *oldest,
                        "answer {x} showed mzxid {} before the event of the watch armed at {oldest}",
                        stat.mzxid
                    );
                    checked += 1;
                }
                if arming.contains(x) {
                    armed.push(stat.mzxid);
                }
            }
            Heard::Answer(x, other) => panic!("request {x}: {other:?}"),
        }
    }
    assert!(
        checked > 50,
        "only {checked} answers checked against an armed watch"
    );
}

#[test]
fn a_full_pipe_makes_the_submitter_wait_for_room() {
    let c = Cluster::new(1);
    c.wait_leader();
    let session = c.node(1).session().unwrap();
    retry(|| session.create("/bp", b"", CreateMode::Persistent));
    let log = Arc::new(Log::default());
    let sink: Arc<dyn Sink> = log.clone();
    let n = zkraft::MAX_OUTSTANDING as i64 + 500;
    for xid in 0..n {
        let op = Op::set_data("/bp", xid.to_string().into_bytes(), None);
        session.submit(xid, Request::Write(op), &sink);
    }
    let heard = wait_for(&log, n as usize);
    let xids: Vec<i64> = heard
        .iter()
        .map(|h| match h {
            Heard::Answer(x, Ok(_)) => *x,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(xids, (0..n).collect::<Vec<_>>());
    let (data, stat) = session.get_data("/bp", None).unwrap();
    assert_eq!(data, (n - 1).to_string().into_bytes());
    assert_eq!(stat.version as i64, n);
}

#[test]
fn sync_watch_management_and_ephemerals_take_their_turn_in_the_pipeline() {
    let c = Cluster::new(3);
    let leader = c.wait_leader();
    let host = c.ids.iter().copied().find(|i| *i != leader).unwrap();
    let session = c.node(host).session().unwrap();
    retry(|| session.create("/w", b"", CreateMode::Persistent));
    let log = Arc::new(Log::default());
    let sink: Arc<dyn Sink> = log.clone();
    let l = log.clone();
    let requests = vec![
        Request::Write(Op::create("/w/eph", vec![], CreateMode::Ephemeral)),
        Request::GetEphemerals {
            prefix: "/w".into(),
        },
        Request::AddWatch {
            path: "/w".into(),
            mode: zkraft::AddWatchMode::PersistentRecursive,
            watcher: Arc::new(move |e: zkraft::WatchedEvent| {
                l.0.lock().unwrap().push(Heard::Event(e.zxid))
            }),
        },
        Request::Write(Op::create("/w/x", vec![], CreateMode::Persistent)),
        Request::Sync { path: "/".into() },
        Request::RemoveWatches {
            path: "/w".into(),
            kind: zkraft::WatcherType::Persistent,
        },
        Request::RemoveWatches {
            path: "/w".into(),
            kind: zkraft::WatcherType::Persistent,
        },
    ];
    let n = requests.len();
    for (xid, r) in requests.into_iter().enumerate() {
        session.submit(xid as i64, r, &sink);
    }
    let heard = wait_for(&log, n);
    let shown: Vec<String> = heard
        .iter()
        .map(|h| match h {
            Heard::Event(_) => "event".to_string(),
            Heard::Answer(x, Ok(Reply::Ephemerals(p))) => format!("{x}:{p:?}"),
            Heard::Answer(x, Ok(_)) => format!("{x}:ok"),
            Heard::Answer(x, Err(e)) => format!("{x}:{}", e.split(':').next().unwrap()),
        })
        .collect();
    assert_eq!(
        shown,
        [
            "0:ok",
            "1:[\"/w/eph\"]",
            "2:ok",
            "event", // NodeCreated /w/x, before the answer of the create that caused it
            "3:ok",
            "4:ok",
            "event", // the removed watch hears PersistentWatchRemoved
            "5:ok",
            "6:no watcher on /w",
        ],
        "{heard:?}"
    );
}

#[test]
fn a_node_stopping_under_pipelined_requests_answers_every_one() {
    let c = Cluster::new(3);
    let leader = c.wait_leader();
    let host = c.ids.iter().copied().find(|i| *i != leader).unwrap();
    let session = c.node(host).session().unwrap();
    retry(|| session.create("/s", b"", CreateMode::Persistent));
    let log = Arc::new(Log::default());
    let sink: Arc<dyn Sink> = log.clone();
    for xid in 0..300i64 {
        let req = if xid % 3 == 2 {
            Request::GetData {
                path: "/s".into(),
                watcher: None,
            }
        } else {
            Request::Write(Op::set_data("/s", xid.to_string().into_bytes(), None))
        };
        session.submit(xid, req, &sink);
        if xid == 150 {
            c.node(host).shutdown();
        }
    }
    let heard = wait_for(&log, 300);
    let xids: Vec<i64> = heard
        .iter()
        .filter_map(|h| match h {
            Heard::Answer(x, _) => Some(*x),
            Heard::Event(_) => None,
        })
        .collect();
    assert_eq!(xids, (0..300).collect::<Vec<_>>(), "all answered, in order");
    assert!(
        heard
            .iter()
            .any(|h| matches!(h, Heard::Answer(_, Err(e)) if e.contains("shut"))),
        "the later ones were refused: {:?}",
        heard.last()
    );
}
