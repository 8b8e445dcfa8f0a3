//! Trusting zkraft: a linearizability checker for histories of znode operations
//! ([`checker`]) and seeded fault schedules ([`schedule`]) that a run injects into an
//! ensemble while clients record such a history. Dev-only: not published.

pub mod checker;
pub mod inprocess;
pub mod schedule;
pub mod wire;
