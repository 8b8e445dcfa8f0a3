//! ZooKeeper's four-letter words on the client port (`ruok`, `srvr`, `stat`, `mntr`, …),
//! answered in ZooKeeper's own output format so existing monitoring scripts parse them.
//! A connection whose first four bytes spell one gets the answer as plain text and is
//! closed; words outside the whitelist (ZooKeeper's `4lw.commands.whitelist`) get
//! ZooKeeper's refusal line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::Ctx;
use crate::replica::Role;

/// The words this server knows.
pub(crate) const WORDS: [&str; 16] = [
    "ruok", "srvr", "stat", "mntr", "conf", "cons", "crst", "envi", "wchs", "wchc", "wchp", "dump",
    "isro", "srst", "dirs", "hash",
];

/// The version reported: the ZooKeeper protocol level served, then zkraft's own.
pub(crate) fn version() -> String {
    format!(
        "3.8.0-zkraft-{}, built on zkraft {}",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION")
    )
}

/// The word the first four bytes of a connection spell, if any.
pub(crate) fn word(head: &[u8; 4]) -> Option<&'static str> {
    WORDS.iter().copied().find(|w| w.as_bytes() == head)
}

const NOT_SERVING: &str = "This ZooKeeper instance is not currently serving requests\n";

/// Java's `Double.toString` for the figures ZooKeeper prints as doubles ("0.0", "1.5").
fn java_double(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e7 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

/// The answer to `word` (a member of [`WORDS`]).
pub(crate) fn answer(ctx: &Ctx, word: &str) -> String {
    if !ctx.four_letter_allowed(word) {
        return format!("{word} is not executed because it is not in the whitelist.\n");
    }
    let serving = ctx.shared.is_member()
        && (ctx.shared.leader_id() != 0 || ctx.read_only.load(Ordering::Acquire));
    match word {
        "ruok" => "imok".into(),
        "isro" => if ctx.read_only.load(Ordering::Acquire) {
            "ro"
        } else {
            "rw"
        }
        .into(),
        "envi" => envi(),
        "conf" => conf(ctx),
        "dirs" => format!(
            "datadir_size: {}\nlogdir_size: 0\n",
            dir_size(&ctx.shared.config().data_dir)
        ),
        _ if !serving => NOT_SERVING.into(),
        "srvr" => srvr(ctx, false),
        "stat" => srvr(ctx, true),
        "mntr" => mntr(ctx),
        "cons" => cons(ctx),
        "crst" => {
            ctx.reset_connection_stats();
            "Connection stats reset.\n".into()
        }
        "srst" => {
            ctx.stats.reset();
            "Server stats reset.\n".into()
        }
        // As ZooKeeper 3.6+'s `hash`: `ZXID: DIGEST` (hexadecimal zxid), here the digest of
        // the tree at the applied index: members at the same zxid agree exactly when they
        // hold the same state.
        "hash" => {
            let d = ctx.shared.digest();
            format!("{:x}: {}\n", d.index, d.value)
        }
        "wchs" => wchs(ctx),
        "wchc" => by_session(ctx),
        "wchp" => by_path(ctx),
        "dump" => dump(ctx),
        _ => String::new(),
    }
}

/// ZooKeeper's name for the node's role, as this port serves it.
fn mode(ctx: &Ctx) -> &'static str {
    state_name(&ctx.shared, ctx.read_only.load(Ordering::Acquire))
}

/// ZooKeeper's name for the state of the node `shared`, `read_only` when it serves
/// read-only clients: `leader`, `follower`, `observer`, `standalone` or `read-only`.
pub(super) fn state_name(shared: &crate::replica::Shared, read_only: bool) -> &'static str {
    if read_only {
        return "read-only";
    }
    match shared.role() {
        Role::Observer => "observer",
        _ if shared.voter_count() <= 1 => "standalone",
        Role::Leader => "leader",
        _ => "follower",
    }
}

fn zxid(ctx: &Ctx) -> u64 {
    ctx.shared.applied_index()
}

fn srvr(ctx: &Ctx, with_clients: bool) -> String {
    let s = &ctx.stats;
    let (min, avg, max) = s.latency.summary();
    let mut out = String::new();
    let _ = writeln!(out, "Zookeeper version: {}", version());
    if with_clients {
        out.push_str("Clients:\n");
        for c in ctx.connections() {
            let _ = writeln!(
                out,
                " /{}[1](queued={},recved={},sent={})",
                c.peer,
                c.outstanding(),
                c.stats.received.load(Ordering::Relaxed),
                c.stats.sent.load(Ordering::Relaxed)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "Latency min/avg/max: {min}/{}/{max}", java_double(avg));
    let _ = writeln!(out, "Received: {}", s.received.load(Ordering::Relaxed));
    let _ = writeln!(out, "Sent: {}", s.sent.load(Ordering::Relaxed));
    let _ = writeln!(
        out,
        "Connections: {}",
        s.connections.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "Outstanding: {}",
        s.outstanding.load(Ordering::Relaxed).max(0)
    );
    let _ = writeln!(out, "Zxid: {:#x}", zxid(ctx));
    let _ = writeln!(out, "Mode: {}", mode(ctx));
    let _ = writeln!(out, "Node count: {}", ctx.shared.tree().read().len());
    if mode(ctx) == "leader" {
        // ZooKeeper's leader reports its proposal sizes; zkraft batches entries instead.
        out.push_str("Proposal sizes last/min/max: -1/-1/-1\n");
    }
    out
}

fn mntr(ctx: &Ctx) -> String {
    let s = &ctx.stats;
    let (min, avg, max) = s.latency.summary();
    let (znodes, ephemerals, data_size, sessions) = {
        let tree = ctx.shared.tree().read();
        (
            tree.len(),
            tree.ephemeral_count(),
            tree.data_size(),
            tree.sessions().len(),
        )
    };
    let watches = ctx.host.zookeeper_watch_count();
    let mut rows: Vec<(&str, String)> = vec![
        ("zk_version", version()),
        ("zk_server_state", mode(ctx).into()),
        ("zk_avg_latency", java_double(avg)),
        ("zk_max_latency", max.to_string()),
        ("zk_min_latency", min.to_string()),
        (
            "zk_packets_received",
            s.received.load(Ordering::Relaxed).to_string(),
        ),
        (
            "zk_packets_sent",
            s.sent.load(Ordering::Relaxed).to_string(),
        ),
        (
            "zk_num_alive_connections",
            s.connections.load(Ordering::Relaxed).to_string(),
        ),
        (
            "zk_outstanding_requests",
            s.outstanding.load(Ordering::Relaxed).max(0).to_string(),
        ),
        ("zk_znode_count", znodes.to_string()),
        ("zk_watch_count", watches.to_string()),
        ("zk_ephemerals_count", ephemerals.to_string()),
        ("zk_approximate_data_size", data_size.to_string()),
        ("zk_global_sessions", sessions.to_string()),
        (
            "zk_local_sessions",
            ctx.host.hosted_session_count().to_string(),
        ),
        ("zk_uptime", s.started.elapsed().as_millis().to_string()),
        ("zk_last_zxid", format!("{:#x}", zxid(ctx))),
    ];
    if let Some((open, max)) = file_descriptors() {
        rows.push(("zk_open_file_descriptor_count", open.to_string()));
        rows.push(("zk_max_file_descriptor_count", max.to_string()));
    }
    if mode(ctx) == "leader" {
        let followers = ctx.shared.voter_count().saturating_sub(1);
        rows.push(("zk_followers", followers.to_string()));
        rows.push(("zk_synced_followers", followers.to_string()));
        rows.push(("zk_pending_syncs", "0".into()));
    }
    let mut out = String::new();
    for (k, v) in rows {
        let _ = writeln!(out, "{k}\t{v}");
    }
    out
}

fn conf(ctx: &Ctx) -> String {
    let mut out = String::new();
    for (k, v) in configuration(&ctx.shared, Some(ctx), &[]) {
        let _ = writeln!(out, "{k}={v}");
    }
    out
}

/// `conf`'s settings in ZooKeeper's names: the client ports (`port`'s, or the first plain
/// and the first TLS one of `ports`), the node's settings, then, as ZooKeeper 3.5+ ends
/// `conf`, the dynamic configuration (`server.N=…`, `version=…`).
pub(super) fn configuration(
    shared: &crate::replica::Shared,
    port: Option<&Ctx>,
    ports: &[std::sync::Arc<Ctx>],
) -> Vec<(String, String)> {
    let c = shared.config();
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
    let all: Vec<&Ctx> = port.into_iter().chain(ports.iter().map(|p| &**p)).collect();
    let plain = all.iter().find(|p| p.tls.is_none());
    let secure = all.iter().find(|p| p.tls.is_some());
    row(
        "clientPort",
        plain.map_or("-1".into(), |p| p.addr.port().to_string()),
    );
    if let Some(p) = plain.or(secure) {
        row("clientPortAddress", p.addr.ip().to_string());
    }
    row(
        "secureClientPort",
        secure.map_or("-1".into(), |p| p.addr.port().to_string()),
    );
    row("dataDir", c.data_dir.display().to_string());
    row("dataDirSize", dir_size(&c.data_dir).to_string());
    row("dataLogDir", c.data_dir.display().to_string());
    row("dataLogSize", "0".into());
    row("tickTime", c.tick_interval.as_millis().to_string());
    // ZooKeeper's maxClientCnxns is the limit per address; the total has no ZooKeeper name.
    if let Some(p) = all.first() {
        row("maxClientCnxns", p.max_per_address.to_string());
    }
    row(
        "minSessionTimeout",
        c.min_session_timeout.as_millis().to_string(),
    );
    row(
        "maxSessionTimeout",
        c.max_session_timeout.as_millis().to_string(),
    );
    if let Some(p) = all.first() {
        row("clientPortListenBacklog", p.listen_backlog.to_string());
    }
    row("serverId", c.id.to_string());
    row("electionTick", c.election_tick.to_string());
    row("heartbeatTick", c.heartbeat_tick.to_string());
    row("jute.maxbuffer", c.max_request_size.to_string());
    row("clusterId", c.cluster_id.clone());
    for line in shared.configuration().render().lines() {
        if let Some((k, v)) = line.split_once('=') {
            row(k, v.to_string());
        }
    }
    rows
}

fn envi() -> String {
    let mut out = String::from("Environment:\n");
    for (k, v) in environment() {
        let _ = writeln!(out, "{k}={v}");
    }
    out
}

/// `envi`'s entries.
pub(super) fn environment() -> Vec<(&'static str, String)> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    vec![
        ("zookeeper.version", version()),
        ("host.name", host),
        ("zkraft.version", env!("CARGO_PKG_VERSION").to_string()),
        ("os.name", std::env::consts::OS.to_string()),
        ("os.arch", std::env::consts::ARCH.to_string()),
        (
            "user.dir",
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
        ),
        ("process.id", std::process::id().to_string()),
    ]
}

fn cons(ctx: &Ctx) -> String {
    let mut out = String::new();
    for c in ctx.connections() {
        let s = &c.stats;
        let session = c.session.load(Ordering::Relaxed);
        let _ = write!(
            out,
            " /{}[1](queued={},recved={},sent={}",
            c.peer,
            c.outstanding(),
            s.received.load(Ordering::Relaxed),
            s.sent.load(Ordering::Relaxed)
        );
        if session != 0 {
            let (min, avg, max) = s.latency.summary();
            let _ = write!(
                out,
                ",sid={session:#x},lop={},est={},to={},lcxid={:#x},lzxid={:#x},minlat={min},avglat={},maxlat={}",
                op_name(s.last_op.load(Ordering::Relaxed)),
                c.established_ms,
                c.timeout_ms.load(Ordering::Relaxed),
                s.last_xid.load(Ordering::Relaxed),
                zxid(ctx),
                java_double(avg),
                max
            );
        }
        out.push_str(")\n");
    }
    out.push('\n');
    out
}

/// ZooKeeper's short name of an operation (`lop` in `cons`).
pub(super) fn op_name(code: i64) -> &'static str {
    use crate::wire::proto::op;
    match i32::try_from(code).unwrap_or(-1) {
        op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => "CREA",
        op::DELETE => "DELE",
        op::EXISTS => "EXIS",
        op::GET_DATA => "GETD",
        op::SET_DATA => "SETD",
        op::GET_ACL => "GETA",
        op::SET_ACL => "SETA",
        op::GET_CHILDREN | op::GET_CHILDREN2 => "GETC",
        op::SYNC => "SYNC",
        op::PING => "PING",
        op::MULTI | op::MULTI_READ => "MULT",
        op::CLOSE_SESSION => "CLOS",
        op::SET_WATCHES | op::SET_WATCHES2 => "SETW",
        op::ADD_WATCH => "ADDW",
        op::CHECK_WATCHES | op::REMOVE_WATCHES => "REMW",
        op::GET_EPHEMERALS => "GETE",
        op::GET_ALL_CHILDREN_NUMBER => "GETACN",
        _ => "NA",
    }
}

fn wchs(ctx: &Ctx) -> String {
    let (sessions, paths, total) = ctx.host.watch_summary();
    format!("{sessions} connections watching {paths} paths\nTotal watches:{total}\n")
}

fn by_session(ctx: &Ctx) -> String {
    let mut out = String::new();
    for (session, paths) in ctx.host.watched_paths() {
        let _ = writeln!(out, "{session:#x}");
        for p in paths {
            let _ = writeln!(out, "\t{p}");
        }
    }
    out
}

fn by_path(ctx: &Ctx) -> String {
    let mut out = String::new();
    for (p, sessions) in ctx.host.watching_sessions() {
        let _ = writeln!(out, "{p}");
        for s in sessions {
            let _ = writeln!(out, "\t{s:#x}");
        }
    }
    out
}

fn dump(ctx: &Ctx) -> String {
    let tree = ctx.shared.tree().read();
    let mut out = String::from("SessionTracker dump:\n");
    let _ = writeln!(out, "Global Sessions({}):", tree.sessions().len());
    for (id, rec) in tree.sessions() {
        let _ = writeln!(out, "{id:#x}\t{}ms", rec.timeout_ms);
    }
    let by_owner: BTreeMap<i64, Vec<String>> = tree
        .sessions()
        .keys()
        .map(|&id| (id, tree.ephemerals(id, "/")))
        .filter(|(_, paths)| !paths.is_empty())
        .collect();
    out.push_str("ephemeral nodes dump:\n");
    let _ = writeln!(out, "Sessions with Ephemerals ({}):", by_owner.len());
    for (owner, paths) in by_owner {
        let _ = writeln!(out, "{owner:#x}:");
        for p in paths {
            let _ = writeln!(out, "\t{p}");
        }
    }
    let _ = writeln!(
        out,
        "Connections dump:\nConnections Sets (1)/({})",
        ctx.stats.connections.load(Ordering::Relaxed)
    );
    out
}

/// Open and maximum file descriptors of this process (Linux).
fn file_descriptors() -> Option<(usize, u64)> {
    let open = std::fs::read_dir("/proc/self/fd").ok()?.count();
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let max = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some((open, max))
}

pub(super) fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_doubles() {
        assert_eq!(word(b"ruok"), Some("ruok"));
        assert_eq!(word(b"\0\0\0\x2c"), None);
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(java_double(2.0), "2.0");
        assert_eq!(java_double(0.25), "0.2500");
    }
}
