//! Importing a ZooKeeper data directory: a new ensemble starts from the state a ZooKeeper
//! 3.4–3.9 ensemble left.
//!
//! [`ZooKeeperImport`] reads the newest valid `snapshot.*` (an invalid one is skipped, as
//! ZooKeeper skips it, and reported) and replays the `log.*` transaction logs after it,
//! checking every checksum and that no transaction is missing between the snapshot and the
//! end of the logs. It writes the result as a member's data directory — the state after raft
//! entry *last zxid*, as a member that received a snapshot holds it — which
//! `zkraft-server` (or a [`Node`](crate::Node)) opens with the same id, cluster id and
//! members. The other members either get the same import, or start empty with `--join`
//! ([`NodeBuilder::joining`](crate::NodeBuilder::joining)) and catch up by snapshot.
//!
//! What is kept, znode by znode: data (null apart from empty), ACL, version, cversion,
//! aversion, ctime, mtime, czxid, mzxid, pzxid (zxids are kept as they are: zkraft's zxid
//! is the raft index, and the log continues after the last one), and the kind — ephemeral,
//! container, TTL — except `/zookeeper/config`'s data, which each member rewrites from its
//! own members when it starts. The sessions still open at the end of the logs are recreated with their id,
//! timeout and the password ZooKeeper gave them, so a client may resume its session on
//! zkraft; a session that does not come back expires after its timeout, as after a
//! ZooKeeper leader change, and its ephemerals go. Ephemerals whose session is not open
//! (a snapshot may hold some) are dropped as ZooKeeper drops them when it loads its data
//! directory: their parent's pzxid moves to the last zxid.
//!
//! Nothing is written unless everything was read: the directory is built beside its
//! destination and renamed into place at the end (or, when the destination is an existing
//! empty directory such as a mount point, built inside it and its contents moved up); a
//! failure removes it. A staging directory that an import killed before the end left is
//! removed by the next. Errors name the file and the byte offset.

mod files;
mod jute;
mod password;
mod snapshot;
mod txnlog;
mod zktree;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::path as zpath;
use crate::storage::{write_seed, SeedTarget};
use crate::tree::{data_digest, SessionRecord, Znode, CONFIG_PATH};
use files::ZkFile;
use zktree::{ZkNode, ZkTree};

/// The raft term of an imported state: above every bootstrap term (at most 2^20), so a
/// member bootstrapped empty by mistake can never win an election against it. ZooKeeper's
/// epoch is added, so a later import of the same ensemble has a higher term.
const TERM_BASE: u64 = 1 << 21;
/// The smallest index an imported state may sit at (the bootstrap snapshot is index 1).
const MIN_INDEX: u64 = 2;

/// An import of a ZooKeeper data directory into a new member's data directory.
#[derive(Debug, Clone)]
pub struct ZooKeeperImport {
    zk_data_dir: PathBuf,
    zk_log_dir: Option<PathBuf>,
    out: PathBuf,
    id: u64,
    cluster_id: String,
    voters: Vec<u64>,
    learners: Vec<u64>,
    drop_torn_tail: bool,
}

/// What an import read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// The snapshot the state starts from.
    pub snapshot: PathBuf,
    /// Newer snapshots that were not valid, and why (ZooKeeper skips them too).
    pub skipped_snapshots: Vec<(PathBuf, String)>,
    /// The transaction logs read.
    pub logs: Vec<PathBuf>,
    /// Transactions replayed on the snapshot.
    pub transactions: u64,
    /// The zxid of the last transaction (the snapshot's when none was replayed): the raft
    /// index the imported state sits at.
    pub last_zxid: i64,
    /// The raft term it sits at.
    pub term: u64,
    /// Znodes written.
    pub znodes: u64,
    /// Sessions recreated.
    pub sessions: u64,
    /// Ephemerals dropped because their session was not open.
    pub orphan_ephemerals: u64,
    /// A record cut short at the end of the logs, dropped (file and offset).
    pub torn_tail: Option<(PathBuf, u64)>,
}

impl ZooKeeperImport {
    /// An import of ZooKeeper's `dataDir` (or its `version-2` directory) into `out`, which
    /// must not exist or be empty, as the directory of member `id` of `cluster_id` with
    /// the given initial `voters` (`id` among them, unless it is to be a learner).
    pub fn new(
        zk_data_dir: impl Into<PathBuf>,
        out: impl Into<PathBuf>,
        id: u64,
        cluster_id: impl Into<String>,
        voters: impl IntoIterator<Item = u64>,
    ) -> ZooKeeperImport {
        ZooKeeperImport {
            zk_data_dir: zk_data_dir.into(),
            zk_log_dir: None,
            out: out.into(),
            id,
            cluster_id: cluster_id.into(),
            voters: voters.into_iter().collect(),
            learners: Vec::new(),
            drop_torn_tail: false,
        }
    }

    /// ZooKeeper's `dataLogDir`, when the logs are kept apart from the snapshots.
    pub fn log_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.zk_log_dir = Some(dir.into());
        self
    }

    /// The ensemble's initial observers (learners).
    pub fn learners(mut self, learners: impl IntoIterator<Item = u64>) -> Self {
        self.learners = learners.into_iter().collect();
        self
    }

    /// Drop a record cut short at the very end of the logs instead of failing. Such a
    /// record is what a ZooKeeper killed while writing it leaves (ZooKeeper drops it
    /// too): it was never acknowledged. By default the import fails, naming the offset.
    /// (A record cut short in an earlier log is dropped whatever this says, when the next
    /// log continues the transactions after the one before it.)
    pub fn drop_torn_tail(mut self, drop: bool) -> Self {
        self.drop_torn_tail = drop;
        self
    }

    /// Reads, checks, replays and writes. On error nothing is left at the destination.
    pub fn run(&self) -> Result<ImportReport> {
        if self.id == 0 {
            return Err(Error::Config("member id 0 is reserved".into()));
        }
        if self.voters.is_empty() {
            return Err(Error::Config("an ensemble needs at least one voter".into()));
        }
        if !self.voters.contains(&self.id) && !self.learners.contains(&self.id) {
            return Err(Error::Config(format!(
                "member {} is neither a voter nor a learner of the ensemble",
                self.id
            )));
        }
        remove_stale_staging(&self.out)?;
        if self.out.exists() && !is_empty_dir(&self.out)? {
            return Err(Error::Config(format!(
                "{} exists and is not empty: an import writes a new member's directory",
                self.out.display()
            )));
        }
        let (tree, mut report) = self.load()?;
        self.write(tree, &mut report)?;
        Ok(report)
    }

    /// The ZooKeeper state: the newest valid snapshot and the logs after it.
    fn load(&self) -> Result<(ZkTree, ImportReport)> {
        let snap_dir = files::version_dir(&self.zk_data_dir)?;
        let log_dir = match &self.zk_log_dir {
            Some(d) => files::version_dir(d)?,
            None => snap_dir.clone(),
        };
        let snapshots = files::list(&snap_dir, "snapshot")?;
        if snapshots.is_empty() {
            return Err(Error::Config(format!(
                "no snapshot.* file in {}: not a ZooKeeper data directory",
                snap_dir.display()
            )));
        }
        let mut skipped = Vec::new();
        let mut chosen = None;
        for f in snapshots.iter().rev() {
            if let Some(suffix) = &f.compressed {
                skipped.push((
                    f.path.clone(),
                    format!(
                        "compressed ({suffix}): set zookeeper.snapshot.compression.method \
                         to none and let ZooKeeper take a snapshot"
                    ),
                ));
                continue;
            }
            // One that cannot be read is skipped as an invalid one is (ZooKeeper's
            // `FileSnap.deserialize` skips a snapshot on any IOException).
            let bytes = match files::read(&f.path) {
                Ok(b) => b,
                Err(e) => {
                    skipped.push((f.path.clone(), e.to_string()));
                    continue;
                }
            };
            match snapshot::read(&display(&f.path), &bytes) {
                Ok(s) => {
                    chosen = Some((f.clone(), s.tree));
                    break;
                }
                Err(Error::Corrupt(why)) => skipped.push((f.path.clone(), why)),
                Err(e) => skipped.push((f.path.clone(), e.to_string())),
            }
        }
        let Some((snap, mut tree)) = chosen else {
            let why: Vec<String> = skipped.iter().map(|(_, e)| e.clone()).collect();
            return Err(Error::Corrupt(format!(
                "no valid snapshot in {}: {}",
                snap_dir.display(),
                why.join("; ")
            )));
        };
        let logs = files::list(&log_dir, "log")?;
        let logs = files::logs_after(&logs, snap.zxid);
        let mut report = ImportReport {
            snapshot: snap.path.clone(),
            skipped_snapshots: skipped,
            logs: logs.iter().map(|f| f.path.clone()).collect(),
            transactions: 0,
            last_zxid: snap.zxid,
            term: 0,
            znodes: 0,
            sessions: 0,
            orphan_ephemerals: 0,
            torn_tail: None,
        };
        self.replay(&mut tree, &snap, logs, &mut report)?;
        let skipped: Vec<ZkFile> = snapshots
            .into_iter()
            .filter(|f| report.skipped_snapshots.iter().any(|(p, _)| *p == f.path))
            .collect();
        check_skipped_snapshots(&skipped, &report)?;
        report.orphan_ephemerals = tree.drop_orphan_ephemerals(report.last_zxid) as u64;
        Ok((tree, report))
    }

    /// Replays the transactions after the snapshot, checking that none is missing.
    ///
    /// A log may end with a record cut short (see [`txnlog::read`]): ZooKeeper stops
    /// reading that log there and goes on with the next. Before the last log it is what a
    /// ZooKeeper killed while writing leaves, and restarted with a new log, and it is
    /// dropped when the next transaction read continues the zxids of the one before it
    /// (the gap check proves nothing committed was in it). At the end of the logs it is
    /// left out only with [`ZooKeeperImport::drop_torn_tail`].
    fn replay(
        &self,
        tree: &mut ZkTree,
        snap: &ZkFile,
        logs: &[ZkFile],
        report: &mut ImportReport,
    ) -> Result<()> {
        let mut last = snap.zxid;
        // A record cut short that no transaction has followed yet: (file, offset).
        let mut torn: Option<(PathBuf, usize)> = None;
        for f in logs {
            let name = display(&f.path);
            let bytes = files::read(&f.path)?;
            let (records, end) = txnlog::read(&name, &bytes)?;
            check_named_zxid(f, &name, &records)?;
            for r in records {
                let zxid = r.txn.zxid;
                if zxid <= last {
                    continue;
                }
                if !follows(last, zxid) {
                    return Err(gap(&name, &r, last, snap, report, torn.as_ref()));
                }
                tree.apply(&r.txn);
                last = zxid;
                report.transactions += 1;
                torn = None;
            }
            if let txnlog::End::Torn(at) = end {
                torn.get_or_insert((f.path.clone(), at));
            }
        }
        if let Some((path, at)) = torn {
            if !self.drop_torn_tail {
                return Err(Error::Corrupt(format!(
                    "{}: at offset {at}: truncated: the record there is cut short (if \
                     ZooKeeper died writing it, it was never acknowledged: import with \
                     --drop-torn-tail to leave it out)",
                    display(&path)
                )));
            }
            report.torn_tail = Some((path, at as u64));
        }
        report.last_zxid = last;
        Ok(())
    }

    /// Writes the state into a directory beside the destination, then renames it there.
    fn write(&self, tree: ZkTree, report: &mut ImportReport) -> Result<()> {
        let index = (report.last_zxid.max(0) as u64).max(MIN_INDEX);
        let term = TERM_BASE + (index >> 32);
        report.term = term;
        let mut znodes = Vec::with_capacity(tree.nodes.len() + 1);
        if !tree.nodes.contains_key(CONFIG_PATH) {
            // ZooKeeper before 3.5 has none: the one a new zkraft tree has (a member
            // writes the configuration into it when it starts).
            if let Some(config) = crate::tree::DataTree::new().get(CONFIG_PATH) {
                znodes.push((CONFIG_PATH.to_string(), Znode::clone(&config)));
            }
        }
        for (path, node) in tree.nodes {
            if path != "/" {
                zpath::validate(&path).map_err(|e| {
                    Error::Corrupt(format!("{path}: not a path zkraft can hold: {e}"))
                })?;
            }
            znodes.push((path, znode(node)));
        }
        report.znodes = znodes.len() as u64;
        let sessions: Vec<(i64, SessionRecord)> = tree
            .sessions
            .iter()
            .map(|(&id, &timeout_ms)| {
                let rec = SessionRecord {
                    timeout_ms,
                    password: password::zookeeper(id),
                    host: 0,
                    epoch: 0,
                    last_seq: 0,
                };
                (id, rec)
            })
            .collect();
        report.sessions = sessions.len() as u64;
        // An existing (empty) destination may be a mount point, which cannot be renamed
        // over: it is built inside it then, and its contents moved up.
        let in_place = self.out.exists();
        let staging = staging_dir(&self.out, in_place)?;
        let written = write_seed(
            &SeedTarget {
                dir: &staging,
                id: self.id,
                cluster_id: &self.cluster_id,
                voters: &self.voters,
                learners: &self.learners,
            },
            (index, term),
            znodes,
            sessions,
        )
        .and_then(|()| {
            if in_place {
                move_contents(&staging, &self.out)
            } else {
                rename_into_place(&staging, &self.out)
            }
        });
        if written.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
            if in_place {
                // It was empty: nothing of the import is left in it.
                let _ = clear_dir(&self.out);
            }
        }
        written
    }
}

/// The error for a transaction `r` of log `name` that does not follow zxid `last`.
fn gap(
    name: &str,
    r: &txnlog::Record,
    last: i64,
    snap: &ZkFile,
    report: &ImportReport,
    torn: Option<&(PathBuf, usize)>,
) -> Error {
    let after = if report.transactions == 0 {
        display(&snap.path)
    } else {
        "the logs before".to_string()
    };
    let torn = match torn {
        Some((path, at)) => format!(
            " (the record cut short at offset {at} of {} may have held the first)",
            display(path)
        ),
        None => String::new(),
    };
    Error::Corrupt(format!(
        "{name}: at offset {}: gap in the transaction logs: zxid {:#x} follows {last:#x} \
         (from {after}); the transactions between are in no log{torn}",
        r.offset, r.txn.zxid
    ))
}

/// Checks that the first transaction of log `f` is the one its name carries: ZooKeeper's
/// `FileTxnLog.append` names a new log after the zxid of the first transaction written to
/// it, so another first zxid means the file lost its first transactions, or is not the
/// file its name says.
fn check_named_zxid(f: &ZkFile, name: &str, records: &[txnlog::Record]) -> Result<()> {
    match records.first() {
        Some(r) if r.txn.zxid != f.zxid => Err(Error::Corrupt(format!(
            "{name}: at offset {}: the log's first transaction is zxid {:#x}, its name says \
             {:#x} (ZooKeeper names a log after its first transaction): transactions are \
             missing",
            r.offset, r.txn.zxid, f.zxid
        ))),
        _ => Ok(()),
    }
}

/// Checks that the logs reach every snapshot skipped: a snapshot's name is the last zxid
/// ZooKeeper had processed when it took it, so the transactions up to that zxid were
/// committed, even when the snapshot cannot be read; logs that end before are missing
/// some of them.
fn check_skipped_snapshots(skipped: &[ZkFile], report: &ImportReport) -> Result<()> {
    let Some(newest) = skipped.iter().max_by_key(|f| f.zxid) else {
        return Ok(());
    };
    if newest.zxid <= report.last_zxid {
        return Ok(());
    }
    let why = report
        .skipped_snapshots
        .iter()
        .find(|(p, _)| *p == newest.path)
        .map_or("", |(_, why)| why.as_str());
    Err(Error::Corrupt(format!(
        "{}: skipped ({why}), it shows that ZooKeeper had processed the transactions up to \
         zxid {:#x}, but the transaction logs end at {:#x}: a log is missing",
        display(&newest.path),
        newest.zxid,
        report.last_zxid
    )))
}

/// Whether `next` can follow `last` with nothing between: the next zxid of the same epoch,
/// or the first of a later one (a new leader's first transaction has counter 1).
fn follows(last: i64, next: i64) -> bool {
    let (epoch, counter) = (|z: i64| z >> 32, |z: i64| z & 0xffff_ffff);
    if epoch(next) == epoch(last) {
        last.checked_add(1) == Some(next)
    } else {
        epoch(next) > epoch(last) && counter(next) == 1
    }
}

/// A ZooKeeper znode as zkraft holds it (its child count is counted when installed).
fn znode(n: ZkNode) -> Znode {
    let acl: Vec<crate::Acl> = n.acl;
    Znode {
        data_hash: data_digest(n.data.as_deref()),
        data: n.data,
        czxid: n.stat.czxid,
        mzxid: n.stat.mzxid,
        pzxid: n.stat.pzxid,
        ctime: n.stat.ctime,
        mtime: n.stat.mtime,
        version: n.stat.version,
        creations: n.stat.cversion,
        aversion: n.stat.aversion,
        ephemeral_owner: n.stat.ephemeral_owner,
        num_children: n.children as i32,
        acl: acl.into(),
    }
}

/// The parent directory of `out` (`.` for a bare name).
fn parent_of(out: &Path) -> PathBuf {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The prefix of the staging directories of imports into `out`, followed by their pid.
fn staging_prefix(out: &Path) -> Result<String> {
    let name = out
        .file_name()
        .ok_or_else(|| Error::Config(format!("{} names no directory", out.display())))?;
    Ok(format!(".{}.importing-", name.to_string_lossy()))
}

/// A fresh directory to build the import in: beside `out`, or inside it when `out` is an
/// existing (empty) directory.
fn staging_dir(out: &Path, inside: bool) -> Result<PathBuf> {
    let name = format!("{}{}", staging_prefix(out)?, std::process::id());
    let staging = if inside {
        out.join(name)
    } else {
        let parent = parent_of(out);
        std::fs::create_dir_all(&parent).map_err(|e| files::io_error(&parent, e))?;
        parent.join(name)
    };
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| files::io_error(&staging, e))?;
    }
    Ok(staging)
}

/// Removes the staging directories (beside `out` or inside it) that an import killed
/// before it finished left: those whose process is gone.
fn remove_stale_staging(out: &Path) -> Result<()> {
    let prefix = staging_prefix(out)?;
    for dir in [parent_of(out), out.to_path_buf()] {
        if !dir.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&dir).map_err(|e| files::io_error(&dir, e))? {
            let entry = entry.map_err(|e| files::io_error(&dir, e))?;
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !process_alive(pid) {
                let path = entry.path();
                std::fs::remove_dir_all(&path).map_err(|e| files::io_error(&path, e))?;
            }
        }
    }
    Ok(())
}

/// Whether process `pid` is running. Told by `/proc` (Linux); where there is none, every
/// process is taken to be running, so no staging directory is removed that may be in use.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// Whether directory `dir` holds nothing.
fn is_empty_dir(dir: &Path) -> Result<bool> {
    let mut entries = std::fs::read_dir(dir).map_err(|e| files::io_error(dir, e))?;
    Ok(entries.next().is_none())
}

/// Renames `staging` to `out`, and syncs their directory so the rename lasts.
fn rename_into_place(staging: &Path, out: &Path) -> Result<()> {
    std::fs::rename(staging, out).map_err(|e| files::io_error(out, e))?;
    sync_dir(&parent_of(out))
}

/// Moves everything in `staging` (a directory inside `out`) up into `out`, removes
/// `staging`, and syncs `out` so the renames last.
fn move_contents(staging: &Path, out: &Path) -> Result<()> {
    for entry in std::fs::read_dir(staging).map_err(|e| files::io_error(staging, e))? {
        let entry = entry.map_err(|e| files::io_error(staging, e))?;
        let to = out.join(entry.file_name());
        std::fs::rename(entry.path(), &to).map_err(|e| files::io_error(&to, e))?;
    }
    std::fs::remove_dir(staging).map_err(|e| files::io_error(staging, e))?;
    sync_dir(out)
}

/// Removes everything in directory `dir`.
fn clear_dir(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| files::io_error(dir, e))? {
        let path = entry.map_err(|e| files::io_error(dir, e))?.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| files::io_error(&path, e))?;
    }
    Ok(())
}

/// Syncs directory `dir` (its entries: a rename into it).
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| files::io_error(dir, e))
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests;
