//! Opening a replica: its configuration checked, its data directory opened and recovered
//! (raft log, tree, members), its raft node made; then, once the layer above is set as
//! its observer, joined to the transport and ticking.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8};
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::unbounded;
use parking_lot::{Mutex, RwLock};
use slog::{o, Logger};

use super::driver::Core;
use super::membership::Membership;
use super::{Config, Counters, Msg, Observer, Shared};
use crate::error::{Error, Result};
use crate::member::MemberSpec;
use crate::pool::{Pool, Task};
use crate::storage::{
    check_identity, member_addresses, open_db, open_db_in_memory, Identity, RaftStorage, TreeStore,
};
use crate::transport::tcp::DEFAULT_MAX_FRAME;
use crate::transport::{Inbox, LocalNetwork, TcpTransport, Transport};
use crate::tree::{DataTree, CONFIG_PATH};

/// What a replica is opened from (what [`crate::NodeBuilder`] gathered).
pub(crate) struct Parts {
    /// The configuration, checked by [`open`].
    pub(crate) config: Config,
    /// The transport; none: a TCP one for `members`, or a private in-process one.
    pub(crate) transport: Option<Arc<dyn Transport>>,
    /// The pool; none: a private one of two workers.
    pub(crate) pool: Option<Pool>,
    /// The logger; none: discard.
    pub(crate) logger: Option<Logger>,
    /// Every member's peer address, for a TCP transport made here.
    pub(crate) members: Vec<(u64, String)>,
    /// Where that TCP transport listens, when not this node's own entry.
    pub(crate) listen: Option<SocketAddr>,
    /// TLS on that TCP transport.
    pub(crate) peer_tls: Option<crate::TlsConfig>,
}

/// A replica recovered and not yet running: [`Opened::run`] starts it once its observer
/// is set.
pub(crate) struct Opened {
    /// The replica.
    pub(crate) shared: Arc<Shared>,
    /// The pool it runs on (owned by the node when it was made here).
    pub(crate) pool: Pool,
    /// The TCP transport made for `members`, closed with the node.
    pub(crate) tcp: Option<TcpTransport>,
}

/// Opens (or creates) the data directory and recovers the raft log and the tree.
///
/// Refused with [`Error::Config`]: an invalid configuration, and a data directory recorded
/// for another node id or cluster id. A voter list that differs from the one persisted in
/// the directory is not an error: the persisted one is used (it is the ensemble's
/// replicated configuration) and a warning is logged.
pub(crate) fn open(parts: Parts) -> Result<Opened> {
    let Parts {
        config,
        transport,
        pool,
        logger,
        members,
        listen,
        peer_tls,
    } = parts;
    let mut config = config;
    config.validate()?;
    let logger = logger
        .unwrap_or_else(|| Logger::root(slog::Discard, o!()))
        .new(o!("node" => config.id));
    // Each member's spec: `host:port`, or ZooKeeper's `host:port:port:role;client`.
    let mut specs = BTreeMap::new();
    for (id, text) in &members {
        let spec =
            MemberSpec::parse(text).map_err(|e| Error::Config(format!("member {id}: {e}")))?;
        specs.insert(*id, spec);
    }
    if peer_tls.is_some() && (transport.is_some() || specs.is_empty()) {
        return Err(Error::Config(
            "peer TLS is for the TCP transport made from the members: give the members, \
             not a transport (or give the transport its own TLS)"
                .into(),
        ));
    }
    let mut owned_tcp = None;
    let transport = match transport {
        Some(t) => t,
        None if !specs.is_empty() => {
            let tcp = tcp_transport(&config, &specs, listen, peer_tls, &logger)?;
            owned_tcp = Some(tcp.clone());
            Arc::new(tcp)
        }
        None => Arc::new(LocalNetwork::new()),
    };
    let pool = match pool {
        Some(pool) => pool,
        None => Pool::new(2)?,
    };

    let db = if config.in_memory {
        open_db_in_memory(&config.data_dir)?
    } else {
        open_db(&config.data_dir)?
    };
    if check_identity(&db, config.id, &config.cluster_id)? == Identity::Adopted {
        slog::warn!(logger, "data directory had no recorded identity: adopting this one";
            "cluster" => &config.cluster_id);
    }
    let (initial_voters, initial_learners) = if config.join {
        (Vec::new(), Vec::new())
    } else {
        (config.voters.clone(), config.learners.clone())
    };
    let storage = RaftStorage::open(
        db.clone(),
        (&initial_voters, &initial_learners),
        config.durable_writes,
    )?;
    let persisted = storage.conf_state().voters;
    let (mut want, mut have) = (config.voters.clone(), persisted.clone());
    want.sort_unstable();
    have.sort_unstable();
    if config.join {
        config.voters = persisted;
    } else if want != have {
        slog::warn!(logger, "configured voters differ from the persisted configuration; \
            using the persisted one"; "configured" => ?config.voters, "persisted" => ?persisted);
        config.voters = persisted;
    }
    config.learners = storage.conf_state().learners;
    let tree_store = TreeStore::new(db.clone())?.with_cache(config.cache_bytes);
    let (mut tree, applied) = tree_store.load()?;
    // A new ensemble starts from its bootstrap snapshot: the fresh tree is the state
    // after it, whether or not a first apply batch wrote it out yet.
    let applied = applied.max(storage.first() - 1);
    tree.set_zxid(applied);
    // A snapshot half-received before a restart is of no use: free its space.
    tree_store.clear_staging()?;
    storage.set_applied(applied);
    if storage.first() == 1 && applied > 0 {
        // A directory from before bootstrap snapshots: its log starts at index 1,
        // where no entry holds the initial voters. Compacting to the applied index
        // makes any member added later catch up through a snapshot, which does.
        storage.compact(applied)?;
        slog::info!(logger, "compacted a log that started at index 1"; "through" => applied);
    }
    // Members added by configuration changes since the ensemble was bootstrapped.
    for (id, text) in member_addresses(&db)? {
        match MemberSpec::parse(&text) {
            Ok(spec) => {
                transport.peer_added(id, &spec.peer_addr())?;
                specs.insert(id, spec);
            }
            Err(e) => slog::warn!(logger, "recorded member spec unreadable: ignored";
                "member" => id, "spec" => &text, "error" => %e),
        }
    }
    let hs = storage.hard_state();
    slog::info!(logger, "recovered";
        "applied" => applied, "commit" => hs.commit, "term" => hs.term,
        "first_index" => storage.first(), "last_index" => storage.last(), "znodes" => tree.len(),
        "voters" => ?storage.conf_state().voters);
    let single = storage.conf_state().voters == [config.id];
    let mut raw = raft::RawNode::new(&config.raft_config(applied), storage, &logger)?;
    if single {
        // Alone in the ensemble: no reason to wait an election timeout.
        raw.campaign()?;
    }
    let log_first_index = raw.store().first();
    let cs = raw.store().conf_state();
    let membership = Membership {
        voters: cs.voters,
        learners: cs.learners,
        specs,
        version: config_version(&tree),
    };
    // `/zookeeper/config` shows the configuration as this member knows its members'
    // addresses (written with the next apply batch; rendered again at every start).
    // Its mtime stays the one the last configuration change gave it (0 before any):
    // members opening at different times still hold the same znode.
    let (mtime, text) = (
        tree.get(CONFIG_PATH).map_or(0, |n| n.mtime),
        membership.configuration().render(),
    );
    tree.set_config(membership.version as i64, mtime, text.into_bytes(), false);
    let core = Core::new(raw, tree_store, applied, &config);

    let (mailbox, inbox) = unbounded::<Msg>();
    let incarnation = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ u64::from(std::process::id()).rotate_left(48);
    let (answers, answer_thread) = super::answers::start(config.id, logger.clone())?;
    let shared = Arc::new_cyclic(|me: &Weak<Shared>| Shared {
        id: config.id,
        config: config.clone(),
        logger,
        tree: RwLock::new(tree),
        role: AtomicU8::new(0),
        leader: AtomicU64::new(0),
        term: AtomicU64::new(hs.term),
        applied: AtomicU64::new(applied),
        mailbox,
        inbox,
        scheduled: AtomicBool::new(false),
        ticks_due: AtomicU32::new(0),
        core: Mutex::new(Some(core)),
        pool: pool.reference(),
        transport: transport.clone(),
        registration: Mutex::new(None),
        stopped: AtomicBool::new(false),
        incarnation,
        next_request: AtomicU64::new(1),
        counters: Counters {
            log_first_index: AtomicU64::new(log_first_index),
            ..Counters::default()
        },
        answers,
        _answer_thread: answer_thread,
        keeper: super::keeper::Keeper::new(&config),
        observer: std::sync::OnceLock::new(),
        membership: Mutex::new(membership),
        backlog_bytes: Default::default(),
        backlog_envelopes: Default::default(),
        me: me.clone(),
        on_shutdown: Mutex::new(Vec::new()),
    });
    Ok(Opened {
        shared,
        pool,
        tcp: owned_tcp,
    })
}

impl Opened {
    /// Tells `observer` of the replicated state from the first entry applied, joins the
    /// transport and starts ticking; returns the tick timer's id.
    pub(crate) fn run(&self, observer: Weak<dyn Observer>) -> Result<u64> {
        let shared = &self.shared;
        let config = shared.config().clone();
        shared.set_observer(observer);
        let weak = Arc::downgrade(shared);
        let weak_report = weak.clone();
        let weak_lost = weak.clone();
        let inbox = Inbox::new(move |env| {
            if let Some(s) = weak.upgrade() {
                s.deliver(env);
            }
        })
        .on_unreachable(move |peer| {
            if let Some(s) = weak_report.upgrade() {
                let _ = s.post(Msg::Unreachable(peer));
            }
        })
        .on_peer_lost(move |peer| {
            if let Some(s) = weak_lost.upgrade() {
                let _ = s.post(Msg::PeerLost(peer));
            }
        });
        shared.keeper.start(Arc::downgrade(shared), &config)?;
        shared.transport.register(config.id, inbox.clone())?;
        *shared.registration.lock() = Some(inbox);
        let task: Arc<dyn Task> = shared.clone();
        let timer = shared
            .pool
            .add_timer(Arc::downgrade(&task), config.tick_interval);
        drop(task);
        shared.wake();
        Ok(timer)
    }
}

/// The TCP transport of [`NodeBuilder::members`](crate::NodeBuilder::members).
/// The version of the configuration `tree` shows: the zxid of the change that wrote
/// `/zookeeper/config` (0 before any).
pub(crate) fn config_version(tree: &DataTree) -> u64 {
    tree.get(CONFIG_PATH)
        .map(|n| u64::try_from(n.mzxid).unwrap_or(0))
        .unwrap_or(0)
}

fn tcp_transport(
    config: &Config,
    members: &BTreeMap<u64, MemberSpec>,
    listen: Option<SocketAddr>,
    tls: Option<crate::TlsConfig>,
    logger: &Logger,
) -> Result<TcpTransport> {
    let listen = match listen {
        Some(addr) => addr,
        None => {
            let own = members
                .get(&config.id)
                .ok_or_else(|| Error::Config(format!("members must include node {}", config.id)))?
                .peer_addr();
            own.to_socket_addrs()
                .map_err(|e| Error::Config(format!("address {own:?}: {e}")))?
                .next()
                .ok_or_else(|| Error::Config(format!("address {own:?} resolves to nothing")))?
        }
    };
    // One frame carries at least one whole request, with room for raft's own fields.
    let max_frame = DEFAULT_MAX_FRAME.max(config.max_request_size.saturating_mul(2));
    let mut builder = TcpTransport::builder(config.id, &config.cluster_id, listen)
        .max_frame(max_frame)
        .logger(logger.clone());
    if let Some(tls) = tls {
        builder = builder.tls(tls);
    }
    let tcp = builder.bind()?;
    for (id, spec) in members {
        if *id != config.id {
            tcp.add_peer(*id, &spec.peer_addr())?;
        }
    }
    Ok(tcp)
}
