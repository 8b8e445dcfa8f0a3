//! The driver's side of membership changes: applying a `ConfChange` to raft, the
//! persisted configuration, the member addresses and the transport, and matching the
//! entry to the caller that proposed it.

use raft::eraftpb::{ConfChange, ConfChangeType};
use rocksdb::WriteBatch;

use super::Core;
use crate::error::{Error, Result};
use crate::replica::Shared;
use crate::storage::record_address_into;

impl Core {
    /// Applies a membership change: raft's configuration, the persisted configuration and
    /// member addresses (into the apply batch), and the transport. A change raft refuses
    /// (every replica refuses it alike) changes nothing and is answered with the reason.
    pub(super) fn apply_membership(
        &mut self,
        s: &Shared,
        cc: &ConfChange,
        batch: &mut WriteBatch,
    ) -> Result<()> {
        let cs = match self.raw.apply_conf_change(cc) {
            Ok(cs) => cs,
            Err(e) => {
                slog::warn!(s.logger, "configuration change refused";
                    "node" => cc.node_id, "error" => %e);
                return Err(Error::BadArguments(format!(
                    "configuration change refused: {e}"
                )));
            }
        };
        slog::info!(s.logger, "configuration changed";
            "change" => ?cc.get_change_type(), "node" => cc.node_id, "voters" => ?cs.voters);
        *s.voters.lock() = cs.voters.clone();
        self.raw.store().conf_state_into(batch, cs)?;
        let db = self.tree_store.db().clone();
        match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                let addr = String::from_utf8_lossy(&cc.context).into_owned();
                if !addr.is_empty() {
                    record_address_into(&db, batch, cc.node_id, Some(&addr));
                    if let Err(e) = s.transport.peer_added(cc.node_id, &addr) {
                        slog::warn!(s.logger, "transport cannot reach the new member";
                            "node" => cc.node_id, "addr" => &addr, "error" => %e);
                    }
                }
            }
            ConfChangeType::RemoveNode => {
                record_address_into(&db, batch, cc.node_id, None);
                // A transfer to it ends by itself (no acknowledgements) and is joined then
                // or at shutdown.
                s.transport.peer_removed(cc.node_id);
            }
        }
        Ok(())
    }
}

/// The context of a configuration change entry: who proposed it, so that node can answer
/// its caller.
pub(super) fn conf_context(origin: u64, incarnation: u64, request_id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    for v in [origin, incarnation, request_id] {
        out.extend(v.to_be_bytes());
    }
    out
}

/// The request id of a configuration change entry this node (this incarnation) proposed.
pub(super) fn own_conf_request(s: &Shared, context: &[u8]) -> Option<u64> {
    let ctx: &[u8; 24] = context.try_into().ok()?;
    let field = |i: usize| u64::from_be_bytes(ctx[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    (field(0) == s.id && field(1) == s.incarnation).then(|| field(2))
}
