//! ZooKeeper's client wire protocol: the jute encoding (`jute`) and the protocol's records
//! (`proto`), decoded with every length checked against the frame, so a malformed or
//! hostile frame is a typed error. The client port (`listener`) serves them.

pub(crate) mod jute;
pub(crate) mod proto;

#[cfg(test)]
mod tests;
