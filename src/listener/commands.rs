//! ZooKeeper's AdminServer commands (`/commands/<name>`: `ruok`, `srvr`, `mntr`, `cons`,
//! `dump`, …), answered as structured [`Value`]s with ZooKeeper's field names, for the
//! node as a whole (every client port started on it); and zkraft's own commands behind its
//! admin page (`ensemble`, `znode`). An admin port (the `zkraft-admin` crate) turns them
//! into JSON; [`Monitor::command`](crate::Monitor::command) runs them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::four_letter::{self, op_name};
use super::Ctx;
use crate::acl::Id;
use crate::host::Host;
use crate::replica::Role;

/// A command's answer: what JSON can hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<Value>),
    /// An object, its keys in order.
    Map(Vec<(String, Value)>),
}

impl Value {
    /// The value under `key`, in a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Bool(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::from(v as u64)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Int(i64::from(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Str(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Str(v.to_string())
    }
}

/// Builds a map in order.
#[derive(Default)]
struct Obj(Vec<(String, Value)>);

impl Obj {
    fn put(mut self, k: &str, v: impl Into<Value>) -> Self {
        self.0.push((k.to_string(), v.into()));
        self
    }
    fn done(self) -> Value {
        Value::Map(self.0)
    }
}

/// The commands served, by primary name, with ZooKeeper's other names for each.
pub const COMMANDS: [(&str, &[&str]); 20] = [
    ("ruok", &[]),
    ("server_stats", &["srvr"]),
    ("stats", &["stat"]),
    ("monitor", &["mntr"]),
    ("configuration", &["conf", "config"]),
    ("connections", &["cons"]),
    ("connection_stat_reset", &["crst"]),
    ("stat_reset", &["srst"]),
    ("environment", &["envi", "env"]),
    ("dirs", &[]),
    ("dump", &[]),
    ("watch_summary", &["wchs"]),
    ("watches", &["wchc"]),
    ("watches_by_path", &["wchp"]),
    ("is_read_only", &["isro"]),
    ("leader", &["lead"]),
    ("hash", &[]),
    ("voting_view", &[]),
    ("ensemble", &[]),
    ("znode", &[]),
];

/// The primary name of command `name` (a primary name or one of its others).
pub fn primary_name(name: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .find(|(p, others)| *p == name || others.contains(&name))
        .map(|(p, _)| *p)
}

/// Runs command `name` with its arguments (`znode` takes `path`) for a caller holding
/// `ids` (the znodes it shows are checked against them, as a client's reads are): its
/// answer, with ZooKeeper's `command` and `error` fields, or `None` for an unknown command.
pub(crate) fn run(
    host: &Arc<Host>,
    name: &str,
    args: &[(String, String)],
    ids: &[Id],
) -> Option<Value> {
    let primary = primary_name(name)?;
    let ports = ports(host);
    let shared = host.replica();
    let serving = shared.is_member()
        && (shared.leader_id() != 0 || ports.iter().any(|c| c.read_only.load(Ordering::Acquire)));
    let needs_quorum = !matches!(
        primary,
        "ruok"
            | "environment"
            | "configuration"
            | "dirs"
            | "is_read_only"
            | "ensemble"
            | "voting_view"
    );
    let body = if needs_quorum && !serving {
        Obj::default().put(
            "error",
            "This ZooKeeper instance is not currently serving requests",
        )
    } else {
        answer(host, &ports, primary, args, ids)
    };
    let mut out = body.0;
    out.push(("command".into(), primary.into()));
    if !out.iter().any(|(k, _)| k == "error") {
        out.push(("error".into(), Value::Null));
    }
    Some(Value::Map(out))
}

/// The client ports started on the node, still serving.
fn ports(host: &Host) -> Vec<Arc<Ctx>> {
    host.ports()
        .into_iter()
        .filter_map(|p| p.into_any().downcast::<Ctx>().ok())
        .filter(|c| !c.stopping.load(Ordering::Acquire))
        .collect()
}

fn read_only(ports: &[Arc<Ctx>]) -> bool {
    ports.iter().any(|c| c.read_only.load(Ordering::Acquire))
}

/// ZooKeeper's name for the node's state.
fn mode(host: &Host, ports: &[Arc<Ctx>]) -> &'static str {
    four_letter::state_name(host.replica(), read_only(ports))
}

fn answer(
    host: &Arc<Host>,
    ports: &[Arc<Ctx>],
    command: &str,
    args: &[(String, String)],
    ids: &[Id],
) -> Obj {
    let shared = host.replica();
    match command {
        "ruok" => Obj::default(),
        "server_stats" => server_stats(host, ports),
        "stats" => {
            let (plain, secure) = connections(ports, true);
            server_stats(host, ports)
                .put("connections", plain)
                .put("secure_connections", secure)
        }
        "monitor" => {
            let mut o = Obj::default();
            for (k, v) in monitor(host, ports) {
                o = o.put(&k, v);
            }
            o
        }
        "configuration" => configuration(shared, ports),
        "connections" => {
            let (plain, secure) = connections(ports, false);
            Obj::default()
                .put("connections", plain)
                .put("secure_connections", secure)
        }
        "connection_stat_reset" => {
            for c in ports {
                c.reset_connection_stats();
            }
            Obj::default()
        }
        "stat_reset" => {
            for c in ports {
                c.stats.reset();
            }
            Obj::default()
        }
        "environment" => {
            let mut o = Obj::default();
            for (k, v) in four_letter::environment() {
                o = o.put(k, v);
            }
            o
        }
        "dirs" => Obj::default()
            .put(
                "datadir_size",
                four_letter::dir_size(&shared.config().data_dir),
            )
            .put("logdir_size", 0u64),
        "dump" => {
            let tree = shared.tree().read();
            let mut expiry: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
            let mut ephemerals = Vec::new();
            for (id, rec) in tree.sessions() {
                expiry
                    .entry(i64::from(rec.timeout_ms))
                    .or_default()
                    .push(Value::from(*id));
                let paths = tree.ephemerals(*id, "/");
                if !paths.is_empty() {
                    ephemerals.push((
                        id.to_string(),
                        Value::List(paths.into_iter().map(Value::from).collect()),
                    ));
                }
            }
            Obj::default()
                .put(
                    "expiry_time_to_session_ids",
                    Value::Map(
                        expiry
                            .into_iter()
                            .map(|(t, ids)| (t.to_string(), Value::List(ids)))
                            .collect(),
                    ),
                )
                .put("session_id_to_ephemeral_paths", Value::Map(ephemerals))
        }
        "watch_summary" => {
            let (sessions, paths, total) = host.watch_summary();
            Obj::default()
                .put("num_connections", sessions)
                .put("num_paths", paths)
                .put("num_total_watches", total)
        }
        "watches" => Obj::default().put(
            "session_id_to_watched_paths",
            Value::Map(
                host.watched_paths()
                    .into_iter()
                    .map(|(s, ps)| {
                        (
                            s.to_string(),
                            Value::List(ps.into_iter().map(Value::from).collect()),
                        )
                    })
                    .collect(),
            ),
        ),
        "watches_by_path" => {
            let paths = host.watching_sessions().into_iter().map(|(p, sessions)| {
                (p, sessions.into_iter().map(Value::from).collect::<Vec<_>>())
            });
            Obj::default().put(
                "path_to_session_ids",
                Value::Map(
                    paths
                        .into_iter()
                        .map(|(p, s)| (p, Value::List(s)))
                        .collect(),
                ),
            )
        }
        "is_read_only" => Obj::default().put("read_only", read_only(ports)),
        "leader" => {
            let leader = shared.leader_id();
            let address = shared
                .configuration()
                .members
                .get(&leader)
                .map(|m| m.host.clone())
                .unwrap_or_default();
            Obj::default()
                .put("is_leader", shared.role() == Role::Leader)
                .put("leader_id", leader)
                .put("leader_ip", address)
        }
        "hash" => {
            let d = shared.digest();
            Obj::default().put(
                "digests",
                Value::List(vec![Obj::default()
                    .put("zxid", d.index)
                    // A Java long, as ZooKeeper gives it.
                    .put("digest", d.value as i64)
                    .done()]),
            )
        }
        "voting_view" => {
            let config = shared.configuration();
            let members = config
                .members
                .iter()
                .map(|(id, m)| {
                    let view = Obj::default()
                        .put("server_addresses", Value::List(vec![m.peer_addr().into()]))
                        .put(
                            "election_addresses",
                            Value::List(
                                m.election_port
                                    .map(|p| format!("{}:{p}", m.host).into())
                                    .into_iter()
                                    .collect(),
                            ),
                        )
                        .put("client_address", m.client_addr().unwrap_or_default())
                        .put("learner_type", m.role.as_str());
                    (id.to_string(), view.done())
                })
                .collect();
            Obj::default().put("current_config", Value::Map(members))
        }
        "ensemble" => ensemble(host, ports),
        "znode" => {
            let path = args
                .iter()
                .find(|(k, _)| k == "path")
                .map_or("/", |(_, v)| v.as_str());
            znode(host, path, ids)
        }
        _ => Obj::default().put("error", format!("Unknown command: {command}")),
    }
}

/// `conf` as ZooKeeper's AdminServer gives it (`ZooKeeperServerConf`'s names and numbers),
/// then zkraft's own settings and the dynamic configuration (`server.N`, `version`).
fn configuration(shared: &crate::replica::Shared, ports: &[Arc<Ctx>]) -> Obj {
    let c = shared.config();
    let plain = ports.iter().find(|p| p.tls.is_none());
    let secure = ports.iter().find(|p| p.tls.is_some());
    let port = |p: Option<&Arc<Ctx>>| p.map_or(-1, |p| i64::from(p.addr.port()));
    let mut o = Obj::default()
        .put("client_port", port(plain))
        .put("secure_client_port", port(secure))
        .put("data_dir", c.data_dir.display().to_string())
        .put("data_dir_size", four_letter::dir_size(&c.data_dir))
        .put("data_log_dir", c.data_dir.display().to_string())
        .put("data_log_size", 0u64)
        .put("tick_time", c.tick_interval.as_millis() as u64)
        .put(
            "max_client_cnxns",
            ports.first().map_or(0, |p| p.max_per_address),
        )
        .put(
            "min_session_timeout",
            c.min_session_timeout.as_millis() as u64,
        )
        .put(
            "max_session_timeout",
            c.max_session_timeout.as_millis() as u64,
        )
        .put("server_id", c.id)
        .put(
            "client_port_listen_backlog",
            ports.first().map_or(0, |p| u64::from(p.listen_backlog)),
        )
        .put("election_tick", c.election_tick)
        .put("heartbeat_tick", c.heartbeat_tick)
        .put("jute_maxbuffer", c.max_request_size)
        .put("cluster_id", c.cluster_id.as_str());
    for line in shared.configuration().render().lines() {
        if let Some((k, v)) = line.split_once('=') {
            o = o.put(k, v);
        }
    }
    o
}

fn server_stats(host: &Arc<Host>, ports: &[Arc<Ctx>]) -> Obj {
    let shared = host.replica();
    let (min, avg, max) = latency(ports);
    let sum = |f: &dyn Fn(&Ctx) -> u64| ports.iter().map(|c| f(c)).sum::<u64>();
    let stats = Obj::default()
        .put(
            "packets_sent",
            sum(&|c| c.stats.sent.load(Ordering::Relaxed)),
        )
        .put(
            "packets_received",
            sum(&|c| c.stats.received.load(Ordering::Relaxed)),
        )
        .put("max_latency", max)
        .put("min_latency", min)
        .put("avg_latency", avg)
        .put(
            "outstanding_requests",
            sum(&|c| c.stats.outstanding.load(Ordering::Relaxed).max(0) as u64),
        )
        .put(
            "num_alive_client_connections",
            sum(&|c| c.stats.connections.load(Ordering::Relaxed) as u64),
        )
        .put("last_processed_zxid", shared.applied_index())
        .put("server_state", mode(host, ports))
        .put(
            "uptime",
            ports
                .iter()
                .map(|c| c.stats.started.elapsed().as_millis() as u64)
                .max()
                .unwrap_or(0),
        )
        .put(
            "data_dir_size",
            four_letter::dir_size(&shared.config().data_dir),
        )
        .put("log_dir_size", 0u64);
    Obj::default()
        .put("version", four_letter::version())
        .put("read_only", read_only(ports))
        .put("server_stats", stats.done())
        .put("node_count", shared.tree().read().len())
}

/// Request latency in ms over the ports: (min, avg, max).
fn latency(ports: &[Arc<Ctx>]) -> (u64, f64, u64) {
    let mut out: Option<(u64, f64, u64, u64)> = None;
    for c in ports {
        let (count, total) = c.stats.latency.totals();
        if count == 0 {
            continue;
        }
        let (min, _, max) = c.stats.latency.summary();
        out = Some(match out {
            None => (min, total as f64, max, count),
            Some((a, t, b, n)) => (a.min(min), t + total as f64, b.max(max), n + count),
        });
    }
    out.map_or((0, 0.0, 0), |(min, total, max, n)| {
        (min, total / n as f64, max)
    })
}

/// `mntr`'s figures without the `zk_` prefix, for the node.
fn monitor(host: &Arc<Host>, ports: &[Arc<Ctx>]) -> Vec<(String, Value)> {
    let m = host.metrics();
    let (min, avg, max) = latency(ports);
    let mut rows: Vec<(String, Value)> = vec![
        ("version".into(), four_letter::version().into()),
        ("server_state".into(), mode(host, ports).into()),
        ("avg_latency".into(), avg.into()),
        ("max_latency".into(), max.into()),
        ("min_latency".into(), min.into()),
        ("packets_received".into(), m.packets_received.into()),
        ("packets_sent".into(), m.packets_sent.into()),
        ("num_alive_connections".into(), m.connections.into()),
        ("outstanding_requests".into(), m.outstanding_requests.into()),
        ("znode_count".into(), m.znode_count.into()),
        ("watch_count".into(), m.watch_count.into()),
        ("ephemerals_count".into(), m.ephemerals_count.into()),
        (
            "approximate_data_size".into(),
            m.approximate_data_size.into(),
        ),
        ("global_sessions".into(), m.global_sessions.into()),
        ("local_sessions".into(), m.hosted_sessions.into()),
        ("last_zxid".into(), format!("{:#x}", m.applied_index).into()),
    ];
    if m.role == Role::Leader {
        // Members the leader heard from within an election timeout (raft's recent_active),
        // as ZooKeeper counts the learners connected to it.
        let active: Vec<_> = m.followers.iter().filter(|f| f.active).collect();
        let voters = active.iter().filter(|f| f.voter).count();
        rows.push(("learners".into(), active.len().into()));
        rows.push(("synced_followers".into(), voters.into()));
        rows.push(("synced_observers".into(), (active.len() - voters).into()));
    }
    rows
}

/// Each connection's figures, as ZooKeeper's `getConnectionInfo` names them: the plain
/// ports' connections, then the TLS ports'.
fn connections(ports: &[Arc<Ctx>], brief: bool) -> (Value, Value) {
    let mut plain = Vec::new();
    let mut secure = Vec::new();
    for ctx in ports {
        for c in ctx.connections() {
            let s = &c.stats;
            let session = c.session.load(Ordering::Relaxed);
            let mut o = Obj::default()
                .put("remote_socket_address", c.peer.to_string())
                .put("interest_ops", 1i64)
                .put("outstanding_requests", c.outstanding())
                .put("packets_received", s.received.load(Ordering::Relaxed))
                .put("packets_sent", s.sent.load(Ordering::Relaxed));
            if !brief && session != 0 {
                let (min, avg, max) = s.latency.summary();
                o = o
                    .put("session_id", session)
                    .put("last_operation", op_name(s.last_op.load(Ordering::Relaxed)))
                    .put("session_timeout", c.timeout_ms.load(Ordering::Relaxed))
                    .put("last_cxid", s.last_xid.load(Ordering::Relaxed))
                    .put("last_zxid", ctx.shared.applied_index())
                    .put("established", c.established_ms)
                    .put("min_latency", min)
                    .put("avg_latency", avg)
                    .put("max_latency", max);
            }
            if ctx.tls.is_some() {
                secure.push(o.done());
            } else {
                plain.push(o.done());
            }
        }
    }
    (Value::List(plain), Value::List(secure))
}

/// zkraft's view of the ensemble from this member, for the admin page.
fn ensemble(host: &Arc<Host>, ports: &[Arc<Ctx>]) -> Obj {
    let shared = host.replica();
    let m = host.metrics();
    let config = shared.configuration();
    let digest = shared.digest();
    let members = shared
        .roster()
        .into_iter()
        .map(|(id, role, spec)| {
            let progress = m.followers.iter().find(|f| f.id == id);
            let role = if id == m.leader.unwrap_or(0) {
                "leader"
            } else {
                role.as_str()
            };
            let mut o = Obj::default()
                .put("id", id)
                .put("role", role)
                .put(
                    "peer_address",
                    spec.as_ref().map(|s| s.peer_addr()).unwrap_or_default(),
                )
                .put(
                    "client_address",
                    spec.as_ref()
                        .and_then(|s| s.client_addr())
                        .unwrap_or_default(),
                );
            if let Some(p) = progress {
                o = o.put("matched", p.matched).put("lag", p.lag);
            } else if id == shared.id() {
                o = o.put("matched", m.applied_index).put("lag", 0u64);
            }
            o.done()
        })
        .collect();
    let all = m.request_latency();
    Obj::default()
        .put("id", shared.id())
        .put("state", mode(host, ports))
        .put("leader", m.leader.unwrap_or(0))
        .put("term", m.term)
        .put("commit_index", m.commit_index)
        .put("applied_index", m.applied_index)
        .put(
            "digest",
            Obj::default()
                .put("index", digest.index)
                .put("value", format!("{:016x}", digest.value))
                .done(),
        )
        .put("config_version", format!("{:x}", config.version))
        .put("members", Value::List(members))
        .put("znode_count", m.znode_count)
        .put("global_sessions", m.global_sessions)
        .put("local_sessions", m.hosted_sessions)
        .put("watch_count", m.watch_count)
        .put("connections", m.connections)
        .put("requests", all.count)
        .put("request_seconds", all.sum)
        .put("leader_changes", m.leader_changes)
}

/// Most children listed by `znode`, and most bytes of data shown.
const ZNODE_CHILDREN: usize = 1000;
const ZNODE_DATA: usize = 64 * 1024;

/// A znode's stat, ACL, data (up to 64 KiB) and children (up to 1,000), read-only, as a
/// client holding `ids` may read them: without READ permission, its ACL only (redacted
/// without ADMIN, as getACL shows it).
fn znode(host: &Arc<Host>, path: &str, ids: &[Id]) -> Obj {
    let shared = host.replica();
    let tree = shared.tree().read();
    if crate::path::validate(path).is_err() {
        return Obj::default().put("error", format!("invalid path {path:?}"));
    }
    let Some(node) = tree.get(path) else {
        return Obj::default().put("path", path).put("exists", false);
    };
    let acl_of = |a: &[crate::acl::Acl]| {
        Value::List(
            a.iter()
                .map(|a| {
                    Obj::default()
                        .put("perms", crate::acl::perms_letters(a.perms))
                        .put("scheme", a.id.scheme.as_str())
                        .put("id", a.id.id.as_str())
                        .done()
                })
                .collect(),
        )
    };
    if !crate::acl::permits(node.acl(), ids, crate::acl::perms::READ) {
        let shown = crate::acl::as_shown(node.acl(), ids);
        return Obj::default()
            .put("path", path)
            .put("exists", true)
            .put("readable", false)
            .put("acl", acl_of(&shown))
            .put(
                "error",
                "NoAuth: no READ permission (give the admin port's credentials)",
            );
    }
    let Ok((acl, stat)) = crate::pipeline::acl_of(&tree, path, ids) else {
        return Obj::default().put("path", path).put("exists", false);
    };
    let data = node.data.as_deref().unwrap_or_default();
    let shown = &data[..data.len().min(ZNODE_DATA)];
    let children = tree.children(path);
    let stat = Obj::default()
        .put("czxid", stat.czxid)
        .put("mzxid", stat.mzxid)
        .put("pzxid", stat.pzxid)
        .put("ctime", stat.ctime)
        .put("mtime", stat.mtime)
        .put("version", stat.version)
        .put("cversion", stat.cversion)
        .put("aversion", stat.aversion)
        .put("ephemeral_owner", format!("{:#x}", stat.ephemeral_owner))
        .put("data_length", stat.data_length)
        .put("num_children", stat.num_children);
    Obj::default()
        .put("path", path)
        .put("exists", true)
        .put("readable", true)
        .put("stat", stat.done())
        .put("acl", acl_of(&acl))
        .put("data", String::from_utf8_lossy(shown).into_owned())
        .put("data_truncated", shown.len() < data.len())
        .put(
            "children",
            Value::List(
                children
                    .iter()
                    .take(ZNODE_CHILDREN)
                    .map(|c| Value::from(c.as_str()))
                    .collect(),
            ),
        )
        .put("children_truncated", children.len() > ZNODE_CHILDREN)
}
