//! The one implementation behind [`Node`](crate::Node)'s and
//! [`Session`](crate::Session)'s convenience methods: how each call becomes an [`Op`] and
//! how the znode or [`OpResult`] it gets back becomes the value returned. The two differ
//! only in how they write (a `Node` with no session, a `Session` in its session order)
//! and in the watches a session's reads may set.

use std::time::Duration;

use crate::acl::Acl;
use crate::command::{CreateMode, Op};
use crate::error::{Error, Result};
use crate::tree::{DataTree, OpResult, Stat, Znode};

/// Proposes an operation and waits until it is applied on this node.
pub(crate) trait Write {
    /// See the trait.
    fn write(&self, op: Op) -> Result<OpResult>;
}

/// `create` and `create2`: the created path and its stat. TTL modes go through
/// [`create_ttl`].
pub(crate) fn create(
    w: &impl Write,
    path: &str,
    data: &[u8],
    mode: CreateMode,
) -> Result<(String, Stat)> {
    create_with_acl(w, path, data, mode, Acl::open_unsafe())
}

/// `create` with an ACL.
pub(crate) fn create_with_acl(
    w: &impl Write,
    path: &str,
    data: &[u8],
    mode: CreateMode,
    acl: Vec<Acl>,
) -> Result<(String, Stat)> {
    if mode.is_ttl() {
        return Err(Error::BadArguments("TTL modes need create_ttl".into()));
    }
    w.write(Op::create_with_acl(path, data, mode, acl))
        .and_then(OpResult::into_created)
}

/// `createTTL`: a TTL znode (`PersistentWithTtl` or `PersistentSequentialWithTtl`).
pub(crate) fn create_ttl(
    w: &impl Write,
    path: &str,
    data: &[u8],
    mode: CreateMode,
    ttl: Duration,
) -> Result<(String, Stat)> {
    if !mode.is_ttl() {
        return Err(Error::BadArguments(format!("{mode:?} takes no TTL")));
    }
    w.write(Op::create_ttl(path, data, mode, ttl))
        .and_then(OpResult::into_created)
}

/// `delete`.
pub(crate) fn delete(w: &impl Write, path: &str, version: Option<i32>) -> Result<()> {
    w.write(Op::delete(path, version)).map(|_| ())
}

/// `setData`: the new stat.
pub(crate) fn set_data(
    w: &impl Write,
    path: &str,
    data: &[u8],
    version: Option<i32>,
) -> Result<Stat> {
    w.write(Op::set_data(path, data, version))
        .and_then(OpResult::into_stat)
}

/// `setACL`: the new stat.
pub(crate) fn set_acl(
    w: &impl Write,
    path: &str,
    acl: Vec<Acl>,
    version: Option<i32>,
) -> Result<Stat> {
    w.write(Op::set_acl(path, acl, version))
        .and_then(OpResult::into_acl_stat)
}

/// `multi`: one result per operation, or `MultiFailed` and nothing applied.
pub(crate) fn multi(w: &impl Write, ops: Vec<Op>) -> Result<Vec<OpResult>> {
    w.write(Op::Multi(ops)).and_then(OpResult::into_multi)
}

/// `getData` of the znode read at `path` (`None`: the znode has no data at all).
pub(crate) fn data_of(path: &str, node: Option<&Znode>) -> Result<(Option<Vec<u8>>, Stat)> {
    node.map(|n| (n.data.clone(), n.stat()))
        .ok_or_else(|| Error::NoNode(path.to_string()))
}

/// `getChildren2` of the znode read at `path` in `tree`: its children's names, sorted,
/// and its stat.
pub(crate) fn children_of(
    tree: &DataTree,
    path: &str,
    node: Option<&Znode>,
) -> Result<(Vec<String>, Stat)> {
    node.map(|n| (tree.children(path), n.stat()))
        .ok_or_else(|| Error::NoNode(path.to_string()))
}
