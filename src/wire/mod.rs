//! ZooKeeper's client wire protocol: the jute encoding (`jute`) and the protocol's records
//! (`proto`), decoded with every length checked against the frame, so a malformed or
//! hostile frame is a typed error. The listener that serves them to kazoo, Curator, zkCli
//! and the Rust clients builds on this (issue 9); until then only the tests use it.
#![cfg_attr(not(test), allow(dead_code))]

pub(crate) mod jute;
pub(crate) mod proto;

#[cfg(test)]
mod tests;
