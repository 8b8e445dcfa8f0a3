//! A node's [`Metrics`] in the Prometheus (OpenMetrics) text format, through the
//! `prometheus-client` crate.
//!
//! Where ZooKeeper's Prometheus exporter has a name for a value, the value goes by that
//! name, as the gauge ZooKeeper makes it (`znode_count`, `watch_count`, `packets_received`,
//! …), so a dashboard built for ZooKeeper reads it. The rest are `zkraft_` series: counters
//! end in `_total`, durations are histograms in seconds. ZooKeeper's latency summaries
//! (`fsynctime`, `snapshottime`, `readlatency`, `updatelatency`, in milliseconds) have no
//! counterpart in the format's histograms: zkraft exports `zkraft_fsync_seconds`,
//! `zkraft_snapshot_seconds` and `zkraft_request_seconds{op=…}` instead
//! (docs/operations.md lists every series).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use zkraft::{Histogram, Metrics, Monitor, Role};

/// `metrics` in the text format, ending with `# EOF`.
pub fn render(metrics: &Metrics) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(metrics.clone())));
    let mut out = String::new();
    // Writing into a String does not fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The node's metrics now, in the text format.
pub(crate) fn scrape(node: &Monitor) -> String {
    render(&node.metrics())
}

#[derive(Debug)]
struct Snapshot(Metrics);

type Labels = Vec<(&'static str, String)>;

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A histogram's buckets as the encoder takes them: per bucket, not cumulative, the last
/// one `+Inf`.
fn buckets(h: &Histogram) -> Vec<(f64, u64)> {
    let mut out = Vec::with_capacity(h.buckets.len() + 1);
    let mut below = 0;
    for (bound, cumulative) in &h.buckets {
        out.push((*bound, cumulative - below));
        below = *cumulative;
    }
    out.push((f64::MAX, h.count - below));
    out
}

fn histogram(e: &mut DescriptorEncoder, name: &str, help: &str, h: &Histogram) -> std::fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Histogram)?
        .encode_histogram::<Labels>(h.sum, h.count, &buckets(h), None)
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let m = &self.0;
        // ZooKeeper's names (its exporter makes them gauges).
        let zk: [(&str, &str, u64); 10] = [
            ("znode_count", "Znodes in the tree.", m.znode_count),
            ("ephemerals_count", "Ephemeral znodes.", m.ephemerals_count),
            (
                "approximate_data_size",
                "Bytes of znode data and paths.",
                m.approximate_data_size,
            ),
            (
                "watch_count",
                "Watches set through this member.",
                m.watch_count,
            ),
            (
                "global_sessions",
                "Sessions in the ensemble.",
                m.global_sessions,
            ),
            (
                "local_sessions",
                "Sessions this member hosts.",
                m.hosted_sessions,
            ),
            (
                "num_alive_connections",
                "Client connections open on this member.",
                m.connections,
            ),
            (
                "outstanding_requests",
                "Client requests received and not answered.",
                m.outstanding_requests,
            ),
            (
                "packets_received",
                "Frames received from clients.",
                m.packets_received,
            ),
            ("packets_sent", "Frames sent to clients.", m.packets_sent),
        ];
        for (name, help, v) in zk {
            gauge(&mut e, name, help, as_i64(v))?;
        }
        let voters = 1 + m.followers.iter().filter(|f| f.voter).count() as u64;
        // Members the leader heard from within an election timeout (raft's recent_active).
        let active = m.followers.iter().filter(|f| f.active).count() as u64;
        if m.role == Role::Leader {
            gauge(
                &mut e,
                "learners",
                "Members the leader heard from within an election timeout.",
                as_i64(active),
            )?;
            gauge(
                &mut e,
                "quorum_size",
                "Voters, the leader included.",
                as_i64(voters),
            )?;
        }

        // Raft.
        let role = match m.role {
            Role::Leader => 3,
            Role::Candidate | Role::PreCandidate => 2,
            Role::Follower => 1,
            Role::Observer => 4,
            _ => 0,
        };
        gauge(
            &mut e,
            "zkraft_role",
            "This member's role: 1 follower, 2 candidate, 3 leader, 4 observer.",
            role,
        )?;
        gauge(
            &mut e,
            "zkraft_leader_id",
            "The leader this member knows of (0: none).",
            as_i64(m.leader.unwrap_or(0)),
        )?;
        gauge(&mut e, "zkraft_term", "The raft term.", as_i64(m.term))?;
        gauge(
            &mut e,
            "zkraft_commit_index",
            "The highest log index known committed.",
            as_i64(m.commit_index),
        )?;
        gauge(
            &mut e,
            "zkraft_applied_index",
            "The highest log index applied to the tree.",
            as_i64(m.applied_index),
        )?;
        gauge(
            &mut e,
            "zkraft_log_first_index",
            "The first index still in the raft log.",
            as_i64(m.log_first_index),
        )?;
        counter(
            &mut e,
            "zkraft_leader_changes",
            "Changes of the leader this member knows of.",
            m.leader_changes,
        )?;
        counter(
            &mut e,
            "zkraft_proposals",
            "Writes proposed to raft from this member.",
            m.proposals,
        )?;
        counter(
            &mut e,
            "zkraft_log_syncs",
            "Raft log writes synced to disk.",
            m.log_syncs,
        )?;
        counter(
            &mut e,
            "zkraft_entries_persisted",
            "Entries written to the raft log.",
            m.entries_persisted,
        )?;
        e.encode_descriptor(
            "zkraft_entries_per_fsync",
            "Mean entries per synced raft log write, since start.",
            None,
            MetricType::Gauge,
        )
        .and_then(|enc| ConstGauge::new(m.entries_per_sync()).encode(enc))?;
        counter(
            &mut e,
            "zkraft_entries_applied",
            "Committed entries applied to the tree.",
            m.entries_applied,
        )?;
        counter(
            &mut e,
            "zkraft_apply_batches",
            "Apply batches written to RocksDB.",
            m.apply_batches,
        )?;
        counter(
            &mut e,
            "zkraft_log_compactions",
            "Raft log compactions.",
            m.log_compactions,
        )?;
        counter(
            &mut e,
            "zkraft_dropped_envelopes",
            "Peer messages dropped for a full backlog.",
            m.dropped_envelopes,
        )?;
        histogram(
            &mut e,
            "zkraft_fsync_seconds",
            "Raft log writes that sync: how long each took (ZooKeeper's fsynctime).",
            &m.fsync,
        )?;

        // Snapshots.
        counter(
            &mut e,
            "zkraft_snapshots_sent",
            "Snapshots streamed to followers.",
            m.snapshots_sent,
        )?;
        counter(
            &mut e,
            "zkraft_snapshots_installed",
            "Snapshots received and installed.",
            m.snapshots_installed,
        )?;
        gauge(
            &mut e,
            "zkraft_snapshot_bytes",
            "Bytes of the last snapshot streamed or installed.",
            as_i64(m.last_snapshot_bytes),
        )?;
        histogram(
            &mut e,
            "zkraft_snapshot_seconds",
            "How long streaming or installing a snapshot took (ZooKeeper's snapshottime).",
            &m.snapshot_duration,
        )?;

        // The leader's view of its followers.
        if !m.followers.is_empty() {
            let mut lag = e.encode_descriptor(
                "zkraft_follower_lag_entries",
                "Entries a member is behind the leader (on the leader).",
                None,
                MetricType::Gauge,
            )?;
            for f in &m.followers {
                let labels: Labels = vec![("member", f.id.to_string())];
                ConstGauge::new(as_i64(f.lag)).encode(lag.encode_family(&labels)?)?;
            }
        }

        // Requests, per operation.
        if !m.requests.is_empty() {
            let mut req = e.encode_descriptor(
                "zkraft_request_seconds",
                "Requests of sessions hosted here, from submission to answer, per operation.",
                None,
                MetricType::Histogram,
            )?;
            for (op, h) in &m.requests {
                let labels: Labels = vec![("op", op.clone())];
                req.encode_family(&labels)?.encode_histogram::<Labels>(
                    h.sum,
                    h.count,
                    &buckets(h),
                    None,
                )?;
            }
        }

        // Traffic per peer.
        if !m.peers.is_empty() {
            let mut sent = e.encode_descriptor(
                "zkraft_peer_sent_bytes",
                "Bytes written to a peer.",
                None,
                MetricType::Counter,
            )?;
            for p in &m.peers {
                let labels: Labels = vec![("peer", p.id.to_string())];
                ConstCounter::new(p.sent_bytes).encode(sent.encode_family(&labels)?)?;
            }
            let mut received = e.encode_descriptor(
                "zkraft_peer_received_bytes",
                "Bytes read from a peer.",
                None,
                MetricType::Counter,
            )?;
            for p in &m.peers {
                let labels: Labels = vec![("peer", p.id.to_string())];
                ConstCounter::new(p.received_bytes).encode(received.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_renders_in_the_text_format() {
        let dir = tempfile::tempdir().unwrap();
        let node = zkraft::Node::builder(1)
            .data_dir(dir.path())
            .start()
            .unwrap();
        let s = node.session().unwrap();
        s.create("/a", b"x", zkraft::CreateMode::Persistent)
            .unwrap();
        s.get_data("/a", None).unwrap();
        let text = render(&node.metrics());
        for line in [
            "# TYPE znode_count gauge",
            "# TYPE zkraft_fsync_seconds histogram",
            "zkraft_fsync_seconds_bucket{le=\"+Inf\"}",
            "zkraft_request_seconds_count{op=\"create\"} 1",
            "zkraft_request_seconds_count{op=\"get_data\"} 1",
            "zkraft_role 3",
            "# TYPE zkraft_proposals counter",
            "local_sessions 1",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        node.shutdown();
    }
}
