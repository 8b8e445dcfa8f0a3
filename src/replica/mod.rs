//! The replica: one member's raft driver, mailbox, storage and snapshots, and the tree
//! they keep (`Shared`). It offers the layers above propose (unordered, or numbered in a
//! session's order), ReadIndex, read access to the tree, status and metrics, and tells
//! the layer above of applied entries through one narrow [`Observer`]; it knows no
//! session, watch or connection.
//!
//! Writes become [`Command`]s sent to the mailbox, proposed to raft by the driver (see
//! `driver`), and answered when the committed entry has been applied *on this node*;
//! callbacks of pipelined requests run on the answer thread (`answers`), off the driver.

mod answers;
mod config;
mod driver;
mod keeper;
mod membership;
mod metrics;
mod observer;
mod open;
mod session_tracker;
mod snapshot;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};
use slog::Logger;

pub use config::{
    Config, CATCH_UP_ENTRIES, DEFAULT_MAX_REQUEST_SIZE, MAX_CLUSTER_ID_LEN, MAX_ELECTION_TICK,
    MAX_REQUEST_SIZE_LIMIT, MAX_TICK_INTERVAL,
};
pub(crate) use membership::MemberChange;
pub(crate) use observer::Observer;
pub(crate) use open::{open, Parts};

use crate::acl::{self, Id};
use crate::command::{Command, Op};
use crate::completion::{completion, Completer, Completion};
use crate::error::{Error, Result};
use crate::path;
use crate::pool::{PoolRef, Task};
use crate::time::{deadline_after, now_ms};
use crate::transport::{Envelope, Inbox, Transport};
use crate::tree::{DataTree, OpResult};
use driver::Core;
use metrics::Counters;
pub use metrics::{FollowerProgress, Metrics, PeerTraffic};

/// The raft role a node currently plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Follows a leader (or has not heard from one yet).
    Follower,
    /// Checking whether it could win an election (raft pre-vote).
    PreCandidate,
    /// Campaigning for leadership.
    Candidate,
    /// Leads the ensemble: orders every write.
    Leader,
    /// Receives the log and serves reads, sessions and watches; forwards writes; never
    /// votes (a raft learner: ZooKeeper's observer).
    Observer,
}

impl Role {
    fn from_u8(v: u8) -> Role {
        match v {
            1 => Role::PreCandidate,
            2 => Role::Candidate,
            3 => Role::Leader,
            _ => Role::Follower,
        }
    }
    fn from_raft(r: raft::StateRole) -> u8 {
        match r {
            raft::StateRole::Follower => 0,
            raft::StateRole::PreCandidate => 1,
            raft::StateRole::Candidate => 2,
            raft::StateRole::Leader => 3,
        }
    }
}

/// A replica's digest of its tree and sessions at its applied index (ZooKeeper 3.6's
/// digest): two replicas with the same `index` hold the same state exactly when their
/// `value`s agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest {
    /// The applied index the digest describes.
    pub index: u64,
    /// The digest.
    pub value: u64,
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}@{}", self.value, self.index)
    }
}

/// Most bytes of envelopes from peers waiting in one node's mailbox.
pub const MAX_PEER_BACKLOG_BYTES: usize = 256 * 1024 * 1024;
/// Most envelopes from peers waiting in one node's mailbox.
pub const MAX_PEER_BACKLOG_ENVELOPES: usize = 65_536;
/// What an envelope counts for beyond its payload.
const ENVELOPE_OVERHEAD: usize = 128;

/// Whether a peer envelope of `cost` bytes fits a backlog of `bytes` in `count`
/// envelopes. An empty backlog takes any one envelope (the frame limit bounds it).
fn backlog_admits(bytes: usize, count: usize, cost: usize) -> bool {
    count == 0
        || (bytes.saturating_add(cost) <= MAX_PEER_BACKLOG_BYTES
            && count < MAX_PEER_BACKLOG_ENVELOPES)
}

/// What travels through a node's mailbox to its driver.
pub(crate) enum Msg {
    /// From another node.
    Envelope(Envelope),
    /// From a caller on this node, who waits for the reply.
    Request(Request),
    /// From the transport: a peer could not be reached.
    Unreachable(u64),
    /// From the transport: a peer's connection was closed or reset by its end, or
    /// refused (its process looks gone).
    PeerLost(u64),
    /// From a snapshot transfer's thread: it finished, or failed.
    SnapshotDone { to: u64, transfer: u64, ok: bool },
    /// From the keeper (`keeper`): a housekeeping command to propose if this node still
    /// leads (an expiry, a reap).
    Housekeeping(Op),
}

/// A caller's request to the driver.
pub(crate) enum Request {
    /// Propose an encoded command; reply once it is applied here.
    Propose {
        request_id: u64,
        data: Vec<u8>,
        /// The session and host epoch it was numbered in (see `DataTree::apply_ordered`).
        order: Option<(i64, u64)>,
        deadline: Instant,
        reply: Completer<OpResult>,
    },
    /// Run a ReadIndex round; reply once the read index is applied here.
    ReadIndex {
        request_id: u64,
        deadline: Instant,
        reply: Completer<u64>,
    },
    /// Propose a configuration change; reply once it is applied here.
    ConfChange {
        request_id: u64,
        change: raft::eraftpb::ConfChange,
        deadline: Instant,
        reply: Completer<()>,
    },
}

impl Request {
    /// When the caller stops waiting.
    pub(crate) fn deadline(&self) -> Instant {
        match self {
            Request::Propose { deadline, .. }
            | Request::ReadIndex { deadline, .. }
            | Request::ConfChange { deadline, .. } => *deadline,
        }
    }

    /// Drops the request without completing it (see [`Completer::forget`]).
    fn forget(self) {
        match self {
            Request::Propose { reply, .. } => reply.forget(),
            Request::ReadIndex { reply, .. } => reply.forget(),
            Request::ConfChange { reply, .. } => reply.forget(),
        }
    }

    /// The session and host epoch of a write numbered in its session's order.
    pub(crate) fn order(&self) -> Option<(i64, u64)> {
        match self {
            Request::Propose { order, .. } => *order,
            _ => None,
        }
    }

    /// Answers the caller with an error.
    pub(crate) fn fail(self, e: Error) {
        match self {
            Request::Propose { reply, .. } => reply.complete(Err(e)),
            Request::ReadIndex { reply, .. } => reply.complete(Err(e)),
            Request::ConfChange { reply, .. } => reply.complete(Err(e)),
        }
    }
}

impl Msg {
    fn fail(self, e: Error) {
        if let Msg::Request(r) = self {
            r.fail(e);
        }
    }

    /// Bytes this message brings into the driver (proposed commands, replicated entries),
    /// counted against the driver's per-round budget.
    pub(crate) fn cost(&self) -> usize {
        match self {
            Msg::Request(Request::Propose { data, .. }) => data.len(),
            Msg::Envelope(Envelope::Raft(crate::transport::RaftMessage(m))) => {
                m.entries.iter().map(|e| e.data.len()).sum::<usize>()
                    + m.get_snapshot().get_data().len()
            }
            Msg::Envelope(Envelope::SnapshotChunk { data, .. }) => data.len(),
            _ => 0,
        }
    }
}

/// Where a session's write stands in the session's order, as its host numbered it (see
/// `DataTree::apply_ordered`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ordered {
    /// The session.
    pub(crate) session: i64,
    /// The host's epoch of the session's order.
    pub(crate) epoch: u64,
    /// The write's number within the epoch, from 1.
    pub(crate) seq: u64,
}

/// State shared between a node's API handle, its driver and its transport inbox.
pub(crate) struct Shared {
    id: u64,
    config: Config,
    logger: Logger,
    tree: RwLock<DataTree>,
    role: AtomicU8,
    leader: AtomicU64,
    term: AtomicU64,
    applied: AtomicU64,
    mailbox: Sender<Msg>,
    inbox: Receiver<Msg>,
    scheduled: AtomicBool,
    ticks_due: AtomicU32,
    core: Mutex<Option<Core>>,
    pool: PoolRef,
    transport: Arc<dyn Transport>,
    /// This node's registration on the transport, released once, by this node only.
    registration: Mutex<Option<Inbox>>,
    stopped: AtomicBool,
    incarnation: u64,
    next_request: AtomicU64,
    counters: Counters,
    /// Runs the callbacks of pipelined requests, off the driver.
    answers: answers::Answers,
    /// The thread behind `answers` (detached when the node is dropped).
    _answer_thread: answers::AnswerThread,
    /// Housekeeping off the driver: heartbeats, the leader's expiry scan, reaping.
    keeper: keeper::Keeper,
    /// The layer above (the host: sessions hosted here and their watches), which the
    /// driver tells of the replicated state through [`Observer`] only. Set once, right
    /// after the replica is made and before it runs; held weakly, since the host holds
    /// the replica (references point down only).
    observer: std::sync::OnceLock<Weak<dyn Observer>>,
    /// The configuration applied here.
    membership: Mutex<membership::Membership>,
    /// Bytes and number of peer envelopes in the mailbox (see [`Shared::deliver`]).
    backlog_bytes: std::sync::atomic::AtomicUsize,
    backlog_envelopes: std::sync::atomic::AtomicUsize,
    me: Weak<Shared>,
    /// What the front ends started on this node (a client port) stop with: run first by
    /// [`Node::shutdown`], before the node stops.
    pub(crate) on_shutdown: Mutex<Vec<Box<dyn FnOnce() + Send>>>,
}

impl Shared {
    /// A completer calling `f` with the answer on the node's answer thread (see
    /// `answers`): whoever completes it — the driver, most often — only hands it over.
    /// Dropped unused (its request was dropped on an error path), it calls `f` with
    /// `Shutdown`: no pipelined request is ever left waiting.
    pub(crate) fn callback<T: Send + 'static>(
        &self,
        f: impl FnOnce(Result<T>) + Send + 'static,
    ) -> Completer<T> {
        let answers = self.answers.clone();
        Completer::call(
            move |r| answers.run(Box::new(move || f(r))),
            || Error::Shutdown,
        )
    }

    /// Puts a message in the mailbox and makes sure a worker will run the node.
    /// Hands back a message refused because the node is stopped (nothing was answered:
    /// the caller decides).
    #[allow(clippy::result_large_err)] // handed straight back to the caller, never stored
    fn post(&self, msg: Msg) -> std::result::Result<(), Msg> {
        if self.stopped.load(Ordering::SeqCst) {
            return Err(msg);
        }
        if let Err(e) = self.mailbox.send(msg) {
            return Err(e.into_inner());
        }
        if self.stopped.load(Ordering::SeqCst) {
            // Shutdown may have drained the mailbox between the check above and the send.
            // Drained on a thread of its own: the caller may hold locks (a session's pipe)
            // that the answers of other requests in the mailbox take.
            if let Some(me) = self.me.upgrade() {
                let _ = std::thread::Builder::new()
                    .name("zkraft-drain".into())
                    .spawn(move || me.drain_failed());
            }
            return Ok(());
        }
        self.wake();
        Ok(())
    }

    /// Posts a caller's request; a refusal forgets its completer and is returned.
    fn post_request(&self, r: Request) -> Result<()> {
        match self.post(Msg::Request(r)) {
            Ok(()) => Ok(()),
            Err(Msg::Request(r)) => {
                r.forget();
                Err(Error::Shutdown)
            }
            Err(_) => Err(Error::Shutdown),
        }
    }

    /// Hands an envelope from a peer to the driver, unless this node's backlog of peer
    /// envelopes is full ([`MAX_PEER_BACKLOG_BYTES`], [`MAX_PEER_BACKLOG_ENVELOPES`]): a
    /// peer faster than this node can then not grow its memory without bound. A dropped
    /// envelope is what the network could have lost: raft retransmits, a snapshot
    /// transfer fails and is retried, a session heartbeat comes again.
    pub(crate) fn deliver(&self, env: Envelope) {
        let msg = Msg::Envelope(env);
        let cost = msg.cost().saturating_add(ENVELOPE_OVERHEAD);
        let bytes = self.backlog_bytes.load(Ordering::Acquire);
        let count = self.backlog_envelopes.load(Ordering::Acquire);
        if !backlog_admits(bytes, count, cost) {
            self.counters
                .dropped_envelopes
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.backlog_bytes.fetch_add(cost, Ordering::AcqRel);
        self.backlog_envelopes.fetch_add(1, Ordering::AcqRel);
        let _ = self.post(msg);
    }

    /// The driver took an envelope out of the mailbox.
    pub(crate) fn delivered(&self, msg: &Msg) {
        if let Msg::Envelope(_) = msg {
            let cost = msg.cost().saturating_add(ENVELOPE_OVERHEAD);
            self.backlog_bytes.fetch_sub(cost, Ordering::AcqRel);
            self.backlog_envelopes.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Fails everything left in the mailbox of a stopped node.
    fn drain_failed(&self) {
        while let Ok(m) = self.inbox.try_recv() {
            m.fail(Error::Shutdown);
        }
    }

    fn wake(&self) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            if let Some(me) = self.me.upgrade() {
                self.pool.schedule(me);
            }
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Runs `job` on the answer thread (see `answers`), after the callbacks handed over
    /// before it: work an observer must not do on the driver, such as writing out what
    /// an apply queued for a connection.
    pub(crate) fn off_driver(&self, job: Box<dyn FnOnce() + Send>) {
        self.answers.run(job);
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn logger(&self) -> &Logger {
        &self.logger
    }

    pub(crate) fn tree(&self) -> &RwLock<DataTree> {
        &self.tree
    }

    /// What the driver tells of the replicated state: the host above it (or, once the
    /// host is gone, nothing).
    pub(crate) fn observer(&self) -> Arc<dyn Observer> {
        match self.observer.get().and_then(Weak::upgrade) {
            Some(o) => o,
            None => Arc::new(observer::Nobody),
        }
    }

    /// Sets the layer above (once; later calls change nothing).
    pub(crate) fn set_observer(&self, observer: Weak<dyn Observer>) {
        let _ = self.observer.set(observer);
    }

    /// The leader this node follows (0: none known).
    pub(crate) fn leader_id(&self) -> u64 {
        self.leader.load(Ordering::Acquire)
    }

    /// Registers `stop`, run first when the node shuts down (a front end's own stop).
    pub(crate) fn on_shutdown(&self, stop: Box<dyn FnOnce() + Send>) {
        self.on_shutdown.lock().push(stop);
    }

    /// Index of the last entry applied here (the zxid answers carry).
    pub(crate) fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// The raft role this node plays now.
    pub(crate) fn role(&self) -> Role {
        match Role::from_u8(self.role.load(Ordering::Acquire)) {
            Role::Follower if self.membership.lock().learners.contains(&self.id) => Role::Observer,
            role => role,
        }
    }

    /// The voters as this node has applied them, sorted.
    pub(crate) fn voters(&self) -> Vec<u64> {
        let mut v = self.membership.lock().voters.clone();
        v.sort_unstable();
        v
    }

    /// How many voters the ensemble has.
    pub(crate) fn voter_count(&self) -> usize {
        self.membership.lock().voters.len()
    }

    /// Whether this node is in the configuration it has applied (a voter or an
    /// observer): not before a joining node is added, nor after it is removed.
    pub(crate) fn is_member(&self) -> bool {
        self.membership.lock().contains(self.id)
    }

    /// The digest of the tree and sessions at the applied index (see [`Digest`]).
    pub(crate) fn digest(&self) -> Digest {
        let tree = self.tree.read();
        Digest {
            index: tree.zxid(),
            value: tree.digest(),
        }
    }

    /// The configuration as this node has applied it (what `/zookeeper/config` shows).
    pub(crate) fn configuration(&self) -> crate::member::Configuration {
        self.membership.lock().configuration()
    }

    /// Every member with its role, and its spec when known.
    pub(crate) fn roster(
        &self,
    ) -> Vec<(
        u64,
        crate::member::MemberRole,
        Option<crate::member::MemberSpec>,
    )> {
        self.membership.lock().roster()
    }

    /// The node is stopping: the host ends the local side of every session it hosts.
    /// The sessions stay in the replicated state until the leader expires them, as after
    /// a crash.
    fn end_hosted_sessions(&self) {
        self.observer().stopping();
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    pub(crate) fn check_running(&self) -> Result<()> {
        if self.stopped.load(Ordering::SeqCst) {
            Err(Error::Shutdown)
        } else {
            Ok(())
        }
    }

    /// Leaves the transport, if this node is still on it. Only the registration this node
    /// made is released: a newer node with the same id on the same transport stays.
    fn leave_transport(&self) {
        if let Some(inbox) = self.registration.lock().take() {
            self.transport.deregister(self.id, &inbox);
        }
    }

    /// Refuses a request larger than `Config::max_request_size` (see
    /// [`Op::request_size`]): checked first, before anything scans the request.
    pub(crate) fn check_request_size(&self, len: usize) -> Result<()> {
        let max = self.config.max_request_size;
        if len > max {
            return Err(Error::RequestTooLarge { len, max });
        }
        Ok(())
    }

    /// Checks a path a read was given: its size first, then ZooKeeper's rules.
    pub(crate) fn check_read_path(&self, p: &str) -> Result<()> {
        // A read is a request too: header, path, watch flag.
        self.check_request_size(p.len().saturating_add(8 + 4 + 1))?;
        path::validate(p)
    }

    /// Refuses what must not be proposed: bad paths, oversize data, ACLs the state
    /// machine would refuse from a caller holding `auth` (see `acl::fixup`), operations a
    /// caller may not submit (sessions are opened and closed through the session API).
    fn validate_op(&self, op: &Op, top: bool, auth: &[Id]) -> Result<()> {
        match op {
            Op::Create { path: p, mode, .. } if mode.is_sequential() => {
                path::validate_sequential(p)?
            }
            Op::Create { path: p, .. }
            | Op::Delete { path: p, .. }
            | Op::SetData { path: p, .. }
            | Op::Check { path: p, .. } => path::validate(p)?,
            Op::SetAcl { path: p, acl, .. } if top => {
                path::validate(p)?;
                acl::fixup(p, acl, auth)?;
            }
            Op::Multi(ops) if top => {
                for (index, op) in ops.iter().enumerate() {
                    self.validate_op(op, false, auth)
                        .map_err(|e| Error::MultiFailed {
                            index,
                            source: Box::new(e),
                        })?;
                }
            }
            Op::Multi(_) => return Err(Error::BadArguments("multi cannot nest".into())),
            Op::CreateSession { .. } | Op::CloseSession { .. } | Op::MoveSession { .. } if top => {}
            Op::CreateSession { .. }
            | Op::CloseSession { .. }
            | Op::MoveSession { .. }
            | Op::SetAcl { .. }
            | Op::Reap { .. } => {
                return Err(Error::BadArguments("operation not allowed here".into()))
            }
        }
        if let Op::Create { path: p, acl, .. } = op {
            if !acl::is_open(acl) {
                acl::fixup(p, acl, auth)?;
            }
        }
        if let Op::Create { data, .. } | Op::SetData { data, .. } = op {
            let (len, max) = (data.as_ref().map_or(0, Vec::len), self.config.max_data_size);
            if len > max {
                return Err(Error::DataTooLarge { len, max });
            }
        }
        Ok(())
    }

    /// Encodes `op` for `session` (0: none) in session order `order` ((0, 0): unordered)
    /// into a command from this node, on behalf of a caller holding the identities `auth`.
    pub(crate) fn command(
        &self,
        session: i64,
        order: (u64, u64),
        auth: &[Id],
        op: Op,
    ) -> (u64, Vec<u8>) {
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let data = Command {
            origin: self.id,
            incarnation: self.incarnation,
            request_id,
            session,
            time_ms: now_ms(),
            order,
            auth: auth.to_vec(),
            op,
        }
        .encode();
        (request_id, data)
    }

    /// Validates and proposes `op` for no session, as the super user, and waits until it
    /// is committed and applied on this node.
    pub(crate) fn submit(&self, op: Op) -> Result<OpResult> {
        let timeout = self.config.request_timeout;
        let deadline = deadline_after(Instant::now(), timeout);
        let (reply, done) = completion(|| Error::Shutdown);
        self.propose(acl::super_ids(), op, deadline, reply)?;
        wait(&done, deadline, timeout)
    }

    /// Validates `op` and hands it to the driver for no session (unordered), on behalf of
    /// a caller holding the identities `auth`; `reply` hears the outcome once it is
    /// applied here, or why it was not. A refusal before proposing is returned here, and
    /// `reply` hears nothing.
    pub(crate) fn propose(
        &self,
        auth: &[Id],
        op: Op,
        deadline: Instant,
        reply: Completer<OpResult>,
    ) -> Result<()> {
        self.propose_in(auth, op, deadline, reply, None::<fn() -> Ordered>)
    }

    /// Like [`Shared::propose`], for a write of a session: once `op` is valid, `next`
    /// numbers it in the session's order (the host calls this holding its order lock, so
    /// the mailbox, and raft, see a session's writes in the order of their numbers; a
    /// write refused here takes no number).
    pub(crate) fn propose_ordered(
        &self,
        auth: &[Id],
        op: Op,
        deadline: Instant,
        reply: Completer<OpResult>,
        next: impl FnOnce() -> Ordered,
    ) -> Result<()> {
        self.propose_in(auth, op, deadline, reply, Some(next))
    }

    fn propose_in(
        &self,
        auth: &[Id],
        op: Op,
        deadline: Instant,
        reply: Completer<OpResult>,
        next: Option<impl FnOnce() -> Ordered>,
    ) -> Result<()> {
        let checked = self
            .check_running()
            .and_then(|()| self.check_request_size(op.request_size()))
            .and_then(|()| self.validate_op(&op, true, auth));
        if let Err(e) = checked {
            // Refused here: the submitter hears it from the return value, not `reply`.
            reply.forget();
            return Err(e);
        }
        match next.map(|next| next()) {
            None => {
                let (request_id, data) = self.command(0, (0, 0), auth, op);
                self.post_request(Request::Propose {
                    request_id,
                    data,
                    order: None,
                    deadline,
                    reply,
                })?;
            }
            Some(Ordered {
                session,
                epoch,
                seq,
            }) => {
                let (request_id, data) = self.command(session, (epoch, seq), auth, op);
                self.post_request(Request::Propose {
                    request_id,
                    data,
                    order: Some((session, epoch)),
                    deadline,
                    reply,
                })?;
            }
        }
        Ok(())
    }

    /// Makes a membership change and waits until it is applied on this node (see
    /// [`Shared::start_member_change`]).
    pub(crate) fn change_members(&self, change: &MemberChange) -> Result<()> {
        let timeout = self.config.request_timeout;
        let deadline = deadline_after(Instant::now(), timeout);
        let (reply, done) = completion(|| Error::Shutdown);
        self.start_member_change(change, deadline, reply)?;
        wait(&done, deadline, timeout)
    }

    /// Runs a ReadIndex round and waits until the read index is applied locally.
    pub(crate) fn read_index(&self) -> Result<u64> {
        let timeout = self.config.request_timeout;
        let deadline = deadline_after(Instant::now(), timeout);
        let (reply, done) = completion(|| Error::Shutdown);
        self.start_read_index(deadline, reply)?;
        wait(&done, deadline, timeout)
    }

    /// Starts a ReadIndex round; `reply` hears the index once it is applied here.
    pub(crate) fn start_read_index(&self, deadline: Instant, reply: Completer<u64>) -> Result<()> {
        if let Err(e) = self.check_running() {
            reply.forget();
            return Err(e);
        }
        self.post_request(Request::ReadIndex {
            request_id: self.next_request.fetch_add(1, Ordering::Relaxed),
            deadline,
            reply,
        })
    }
}

impl Shared {
    /// The raft term this replica is in.
    pub(crate) fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }

    /// What the replica reports: the driver's counters, raft's state, the traffic to each
    /// peer and the tree's totals (the layers above fill in the rest).
    pub(crate) fn metrics(&self) -> Metrics {
        let mut m = Metrics::default();
        self.counters.fill(&mut m);
        m.role = self.role();
        let leader = self.leader_id();
        m.leader = (leader != raft::INVALID_ID).then_some(leader);
        m.term = self.term();
        m.applied_index = self.applied_index();
        m.peers = self.transport.peer_traffic();
        let tree = self.tree().read();
        m.znode_count = tree.len() as u64;
        m.ephemerals_count = tree.ephemeral_count() as u64;
        m.approximate_data_size = tree.data_size();
        m.global_sessions = tree.sessions().len() as u64;
        m
    }

    /// Stops the replica (its tick timer `timer` removed): the front ends started on it
    /// first (a client port: their connections close, their sessions stay, to be
    /// re-attached on another member or expire), then it leaves the transport, fails
    /// waiting requests with `Shutdown`, and the host ends its hosted sessions (the leader
    /// will expire them, as after a crash). True the first time.
    pub(crate) fn shutdown(&self, timer: u64) -> bool {
        // Taken out first: a stop runs with the list unlocked.
        let stops = std::mem::take(&mut *self.on_shutdown.lock());
        for stop in stops {
            stop();
        }
        let first = !self.stopped.swap(true, Ordering::SeqCst);
        self.leave_transport();
        self.pool.remove_timer(timer);
        // Waits for a worker that is running the node right now.
        if let Some(core) = self.core.lock().take() {
            core.fail_all(Error::Shutdown);
        }
        self.drain_failed();
        self.end_hosted_sessions();
        self.release_tree();
        first
    }

    /// Lets the stopped replica's database go: its tree reads znodes from it, and a
    /// handle to the node kept by anyone must not keep the directory locked. What is
    /// left is an empty tree at the same index.
    fn release_tree(&self) {
        let mut tree = self.tree.write();
        let zxid = tree.zxid();
        *tree = DataTree::new();
        tree.set_zxid(zxid);
    }
}

impl Task for Shared {
    fn run(&self) {
        // `scheduled` stays set for the whole run, so what arrives meanwhile does not queue a
        // second job that would only block on the lock; it is re-checked at the end.
        let mut guard = self.core.lock();
        let Some(core) = guard.as_mut() else {
            self.scheduled.store(false, Ordering::SeqCst);
            self.drain_failed();
            return;
        };
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core.run(self)));
        let mut more = false;
        let failed = match outcome {
            Ok(Ok(busy)) => {
                more = busy;
                None
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(panic) => Some(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into()),
            ),
        };
        if let Some(reason) = failed {
            // Storage or raft failed: this replica can no longer be trusted to continue.
            // Stop it (the ensemble goes on without it) rather than serve from a state
            // that may not be on disk.
            slog::crit!(self.logger, "node stopped after a fatal error"; "error" => &reason);
            self.stopped.store(true, Ordering::SeqCst);
            if let Some(core) = guard.take() {
                core.fail_all(Error::Storage(reason));
            }
            self.drain_failed();
            self.leave_transport();
            self.end_hosted_sessions();
            self.release_tree();
            return;
        }
        drop(guard);
        self.scheduled.store(false, Ordering::SeqCst);
        // What arrived after the run's last look at the mailbox found `scheduled` set and
        // queued nothing: look again now that it is clear.
        if more || !self.inbox.is_empty() || self.ticks_due.load(Ordering::SeqCst) > 0 {
            self.wake();
        }
    }

    fn on_tick(&self) {
        self.ticks_due.fetch_add(1, Ordering::AcqRel);
        self.wake();
    }
}

fn wait<T>(done: &Completion<T>, deadline: Instant, timeout: Duration) -> Result<T> {
    match done.wait(deadline.saturating_duration_since(Instant::now())) {
        Some(r) => r,
        None => Err(Error::Timeout(timeout)),
    }
}

#[cfg(test)]
mod backlog_tests {
    use super::*;

    #[test]
    fn the_peer_backlog_is_bounded_by_bytes_and_count() {
        assert!(backlog_admits(0, 0, usize::MAX), "one envelope always fits");
        assert!(backlog_admits(1000, 10, MAX_PEER_BACKLOG_BYTES - 1000));
        assert!(!backlog_admits(1000, 10, MAX_PEER_BACKLOG_BYTES - 999));
        assert!(!backlog_admits(10, MAX_PEER_BACKLOG_ENVELOPES, 1));
        assert!(backlog_admits(10, MAX_PEER_BACKLOG_ENVELOPES - 1, 1));
        assert!(
            !backlog_admits(usize::MAX, 1, usize::MAX),
            "never overflows"
        );
    }
}
