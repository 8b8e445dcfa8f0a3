//! Ensembles over real TCP on 127.0.0.1 (ports picked by the OS): replication, a restarted
//! member picked up without restarting the others, refused handshakes and malformed frames
//! that close one connection and nothing else, and a dead peer that neither blocks sends
//! nor grows memory.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::wait_until;
use tempfile::TempDir;
use zkraft::transport::tcp::PROTOCOL_VERSION;
use zkraft::{CreateMode, Envelope, Node, Pool, TcpTransport, Transport};

const CLUSTER: &str = "tcp-test";

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

struct Member {
    transport: TcpTransport,
    node: Node,
}

fn start(id: u64, dir: &TempDir, t: TcpTransport, pool: &Pool) -> Member {
    let node = Node::builder(id)
        .cluster_id(CLUSTER)
        .voters([1, 2, 3])
        .data_dir(dir.path())
        .tick_interval(Duration::from_millis(20))
        .request_timeout(Duration::from_secs(5))
        .transport(t.clone())
        .pool(pool.clone())
        .start()
        .unwrap();
    Member { transport: t, node }
}

/// Three transports bound first (so every address is known), then wired and started.
fn ensemble(dirs: &[TempDir], pool: &Pool) -> Vec<Member> {
    let ts: Vec<TcpTransport> = (1..=3)
        .map(|id| TcpTransport::bind(id, CLUSTER, any_port()).unwrap())
        .collect();
    for t in &ts {
        for o in &ts {
            if o.id() != t.id() {
                t.add_peer(o.id(), &o.local_addr().to_string()).unwrap();
            }
        }
    }
    ts.into_iter()
        .zip(dirs)
        .map(|(t, dir)| start(t.id(), dir, t, pool))
        .collect()
}

fn leader(ms: &[Member]) -> &Node {
    let mut found = None;
    wait_until(Duration::from_secs(15), "a leader", || {
        found = ms
            .iter()
            .position(|m| m.node.role() == zkraft::Role::Leader);
        found.is_some()
    });
    &ms[found.unwrap()].node
}

#[test]
fn three_processes_worth_of_nodes_replicate_over_tcp_and_a_restarted_one_rejoins() {
    let dirs: Vec<TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let pool = Pool::new(3).unwrap();
    let mut ms = ensemble(&dirs, &pool);
    let l = leader(&ms).id();
    let via = &ms.iter().find(|m| m.node.id() != l).unwrap().node;
    for i in 0..50 {
        common::retry(|| via.create(&format!("/k{i}"), b"v", CreateMode::Persistent));
    }
    let target = via.applied_index();
    wait_until(Duration::from_secs(10), "every member applies", || {
        ms.iter().all(|m| m.node.applied_index() >= target)
    });
    // Restart a follower on the same port and directory: the others pick it up.
    let idx = ms.iter().position(|m| m.node.id() != l).unwrap();
    let old = ms.remove(idx);
    let (id, addr) = (old.node.id(), old.transport.local_addr());
    old.node.shutdown();
    old.transport.shutdown();
    drop(old);
    let writer = &ms.iter().find(|m| m.node.id() == l).unwrap().node;
    for i in 50..80 {
        common::retry(|| writer.create(&format!("/k{i}"), b"v", CreateMode::Persistent));
    }
    let t = TcpTransport::bind(id, CLUSTER, addr).unwrap();
    for m in &ms {
        t.add_peer(m.node.id(), &m.transport.local_addr().to_string())
            .unwrap();
    }
    let target = writer.applied_index();
    ms.push(start(id, &dirs[(id - 1) as usize], t, &pool));
    wait_until(
        Duration::from_secs(15),
        "the restarted member catches up",
        || ms.iter().all(|m| m.node.applied_index() >= target),
    );
    let back = &ms.last().unwrap().node;
    assert_eq!(back.get_children("/").unwrap().len(), 81);
    for m in &ms {
        m.node.shutdown();
        m.transport.shutdown();
    }
}

fn handshake(magic: &[u8], version: u16, cluster: &str, from: u64, to: u64) -> Vec<u8> {
    let mut h = magic.to_vec();
    h.extend_from_slice(&version.to_be_bytes());
    h.push(cluster.len() as u8);
    h.extend_from_slice(cluster.as_bytes());
    h.extend_from_slice(&from.to_be_bytes());
    h.extend_from_slice(&to.to_be_bytes());
    h
}

/// What the listener answers a handshake: Some(0) accepted, Some(1) refused, None closed.
fn answer(addr: SocketAddr, bytes: &[u8]) -> (Option<u8>, TcpStream) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut b = [0u8; 1];
    let got = match s.read(&mut b) {
        Ok(1) => Some(b[0]),
        _ => None,
    };
    (got, s)
}

/// After the stream was accepted, is it closed by the listener?
fn closed(mut s: TcpStream) -> bool {
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

#[test]
fn strangers_and_malformed_frames_are_refused_and_change_nothing() {
    let dirs: Vec<TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let pool = Pool::new(3).unwrap();
    let ms = ensemble(&dirs, &pool);
    let l = leader(&ms);
    common::retry(|| l.create("/before", b"", CreateMode::Persistent));
    let term = l.term();
    let target = &ms[0];
    let addr = target.transport.local_addr();
    let me = target.node.id();
    let peer = if me == 1 { 2 } else { 1 };
    // Refused handshakes: another cluster, an unknown sender, the wrong target, a newer
    // protocol, garbage.
    for (what, bytes) in [
        (
            "other cluster",
            handshake(b"ZKRT", PROTOCOL_VERSION, "other", peer, me),
        ),
        (
            "unknown id",
            handshake(b"ZKRT", PROTOCOL_VERSION, CLUSTER, 9, me),
        ),
        (
            "wrong target",
            handshake(b"ZKRT", PROTOCOL_VERSION, CLUSTER, peer, 7),
        ),
        (
            "newer protocol",
            handshake(b"ZKRT", PROTOCOL_VERSION + 1, CLUSTER, peer, me),
        ),
        (
            "bad magic",
            handshake(b"HTTP", PROTOCOL_VERSION, CLUSTER, peer, me),
        ),
    ] {
        let (got, _s) = answer(addr, &bytes);
        assert_eq!(got, Some(1), "{what}");
    }
    // Accepted handshakes followed by bad frames: each closes that connection only.
    let good = handshake(b"ZKRT", PROTOCOL_VERSION, CLUSTER, peer, me);
    // A SessionPingAck (kind 3) claiming to come from member 9.
    let forged = [&[3u8][..], &9u64.to_le_bytes(), &me.to_le_bytes()].concat();
    let mut forged_frame = (forged.len() as u32).to_be_bytes().to_vec();
    forged_frame.extend_from_slice(&forged);
    for (what, frame) in [
        ("oversize length", u32::MAX.to_be_bytes().to_vec()),
        ("empty frame", 0u32.to_be_bytes().to_vec()),
        (
            "undecodable",
            [&5u32.to_be_bytes()[..], &[9, 9, 9, 9, 9]].concat(),
        ),
        ("forged sender", forged_frame),
    ] {
        let (got, mut s) = answer(addr, &good);
        assert_eq!(got, Some(0), "{what}: handshake accepted");
        s.write_all(&frame).unwrap();
        assert!(closed(s), "{what}: connection closed");
    }
    // A connection that never completes its handshake is closed after a timeout.
    let silent = TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let start = Instant::now();
    assert!(closed(silent));
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    // The ensemble never noticed.
    common::retry(|| l.create("/after", b"", CreateMode::Persistent));
    assert_eq!(l.term(), term, "no election");
    for m in &ms {
        m.node.shutdown();
        m.transport.shutdown();
    }
}

#[test]
fn a_dead_peer_neither_blocks_sends_nor_grows_memory() {
    let t = TcpTransport::bind(1, CLUSTER, any_port()).unwrap();
    // A port nobody listens on: bind one, note it, close it.
    let dead = std::net::TcpListener::bind(any_port()).unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    t.add_peer(2, &dead_addr.to_string()).unwrap();
    // 64 KiB envelopes (a snapshot chunk: the raft message is opaque out here).
    let env = Envelope::decode(&snapshot_chunk(1, 2, 64 * 1024)).unwrap();
    let start = Instant::now();
    for _ in 0..5_000 {
        t.send(2, env.clone());
    }
    let took = start.elapsed();
    let stats = t.peer_stats(2).unwrap();
    assert!(!stats.connected);
    assert!(
        stats.queued_bytes <= 64 * 1024 * 1024 + 70 * 1024,
        "{stats:?}"
    );
    assert!(stats.dropped > 0, "{stats:?}");
    assert!(
        took < Duration::from_secs(10),
        "sends never wait for the peer: {took:?}"
    );
    t.shutdown();
}

/// The bytes of a snapshot-chunk envelope from `from` to `to` carrying `len` bytes, as the
/// transport's wire format has them (kind 4, then little-endian fields).
fn snapshot_chunk(from: u64, to: u64, len: usize) -> Vec<u8> {
    [
        &[4u8][..],
        &from.to_le_bytes(),
        &to.to_le_bytes(),
        &1u64.to_le_bytes(), // transfer
        &0u32.to_le_bytes(), // seq
        &[0u8],              // last
        &1u64.to_le_bytes(), // index
        &(len as u32).to_le_bytes(),
        &vec![0u8; len],
    ]
    .concat()
}
