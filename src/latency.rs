//! How long requests take, per operation: recorded by the pipeline when a request of a
//! session hosted here is answered (from its submission), reported by
//! [`Node::metrics`](crate::Node::metrics) as [`Metrics::requests`](crate::Metrics::requests).

use std::time::Duration;

use crate::command::Op;
use crate::histogram::Recorder;
use crate::pipeline::Request;

/// The operations timed apart, by name.
pub(crate) const OPERATIONS: [&str; 21] = [
    "create",
    "delete",
    "set_data",
    "set_acl",
    "check",
    "multi",
    "create_session",
    "close_session",
    "exists",
    "get_data",
    "get_children",
    "sync",
    "add_watch",
    "remove_watches",
    "check_watches",
    "get_ephemerals",
    "get_acl",
    "get_all_children_number",
    "multi_read",
    "set_watches",
    "reconfig",
];

/// The index in [`OPERATIONS`] of `request`'s operation.
pub(crate) fn operation(request: &Request) -> u8 {
    let name: &str = match request {
        Request::Write(op) => match op {
            Op::Create { .. } => "create",
            Op::Delete { .. } => "delete",
            Op::SetData { .. } => "set_data",
            Op::SetAcl { .. } => "set_acl",
            Op::Check { .. } => "check",
            Op::Multi(_) => "multi",
            Op::CreateSession { .. } => "create_session",
            Op::CloseSession { .. } => "close_session",
            // Not submitted by sessions (the leader's own housekeeping).
            _ => "multi",
        },
        Request::Exists { .. } => "exists",
        Request::GetData { .. } => "get_data",
        Request::GetChildren { .. } => "get_children",
        Request::Sync { .. } => "sync",
        Request::AddWatch { .. } => "add_watch",
        Request::RemoveWatches { .. } => "remove_watches",
        Request::CheckWatches { .. } => "check_watches",
        Request::GetEphemerals { .. } => "get_ephemerals",
        Request::GetAcl { .. } => "get_acl",
        Request::GetAllChildrenNumber { .. } => "get_all_children_number",
        Request::MultiRead(_) => "multi_read",
        Request::SetWatches { .. } => "set_watches",
        Request::Reconfig(_) => "reconfig",
    };
    OPERATIONS.iter().position(|n| *n == name).unwrap_or(0) as u8
}

/// A histogram per operation.
#[derive(Default)]
pub(crate) struct RequestLatency {
    by_operation: [Recorder; OPERATIONS.len()],
}

impl RequestLatency {
    /// Records that a request of operation `op` (an index in [`OPERATIONS`]) took `took`.
    pub(crate) fn record(&self, op: u8, took: Duration) {
        if let Some(r) = self.by_operation.get(usize::from(op)) {
            r.record(took);
        }
    }

    /// Every operation that has been timed, with its histogram, by name.
    pub(crate) fn snapshot(&self) -> Vec<(String, crate::Histogram)> {
        let mut out: Vec<(String, crate::Histogram)> = OPERATIONS
            .iter()
            .zip(&self.by_operation)
            .map(|(name, r)| (name.to_string(), r.snapshot()))
            .filter(|(_, h)| h.count > 0)
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_timed_by_operation() {
        let l = RequestLatency::default();
        let get = operation(&Request::GetData {
            path: "/a".into(),
            watcher: None,
        });
        assert_eq!(OPERATIONS[usize::from(get)], "get_data");
        l.record(get, Duration::from_millis(2));
        l.record(get, Duration::from_millis(3));
        l.record(
            operation(&Request::Sync { path: "/".into() }),
            Duration::from_millis(1),
        );
        let s = l.snapshot();
        assert_eq!(
            s.iter()
                .map(|(n, h)| (n.as_str(), h.count))
                .collect::<Vec<_>>(),
            [("get_data", 2), ("sync", 1)]
        );
    }
}
