//! A history: what each client invoked, when, and what came back (or that nothing did).

use std::sync::Mutex;
use std::time::Instant;

/// A znode operation as a client invoked it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    /// `path` is the prefix of a sequential create.
    Create {
        path: String,
        data: Vec<u8>,
        ephemeral: bool,
        sequential: bool,
    },
    Delete {
        path: String,
        version: Option<i32>,
    },
    SetData {
        path: String,
        data: Vec<u8>,
        version: Option<i32>,
    },
    /// Only inside a multi.
    Check {
        path: String,
        version: i32,
    },
    /// A read that sees every write completed before it (`sync` then read, or a
    /// linearizable read).
    GetData {
        path: String,
    },
    GetChildren {
        path: String,
    },
    /// All or nothing: Create, Delete, SetData and Check.
    Multi(Vec<Op>),
    /// The session ends (closed, or found expired): its ephemerals go.
    CloseSession,
}

/// What an operation that succeeded returned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ret {
    /// A create: the path made.
    Created(String),
    /// A delete, a check, a close.
    Done,
    /// A set: the new version.
    Version(i32),
    /// A read: the data and version, or `None` when there is no such znode.
    Data(Option<(Vec<u8>, i32)>),
    /// Child names, sorted (`None` when there is no such znode).
    Children(Option<Vec<String>>),
    Multi(Vec<Ret>),
}

/// A failure that changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrKind {
    NoNode,
    NodeExists,
    BadVersion,
    NotEmpty,
    NoChildrenForEphemerals,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok(Ret),
    Err(ErrKind),
    /// A timeout or a lost connection: it may have taken effect, at any time after its
    /// invocation, or never.
    Unknown,
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub client: u32,
    pub session: u64,
    pub op: Op,
    /// Nanoseconds since the history began.
    pub invoke: u64,
    /// `None` when [`Outcome::Unknown`].
    pub complete: Option<u64>,
    pub outcome: Outcome,
}

/// Records a history from many threads.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    events: Mutex<Vec<Event>>,
}

/// An invocation awaiting its outcome.
#[derive(Debug)]
#[must_use]
pub struct Pending {
    client: u32,
    session: u64,
    op: Op,
    invoke: u64,
}

impl Pending {
    /// When it was invoked (nanoseconds since the history began).
    pub fn invoked(&self) -> u64 {
        self.invoke
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty history starting now.
    pub fn new() -> Recorder {
        Recorder {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the history began.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// `client` of `session` invokes `op` now.
    pub fn invoke(&self, client: u32, session: u64, op: Op) -> Pending {
        Pending {
            client,
            session,
            op,
            invoke: self.now(),
        }
    }

    /// The invocation ended with `outcome` now.
    pub fn complete(&self, p: Pending, outcome: Outcome) {
        let complete = (outcome != Outcome::Unknown).then(|| self.now());
        self.push(Event {
            client: p.client,
            session: p.session,
            op: p.op,
            invoke: p.invoke,
            complete,
            outcome,
        });
    }

    /// Adds an event whose times the caller knows (a session found expired: its close
    /// happened at an unknown time after `invoke`).
    pub fn push(&self, e: Event) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e);
    }

    /// The history so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
