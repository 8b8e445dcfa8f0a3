//! Imports of ZooKeeper files written here byte by byte, as ZooKeeper's `FileSnap` and
//! `FileTxnLog` write them, then opened by a node.

use std::path::Path;
use std::time::Duration;

use super::jute::adler32;
use super::*;
use crate::acl::{perms, Acl, Id};
use crate::{CreateMode, Node};

/// `BinaryOutputArchive`.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn int(&mut self, v: i32) -> &mut Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn long(&mut self, v: i64) -> &mut Self {
        self.0.extend(v.to_be_bytes());
        self
    }
    fn byte(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn buffer(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            None => self.int(-1),
            Some(b) => {
                self.int(b.len() as i32);
                self.0.extend(b);
                self
            }
        }
    }
    fn string(&mut self, s: &str) -> &mut Self {
        self.buffer(Some(s.as_bytes()))
    }
    fn acl(&mut self, acl: &[Acl]) -> &mut Self {
        self.int(acl.len() as i32);
        for a in acl {
            self.int(a.perms).string(&a.id.scheme).string(&a.id.id);
        }
        self
    }
    fn seal(&mut self) -> &mut Self {
        let sum = adler32(&self.0);
        self.long(i64::from(sum)).string("/")
    }
}

fn digest_acl() -> Vec<Acl> {
    vec![Acl::new(
        perms::READ | perms::ADMIN,
        Id::new("digest", "bob:HkjE3GXrqHQbLVkSGOqBXG9nu5o="),
    )]
}

/// A znode of a snapshot: (path, data, ACL id, stat fields in file order).
type SnapNode<'a> = (&'a str, Option<&'a [u8]>, i64, [i64; 9]);

fn stat(czxid: i64, mzxid: i64, version: i64, cversion: i64, owner: i64, pzxid: i64) -> [i64; 9] {
    [
        czxid,
        mzxid,
        100 + czxid,
        100 + mzxid,
        version,
        cversion,
        0,
        owner,
        pzxid,
    ]
}

/// A snapshot as ZooKeeper 3.8 writes it (digest and second seal included).
fn snapshot(sessions: &[(i64, i32)], nodes: &[SnapNode]) -> Vec<u8> {
    snapshot_with(sessions, nodes, true, None)
}

/// A snapshot with the digest (3.6+, `zookeeper.digest.enabled`) or not, and the last
/// processed zxid (3.9+, `zookeeper.serializeLastProcessedZxid.enabled`) or not, each
/// sealed.
fn snapshot_with(
    sessions: &[(i64, i32)],
    nodes: &[SnapNode],
    digest: bool,
    last_zxid: Option<i64>,
) -> Vec<u8> {
    let mut o = Out::default();
    o.int(0x5a4b_534e).int(2).long(-1);
    o.int(sessions.len() as i32);
    for (id, timeout) in sessions {
        o.long(*id).int(*timeout);
    }
    o.int(1).long(1).acl(&digest_acl());
    for (path, data, acl, s) in nodes {
        o.string(path).buffer(*data).long(*acl);
        for (i, v) in s.iter().enumerate() {
            if (4..=6).contains(&i) {
                o.int(*v as i32);
            } else {
                o.long(*v);
            }
        }
    }
    o.string("/").seal();
    if digest {
        o.long(7).int(2).long(12345).seal();
    }
    if let Some(z) = last_zxid {
        o.long(z).seal();
    }
    o.0
}

fn header(o: &mut Out, session: i64, zxid: i64, kind: i32) {
    o.long(session)
        .int(1)
        .long(zxid)
        .long(1000 + zxid)
        .int(kind);
}

/// A transaction log of these (already encoded) transaction bodies, zero-padded after.
fn log(txns: &[Vec<u8>]) -> Vec<u8> {
    let mut o = Out::default();
    o.int(0x5a4b_4c47).int(2).long(0);
    for t in txns {
        o.long(i64::from(adler32(t))).buffer(Some(t)).byte(b'B');
    }
    o.0.extend([0u8; 64]);
    o.0
}

fn create(session: i64, zxid: i64, kind: i32, path: &str, ephemeral: bool, pcv: i32) -> Vec<u8> {
    let mut o = Out::default();
    header(&mut o, session, zxid, kind);
    o.string(path).buffer(Some(b"v")).acl(&Acl::open_unsafe());
    if kind == 1 || kind == 15 {
        o.byte(u8::from(ephemeral));
    }
    o.int(pcv);
    if kind == 21 {
        o.long(5000);
    }
    o.int(2).long(99); // the TxnDigest of 3.6+
    o.0
}

fn simple(session: i64, zxid: i64, kind: i32, body: impl FnOnce(&mut Out)) -> Vec<u8> {
    let mut o = Out::default();
    header(&mut o, session, zxid, kind);
    body(&mut o);
    o.0
}

const ROOT_AND_SYSTEM: [SnapNode<'static>; 3] = [
    ("", Some(b""), -1, [0, 0, 0, 0, 0, 1, 0, 0, 0]),
    ("/zookeeper", Some(b""), -1, [0, 0, 0, 0, 0, 0, 0, 0, 0]),
    (
        "/zookeeper/quota",
        Some(b""),
        -1,
        [0, 0, 0, 0, 0, 0, 0, 0, 0],
    ),
];

const SESSION: i64 = 0x0100_0000_0000_0001;
const GONE: i64 = 0x0100_0000_0000_0002;
const EPOCH: i64 = 1 << 32;

/// A ZooKeeper data directory: a snapshot at `EPOCH + 3` and a log from `EPOCH + 1`.
fn zk_dir(dir: &Path) {
    let v2 = dir.join("version-2");
    std::fs::create_dir_all(&v2).unwrap();
    let mut nodes = ROOT_AND_SYSTEM.to_vec();
    nodes[0].3[5] = 3; // the root's cversion: three creates
    nodes.push((
        "/app",
        Some(b"hello"),
        1,
        stat(EPOCH + 1, EPOCH + 1, 0, 0, 0, EPOCH + 1),
    ));
    nodes.push((
        "/gone",
        None,
        -1,
        stat(EPOCH + 2, EPOCH + 2, 0, 0, GONE, EPOCH + 2),
    ));
    std::fs::write(
        v2.join(format!("snapshot.{:x}", EPOCH + 2)),
        snapshot(&[(SESSION, 30_000), (GONE, 6_000)], &nodes),
    )
    .unwrap();
    std::fs::write(v2.join(format!("log.{:x}", EPOCH + 1)), log(&zk_txns())).unwrap();
}

/// The transactions of [`zk_dir`]'s log, `EPOCH + 1` to `EPOCH + 8`, then `2 * EPOCH + 1`
/// to `2 * EPOCH + 4`.
fn zk_txns() -> Vec<Vec<u8>> {
    vec![
        // Before the snapshot (skipped) and at its zxid: the fuzzy part, replayed.
        create(0, EPOCH + 1, 1, "/app", false, 1),
        create(GONE, EPOCH + 2, 1, "/gone", true, 2),
        create(0, EPOCH + 3, 19, "/box", false, 3),
        create(0, EPOCH + 4, 21, "/ttl", false, 4),
        create(SESSION, EPOCH + 5, 15, "/app/eph", true, 1),
        simple(0, EPOCH + 6, 5, |o| {
            o.string("/app").buffer(Some(b"world")).int(3);
        }),
        simple(GONE, EPOCH + 7, -11, |o| {
            o.int(1).string("/gone");
        }),
        // A multi that failed: nothing.
        simple(0, EPOCH + 8, 14, |o| {
            let sub = {
                let mut s = Out::default();
                s.string("/never")
                    .buffer(Some(b""))
                    .acl(&Acl::open_unsafe())
                    .byte(0)
                    .int(5);
                s.0
            };
            o.int(2)
                .int(1)
                .buffer(Some(&sub))
                .int(-1)
                .buffer(Some(&[0, 0, 0, 101]));
        }),
        // The next epoch: a multi that worked, a setACL, sequential children.
        simple(0, 2 * EPOCH + 1, 14, |o| {
            let mk = |p: &str, pcv: i32| {
                let mut s = Out::default();
                s.string(p)
                    .buffer(Some(b"m"))
                    .acl(&Acl::open_unsafe())
                    .byte(0)
                    .int(pcv);
                s.0
            };
            o.int(2)
                .int(1)
                .buffer(Some(&mk("/q", 6)))
                .int(1)
                .buffer(Some(&mk("/q/item-0000000000", 1)));
        }),
        create(0, 2 * EPOCH + 2, 1, "/q/item-0000000001", false, 2),
        simple(0, 2 * EPOCH + 3, 2, |o| {
            o.string("/q/item-0000000000");
        }),
        simple(0, 2 * EPOCH + 4, 7, |o| {
            o.string("/q").acl(&digest_acl()).int(1);
        }),
    ]
}

fn import(zk: &Path, out: &Path) -> ZooKeeperImport {
    ZooKeeperImport::new(zk, out, 1, "zkraft", [1])
}

fn start(dir: &Path) -> Node {
    Node::builder(1)
        .data_dir(dir)
        .tick_interval(Duration::from_millis(20))
        .start()
        .unwrap()
}

#[test]
fn a_snapshot_and_its_logs_come_over_with_every_stat() {
    let zk = tempfile::tempdir().unwrap();
    zk_dir(zk.path());
    let base = tempfile::tempdir().unwrap();
    let out = base.path().join("member1");
    let report = import(zk.path(), &out).run().unwrap();
    assert_eq!(report.last_zxid, 2 * EPOCH + 4);
    assert_eq!(report.transactions, 10, "{report:?}");
    assert_eq!(report.term, TERM_BASE + 2);
    assert_eq!((report.sessions, report.orphan_ephemerals), (1, 0));
    // Nothing but the member's directory is left beside it.
    let names: Vec<_> = std::fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["member1"]);

    let node = start(&out);
    let (data, st) = node.get_data("/app").unwrap();
    assert_eq!(data, b"world");
    assert_eq!((st.czxid, st.mzxid, st.version), (EPOCH + 1, EPOCH + 6, 3));
    assert_eq!((st.ctime, st.mtime), (100 + EPOCH + 1, 1000 + EPOCH + 6));
    assert_eq!((st.pzxid, st.num_children, st.cversion), (EPOCH + 5, 1, 1));
    assert_eq!(node.get_acl("/app").unwrap().0, digest_acl());
    // The ephemeral of the open session stays; the closed session's went.
    assert_eq!(
        node.exists("/app/eph").unwrap().unwrap().ephemeral_owner,
        SESSION
    );
    assert!(node.exists("/gone").unwrap().is_none());
    assert!(node.exists("/never").unwrap().is_none());
    let sessions = node.with_tree(|t| t.sessions().keys().copied().collect::<Vec<_>>());
    assert_eq!(sessions, [SESSION]);
    let password = node.with_tree(|t| t.sessions()[&SESSION].password.clone());
    assert_eq!(password, password::zookeeper(SESSION));
    // Kinds: a container and a TTL znode.
    let owner = |p| node.with_tree(|t| t.get(p).unwrap().owner());
    assert_eq!(owner("/box"), crate::tree::Owner::Container);
    assert_eq!(owner("/ttl"), crate::tree::Owner::Ttl(5000));
    // A null value stays null.
    assert_eq!(
        node.get_data_or_null("/q/item-0000000001")
            .unwrap()
            .0
            .as_deref(),
        Some(&b"v"[..])
    );
    let (_, q) = node.get_data("/q").unwrap();
    assert_eq!((q.aversion, q.cversion, q.num_children), (1, 3, 1));
    assert_eq!(node.get_acl("/q").unwrap().0, digest_acl());
    // The log goes on after the last zxid, and sequential names after ZooKeeper's.
    let made = node
        .create("/q/item-", b"", CreateMode::PersistentSequential)
        .unwrap();
    assert_eq!(made, "/q/item-0000000002");
    assert!(node.exists(&made).unwrap().unwrap().czxid > 2 * EPOCH + 4);
    node.shutdown();
}

#[test]
fn the_other_members_catch_up_by_snapshot() {
    let zk = tempfile::tempdir().unwrap();
    zk_dir(zk.path());
    let base = tempfile::tempdir().unwrap();
    let out = base.path().join("member1");
    ZooKeeperImport::new(zk.path(), &out, 1, "zkraft", [1, 2, 3])
        .run()
        .unwrap();
    let net = crate::LocalNetwork::new();
    let dirs = [
        out.clone(),
        base.path().join("member2"),
        base.path().join("member3"),
    ];
    let nodes: Vec<Node> = (1..=3u64)
        .map(|id| {
            let mut b = Node::builder(id)
                .data_dir(&dirs[id as usize - 1])
                .voters([1, 2, 3])
                .transport(net.clone())
                .tick_interval(Duration::from_millis(20));
            if id != 1 {
                b = b.joining();
            }
            b.start().unwrap()
        })
        .collect();
    nodes[0]
        .create("/after", b"x", CreateMode::Persistent)
        .unwrap();
    for n in &nodes {
        n.sync("/").unwrap();
        assert_eq!(n.get_data("/app").unwrap().0, b"world");
        assert!(n.exists("/after").unwrap().is_some());
    }
    let digests: Vec<_> = nodes.iter().map(|n| n.with_tree(|t| t.digest())).collect();
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    for n in nodes {
        n.shutdown();
    }
}

/// Runs an import that must fail; checks the message and that nothing was left.
fn refused(zk: &Path, imp: impl FnOnce(&Path, &Path) -> ZooKeeperImport, wants: &[&str]) {
    let base = tempfile::tempdir().unwrap();
    let out = base.path().join("member1");
    let e = imp(zk, &out).run().unwrap_err().to_string();
    for w in wants {
        assert!(e.contains(w), "{e:?} lacks {w:?}");
    }
    assert_eq!(std::fs::read_dir(base.path()).unwrap().count(), 0, "{e}");
}

fn snap_file(zk: &Path) -> std::path::PathBuf {
    zk.join("version-2")
        .join(format!("snapshot.{:x}", EPOCH + 2))
}

fn log_file(zk: &Path) -> std::path::PathBuf {
    zk.join("version-2").join(format!("log.{:x}", EPOCH + 1))
}

#[test]
fn a_corrupt_snapshot_is_named_with_its_offset() {
    let zk = tempfile::tempdir().unwrap();
    zk_dir(zk.path());
    let mut bytes = std::fs::read(snap_file(zk.path())).unwrap();
    let at = bytes.windows(5).position(|w| w == b"hello").unwrap();
    bytes[at] = b'j';
    std::fs::write(snap_file(zk.path()), &bytes).unwrap();
    refused(
        zk.path(),
        import,
        &[
            "no valid snapshot",
            "snapshot.100000002: at offset",
            "checksum mismatch",
        ],
    );
    // Cut short: the same, as truncation.
    std::fs::write(snap_file(zk.path()), &bytes[..at]).unwrap();
    refused(
        zk.path(),
        import,
        &["snapshot.100000002: at offset", "truncated"],
    );
}

#[test]
fn an_older_valid_snapshot_is_used_when_the_newest_is_not() {
    let zk = tempfile::tempdir().unwrap();
    zk_dir(zk.path());
    // A newer snapshot, torn; the logs still cover the valid one.
    let newer = zk
        .path()
        .join("version-2")
        .join(format!("snapshot.{:x}", 2 * EPOCH + 2));
    std::fs::write(&newer, b"ZKSN").unwrap();
    let base = tempfile::tempdir().unwrap();
    let report = import(zk.path(), &base.path().join("m")).run().unwrap();
    assert_eq!(report.snapshot, snap_file(zk.path()));
    assert_eq!(report.skipped_snapshots.len(), 1);
    assert!(
        report.skipped_snapshots[0].1.contains("truncated"),
        "{report:?}"
    );
}

#[test]
fn a_truncated_log_fails_unless_its_torn_tail_may_go() {
    let zk = tempfile::tempdir().unwrap();
    zk_dir(zk.path());
    let bytes = std::fs::read(log_file(zk.path())).unwrap();
    // Cut inside the last record.
    let cut = bytes.len() - 64 - 10;
    std::fs::write(log_file(zk.path()), &bytes[..cut]).unwrap();
    refused(
        zk.path(),
        import,
        &["log.100000001: at offset", "truncated", "--drop-torn-tail"],
    );
    let base = tempfile::tempdir().unwrap();
    let report = import(zk.path(), &base.path().join("m"))
        .drop_torn_tail(true)
        .run()
        .unwrap();
    assert_eq!(report.last_zxid, 2 * EPOCH + 3);
    assert!(report.torn_tail.is_some());
    // A record whose checksum does not match fails whatever the option.
    let mut bad = bytes.clone();
    let at = bad.windows(5).position(|w| w == b"world").unwrap();
    bad[at] = b'W';
    std::fs::write(log_file(zk.path()), &bad).unwrap();
    refused(
        zk.path(),
        |z, o| import(z, o).drop_torn_tail(true),
        &["log.100000001: at offset", "checksum mismatch"],
    );
}

#[test]
fn a_gap_in_the_logs_is_refused() {
    let zk = tempfile::tempdir().unwrap();
    zk_dir(zk.path());
    // A second log that skips a zxid of the epoch.
    let later = log(&[create(0, 2 * EPOCH + 6, 1, "/late", false, 7)]);
    let name = zk
        .path()
        .join("version-2")
        .join(format!("log.{:x}", 2 * EPOCH + 6));
    std::fs::write(&name, later).unwrap();
    refused(
        zk.path(),
        import,
        &[
            "log.200000006: at offset 16",
            "gap",
            "0x200000006 follows 0x200000004",
        ],
    );
    // The logs after the snapshot start too late.
    std::fs::remove_file(&name).unwrap();
    std::fs::rename(
        log_file(zk.path()),
        zk.path()
            .join("version-2")
            .join(format!("log.{:x}", EPOCH + 4)),
    )
    .unwrap();
    let bytes = log(&[create(0, EPOCH + 5, 15, "/x", false, 4)]);
    std::fs::remove_file(
        zk.path()
            .join("version-2")
            .join(format!("log.{:x}", EPOCH + 4)),
    )
    .unwrap();
    std::fs::write(
        zk.path()
            .join("version-2")
            .join(format!("log.{:x}", EPOCH + 5)),
        bytes,
    )
    .unwrap();
    refused(
        zk.path(),
        import,
        &[
            "gap",
            "0x100000005 follows 0x100000002",
            "snapshot.100000002",
        ],
    );
}

#[test]
fn bad_destinations_and_members_are_refused_before_reading() {
    let zk = tempfile::tempdir().unwrap();
    zk_dir(zk.path());
    let base = tempfile::tempdir().unwrap();
    std::fs::write(base.path().join("file"), b"x").unwrap();
    let e = import(zk.path(), base.path())
        .run()
        .unwrap_err()
        .to_string();
    assert!(e.contains("not empty"), "{e}");
    let e = ZooKeeperImport::new(zk.path(), base.path().join("m"), 4, "z", [1, 2, 3])
        .run()
        .unwrap_err()
        .to_string();
    assert!(e.contains("neither a voter nor a learner"), "{e}");
    let e = import(&base.path().join("nothing"), &base.path().join("m"))
        .run()
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a directory"), "{e}");
}

#[test]
fn zxids_follow_within_an_epoch_and_start_at_one_in_the_next() {
    assert!(follows(EPOCH + 1, EPOCH + 2));
    assert!(!follows(EPOCH + 1, EPOCH + 3));
    assert!(follows(EPOCH + 9, 3 * EPOCH + 1));
    assert!(!follows(EPOCH + 9, 3 * EPOCH + 2));
    assert!(follows(2 * EPOCH, 2 * EPOCH + 1));
    assert!(!follows(2 * EPOCH + 1, EPOCH + 2));
}

fn v2(zk: &Path) -> std::path::PathBuf {
    zk.join("version-2")
}

/// The log of `txns` with the last record written only up to its first `keep` bytes:
/// the rest of it is the zeros the file was preallocated with.
fn torn(txns: &[Vec<u8>], keep: usize) -> Vec<u8> {
    let mut bytes = log(txns);
    let end = bytes.len() - 64;
    let start = end - (13 + txns[txns.len() - 1].len());
    bytes[start + keep..end].fill(0);
    bytes
}

/// The offset of record `n` of [`log`]`(txns)`.
fn record_offset(txns: &[Vec<u8>], n: usize) -> usize {
    16 + txns[..n].iter().map(|t| 13 + t.len()).sum::<usize>()
}

#[test]
fn a_record_torn_before_the_zero_padding_is_a_torn_tail() {
    let zk = tempfile::tempdir().unwrap();
    zk_dir(zk.path());
    let txns = zk_txns();
    let last = record_offset(&txns, 11);
    let dropped = |zk: &Path| {
        let base = tempfile::tempdir().unwrap();
        let report = import(zk, &base.path().join("m"))
            .drop_torn_tail(true)
            .run()
            .unwrap();
        assert_eq!(report.last_zxid, 2 * EPOCH + 3);
        assert_eq!(report.torn_tail, Some((log_file(zk), last as u64)));
    };
    // ZooKeeper died writing the last record: its end mark and more are zeros still.
    std::fs::write(log_file(zk.path()), torn(&txns, 20)).unwrap();
    refused(
        zk.path(),
        import,
        &[
            &format!("log.100000001: at offset {last}: truncated"),
            "--drop-torn-tail",
        ],
    );
    dropped(zk.path());
    // All of it written but its end mark.
    std::fs::write(log_file(zk.path()), torn(&txns, 13 + txns[11].len() - 1)).unwrap();
    dropped(zk.path());
    // Its checksum and its length only.
    std::fs::write(log_file(zk.path()), torn(&txns, 12)).unwrap();
    dropped(zk.path());
    // Its end mark written but a page of it not: the checksum does not match.
    let mut bytes = log(&txns);
    let end = bytes.len() - 64;
    bytes[end - 2] = 0;
    std::fs::write(log_file(zk.path()), &bytes).unwrap();
    dropped(zk.path());
    // Anything but zeros after it: not a record cut short, whatever the option.
    let mut bytes = torn(&txns, 20);
    let n = bytes.len();
    bytes[n - 1] = 7;
    std::fs::write(log_file(zk.path()), &bytes).unwrap();
    refused(
        zk.path(),
        |z, o| import(z, o).drop_torn_tail(true),
        &[&format!("log.100000001: at offset {last}"), "end mark 'B'"],
    );
}

#[test]
fn a_torn_record_before_the_last_log_goes_when_the_next_log_continues() {
    let zk = tempfile::tempdir().unwrap();
    zk_dir(zk.path());
    let txns = zk_txns();
    // ZooKeeper died writing 2E+3; the next log starts with it.
    std::fs::write(log_file(zk.path()), torn(&txns[..11], 30)).unwrap();
    let next = v2(zk.path()).join(format!("log.{:x}", 2 * EPOCH + 3));
    std::fs::write(&next, log(&txns[10..])).unwrap();
    let base = tempfile::tempdir().unwrap();
    let report = import(zk.path(), &base.path().join("m")).run().unwrap();
    assert_eq!(report.last_zxid, 2 * EPOCH + 4);
    assert_eq!((report.transactions, report.torn_tail.clone()), (10, None));
    assert_eq!(report.logs, [log_file(zk.path()), next.clone()]);
    // The next log starts after it: committed transactions are missing.
    std::fs::remove_file(&next).unwrap();
    std::fs::write(
        v2(zk.path()).join(format!("log.{:x}", 2 * EPOCH + 4)),
        log(&txns[11..]),
    )
    .unwrap();
    let at = record_offset(&txns, 10);
    refused(
        zk.path(),
        |z, o| import(z, o).drop_torn_tail(true),
        &[
            "log.200000004: at offset 16",
            "gap",
            "0x200000004 follows 0x200000002",
            &format!("cut short at offset {at} of"),
        ],
    );
}

#[test]
fn a_snapshot_may_end_with_a_digest_a_last_zxid_both_or_neither() {
    let nodes = ROOT_AND_SYSTEM.to_vec();
    let sessions = [(SESSION, 30_000)];
    let bare = snapshot_with(&sessions, &nodes, false, None).len();
    for (digest, last, tail) in [
        (false, None, 0),
        (true, None, 33),
        (false, Some(EPOCH + 2), 21),
        (true, Some(EPOCH + 2), 54),
    ] {
        let bytes = snapshot_with(&sessions, &nodes, digest, last);
        assert_eq!(bytes.len() - bare, tail);
        let s = snapshot::read("snapshot.100000002", &bytes)
            .unwrap_or_else(|e| panic!("a tail of {tail} bytes: {e}"));
        assert_eq!(s.tree.sessions.len(), 1);
        assert!(s.tree.nodes.contains_key("/zookeeper/quota"));
    }
    // A tail of another size, or whose seal does not match, is not ZooKeeper's.
    let mut bytes = snapshot_with(&sessions, &nodes, false, None);
    bytes.extend([0u8; 5]);
    let e = snapshot::read("s", &bytes).err().unwrap().to_string();
    assert!(e.contains("5 bytes after the seal"), "{e}");
    let mut bytes = snapshot_with(&sessions, &nodes, false, Some(EPOCH + 2));
    let n = bytes.len();
    bytes[n - 14] ^= 1;
    let e = snapshot::read("s", &bytes).err().unwrap().to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
}

#[test]
fn a_close_session_without_its_list_of_paths_closes_the_session() {
    // closeSessionTxn.enabled=false: the body is the TxnDigest alone.
    let digest = |o: &mut Out| {
        o.int(2).long(0x0123_4567_89ab_cdef);
    };
    let zk = tempfile::tempdir().unwrap();
    zk_dir(zk.path());
    let mut txns = zk_txns();
    txns[6] = simple(GONE, EPOCH + 7, -11, digest);
    std::fs::write(log_file(zk.path()), log(&txns)).unwrap();
    let base = tempfile::tempdir().unwrap();
    let (tree, report) = import(zk.path(), &base.path().join("m")).load().unwrap();
    assert!(!tree.nodes.contains_key("/gone"));
    assert!(!tree.sessions.contains_key(&GONE));
    assert_eq!((report.transactions, report.orphan_ephemerals), (10, 0));
    // Every form the body takes: nothing (3.5 and before, or neither setting), the
    // digest, the paths, the paths and the digest.
    let paths = |o: &mut Out| {
        o.int(1).string("/abc");
    };
    type Body<'a> = &'a dyn Fn(&mut Out);
    let cases: [(Body, Option<Vec<String>>); 4] = [
        (&|_: &mut Out| {}, None),
        (&digest, None),
        (&paths, Some(vec!["/abc".to_string()])),
        (
            &|o: &mut Out| {
                paths(o);
                digest(o);
            },
            Some(vec!["/abc".to_string()]),
        ),
    ];
    for (body, want) in cases {
        let bytes = log(&[simple(GONE, 5, -11, body)]);
        let (records, _) = txnlog::read("log.5", &bytes).unwrap();
        assert_eq!(
            records[0].txn.change,
            zktree::Change::CloseSession { paths: want }
        );
    }
    // Anything else is not a closeSession.
    let bytes = log(&[simple(GONE, 5, -11, |o| {
        o.int(7).int(1);
    })]);
    let e = txnlog::read("log.5", &bytes).err().unwrap().to_string();
    assert!(e.contains("closeSession of 8 bytes"), "{e}");
}

fn zk_node(cversion: i32, pzxid: i64, owner: i64) -> zktree::ZkNode {
    zktree::ZkNode {
        data: None,
        acl: vec![],
        stat: zktree::StatPersisted {
            cversion,
            pzxid,
            ephemeral_owner: owner,
            ..Default::default()
        },
        children: 0,
    }
}

fn zk_create(zxid: i64, session: i64, path: &str, ephemeral: bool, pcv: i32) -> zktree::Txn {
    zktree::Txn {
        session,
        zxid,
        time: zxid,
        change: zktree::Change::Create(zktree::Create {
            path: path.into(),
            data: None,
            acl: vec![],
            owner: if ephemeral { session } else { 0 },
            parent_cversion: pcv,
            plain: true,
        }),
    }
}

#[test]
fn a_delete_takes_the_descendants_a_fuzzy_snapshot_held() {
    const S: i64 = 0x77;
    let mut t = ZkTree::default();
    assert!(t.insert_loaded("/".into(), zk_node(0, 0, 0)));
    t.sessions.insert(S, 10_000);
    t.apply(&zk_create(2, S, "/a", false, 1));
    t.apply(&zk_create(3, S, "/a/b", false, 1));
    t.apply(&zk_create(4, S, "/a/b/e", true, 1));
    // The delete of /a, replayed over a snapshot that holds what was under it.
    t.apply(&zktree::Txn {
        session: S,
        zxid: 5,
        time: 5,
        change: zktree::Change::Delete("/a".into()),
    });
    let paths: Vec<&str> = t.nodes.keys().map(String::as_str).collect();
    assert_eq!(paths, ["/"]);
    assert_eq!((t.nodes["/"].children, t.nodes["/"].stat.pzxid), (0, 5));
    // ZooKeeper's list of the session's ephemerals keeps the path, so closing the
    // session deletes it again: the pzxid of a parent made anew moves.
    assert_eq!(t.ephemerals_of(S), ["/a/b/e"]);
    t.apply(&zk_create(6, S, "/a", false, 2));
    t.apply(&zk_create(7, S, "/a/b", false, 1));
    t.apply(&zktree::Txn {
        session: S,
        zxid: 8,
        time: 8,
        change: zktree::Change::CloseSession { paths: None },
    });
    let b = &t.nodes["/a/b"];
    assert_eq!((b.children, b.stat.pzxid, b.stat.cversion), (0, 8, 0));
    assert_eq!(t.nodes.len(), 3);
}

#[test]
fn committed_transactions_are_never_dropped_silently() {
    // (a) A non-zero byte after the zero length that ends the records.
    let zk = tempfile::tempdir().unwrap();
    zk_dir(zk.path());
    let mut bytes = log(&zk_txns());
    let n = bytes.len();
    bytes[n - 10] = 1;
    std::fs::write(log_file(zk.path()), &bytes).unwrap();
    refused(
        zk.path(),
        |z, o| import(z, o).drop_torn_tail(true),
        &[
            &format!("log.100000001: at offset {}", n - 10),
            "non-zero byte",
        ],
    );
    // (b) A log whose first transaction is not the one its name says.
    let zk = tempfile::tempdir().unwrap();
    zk_dir(zk.path());
    std::fs::rename(
        log_file(zk.path()),
        v2(zk.path()).join(format!("log.{EPOCH:x}")),
    )
    .unwrap();
    refused(
        zk.path(),
        import,
        &[
            "log.100000000: at offset 16",
            "first transaction is zxid 0x100000001",
            "its name says 0x100000000",
        ],
    );
    // (c) A newer snapshot, skipped, shows that the logs went further than the ones
    // there.
    let zk = tempfile::tempdir().unwrap();
    zk_dir(zk.path());
    let newer = v2(zk.path()).join(format!("snapshot.{:x}", 3 * EPOCH + 5));
    std::fs::write(&newer, b"ZKSN").unwrap();
    refused(
        zk.path(),
        import,
        &[
            "snapshot.300000005: skipped (",
            "up to zxid 0x300000005",
            "end at 0x200000004: a log is missing",
        ],
    );
}

#[test]
fn huge_counts_and_extreme_values_from_a_file_do_not_panic() {
    // Counts of i32::MAX: refused as truncated, with no room made for them ahead.
    let mut o = Out::default();
    o.int(0x5a4b_534e).int(2).long(-1).int(0).int(i32::MAX);
    let e = snapshot::read("s", &o.0).err().unwrap().to_string();
    assert!(e.contains("truncated: ACL cache of 2147483647"), "{e}");
    let bytes = log(&[simple(0, 5, 14, |o| {
        o.int(i32::MAX);
    })]);
    let e = txnlog::read("l", &bytes).err().unwrap().to_string();
    assert!(e.contains("truncated: multi of 2147483647"), "{e}");
    let zeros = [0u8; 100];
    let i = jute::Input::new("f", &zeros);
    assert_eq!(i.capacity(usize::MAX, 12), 8);
    assert_eq!(i.capacity(usize::MAX, 0), 100);
    assert_eq!(i.capacity(5, 1), 5);
    let big = vec![0u8; 1 << 20];
    assert_eq!(jute::Input::new("f", &big).capacity(usize::MAX, 1), 4096);
    // A parent at the highest cversion: the +1 of a create of ZooKeeper 3.2 and before
    // wraps as Java's int does, and so moves nothing.
    let mut t = ZkTree::default();
    assert!(t.insert_loaded("/".into(), zk_node(i32::MAX, 1, 0)));
    t.apply(&zk_create(2, 0, "/x", false, -1));
    t.apply(&zk_create(3, 0, "/x", false, -1));
    let root = &t.nodes["/"].stat;
    assert_eq!((root.cversion, root.pzxid), (i32::MAX, 1));
    assert!(t.nodes.contains_key("/x"));
    // The last zxid there is.
    assert!(!follows(i64::MAX, i64::MAX));
    assert!(!follows(i64::MAX, i64::MIN));
}

#[test]
fn orphan_ephemerals_go_as_zookeeper_drops_them_when_it_loads() {
    let zk = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(v2(zk.path())).unwrap();
    let mut nodes = ROOT_AND_SYSTEM.to_vec();
    nodes.push((
        "/p",
        None,
        -1,
        stat(EPOCH + 1, EPOCH + 1, 0, 1, 0, EPOCH + 2),
    ));
    nodes.push((
        "/p/e",
        None,
        -1,
        stat(EPOCH + 2, EPOCH + 2, 0, 0, GONE, EPOCH + 2),
    ));
    std::fs::write(
        v2(zk.path()).join(format!("snapshot.{:x}", EPOCH + 2)),
        snapshot(&[(SESSION, 30_000)], &nodes),
    )
    .unwrap();
    std::fs::write(
        v2(zk.path()).join(format!("log.{:x}", EPOCH + 3)),
        log(&[
            create(SESSION, EPOCH + 3, 1, "/q", false, 2),
            create(SESSION, EPOCH + 4, 1, "/q/r", false, 1),
        ]),
    )
    .unwrap();
    let base = tempfile::tempdir().unwrap();
    let (tree, report) = import(zk.path(), &base.path().join("m")).load().unwrap();
    assert_eq!((report.orphan_ephemerals, report.last_zxid), (1, EPOCH + 4));
    assert!(!tree.nodes.contains_key("/p/e"));
    // deleteNode with the last zxid processed: the pzxid moves to it, the cversion not.
    let p = &tree.nodes["/p"];
    assert_eq!(
        (p.children, p.stat.pzxid, p.stat.cversion),
        (0, EPOCH + 4, 1)
    );
}

#[test]
fn io_errors_name_the_file_and_an_unreadable_newer_snapshot_is_skipped() {
    let zk = tempfile::tempdir().unwrap();
    zk_dir(zk.path());
    // A newer snapshot that cannot be read (a directory): skipped, with why.
    let newer = v2(zk.path()).join(format!("snapshot.{:x}", 2 * EPOCH + 2));
    std::fs::create_dir(&newer).unwrap();
    let base = tempfile::tempdir().unwrap();
    let report = import(zk.path(), &base.path().join("m")).run().unwrap();
    assert_eq!(report.snapshot, snap_file(zk.path()));
    assert_eq!(report.skipped_snapshots.len(), 1);
    let (path, why) = &report.skipped_snapshots[0];
    assert_eq!(path, &newer);
    assert!(why.contains(&newer.display().to_string()), "{why}");
    // A log that cannot be read: the error names it.
    std::fs::remove_file(log_file(zk.path())).unwrap();
    std::fs::create_dir(log_file(zk.path())).unwrap();
    refused(
        zk.path(),
        import,
        &["i/o error", &log_file(zk.path()).display().to_string()],
    );
}

#[test]
fn an_empty_directory_is_filled_where_it_is() {
    use std::os::unix::fs::MetadataExt;
    let zk = tempfile::tempdir().unwrap();
    zk_dir(zk.path());
    let base = tempfile::tempdir().unwrap();
    let out = base.path().join("m");
    std::fs::create_dir(&out).unwrap();
    // What an import killed before the end left, inside and beside it; and one of a
    // process still running (pid 1), which stays.
    let dead = 999_999_999u32;
    std::fs::create_dir_all(out.join(format!(".m.importing-{dead}")).join("db")).unwrap();
    std::fs::create_dir_all(base.path().join(format!(".m.importing-{dead}/db"))).unwrap();
    let live = base.path().join(".m.importing-1");
    std::fs::create_dir(&live).unwrap();
    let inode = std::fs::metadata(&out).unwrap().ino();
    import(zk.path(), &out).run().unwrap();
    assert_eq!(std::fs::metadata(&out).unwrap().ino(), inode);
    let mut beside: Vec<_> = std::fs::read_dir(base.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    beside.sort();
    assert_eq!(beside, [".m.importing-1", "m"]);
    let inside: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(!inside.is_empty());
    assert!(
        inside.iter().all(|n| !n.contains("importing")),
        "{inside:?}"
    );
    let node = start(&out);
    assert_eq!(node.get_data("/app").unwrap().0, b"world");
    node.shutdown();
}
