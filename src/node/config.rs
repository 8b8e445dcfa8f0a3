//! [`Config`]: everything that shapes one node, with ZooKeeper-like defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Configuration of one [`Node`](crate::Node). A plain struct with `Default` and
/// [`Config::validate`], as raft-rs's `Config`; [`NodeBuilder`](crate::NodeBuilder) sets it
/// field by field.
#[derive(Debug, Clone)]
pub struct Config {
    /// This node's raft id (non-zero, unique in the ensemble).
    pub id: u64,
    /// The initial voters of the ensemble, this node included. Used only when the data
    /// directory is new; afterwards the persisted configuration wins.
    pub voters: Vec<u64>,
    /// Directory of the node's RocksDB database.
    pub data_dir: PathBuf,
    /// Length of one raft tick.
    pub tick_interval: Duration,
    /// Ticks without hearing from a leader before a follower campaigns (randomised by
    /// raft-rs between this and twice this).
    pub election_tick: usize,
    /// Ticks between leader heartbeats.
    pub heartbeat_tick: usize,
    /// Largest data a znode may hold, in bytes (ZooKeeper's `jute.maxbuffer`, 1 MiB).
    pub max_data_size: usize,
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id: 1,
            voters: vec![1],
            data_dir: PathBuf::from("zkraft-data"),
            tick_interval: Duration::from_millis(100),
            election_tick: 10,
            heartbeat_tick: 2,
            max_data_size: 1024 * 1024,
            durable_writes: true,
            request_timeout: Duration::from_secs(10),
            max_committed_size_per_ready: 16 * 1024 * 1024,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            session_timeout: Duration::from_secs(10),
            min_session_timeout: Duration::from_secs(4),
            max_session_timeout: Duration::from_secs(40),
            reap_interval: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<()> {
        let err = |m: &str| Err(Error::Config(m.to_string()));
        if self.id == 0 {
            return err("id must be non-zero");
        }
        if !self.voters.contains(&self.id) {
            return err("voters must include this node's id");
        }
        if self.voters.contains(&0) {
            return err("voter ids must be non-zero");
        }
        if self.tick_interval.is_zero() {
            return err("tick_interval must be positive");
        }
        if self.heartbeat_tick == 0 || self.election_tick <= self.heartbeat_tick {
            return err("election_tick must be greater than heartbeat_tick > 0");
        }
        if self.request_timeout.is_zero() {
            return err("request_timeout must be positive");
        }
        if self.min_session_timeout.is_zero()
            || self.min_session_timeout > self.max_session_timeout
            || self.max_session_timeout.as_millis() > i32::MAX as u128
        {
            return err("need 0 < min_session_timeout <= max_session_timeout < 2^31 ms");
        }
        if self.min_session_timeout < self.tick_interval * 3 {
            // Heartbeats go every min_session_timeout / 3 and expiry is checked per tick.
            return err("min_session_timeout must be at least 3 ticks");
        }
        if self.reap_interval.is_zero() {
            return err("reap_interval must be positive");
        }
        Ok(())
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
        let bad = [
            Config {
                id: 0,
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
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(Error::Config(_))), "{c:?}");
        }
        Config::default().raft_config(0).validate().unwrap();
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
