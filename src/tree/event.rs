//! Watch events: what the state machine reports about each change, and what watchers
//! receive. Numeric values are ZooKeeper's `Watcher.Event.EventType`.

/// The kind of change a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum EventType {
    /// A znode was created at the path.
    NodeCreated,
    /// The znode at the path was deleted.
    NodeDeleted,
    /// The data of the znode at the path changed.
    NodeDataChanged,
    /// A child of the znode at the path was created or deleted.
    NodeChildrenChanged,
    /// A data (or exists) watch was removed with `remove_watches`.
    DataWatchRemoved,
    /// A child watch was removed with `remove_watches`.
    ChildWatchRemoved,
    /// A persistent (or persistent recursive) watch was removed with `remove_watches`.
    PersistentWatchRemoved,
}

impl EventType {
    /// ZooKeeper's numeric value.
    pub fn code(self) -> i32 {
        match self {
            EventType::NodeCreated => 1,
            EventType::NodeDeleted => 2,
            EventType::NodeDataChanged => 3,
            EventType::NodeChildrenChanged => 4,
            EventType::DataWatchRemoved => 5,
            EventType::ChildWatchRemoved => 6,
            EventType::PersistentWatchRemoved => 7,
        }
    }
}

/// One watch notification: what happened, where, and the zxid of the change (0 for watch
/// removal notices).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchedEvent {
    /// What happened.
    pub event_type: EventType,
    /// The znode path the event is about.
    pub path: String,
    /// zxid of the change (the raft index of its entry).
    pub zxid: i64,
}
