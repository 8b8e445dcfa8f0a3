//! [`Config`]: everything that shapes one node, with ZooKeeper-like defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Default [`Config::max_request_size`]: 1,048,575 bytes (1 MiB − 1), ZooKeeper's default
/// `jute.maxbuffer`: a ZooKeeper 3.8 server accepts a request of exactly this size and
/// refuses one byte more.
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 0xF_FFFF;
/// The largest [`Config::max_request_size`] a node accepts: 256 MiB. Lengths inside an
/// entry are 32-bit and every byte of a request is held in memory several times over
/// (the caller's copy, the raft entry on every member, the apply batch), so a limit beyond
/// this would protect nothing.
pub const MAX_REQUEST_SIZE_LIMIT: usize = 256 * 1024 * 1024;
/// Longest [`Config::tick_interval`]: one minute.
pub const MAX_TICK_INTERVAL: Duration = Duration::from_secs(60);
/// Most ticks in an election timeout.
pub const MAX_ELECTION_TICK: usize = 10_000;
/// Longest [`Config::cluster_id`], in bytes.
pub const MAX_CLUSTER_ID_LEN: usize = 64;

/// Configuration of one [`Node`](crate::Node), built only through
/// [`NodeBuilder`](crate::NodeBuilder) (which validates it, [`Config::validate`]) and read
/// through [`Node::config`](crate::Node::config).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// This node's raft id (non-zero, unique in the ensemble). Recorded in the data
    /// directory when it is created; a node started with another id on it is refused.
    pub id: u64,
    /// Names the ensemble (1–64 bytes of `A–Z a–z 0–9 . _ -`; default `"zkraft"`).
    /// Recorded in the data directory when it is created: a node started on a directory
    /// of another cluster is refused, and the TCP transport's handshake refuses peers of
    /// another cluster.
    pub cluster_id: String,
    /// The initial voters of the ensemble, this node included. Used only when the data
    /// directory is new; afterwards the persisted configuration wins: a node restarted
    /// with a different list logs a warning and [`Node::config`](crate::Node::config)
    /// reports the persisted voters.
    pub voters: Vec<u64>,
    /// The initial observers (raft learners): members that receive the log and serve but
    /// never vote. Used only when the data directory is new, as `voters`.
    pub learners: Vec<u64>,
    /// Directory of the node's RocksDB database.
    pub data_dir: PathBuf,
    /// Length of one raft tick.
    pub tick_interval: Duration,
    /// Ticks without hearing from a leader before a follower campaigns (randomised by
    /// raft-rs between this and twice this).
    pub election_tick: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_tick: usize,
    /// Largest data a znode may hold, in bytes (default: [`DEFAULT_MAX_REQUEST_SIZE`], as
    /// ZooKeeper's `jute.maxbuffer`); at most [`Config::max_request_size`].
    pub max_data_size: usize,
    /// Largest request, in bytes, measured as ZooKeeper's wire encoding of it (paths,
    /// data, every operation of a multi with its header): default
    /// [`DEFAULT_MAX_REQUEST_SIZE`], as ZooKeeper's `jute.maxbuffer`, at most
    /// [`MAX_REQUEST_SIZE_LIMIT`]. Larger requests are refused
    /// with [`Error::RequestTooLarge`] before anything is proposed. See `docs/limits.md`
    /// for what raising it costs.
    pub max_request_size: usize,
    /// Fsync the raft log before acknowledging (on by default). Turning it off loses
    /// acknowledged writes if a majority of machines lose power at once.
    pub durable_writes: bool,
    /// How long a synchronous call waits before returning [`Error::Timeout`].
    pub request_timeout: Duration,
    /// Most raft entries raft-rs hands over for apply in one `Ready` (by size, bytes).
    pub max_committed_size_per_ready: u64,
    /// Most bytes of entries in one append message to a follower.
    pub max_size_per_msg: u64,
    /// Most append messages in flight to one follower.
    pub max_inflight_msgs: usize,
    /// Timeout of sessions opened without one (ZooKeeper clients commonly ask 30 s; the
    /// default here is 10 s).
    pub session_timeout: Duration,
    /// Smallest session timeout granted (ZooKeeper: 2 × tickTime = 4 s).
    pub min_session_timeout: Duration,
    /// Largest session timeout granted (ZooKeeper: 20 × tickTime = 40 s).
    pub max_session_timeout: Duration,
    /// How often the leader looks for empty containers and expired TTL znodes to delete
    /// (ZooKeeper's `znode.container.checkIntervalMs`, 60 s).
    pub reap_interval: Duration,
    /// Whether ZooKeeper's `reconfig` request is served (default true; ZooKeeper's
    /// `reconfigEnabled`, which defaults to false there). Either way only a caller with
    /// WRITE permission on `/zookeeper/config` may change the members — its ACL is
    /// read-only for everyone, so only the super user; without it, `reconfig` is answered
    /// `ReconfigDisabled`. [`Node::add_member`](crate::Node::add_member) and
    /// [`Node::remove_member`](crate::Node::remove_member) work either way.
    pub reconfig_enabled: bool,
    /// Compact the raft log once it holds more than this many applied entries (default
    /// 100,000, as ZooKeeper's `snapCount` and etcd's `--snapshot-count`). The newest
    /// entries (half of this, at most [`CATCH_UP_ENTRIES`]) stay, so a follower a little
    /// behind catches up from the log; one further behind gets a snapshot.
    pub snapshot_entries: u64,
    /// Start as a node joining an existing ensemble (see
    /// [`NodeBuilder::joining`](crate::NodeBuilder::joining)): `voters` need not include
    /// this node, and the initial configuration is empty.
    pub join: bool,
    /// Also compact, keeping nothing, once this many bytes of entries were written to the
    /// log since the last compaction (default 256 MiB).
    pub snapshot_log_bytes: u64,
    /// Bytes of znodes (paths, data, stats) kept in memory in front of RocksDB, where the
    /// tree lives (default 16 MiB): what sets the tree's memory, however large it is.
    pub cache_bytes: u64,
    /// The super user's digest, `user:base64(sha1("user:password"))` (ZooKeeper's
    /// `zookeeper.DigestAuthenticationProvider.superDigest`, e.g. from
    /// [`acl::digest`](crate::acl::digest)`("super", password)`): a session that
    /// authenticates with `digest` as that user and password passes every ACL check.
    /// Default none. It is this node's setting, not replicated: a session is super only
    /// on members that have it. The node's own sessionless calls are always super.
    pub super_digest: Option<String>,
    /// Keep the node's RocksDB in memory (RocksDB's in-memory environment; `data_dir`
    /// only names it): nothing reaches the disk or outlives the process. For the crate's
    /// own tests of the replica alone; a member that forgets its log must never vote
    /// again in the ensemble it voted in, so this is not offered to applications.
    pub(crate) in_memory: bool,
}

/// Most applied entries kept in the log after a compaction, for followers slightly behind
/// (etcd's `SnapshotCatchUpEntries`).
pub const CATCH_UP_ENTRIES: u64 = 5_000;

impl Default for Config {
    fn default() -> Self {
        Config {
            id: 1,
            cluster_id: "zkraft".to_string(),
            voters: vec![1],
            learners: Vec::new(),
            data_dir: PathBuf::from("zkraft-data"),
            tick_interval: Duration::from_millis(100),
            election_tick: 10,
            heartbeat_tick: 2,
            max_data_size: DEFAULT_MAX_REQUEST_SIZE,
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            durable_writes: true,
            request_timeout: Duration::from_secs(10),
            max_committed_size_per_ready: 16 * 1024 * 1024,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            session_timeout: Duration::from_secs(10),
            min_session_timeout: Duration::from_secs(4),
            max_session_timeout: Duration::from_secs(40),
            reap_interval: Duration::from_secs(60),
            reconfig_enabled: true,
            snapshot_entries: 100_000,
            join: false,
            snapshot_log_bytes: 256 * 1024 * 1024,
            cache_bytes: crate::storage::DEFAULT_CACHE_BYTES,
            super_digest: None,
            in_memory: false,
        }
    }
}

impl Config {
    /// Checks that the configuration can work. Every duration and size is bounded here,
    /// so no arithmetic on them can overflow later; durations that only ever meet a clock
    /// (`request_timeout`, `reap_interval`, session timeouts) may be as long as you like.
    pub fn validate(&self) -> Result<()> {
        let err = |m: &str| Err(Error::Config(m.to_string()));
        if self.id == 0 {
            return err("id must be non-zero");
        }
        if self.cluster_id.is_empty()
            || self.cluster_id.len() > MAX_CLUSTER_ID_LEN
            || !self
                .cluster_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return err("cluster_id must be 1-64 bytes of A-Z a-z 0-9 . _ -");
        }
        if !self.join && !self.voters.contains(&self.id) && !self.learners.contains(&self.id) {
            return err("voters (or observers) must include this node's id");
        }
        if self.learners.iter().any(|l| self.voters.contains(l)) {
            return err("a member is a voter or an observer, not both");
        }
        if self.voters.contains(&0) {
            return err("voter ids must be non-zero");
        }
        if self.tick_interval.is_zero() || self.tick_interval > MAX_TICK_INTERVAL {
            return err("tick_interval must be in (0, 60 s]");
        }
        if self.heartbeat_tick == 0
            || self.election_tick <= self.heartbeat_tick
            || self.election_tick > MAX_ELECTION_TICK
        {
            return err("need 0 < heartbeat_tick < election_tick <= 10000");
        }
        if self.request_timeout.is_zero() {
            return err("request_timeout must be positive");
        }
        if self.max_request_size < 1024 || self.max_request_size > MAX_REQUEST_SIZE_LIMIT {
            return err("max_request_size must be in [1 KiB, 256 MiB]");
        }
        if self.max_data_size > self.max_request_size {
            return err("max_data_size must not exceed max_request_size");
        }
        if self.max_committed_size_per_ready == 0
            || self.max_size_per_msg == 0
            || self.max_inflight_msgs == 0
        {
            return err("max_committed_size_per_ready, max_size_per_msg and max_inflight_msgs must be positive");
        }
        if self.min_session_timeout.is_zero()
            || self.min_session_timeout > self.max_session_timeout
            || self.max_session_timeout.as_millis() > i32::MAX as u128
        {
            return err("need 0 < min_session_timeout <= max_session_timeout < 2^31 ms");
        }
        if self.min_session_timeout < self.ticks(3) {
            // Heartbeats go every min_session_timeout / 3 and expiry is checked per tick.
            return err("min_session_timeout must be at least 3 ticks");
        }
        if self.reap_interval.is_zero() {
            return err("reap_interval must be positive");
        }
        if self.snapshot_entries == 0 || self.snapshot_log_bytes == 0 {
            return err("snapshot_entries and snapshot_log_bytes must be positive");
        }
        if let Some(d) = &self.super_digest {
            if !crate::acl::is_valid_id(&crate::acl::Id::new(crate::acl::DIGEST, d.as_str())) {
                return err("super_digest must be user:base64(sha1), as acl::digest makes it");
            }
        }
        Ok(())
    }

    /// `n` ticks, saturating (the bounds checked by `validate` keep it exact).
    pub(crate) fn ticks(&self, n: usize) -> Duration {
        self.tick_interval
            .saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The longest election timeout: raft-rs randomises it in `[election_tick,
    /// 2 × election_tick)` ticks.
    pub fn election_timeout(&self) -> Duration {
        self.ticks(self.election_tick.saturating_mul(2))
    }

    /// Most bytes of requests and peer messages a node takes in before raft produces a
    /// `Ready`: bounds the memory and time of one round of the driver, and so of one log
    /// write and one apply batch.
    pub(crate) fn max_bytes_per_round(&self) -> usize {
        usize::try_from(self.max_committed_size_per_ready)
            .unwrap_or(usize::MAX)
            .max(self.max_request_size)
    }

    /// Clamps a requested session timeout to `[min_session_timeout, max_session_timeout]`,
    /// as a ZooKeeper server negotiates it.
    pub fn negotiate_session_timeout(&self, requested: Duration) -> Duration {
        requested.clamp(self.min_session_timeout, self.max_session_timeout)
    }

    /// How often a node heartbeats the sessions it hosts to the leader: a third of the
    /// smallest session timeout, as a ZooKeeper client pings.
    pub(crate) fn session_ping_interval(&self) -> Duration {
        (self.min_session_timeout / 3).max(self.tick_interval)
    }

    /// The raft-rs configuration derived from this one.
    pub(crate) fn raft_config(&self, applied: u64) -> raft::Config {
        raft::Config {
            id: self.id,
            election_tick: self.election_tick,
            heartbeat_tick: self.heartbeat_tick,
            applied,
            max_size_per_msg: self.max_size_per_msg,
            max_inflight_msgs: self.max_inflight_msgs,
            // A leader that cannot hear a quorum steps down, so a minority side stops
            // accepting proposals; pre-vote keeps a rejoining node from disrupting the term.
            check_quorum: true,
            pre_vote: true,
            max_committed_size_per_ready: self.max_committed_size_per_ready,
            // A leader stops taking proposals while this many bytes of its log are not
            // yet committed (a slow quorum): memory stays bounded, callers get NoQuorum.
            // At least one whole request always fits.
            max_uncommitted_size: (self.max_bytes_per_round() as u64).saturating_mul(4),
            ..raft::Config::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused() {
        Config::default().validate().unwrap();
        Config {
            super_digest: Some(crate::acl::digest("super", "test")),
            ..Config::default()
        }
        .validate()
        .unwrap();
        let bad = [
            Config {
                id: 0,
                ..Config::default()
            },
            Config {
                super_digest: Some("no-colon".into()),
                ..Config::default()
            },
            Config {
                voters: vec![2, 3],
                ..Config::default()
            },
            Config {
                heartbeat_tick: 10,
                ..Config::default()
            },
            Config {
                tick_interval: Duration::ZERO,
                ..Config::default()
            },
            Config {
                min_session_timeout: Duration::from_secs(50),
                ..Config::default()
            },
            Config {
                tick_interval: Duration::MAX,
                ..Config::default()
            },
            Config {
                tick_interval: Duration::from_secs(61),
                ..Config::default()
            },
            Config {
                election_tick: usize::MAX,
                ..Config::default()
            },
            Config {
                max_request_size: usize::MAX,
                ..Config::default()
            },
            Config {
                max_request_size: 100,
                ..Config::default()
            },
            Config {
                max_data_size: 2 << 20,
                ..Config::default()
            },
            Config {
                max_session_timeout: Duration::MAX,
                ..Config::default()
            },
            Config {
                cluster_id: String::new(),
                ..Config::default()
            },
            Config {
                cluster_id: "a/b".into(),
                ..Config::default()
            },
            Config {
                cluster_id: "x".repeat(65),
                ..Config::default()
            },
            Config {
                max_size_per_msg: 0,
                ..Config::default()
            },
            Config {
                snapshot_entries: 0,
                ..Config::default()
            },
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(Error::Config(_))), "{c:?}");
        }
        Config::default().raft_config(0).validate().unwrap();
        // Durations that only meet a clock may be anything.
        let long = Config {
            request_timeout: Duration::MAX,
            reap_interval: Duration::MAX,
            session_timeout: Duration::MAX,
            tick_interval: MAX_TICK_INTERVAL,
            election_tick: MAX_ELECTION_TICK,
            max_request_size: MAX_REQUEST_SIZE_LIMIT,
            min_session_timeout: MAX_TICK_INTERVAL * 3,
            max_session_timeout: Duration::from_millis(i32::MAX as u64),
            ..Config::default()
        };
        long.validate().unwrap();
        long.raft_config(0).validate().unwrap();
        assert_eq!(long.election_timeout(), MAX_TICK_INTERVAL * 20_000);
    }

    #[test]
    fn session_timeouts_are_clamped_like_zookeeper() {
        let c = Config::default();
        let s = Duration::from_secs;
        assert_eq!(c.negotiate_session_timeout(s(1)), s(4));
        assert_eq!(c.negotiate_session_timeout(s(30)), s(30));
        assert_eq!(c.negotiate_session_timeout(s(100)), s(40));
    }
}
