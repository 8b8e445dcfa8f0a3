//! Crash tests that really crash (the way sled tests itself): the test re-runs its own
//! binary as a child process that writes as fast as it can and reports every acknowledged
//! write, kills it with SIGKILL at an arbitrary moment, reopens the data directory and
//! checks that every acknowledged write is there and the node carries on.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zkraft::{CreateMode, Node};

const CHILD_ENV: &str = "ZKRAFT_CRASH_CHILD_DIR";

/// In the child: write until killed, printing `ACK <n>` after each acknowledged create.
#[test]
#[ignore = "run as a child process by kill_9_loses_no_acknowledged_write"]
fn crash_child() {
    let dir = std::env::var(CHILD_ENV).expect("started by kill_9_loses_no_acknowledged_write");
    let node = Node::builder(1).data_dir(&dir).start().unwrap();
    let start = node
        .get_children("/k")
        .map(|c| c.len())
        .unwrap_or_else(|_| {
            node.create("/k", b"", CreateMode::Persistent).unwrap();
            0
        });
    let mut n = start;
    loop {
        node.create(
            &format!("/k/{n:08}"),
            &n.to_le_bytes(),
            CreateMode::Persistent,
        )
        .unwrap();
        println!("ACK {n}");
        n += 1;
    }
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut total_acked = 0;
    for round in 0..3u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--ignored"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ACK ").map(|n| n.parse::<usize>().unwrap()))
                .collect::<Vec<_>>()
        });
        // Let it write for a while, differently each round, then pull the plug.
        let started = Instant::now();
        std::thread::sleep(Duration::from_millis(700 + 300 * round));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acked = reader.join().unwrap();
        assert!(
            !acked.is_empty(),
            "the child wrote nothing in {:?}",
            started.elapsed()
        );
        total_acked += acked.len();

        let node = Node::builder(1).data_dir(dir.path()).start().unwrap();
        let kids = node.get_children("/k").unwrap();
        for n in &acked {
            let (data, stat) = node
                .get_data(&format!("/k/{n:08}"))
                .unwrap_or_else(|e| panic!("acknowledged write {n} lost in round {round}: {e}"));
            assert_eq!(data, n.to_le_bytes());
            assert!(stat.czxid > 0);
        }
        // At most the one write in flight at the kill may be there unacknowledged, and the
        // names stay contiguous: nothing skipped, nothing applied twice.
        assert!(kids.len() > *acked.last().unwrap());
        assert!(kids.len() <= acked.last().unwrap() + 2);
        for (i, k) in kids.iter().enumerate() {
            assert_eq!(k, &format!("{i:08}"));
        }
        // And the recovered node takes writes again.
        node.create("/after-crash", b"", CreateMode::Persistent)
            .unwrap();
        node.delete("/after-crash", None).unwrap();
        node.shutdown();
    }
    assert!(total_acked > 0);
}
