//! The server's settings: command-line flags over an optional TOML file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

/// Command-line flags. Every setting may also come from `--config FILE`; a flag given on
/// the command line wins over the file.
#[derive(Debug, Parser)]
#[command(
    name = "zkraft-server",
    version,
    about = "One member of a zkraft ensemble: a replicated ZooKeeper-style znode store on raft",
    after_help = "Example (three servers on one machine):\n  \
        zkraft-server --id 1 --peers 1=127.0.0.1:2701,2=127.0.0.1:2702,3=127.0.0.1:2703 --data-dir /tmp/zk1\n  \
        zkraft-server --id 2 --peers 1=127.0.0.1:2701,2=127.0.0.1:2702,3=127.0.0.1:2703 --data-dir /tmp/zk2\n  \
        zkraft-server --id 3 --peers 1=127.0.0.1:2701,2=127.0.0.1:2702,3=127.0.0.1:2703 --data-dir /tmp/zk3"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Flags {
    /// An operator's command instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// A TOML file with the settings below (flags given here win over it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This server's id (non-zero, unique in the ensemble).
    #[arg(long)]
    pub id: Option<u64>,
    /// Every member, this one included: `ID=HOST:PORT,...` (hostnames allowed), or
    /// ZooKeeper's server strings, `ID=HOST:PORT:PORT:participant|observer;CLIENT_PORT`
    /// (observers are members that never vote).
    #[arg(long, value_name = "ID=HOST:PORT,...")]
    pub peers: Option<String>,
    /// Start outside the ensemble, to be added by a member (`zkraft-server reconfig
    /// --add`, or ZooKeeper's `reconfig`): list the ensemble in `--peers`, this server
    /// included. It catches up from a snapshot before it votes.
    #[arg(long)]
    pub join: bool,
    /// Serve ZooKeeper's `reconfig` request (default true; only the super user may use
    /// it). ZooKeeper's reconfigEnabled.
    #[arg(long, value_name = "BOOL")]
    pub reconfig_enabled: Option<bool>,
    /// Without a quorum, serve clients that asked for read-only sessions from this
    /// member's state (ZooKeeper's readonlymode.enabled; default off).
    #[arg(long)]
    pub read_only_mode: bool,
    /// The directory of this server's RocksDB database.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The ensemble's name; peers of another cluster are refused.
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Listen for peers here instead of on this server's own `--peers` entry.
    #[arg(long, value_name = "HOST:PORT")]
    pub bind: Option<String>,
    /// Length of a raft tick in milliseconds (default 100).
    #[arg(long)]
    pub tick_ms: Option<u64>,
    /// Ticks before a follower that hears no leader campaigns (default 10).
    #[arg(long)]
    pub election_tick: Option<usize>,
    /// Ticks between leader heartbeats (default 2).
    #[arg(long)]
    pub heartbeat_tick: Option<usize>,
    /// Compact the raft log after this many applied entries (default 100000).
    #[arg(long)]
    pub snapshot_entries: Option<u64>,
    /// Megabytes of znodes kept in memory in front of RocksDB, where the tree lives
    /// (default 16): what sets the tree's memory, however large the tree.
    #[arg(long, value_name = "MB")]
    pub cache_mb: Option<u64>,
    /// Log level: error, warning, info, debug or trace (default info).
    #[arg(long)]
    pub log_level: Option<String>,
    /// Serve ZooKeeper's client protocol here (ZooKeeper's clientPortAddress:clientPort),
    /// e.g. 127.0.0.1:2181.
    #[arg(long, value_name = "HOST:PORT")]
    pub client_addr: Option<String>,
    /// The four-letter words answered on the client port, comma-separated, or `*` for all
    /// (ZooKeeper's 4lw.commands.whitelist; default srvr).
    #[arg(long = "4lw-whitelist", value_name = "WORDS")]
    pub four_letter_words: Option<String>,
    /// Smallest session timeout granted, in milliseconds (default 4000).
    #[arg(long)]
    pub min_session_timeout_ms: Option<u64>,
    /// Largest session timeout granted, in milliseconds (default 40000).
    #[arg(long)]
    pub max_session_timeout_ms: Option<u64>,
    /// Most client connections at once (default 20000).
    #[arg(long)]
    pub max_client_connections: Option<usize>,
    /// Most client connections at once from one IP address (ZooKeeper's maxClientCnxns;
    /// default 60, 0 for no limit).
    #[arg(long)]
    pub max_client_cnxns: Option<usize>,
    /// The client port's listen backlog (ZooKeeper's clientPortListenBacklog; default
    /// 1024, capped by the kernel's net.core.somaxconn).
    #[arg(long)]
    pub client_port_listen_backlog: Option<u32>,
    /// How often the leader deletes empty containers and expired TTL znodes, in
    /// milliseconds (ZooKeeper's znode.container.checkIntervalMs; default 60000).
    #[arg(long)]
    pub container_check_interval_ms: Option<u64>,
    /// The super user's digest, `super:BASE64` (ZooKeeper's
    /// zookeeper.DigestAuthenticationProvider.superDigest): a client that authenticates
    /// as it may do anything.
    #[arg(long, value_name = "super:DIGEST")]
    pub super_digest: Option<String>,
    /// Serve ZooKeeper's client protocol over TLS here (ZooKeeper's secureClientPort),
    /// beside --client-addr or instead of it. Needs --tls-cert, --tls-key and --tls-ca.
    #[arg(long, value_name = "HOST:PORT")]
    pub secure_client_addr: Option<String>,
    /// TLS with mutual authentication between the members (ZooKeeper's sslQuorum): every
    /// member must have it, with a certificate from --tls-ca that names the address the
    /// others dial it at. Needs --tls-cert, --tls-key and --tls-ca.
    #[arg(long)]
    pub peer_tls: bool,
    /// This member's certificate chain, PEM, leaf first.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// This member's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// The certificate authorities trusted for peers and clients, PEM.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Whether the TLS client port asks clients for a certificate: none, want or need
    /// (ZooKeeper's ssl.clientAuth; default need).
    #[arg(long, value_name = "none|want|need")]
    pub client_auth: Option<String>,
    /// Serve SASL DIGEST-MD5 logins with the users of this JAAS file's `Server` section
    /// (its `user_<name>="<password>"` entries; ZooKeeper's
    /// java.security.auth.login.config). A client logged in holds `sasl:<name>`.
    #[arg(long, value_name = "FILE")]
    pub jaas_config: Option<PathBuf>,
    /// The SASL user who is the super user once logged in (ZooKeeper's
    /// zookeeper.superUser).
    #[arg(long, value_name = "NAME")]
    pub sasl_super_user: Option<String>,
    /// Serve Prometheus metrics over HTTP here, at /metrics and nothing else (ZooKeeper's
    /// metricsProvider.httpPort).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Serve the admin port here: ZooKeeper's AdminServer commands as JSON at
    /// /commands/<name>, the admin page at /, and /metrics (ZooKeeper's
    /// admin.serverAddress:admin.serverPort).
    #[arg(long, value_name = "HOST:PORT")]
    pub admin_addr: Option<String>,
    /// The other members' admin ports, `http://HOST:PORT` (comma-separated), whose views
    /// the admin page shows beside this member's (term, applied index, digest).
    #[arg(long, value_name = "URL,...")]
    pub admin_peers: Option<String>,
    /// HTTP Basic credentials the admin and metrics ports ask for, as a ZooKeeper digest
    /// `user:base64(sha1(user:password))`.
    #[arg(long, value_name = "USER:DIGEST")]
    pub admin_auth: Option<String>,
    /// Serve the admin and metrics ports over HTTPS, with --tls-cert, --tls-key and
    /// --tls-ca (no client certificate asked for).
    #[arg(long)]
    pub admin_tls: bool,
}

/// An operator's command.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Changes the ensemble's members through a running member's client port, as
    /// `zkCli.sh reconfig` does, and prints the new configuration.
    Reconfig(ReconfigArgs),
    /// Writes a new member's data directory from a ZooKeeper 3.4–3.9 data directory (the
    /// newest valid snapshot and the transaction logs after it), and prints what it read.
    Import(ImportArgs),
}

/// `zkraft-server import`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example (ZooKeeper stopped, or a copy of its directory):\n  \
    zkraft-server import --zk-data-dir /var/lib/zookeeper --data-dir /var/lib/zkraft \\\n      \
    --id 1 --peers 1=zk1:2888,2=zk2:2888,3=zk3:2888\n\
    Then start member 1 with the same --id, --peers and --cluster-id, and the others with\n\
    their empty directories and --join: they catch up from member 1 by snapshot\n\
    (or run the same import for each of them). See docs/migration.md."
)]
pub struct ImportArgs {
    /// ZooKeeper's dataDir (or its version-2 directory).
    #[arg(long, value_name = "DIR")]
    pub zk_data_dir: PathBuf,
    /// ZooKeeper's dataLogDir, when its logs are kept apart from the snapshots.
    #[arg(long, value_name = "DIR")]
    pub zk_log_dir: Option<PathBuf>,
    /// The new member's data directory (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The new member's id.
    #[arg(long)]
    pub id: u64,
    /// Every member of the new ensemble, as `zkraft-server --peers` takes them.
    #[arg(long, value_name = "ID=HOST:PORT,...")]
    pub peers: String,
    /// The new ensemble's cluster id (default "zkraft").
    #[arg(long, default_value = "zkraft")]
    pub cluster_id: String,
    /// Leave out a record cut short at the very end of the last log (a ZooKeeper killed
    /// while writing it; ZooKeeper drops it too) instead of failing.
    #[arg(long)]
    pub drop_torn_tail: bool,
}

impl ImportArgs {
    /// The import these arguments ask for.
    pub fn import(&self) -> Result<zkraft::import::ZooKeeperImport, String> {
        let peers = parse_peers(&self.peers)?;
        let (mut voters, mut learners) = (Vec::new(), Vec::new());
        for (id, spec) in &peers {
            let spec = zkraft::MemberSpec::parse(spec).map_err(|e| format!("peer {id}: {e}"))?;
            if spec.role == zkraft::MemberRole::Observer {
                learners.push(*id);
            } else {
                voters.push(*id);
            }
        }
        let mut import = zkraft::import::ZooKeeperImport::new(
            &self.zk_data_dir,
            &self.data_dir,
            self.id,
            &self.cluster_id,
            voters,
        )
        .learners(learners)
        .drop_torn_tail(self.drop_torn_tail);
        if let Some(dir) = &self.zk_log_dir {
            import = import.log_dir(dir);
        }
        Ok(import)
    }
}

/// `zkraft-server reconfig`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    zkraft-server reconfig --server 127.0.0.1:2181 --auth super:secret \\\n      \
    --add 'server.4=127.0.0.1:2704:0:participant;127.0.0.1:2184'\n  \
    zkraft-server reconfig --server 127.0.0.1:2181 --auth super:secret --remove 3")]
pub struct ReconfigArgs {
    /// A member's client address.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: String,
    /// A server joining: `server.N=HOST:PORT[:PORT][:participant|observer][;[HOST:]PORT]`
    /// (repeat, or separate with commas). A participant catches up as an observer first.
    #[arg(long = "add", value_name = "server.N=SPEC")]
    pub add: Vec<String>,
    /// The id of a server leaving (repeat, or separate with commas). A leader hands its
    /// leadership over first.
    #[arg(long = "remove", value_name = "ID")]
    pub remove: Vec<String>,
    /// The whole new member list instead (`server.N=SPEC,...`, ZooKeeper's
    /// non-incremental form).
    #[arg(long, value_name = "server.N=SPEC,...", conflicts_with_all = ["add", "remove"])]
    pub members: Option<String>,
    /// Only if the configuration is still at this version (hexadecimal, as the last line
    /// of /zookeeper/config shows it).
    #[arg(long, value_name = "HEX")]
    pub from_config: Option<String>,
    /// Digest credentials, `user:password` (the super user's: only it may change the
    /// members).
    #[arg(long, value_name = "USER:PASSWORD")]
    pub auth: Option<String>,
    /// Seconds to wait for the change.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
}

impl ReconfigArgs {
    /// The request these arguments make.
    pub fn request(&self) -> Result<zkraft::Reconfig, String> {
        let join = |v: &[String]| (!v.is_empty()).then(|| v.join(","));
        let from_config = match &self.from_config {
            None => -1,
            Some(hex) => i64::from_str_radix(hex.trim_start_matches("0x"), 16)
                .map_err(|_| format!("--from-config {hex:?} is not a hexadecimal version"))?,
        };
        if self.add.is_empty() && self.remove.is_empty() && self.members.is_none() {
            return Err("nothing to change: give --add, --remove or --members".into());
        }
        Ok(zkraft::Reconfig {
            joining: join(&self.add),
            leaving: join(&self.remove),
            new_members: self.members.clone(),
            from_config,
        })
    }
}

/// The settings a config file may hold: the same names as the flags, with `peers` a table.
///
/// ```toml
/// id = 1
/// data_dir = "/var/lib/zkraft"
/// cluster_id = "prod"
///
/// [peers]
/// 1 = "zk1.internal:2701"
/// 2 = "zk2.internal:2701"
/// 3 = "zk3.internal:2701"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    pub id: Option<u64>,
    pub peers: Option<BTreeMap<String, String>>,
    pub data_dir: Option<PathBuf>,
    pub cluster_id: Option<String>,
    pub bind: Option<String>,
    pub tick_ms: Option<u64>,
    pub election_tick: Option<usize>,
    pub heartbeat_tick: Option<usize>,
    pub snapshot_entries: Option<u64>,
    pub cache_mb: Option<u64>,
    pub log_level: Option<String>,
    pub client_addr: Option<String>,
    #[serde(rename = "4lw_whitelist")]
    pub four_letter_words: Option<String>,
    pub min_session_timeout_ms: Option<u64>,
    pub max_session_timeout_ms: Option<u64>,
    pub max_client_connections: Option<usize>,
    pub max_client_cnxns: Option<usize>,
    pub client_port_listen_backlog: Option<u32>,
    pub container_check_interval_ms: Option<u64>,
    pub super_digest: Option<String>,
    pub join: Option<bool>,
    pub reconfig_enabled: Option<bool>,
    pub read_only_mode: Option<bool>,
    pub secure_client_addr: Option<String>,
    pub peer_tls: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    pub client_auth: Option<String>,
    pub jaas_config: Option<PathBuf>,
    pub sasl_super_user: Option<String>,
    pub metrics_addr: Option<String>,
    pub admin_addr: Option<String>,
    pub admin_peers: Option<String>,
    pub admin_auth: Option<String>,
    pub admin_tls: Option<bool>,
}

/// The PEM files of a member's TLS material.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// The resolved settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub id: u64,
    pub peers: Vec<(u64, String)>,
    pub data_dir: PathBuf,
    pub cluster_id: String,
    pub bind: Option<String>,
    pub tick: Duration,
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    pub snapshot_entries: u64,
    pub cache_mb: u64,
    pub log_level: slog::Level,
    pub client_addr: Option<String>,
    pub four_letter_words: Vec<String>,
    pub session_timeout_bounds: (Duration, Duration),
    pub max_client_connections: Option<usize>,
    pub max_client_cnxns: Option<usize>,
    pub client_port_listen_backlog: Option<u32>,
    pub container_check_interval: Duration,
    pub super_digest: Option<String>,
    pub join: bool,
    pub reconfig_enabled: bool,
    pub read_only_mode: bool,
    pub secure_client_addr: Option<String>,
    pub peer_tls: bool,
    /// The TLS material, when a TLS port needs it.
    pub tls: Option<TlsFiles>,
    pub client_auth: zkraft::ClientAuth,
    pub jaas_config: Option<PathBuf>,
    pub sasl_super_user: Option<String>,
    pub metrics_addr: Option<String>,
    pub admin_addr: Option<String>,
    pub admin_peers: Vec<String>,
    pub admin_auth: Option<String>,
    pub admin_tls: bool,
}

impl Settings {
    /// Flags over the file named by `--config` (if any).
    pub fn resolve(flags: Flags) -> Result<Settings, String> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => File::default(),
        };
        let id = flags.id.or(file.id).ok_or("--id is required")?;
        let peers = match (&flags.peers, &file.peers) {
            (Some(list), _) => parse_peers(list)?,
            (None, Some(table)) => table
                .iter()
                .map(|(k, v)| {
                    k.parse::<u64>()
                        .map(|id| (id, v.clone()))
                        .map_err(|_| format!("peer id {k:?} is not a number"))
                })
                .collect::<Result<_, _>>()?,
            (None, None) => return Err("--peers is required".into()),
        };
        if !peers.iter().any(|(p, _)| *p == id) {
            return Err(format!("--peers must list this server (id {id}) too"));
        }
        let log_level = flags
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| "info".into());
        let log_level = log_level
            .parse::<slog::Level>()
            .map_err(|_| format!("unknown log level {log_level:?}"))?;
        let secure_client_addr = flags.secure_client_addr.or(file.secure_client_addr);
        let peer_tls = flags.peer_tls || file.peer_tls.unwrap_or(false);
        let files = (
            flags.tls_cert.or(file.tls_cert),
            flags.tls_key.or(file.tls_key),
            flags.tls_ca.or(file.tls_ca),
        );
        let tls = match files {
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles { cert, key, ca }),
            (None, None, None) => None,
            _ => return Err("--tls-cert, --tls-key and --tls-ca go together".into()),
        };
        let admin_tls = flags.admin_tls || file.admin_tls.unwrap_or(false);
        if tls.is_none() && (peer_tls || admin_tls || secure_client_addr.is_some()) {
            return Err(
                "--peer-tls, --admin-tls and --secure-client-addr need --tls-cert, --tls-key \
                 and --tls-ca"
                    .into(),
            );
        }
        let admin_auth = flags.admin_auth.or(file.admin_auth);
        if admin_auth.as_deref().is_some_and(|a| !a.contains(':')) {
            return Err("--admin-auth must be user:base64(sha1(user:password))".into());
        }
        let client_auth = match flags.client_auth.or(file.client_auth) {
            Some(a) => a.parse().map_err(|e: zkraft::Error| e.to_string())?,
            None => zkraft::ClientAuth::default(),
        };
        let jaas_config = flags.jaas_config.or(file.jaas_config);
        let sasl_super_user = flags.sasl_super_user.or(file.sasl_super_user);
        if sasl_super_user.is_some() && jaas_config.is_none() {
            return Err("--sasl-super-user needs --jaas-config".into());
        }
        Ok(Settings {
            metrics_addr: flags.metrics_addr.or(file.metrics_addr),
            admin_addr: flags.admin_addr.or(file.admin_addr),
            admin_peers: flags
                .admin_peers
                .or(file.admin_peers)
                .unwrap_or_default()
                .split(',')
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect(),
            admin_auth,
            admin_tls,
            jaas_config,
            sasl_super_user,
            secure_client_addr,
            peer_tls,
            tls,
            client_auth,
            id,
            peers,
            data_dir: flags
                .data_dir
                .or(file.data_dir)
                .ok_or("--data-dir is required")?,
            cluster_id: flags
                .cluster_id
                .or(file.cluster_id)
                .unwrap_or_else(|| "zkraft".into()),
            bind: flags.bind.or(file.bind),
            tick: Duration::from_millis(flags.tick_ms.or(file.tick_ms).unwrap_or(100)),
            election_tick: flags.election_tick.or(file.election_tick).unwrap_or(10),
            heartbeat_tick: flags.heartbeat_tick.or(file.heartbeat_tick).unwrap_or(2),
            snapshot_entries: flags
                .snapshot_entries
                .or(file.snapshot_entries)
                .unwrap_or(100_000),
            cache_mb: flags.cache_mb.or(file.cache_mb).unwrap_or(16),
            log_level,
            client_addr: flags.client_addr.or(file.client_addr),
            four_letter_words: flags
                .four_letter_words
                .or(file.four_letter_words)
                .unwrap_or_else(|| "srvr".into())
                .split(',')
                .map(|w| w.trim().to_string())
                .filter(|w| !w.is_empty())
                .collect(),
            session_timeout_bounds: (
                Duration::from_millis(
                    flags
                        .min_session_timeout_ms
                        .or(file.min_session_timeout_ms)
                        .unwrap_or(4_000),
                ),
                Duration::from_millis(
                    flags
                        .max_session_timeout_ms
                        .or(file.max_session_timeout_ms)
                        .unwrap_or(40_000),
                ),
            ),
            max_client_connections: flags.max_client_connections.or(file.max_client_connections),
            max_client_cnxns: flags.max_client_cnxns.or(file.max_client_cnxns),
            client_port_listen_backlog: flags
                .client_port_listen_backlog
                .or(file.client_port_listen_backlog),
            container_check_interval: Duration::from_millis(
                flags
                    .container_check_interval_ms
                    .or(file.container_check_interval_ms)
                    .unwrap_or(60_000),
            ),
            super_digest: flags.super_digest.or(file.super_digest),
            join: flags.join || file.join.unwrap_or(false),
            read_only_mode: flags.read_only_mode || file.read_only_mode.unwrap_or(false),
            reconfig_enabled: flags
                .reconfig_enabled
                .or(file.reconfig_enabled)
                .unwrap_or(true),
        })
    }
}

fn read_file(path: &Path) -> Result<File, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(list: &str) -> Result<Vec<(u64, String)>, String> {
    let mut out: Vec<(u64, String)> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("peer {item:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("peer id {id:?} is not a number"))?;
        if id == 0 || out.iter().any(|(p, _)| *p == id) {
            return Err(format!("peer id {id} is zero or listed twice"));
        }
        zkraft::MemberSpec::parse(addr).map_err(|e| format!("peer {id}: {e}"))?;
        out.push((id, addr.trim().to_string()));
    }
    if out.is_empty() {
        return Err("no peers given".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        Flags::parse_from(std::iter::once("zkraft-server").chain(args.iter().copied()))
    }

    #[test]
    fn flags_resolve_and_bad_ones_are_refused() {
        let s = Settings::resolve(flags(&[
            "--id",
            "2",
            "--peers",
            "1=a:1,2=b:2,3=c:3",
            "--data-dir",
            "/d",
        ]))
        .unwrap();
        assert_eq!(s.id, 2);
        assert_eq!(s.peers.len(), 3);
        assert_eq!(s.cluster_id, "zkraft");
        assert_eq!(s.log_level, slog::Level::Info);
        for bad in [
            vec!["--peers", "1=a:1", "--data-dir", "/d"],
            vec!["--id", "4", "--peers", "1=a:1", "--data-dir", "/d"],
            vec!["--id", "1", "--peers", "1=a", "--data-dir", "/d"],
            vec!["--id", "1", "--peers", "1=a:1,1=b:2", "--data-dir", "/d"],
            vec!["--id", "1", "--peers", "x=a:1", "--data-dir", "/d"],
            vec!["--id", "1", "--peers", "1=a:1"],
            vec![
                "--id",
                "1",
                "--peers",
                "1=a:1",
                "--data-dir",
                "/d",
                "--log-level",
                "loud",
            ],
        ] {
            assert!(Settings::resolve(flags(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_reconfig_command_makes_zookeepers_request() {
        let Some(Command::Reconfig(args)) = flags(&[
            "reconfig",
            "--server",
            "127.0.0.1:2181",
            "--add",
            "server.4=h:1",
            "--add",
            "server.5=h:2:0:observer",
            "--remove",
            "3",
            "--from-config",
            "1a",
        ])
        .command
        else {
            panic!("not the reconfig command");
        };
        let r = args.request().unwrap();
        assert_eq!(
            r.joining.as_deref(),
            Some("server.4=h:1,server.5=h:2:0:observer")
        );
        assert_eq!(r.leaving.as_deref(), Some("3"));
        assert_eq!((r.new_members, r.from_config), (None, 0x1a));
        let Some(Command::Reconfig(args)) =
            flags(&["reconfig", "--server", "h:1", "--from-config", "zz"]).command
        else {
            panic!("not the reconfig command");
        };
        assert!(
            args.request().is_err(),
            "a bad version, and nothing to change"
        );
        let s = Settings::resolve(flags(&[
            "--id",
            "4",
            "--peers",
            "1=a:1,4=d:4:0:observer;2184",
            "--data-dir",
            "/d",
            "--join",
            "--reconfig-enabled",
            "false",
        ]))
        .unwrap();
        assert!(s.join && !s.reconfig_enabled);
        assert!(Settings::resolve(flags(&[
            "--id",
            "1",
            "--peers",
            "1=a:1:1",
            "--data-dir",
            "/d"
        ]))
        .is_err());
    }

    #[test]
    fn tls_settings_go_together() {
        let base = ["--id", "1", "--peers", "1=a:1", "--data-dir", "/d"];
        let with = |more: &[&str]| {
            let args: Vec<&str> = base.iter().chain(more).copied().collect();
            Settings::resolve(flags(&args))
        };
        let files = [
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-ca",
            "ca.pem",
        ];
        let s = with(
            &[
                &files[..],
                &["--peer-tls", "--secure-client-addr", "h:2281"],
            ]
            .concat(),
        )
        .unwrap();
        assert!(s.peer_tls);
        assert_eq!(s.secure_client_addr.as_deref(), Some("h:2281"));
        assert_eq!(s.tls.unwrap().ca, PathBuf::from("ca.pem"));
        assert_eq!(s.client_auth, zkraft::ClientAuth::Need);
        let s = with(&[&files[..], &["--client-auth", "want"]].concat()).unwrap();
        assert_eq!(s.client_auth, zkraft::ClientAuth::Want);
        for bad in [
            vec!["--peer-tls"],
            vec!["--secure-client-addr", "h:2281"],
            vec!["--tls-cert", "c.pem", "--peer-tls"],
            [&files[..], &["--client-auth", "maybe"]].concat(),
        ] {
            assert!(with(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_config_file_works_and_flags_win_over_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zkraft.toml");
        std::fs::write(
            &path,
            "id = 1\ndata_dir = \"/var/z\"\ncluster_id = \"prod\"\ntick_ms = 50\n\
             [peers]\n1 = \"h1:2701\"\n2 = \"h2:2701\"\n3 = \"h3:2701\"\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let s = Settings::resolve(flags(&["--config", p])).unwrap();
        assert_eq!((s.id, s.cluster_id.as_str()), (1, "prod"));
        assert_eq!(s.tick, Duration::from_millis(50));
        assert_eq!(s.peers[2], (3, "h3:2701".to_string()));
        let s = Settings::resolve(flags(&["--config", p, "--id", "3"])).unwrap();
        assert_eq!(s.id, 3);
        std::fs::write(&path, "id = 1\nunknown = 2\n").unwrap();
        assert!(Settings::resolve(flags(&["--config", p])).is_err());
    }

    #[test]
    fn import_takes_the_ensemble_from_the_peers() {
        let flags = Flags::try_parse_from([
            "zkraft-server",
            "import",
            "--zk-data-dir",
            "/var/lib/zookeeper",
            "--data-dir",
            "/var/lib/zkraft",
            "--id",
            "1",
            "--peers",
            "1=a:1,2=b:2,3=c:3:0:observer",
            "--drop-torn-tail",
        ])
        .unwrap();
        let Some(Command::Import(args)) = flags.command else {
            panic!("not an import: {flags:?}");
        };
        let import = format!("{:?}", args.import().unwrap());
        for part in [
            "voters: [1, 2]",
            "learners: [3]",
            "drop_torn_tail: true",
            "id: 1,",
        ] {
            assert!(import.contains(part), "{import} lacks {part}");
        }
        let bad = ImportArgs {
            peers: "1=nowhere".into(),
            ..args
        };
        assert!(bad.import().is_err());
    }
}
