//! What a node reports of itself ([`Metrics`], through [`Node::metrics`](crate::Node::metrics)),
//! and the replica's counters behind it: what the driver has done (proposals, fsyncs and
//! their latency, snapshots), raft's state (term, commit and applied index, leader
//! changes, the leader's view of its followers) and the traffic to each peer. The layers
//! above fill in their part (the tree's totals, sessions, watches, request latencies,
//! client connections).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::Role;
use crate::histogram::{Histogram, Recorder};
pub use crate::transport::PeerTraffic;

/// What a node reports of itself, for operations and benchmarks: counters only grow
/// (until the process restarts); gauges are values now. ZooKeeper's `mntr` names are given
/// where one exists.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Metrics {
    /// Write requests proposed to raft from this node.
    pub proposals: u64,
    /// Raft log writes that had to reach the disk (new entries, term or vote): one fsync
    /// each when durable writes are on. Commit-index-only updates are not counted: they
    /// are written without a sync.
    pub log_syncs: u64,
    /// Entries written to the raft log.
    pub entries_persisted: u64,
    /// How long each raft log write that syncs takes (ZooKeeper's `fsynctime`).
    pub fsync: Histogram,
    /// Committed entries applied to the tree.
    pub entries_applied: u64,
    /// Apply batches written to RocksDB.
    pub apply_batches: u64,
    /// Raft log compactions done.
    pub log_compactions: u64,
    /// Snapshots this node streamed to followers behind its compacted log.
    pub snapshots_sent: u64,
    /// Snapshots this node received and installed.
    pub snapshots_installed: u64,
    /// Bytes of the last snapshot this node streamed or installed.
    pub last_snapshot_bytes: u64,
    /// How long streaming a snapshot to a follower, or installing one, took (ZooKeeper's
    /// `snapshottime`).
    pub snapshot_duration: Histogram,
    /// The first index still in the raft log (everything before it was compacted).
    pub log_first_index: u64,
    /// Envelopes from peers dropped because this node's backlog of them was full (see
    /// docs/limits.md; raft retransmits).
    pub dropped_envelopes: u64,
    /// The role this node plays now.
    pub role: Role,
    /// The leader this node knows of.
    pub leader: Option<u64>,
    /// The raft term.
    pub term: u64,
    /// The highest log index known committed.
    pub commit_index: u64,
    /// The highest log index applied to the tree (ZooKeeper's `last_zxid`).
    pub applied_index: u64,
    /// How often the leader this node knows of changed (elections won, here or elsewhere).
    pub leader_changes: u64,
    /// On the leader: each other member's progress (an empty list elsewhere).
    pub followers: Vec<FollowerProgress>,
    /// Bytes to and from each peer, as the transport counts them (an in-process transport
    /// counts none).
    pub peers: Vec<PeerTraffic>,
    /// Znodes in the tree (ZooKeeper's `znode_count`).
    pub znode_count: u64,
    /// Ephemeral znodes (ZooKeeper's `ephemerals_count`).
    pub ephemerals_count: u64,
    /// Bytes of znode data and paths (ZooKeeper's `approximate_data_size`).
    pub approximate_data_size: u64,
    /// Sessions in the ensemble (ZooKeeper's `global_sessions`).
    pub global_sessions: u64,
    /// Sessions hosted by this node (ZooKeeper's `local_sessions`).
    pub hosted_sessions: u64,
    /// Watches set through this node, as ZooKeeper counts them (ZooKeeper's
    /// `watch_count`).
    pub watch_count: u64,
    /// Requests submitted and not answered, in this node's sessions (ZooKeeper's
    /// `outstanding_requests`).
    pub outstanding_requests: u64,
    /// How long this node's sessions' requests took, from submission to answer, per
    /// operation (`create`, `get_data`, …), sorted by operation.
    pub requests: Vec<(String, Histogram)>,
    /// Client connections open on this node's client ports (ZooKeeper's
    /// `num_alive_connections`).
    pub connections: u64,
    /// Frames received and sent on this node's client ports (ZooKeeper's
    /// `packets_received`, `packets_sent`).
    pub packets_received: u64,
    /// See `packets_received`.
    pub packets_sent: u64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            proposals: 0,
            log_syncs: 0,
            entries_persisted: 0,
            fsync: Histogram::default(),
            entries_applied: 0,
            apply_batches: 0,
            log_compactions: 0,
            snapshots_sent: 0,
            snapshots_installed: 0,
            last_snapshot_bytes: 0,
            snapshot_duration: Histogram::default(),
            log_first_index: 0,
            dropped_envelopes: 0,
            role: Role::Follower,
            leader: None,
            term: 0,
            commit_index: 0,
            applied_index: 0,
            leader_changes: 0,
            followers: Vec::new(),
            peers: Vec::new(),
            znode_count: 0,
            ephemerals_count: 0,
            approximate_data_size: 0,
            global_sessions: 0,
            hosted_sessions: 0,
            watch_count: 0,
            outstanding_requests: 0,
            requests: Vec::new(),
            connections: 0,
            packets_received: 0,
            packets_sent: 0,
        }
    }
}

impl Metrics {
    /// Mean number of log entries per fsync of the raft log.
    pub fn entries_per_sync(&self) -> f64 {
        if self.log_syncs == 0 {
            0.0
        } else {
            self.entries_persisted as f64 / self.log_syncs as f64
        }
    }

    /// All operations' request latencies together.
    pub fn request_latency(&self) -> Histogram {
        self.requests
            .iter()
            .fold(Histogram::default(), |all, (_, h)| all.merged(h))
    }
}

/// Another member's progress, as the leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// Its id.
    pub id: u64,
    /// The highest log index known to be on it.
    pub matched: u64,
    /// How many entries it is behind the leader's last one.
    pub lag: u64,
    /// Whether it votes (false: an observer, or a participant catching up).
    pub voter: bool,
    /// Whether the leader heard from it within the last election timeout (raft's
    /// `recent_active`): a member down or cut off is not.
    pub active: bool,
}

/// The replica's counters, updated by the driver, read by [`Shared::metrics`](super::Shared).
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) proposals: AtomicU64,
    pub(crate) log_syncs: AtomicU64,
    pub(crate) entries_persisted: AtomicU64,
    pub(crate) fsync: Recorder,
    pub(crate) entries_applied: AtomicU64,
    pub(crate) apply_batches: AtomicU64,
    pub(crate) log_compactions: AtomicU64,
    pub(crate) snapshots_sent: AtomicU64,
    pub(crate) snapshots_installed: AtomicU64,
    pub(crate) last_snapshot_bytes: AtomicU64,
    pub(crate) snapshot_duration: Recorder,
    pub(crate) log_first_index: AtomicU64,
    pub(crate) dropped_envelopes: AtomicU64,
    pub(crate) commit_index: AtomicU64,
    pub(crate) leader_changes: AtomicU64,
    /// The term of the last leader counted in `leader_changes`.
    pub(crate) leader_term: AtomicU64,
    /// The leader's view of the others, refreshed at each tick while it leads.
    pub(crate) followers: Mutex<Vec<FollowerProgress>>,
}

impl Counters {
    /// A snapshot of `bytes` streamed to a follower in `took`.
    pub(crate) fn snapshot_sent(&self, bytes: u64, took: Duration) {
        self.last_snapshot_bytes.store(bytes, Ordering::Relaxed);
        self.snapshot_duration.record(took);
    }

    /// Fills the driver's part of `m`.
    pub(crate) fn fill(&self, m: &mut Metrics) {
        m.proposals = self.proposals.load(Ordering::Relaxed);
        m.log_syncs = self.log_syncs.load(Ordering::Relaxed);
        m.entries_persisted = self.entries_persisted.load(Ordering::Relaxed);
        m.fsync = self.fsync.snapshot();
        m.entries_applied = self.entries_applied.load(Ordering::Relaxed);
        m.apply_batches = self.apply_batches.load(Ordering::Relaxed);
        m.log_compactions = self.log_compactions.load(Ordering::Relaxed);
        m.snapshots_sent = self.snapshots_sent.load(Ordering::Relaxed);
        m.snapshots_installed = self.snapshots_installed.load(Ordering::Relaxed);
        m.last_snapshot_bytes = self.last_snapshot_bytes.load(Ordering::Relaxed);
        m.snapshot_duration = self.snapshot_duration.snapshot();
        m.log_first_index = self.log_first_index.load(Ordering::Relaxed);
        m.dropped_envelopes = self.dropped_envelopes.load(Ordering::Relaxed);
        m.commit_index = self.commit_index.load(Ordering::Relaxed);
        m.leader_changes = self.leader_changes.load(Ordering::Relaxed);
        m.followers = self.followers.lock().clone();
    }
}
