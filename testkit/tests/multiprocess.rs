//! A zkraft ensemble as three operating-system processes over TCP on 127.0.0.1: writes
//! through every member, `kill -9` under load, a follower that rejoins through a streamed
//! snapshot, and peers that must be refused.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{read_pairs, Ensemble};

const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn three_processes_take_writes_through_every_member_and_agree() {
    let mut e = Ensemble::start(3, &[]);
    e.wait_leader(LEADER_TIMEOUT);
    assert!(e.member(1).cmd("create /m x").starts_with("ok"));
    for id in 1..=3u64 {
        let ack = e.file(&format!("acks-{id}"));
        let cmd = format!("load 4 25 /m m{id} {}", ack.display());
        assert_eq!(e.member(id).cmd(&cmd), "started");
    }
    for id in 1..=3u64 {
        let done = e.member(id).cmd("wait-load");
        assert!(
            done.starts_with("done acked=100 failed=0"),
            "member {id}: {done}"
        );
    }
    e.wait_converged(CONVERGE_TIMEOUT);
    for id in 1..=3u64 {
        let out = e.file(&format!("export-{id}"));
        let reply = e.member(id).cmd(&format!("export /m {}", out.display()));
        assert_eq!(reply, "ok 300", "member {id} holds every write");
    }
}

/// Every acknowledged write is present once; nothing is present twice.
fn check_acknowledged(e: &mut Ensemble, via: u64, ack_files: &[std::path::PathBuf]) -> usize {
    let out = e.file("export-final");
    let reply = e
        .member(via)
        .cmd(&format!("export /load {}", out.display()));
    assert!(reply.starts_with("ok"), "{reply}");
    let mut seen: HashMap<String, String> = HashMap::new();
    for (name, data) in read_pairs(&out) {
        if let Some(first) = seen.insert(data.clone(), name.clone()) {
            panic!("write {data} applied twice: {first} and {name}");
        }
    }
    let mut acked = 0;
    for f in ack_files {
        for (data, path) in read_pairs(f) {
            acked += 1;
            let name = path.rsplit('/').next().unwrap();
            assert_eq!(
                seen.get(&data).map(String::as_str),
                Some(name),
                "acknowledged write {data} ({path}) is lost"
            );
        }
    }
    acked
}

#[test]
fn kill_9_under_load_loses_no_acknowledged_write() {
    // A short log, so compactions (and maybe snapshots) happen during the test too.
    let mut e = Ensemble::start(3, &["--snapshot-entries", "2000"]);
    e.wait_leader(LEADER_TIMEOUT);
    assert!(e.member(1).cmd("create /load x").starts_with("ok"));
    let mut ack_files = Vec::new();
    let mut incarnation = 0;
    let mut start_load = |e: &mut Ensemble, id: u64, ack_files: &mut Vec<_>| {
        incarnation += 1;
        let ack = e.file(&format!("acks-{id}-{incarnation}"));
        let cmd = format!("load 8 1000000 /load m{id}i{incarnation} {}", ack.display());
        assert_eq!(e.member(id).cmd(&cmd), "started");
        ack_files.push(ack);
    };
    for id in 1..=3 {
        start_load(&mut e, id, &mut ack_files);
    }
    let pause = || std::thread::sleep(Duration::from_millis(1500));
    pause();

    // The leader dies.
    let leader = e.wait_leader(LEADER_TIMEOUT);
    e.take(leader).kill9();
    pause();
    e.spawn(leader);
    start_load(&mut e, leader, &mut ack_files);
    pause();

    // A follower dies.
    let leader = e.wait_leader(LEADER_TIMEOUT);
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    e.take(follower).kill9();
    pause();
    e.spawn(follower);
    start_load(&mut e, follower, &mut ack_files);
    pause();

    // Everyone dies at once.
    for id in 1..=3 {
        e.take(id).kill9();
    }
    for id in 1..=3 {
        e.spawn(id);
    }
    e.wait_leader(LEADER_TIMEOUT);
    for id in 1..=3 {
        start_load(&mut e, id, &mut ack_files);
    }
    pause();
    for id in 1..=3 {
        e.member(id).cmd("stop-load");
    }
    e.wait_converged(CONVERGE_TIMEOUT);
    let acked = check_acknowledged(&mut e, 1, &ack_files);
    assert!(acked > 100, "the load made progress ({acked} writes)");
    let compactions: u64 = (1..=3).map(|id| e.member(id).stat("compactions")).sum();
    println!(
        "acknowledged writes checked: {acked}; compactions since the last start: {compactions}"
    );
}

#[test]
fn a_follower_stopped_during_100k_writes_rejoins_through_a_snapshot() {
    let mut e = Ensemble::start(3, &["--snapshot-entries", "10000"]);
    let leader = e.wait_leader(LEADER_TIMEOUT);
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    assert!(e.member(leader).cmd("create /load x").starts_with("ok"));
    e.wait_converged(CONVERGE_TIMEOUT);
    e.take(follower).quit();

    let ack = e.file("acks");
    let cmd = format!("load 64 1563 /load bulk {}", ack.display());
    assert_eq!(e.member(leader).cmd(&cmd), "started");
    let done = e.member(leader).cmd("wait-load");
    println!("100,032 writes with one follower down: {done}");
    assert!(done.contains("failed=0"), "{done}");
    let first = e.member(leader).stat("first");
    assert!(
        first > 10_000,
        "the leader compacted its log (first index {first})"
    );

    let started = Instant::now();
    e.spawn(follower);
    e.wait_converged(CONVERGE_TIMEOUT);
    let catch_up = started.elapsed();
    let installed = e.member(follower).stat("installed");
    assert!(installed >= 1, "the follower caught up through a snapshot");
    let follower_rss = e.member(follower).peak_rss_kib();
    let leader_rss = e.member(leader).peak_rss_kib();
    println!(
        "catch-up through a snapshot: {:.2} s (restart included); peak RSS: follower {} MiB, leader {} MiB",
        catch_up.as_secs_f64(),
        follower_rss / 1024,
        leader_rss / 1024
    );
    let acked = check_acknowledged(&mut e, follower, &[ack]);
    assert_eq!(acked, 100_032);
}

/// Opens a connection to `port` and writes `bytes`; returns what the peer answered
/// before closing (at most 64 bytes, within 5 s).
fn poke(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        if got.len() >= 64 {
            break;
        }
    }
    got
}

fn handshake(cluster: &str, from: u64, to: u64) -> Vec<u8> {
    let mut h = b"ZKRT".to_vec();
    h.extend(1u16.to_be_bytes());
    h.push(cluster.len() as u8);
    h.extend(cluster.as_bytes());
    h.extend(from.to_be_bytes());
    h.extend(to.to_be_bytes());
    h
}

#[test]
fn strangers_garbage_and_oversized_frames_are_refused_while_the_ensemble_serves() {
    let mut e = Ensemble::start(3, &[]);
    e.wait_leader(LEADER_TIMEOUT);
    let port = e.ports[&1];
    // Garbage instead of a handshake.
    assert!(poke(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").len() <= 1);
    // Another cluster, an id not in the configuration, a newer protocol.
    assert_eq!(
        poke(port, &handshake("other", 2, 1)),
        [1],
        "another cluster"
    );
    assert_eq!(
        poke(port, &handshake("zkraft", 9, 1)),
        [1],
        "a stranger's id"
    );
    let mut newer = handshake("zkraft", 2, 1);
    newer[4..6].copy_from_slice(&2u16.to_be_bytes());
    assert_eq!(poke(port, &newer), [1], "a newer protocol");
    // A member's own handshake, then an oversized frame and then garbage frames.
    let mut oversized = handshake("zkraft", 2, 1);
    oversized.extend(u32::MAX.to_be_bytes());
    assert_eq!(
        poke(port, &oversized),
        [0],
        "accepted, then cut at the frame header"
    );
    let mut garbage = handshake("zkraft", 3, 1);
    garbage.extend(5u32.to_be_bytes());
    garbage.extend([0xEE; 5]);
    assert_eq!(poke(port, &garbage), [0]);

    // Still serving, and still one ensemble.
    let mut created = HashSet::new();
    for id in 1..=3u64 {
        let reply = e.member(id).cmd(&format!("create /after-{id} x"));
        assert!(reply.starts_with("ok"), "member {id}: {reply}");
        created.insert(reply);
    }
    e.wait_converged(CONVERGE_TIMEOUT);
    let log = std::fs::read_to_string(e.log(1)).unwrap();
    for reason in [
        "bad magic",
        "peer of cluster",
        "not a configured peer",
        "peer speaks protocol 2",
        "frame size out of bounds",
        "malformed frame",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(reason) && (l.contains("refused") || l.contains("closed"))),
            "member 1 logged no refusal saying {reason:?}"
        );
    }
}
