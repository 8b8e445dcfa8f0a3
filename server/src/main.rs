//! `zkraft-server`: one member of a zkraft ensemble as a standalone process, for those who
//! run ZooKeeper-style servers rather than embedding a node.
//!
//! It starts a [`zkraft::Node`] on a TCP transport to its peers, logs through slog to
//! stderr (raft-rs's own lines included: role changes show at the default level), and
//! shuts down cleanly on SIGTERM or SIGINT. It serves ZooKeeper's client protocol on
//! `--client-addr`.
//!
//! On Linux with glibc the whole process allocates through jemalloc: Rust's allocations and
//! RocksDB's (its `malloc` is replaced). glibc's per-thread arenas kept as much memory free
//! as in use under a create load (docs/performance.md, "The tree in RocksDB").

mod config;

#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read at its first allocation (the `MALLOC_CONF` environment
/// variable, read after them, overrides any): freed pages go back to the system within a
/// second, from a background thread, and one arena serves every thread (the threads'
/// caches serve most allocations; with more arenas, each kept freed pages of its own).
/// Pages returned at once (`dirty_decay_ms:0`) saved a fifth of the RSS under a create
/// load, but cost about 5 % of the create rate with 100-byte znodes and more than a
/// quarter with 1 KiB ones (docs/performance.md).
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[export_name = "malloc_conf"]
pub static MALLOC_CONF: &[u8; 70] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1\0";

use std::process::ExitCode;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use slog::{o, Drain, Logger};

use config::{Command, Flags, ImportArgs, ReconfigArgs, Settings};

fn main() -> ExitCode {
    let mut flags = Flags::parse();
    match flags.command.take() {
        Some(Command::Reconfig(args)) => return reconfig(&args),
        Some(Command::Import(args)) => return import(&args),
        None => {}
    }
    let settings = match Settings::resolve(flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("zkraft-server: {e}");
            return ExitCode::from(2);
        }
    };
    let decorator = slog_term::TermDecorator::new().stderr().build();
    let drain = slog_term::FullFormat::new(decorator).build().fuse();
    let (drain, guard) = slog_async::Async::new(drain)
        .chan_size(4096)
        .build_with_guard();
    let drain = slog::LevelFilter::new(drain.fuse(), settings.log_level).fuse();
    let logger = Logger::root(drain, o!());
    let code = match run(&settings, &logger) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            slog::crit!(logger, "zkraft-server stopped"; "error" => %e);
            ExitCode::FAILURE
        }
    };
    drop(logger);
    drop(guard); // flushes the log
    code
}

/// `zkraft-server reconfig`: the change through a member's client port; prints the new
/// configuration (`/zookeeper/config`).
fn reconfig(args: &ReconfigArgs) -> ExitCode {
    let request = match args.request() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zkraft-server reconfig: {e}");
            return ExitCode::from(2);
        }
    };
    let timeout = std::time::Duration::from_secs(args.timeout_secs.max(1));
    match zkraft::operator::reconfig(&args.server, args.auth.as_deref(), &request, timeout) {
        Ok((config, _)) => {
            println!("{config}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zkraft-server reconfig: {e} (ZooKeeper code {})", e.code());
            ExitCode::FAILURE
        }
    }
}

fn import(args: &ImportArgs) -> ExitCode {
    let import = match args.import() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("zkraft-server import: {e}");
            return ExitCode::from(2);
        }
    };
    match import.run() {
        Ok(r) => {
            for (file, why) in &r.skipped_snapshots {
                eprintln!("zkraft-server import: skipped {}: {why}", file.display());
            }
            if let Some((file, at)) = &r.torn_tail {
                eprintln!(
                    "zkraft-server import: dropped the torn record at offset {at} of {}",
                    file.display()
                );
            }
            println!("snapshot: {}", r.snapshot.display());
            for log in &r.logs {
                println!("log: {}", log.display());
            }
            println!(
                "transactions replayed: {}\nlast zxid: {:#x}\nznodes: {}\nsessions: {}\n\
                 ephemerals of ended sessions dropped: {}\nwritten: {} (member {}, raft index {:#x}, term {})",
                r.transactions,
                r.last_zxid,
                r.znodes,
                r.sessions,
                r.orphan_ephemerals,
                args.data_dir.display(),
                args.id,
                r.last_zxid,
                r.term
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zkraft-server import: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(settings: &Settings, logger: &Logger) -> Result<(), Box<dyn std::error::Error>> {
    // Signals are caught from the start, so one arriving during recovery still stops the
    // server cleanly once it is up.
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let mut builder = zkraft::Node::builder(settings.id)
        .cluster_id(&settings.cluster_id)
        .members(settings.peers.iter().cloned())
        .data_dir(&settings.data_dir)
        .tick_interval(settings.tick)
        .election_tick(settings.election_tick)
        .heartbeat_tick(settings.heartbeat_tick)
        .snapshot_entries(settings.snapshot_entries)
        .reconfig_enabled(settings.reconfig_enabled)
        .cache_bytes(settings.cache_mb.saturating_mul(1 << 20))
        .logger(logger.clone());
    if settings.join {
        builder = builder.joining();
    }
    if let Some(bind) = &settings.bind {
        let addr = std::net::ToSocketAddrs::to_socket_addrs(bind)?
            .next()
            .ok_or_else(|| format!("--bind {bind} resolves to nothing"))?;
        builder = builder.listen(addr);
    }
    let resolve = |flag: &str, addr: &Option<String>| -> Result<_, String> {
        match addr {
            Some(a) => std::net::ToSocketAddrs::to_socket_addrs(a)
                .map_err(|e| format!("{flag} {a}: {e}"))?
                .next()
                .map(Some)
                .ok_or_else(|| format!("{flag} {a} resolves to nothing")),
            None => Ok(None),
        }
    };
    let client_addr = resolve("--client-addr", &settings.client_addr)?;
    let secure_client_addr = resolve("--secure-client-addr", &settings.secure_client_addr)?;
    let sasl = match &settings.jaas_config {
        Some(path) => {
            let users = zkraft::SaslConfig::from_jaas_file(path)?;
            Some(match &settings.sasl_super_user {
                Some(name) => users.super_user(name),
                None => users,
            })
        }
        None => None,
    };
    let tls = match &settings.tls {
        Some(f) => Some(zkraft::TlsConfig::from_pem_files(&f.cert, &f.key, &f.ca)?),
        None => None,
    };
    if settings.peer_tls {
        if let Some(tls) = &tls {
            builder = builder.peer_tls(tls.clone());
        }
    }
    let (min, max) = settings.session_timeout_bounds;
    builder = builder
        .session_timeout_bounds(min, max)
        .reap_interval(settings.container_check_interval);
    if let Some(d) = &settings.super_digest {
        builder = builder.super_digest(d.clone());
    }
    let node = builder.start()?;
    // The client ports, plain and TLS: front ends on the node, stopped first when the node
    // shuts down.
    let client_port = |addr| {
        let mut port = zkraft::ClientPort::builder(addr)
            .four_letter_words(settings.four_letter_words.iter().cloned())
            .read_only_mode(settings.read_only_mode);
        if let Some(n) = settings.max_client_cnxns {
            port = port.max_connections_per_address(n);
        }
        if let Some(n) = settings.max_client_connections {
            port = port.max_connections(n);
        }
        if let Some(n) = settings.client_port_listen_backlog {
            port = port.listen_backlog(n);
        }
        if let Some(users) = &sasl {
            port = port.sasl(users.clone());
        }
        port
    };
    let port = match client_addr {
        Some(addr) => Some(client_port(addr).start(&node)?),
        None => None,
    };
    let secure_port = match (secure_client_addr, &tls) {
        (Some(addr), Some(tls)) => Some(
            client_port(addr)
                .tls(tls.clone(), settings.client_auth)
                .start(&node)?,
        ),
        _ => None,
    };
    // The metrics and admin ports (one kind of port: /metrics, /commands, the page):
    // front ends too, stopped before the node.
    let admin_port = |flag: &str,
                      addr: &Option<String>,
                      metrics_only: bool|
     -> Result<_, Box<dyn std::error::Error>> {
        let Some(addr) = resolve(flag, addr)? else {
            return Ok(None);
        };
        let mut admin = zkraft_admin::AdminPort::builder(addr)
            .logger(logger.clone())
            .peers(settings.admin_peers.iter().cloned());
        if metrics_only {
            admin = admin.metrics_only();
        }
        if let Some(digest) = &settings.admin_auth {
            admin = admin.credentials(digest.clone());
        }
        if settings.admin_tls {
            if let Some(tls) = &tls {
                admin = admin.tls(tls.clone(), zkraft::ClientAuth::None);
            }
        }
        Ok(Some(admin.start(&node)?))
    };
    let metrics = admin_port("--metrics-addr", &settings.metrics_addr, true)?;
    let admin = admin_port("--admin-addr", &settings.admin_addr, false)?;
    let addr_of = |p: &Option<zkraft::ClientPort>| {
        p.as_ref()
            .map(|p| p.local_addr().to_string())
            .unwrap_or_default()
    };
    slog::info!(logger, "zkraft-server running";
        "id" => settings.id, "cluster" => &settings.cluster_id,
        "data_dir" => settings.data_dir.display().to_string(),
        "peers" => format!("{:?}", settings.peers),
        "peer_tls" => settings.peer_tls,
        "client_addr" => addr_of(&port),
        "secure_client_addr" => addr_of(&secure_port),
        "metrics_addr" => metrics.as_ref().map(|m| m.local_addr().to_string()).unwrap_or_default(),
        "admin_addr" => admin.as_ref().map(|m| m.local_addr().to_string()).unwrap_or_default());
    let signal = signals.forever().next().unwrap_or(SIGTERM);
    let name = if signal == SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    slog::info!(logger, "shutting down"; "signal" => name,
        "applied" => node.applied_index(), "digest" => %node.digest());
    for port in metrics.iter().chain(&admin) {
        port.stop();
    }
    node.shutdown();
    slog::info!(logger, "stopped");
    Ok(())
}
