//! Ten thousand sessions on one node, each with a watch armed: a handful of threads, not
//! one per session (counted from /proc), and every watch still fires.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zkraft::{watch::watcher, CreateMode, Node};

const SESSIONS: usize = 10_000;

fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn ten_thousand_sessions_need_no_thread_each() {
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(
        Node::builder(1)
            .data_dir(dir.path())
            .tick_interval(Duration::from_millis(20))
            .request_timeout(Duration::from_secs(30))
            .session_timeout(Duration::from_secs(30))
            .start()
            .unwrap(),
    );
    let fired = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let sessions: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (node, fired) = (node.clone(), fired.clone());
                s.spawn(move || {
                    (0..SESSIONS / 8)
                        .map(|_| {
                            let session = node.session().unwrap();
                            let fired = fired.clone();
                            let w = watcher(move |_| {
                                fired.fetch_add(1, Ordering::SeqCst);
                            });
                            assert!(session.exists("/go", w).unwrap().is_none());
                            session
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(sessions.len(), SESSIONS);
    assert_eq!(node.hosted_sessions(), SESSIONS);
    let threads = proc_status("Threads:");
    println!(
        "{SESSIONS} sessions opened in {:.1?}: {threads} threads in the process, RSS {} MiB",
        started.elapsed(),
        proc_status("VmRSS:") / 1024
    );
    assert!(threads < 50, "{threads} threads for {SESSIONS} sessions");

    node.create("/go", b"", CreateMode::Persistent).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while fired.load(Ordering::SeqCst) < SESSIONS {
        assert!(
            Instant::now() < deadline,
            "{} of {SESSIONS} watches fired",
            fired.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(proc_status("Threads:") < 50);
    node.shutdown();
    drop(sessions);
}
