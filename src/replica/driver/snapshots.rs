//! The driver's side of snapshots and log compaction: compacting the log once it is
//! long enough, starting a transfer for a follower behind it (leader), staging the chunks
//! of one and installing it (follower). The transfer itself and the staging state live in
//! `node::snapshot`.

use std::sync::atomic::Ordering;
use std::time::Instant;

use raft::eraftpb::{HardState, Message, Snapshot};

use super::Core;
use crate::error::{Error, Result};
use crate::member::MemberSpec;
use crate::replica::snapshot::{decode_descriptor, Incoming, Outgoing, MAX_SNAPSHOT_PEERS};
use crate::replica::{Msg, Shared, CATCH_UP_ENTRIES};
use crate::tree::DataTree;

impl Core {
    /// Leader: streams a snapshot to `m.to` instead of sending raft's metadata-only
    /// message (which the transfer sends, completed, at its end).
    pub(super) fn start_transfer(&mut self, s: &Shared, m: Message) {
        let to = m.to;
        if self.outgoing.contains_key(&to) {
            return; // one transfer per follower; raft hears how it ended
        }
        let transfer = (s.incarnation << 16) ^ self.next_transfer;
        self.next_transfer += 1;
        slog::info!(s.logger, "sending snapshot"; "to" => to, "transfer" => transfer);
        match Outgoing::start(s, self.tree_store.db().clone(), transfer, m) {
            Ok(o) => {
                self.outgoing.insert(to, o);
            }
            Err(e) => {
                slog::warn!(s.logger, "snapshot transfer not started"; "to" => to, "error" => %e);
                // Told to raft on the next round, outside this Ready.
                self.outgoing.insert(to, Outgoing::failed(transfer));
                let _ = s.post(Msg::SnapshotDone {
                    to,
                    transfer,
                    ok: false,
                });
            }
        }
    }

    /// Follower: stages one chunk of a snapshot; false refuses it (and the transfer).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn stage_chunk(
        &mut self,
        s: &Shared,
        from: u64,
        transfer: u64,
        seq: u32,
        last: bool,
        index: u64,
        data: &[u8],
    ) -> bool {
        if seq == 0 {
            if self.incoming.as_ref().is_some_and(|i| i.complete)
                && self.raw.raft.raft_log.unstable_snapshot().is_some()
            {
                // raft holds the staged snapshot for its next Ready: the staging slot
                // must stay as it is until that is installed.
                return false;
            }
            if let Err(e) = self.tree_store.clear_staging() {
                slog::warn!(s.logger, "cannot stage a snapshot"; "error" => %e);
                self.incoming = None;
                return false;
            }
            self.incoming = Some(Incoming {
                from,
                transfer,
                index,
                next: 0,
                complete: false,
                peers: Vec::new(),
                bytes: 0,
            });
        }
        let Some(inc) = &mut self.incoming else {
            return false;
        };
        if inc.from != from
            || inc.transfer != transfer
            || inc.index != index
            || inc.next != seq
            || inc.complete
        {
            return false;
        }
        let len = data.len() as u64;
        match self.tree_store.stage_chunk(data) {
            Ok(peers) if inc.peers.len() + peers.len() <= MAX_SNAPSHOT_PEERS => {
                inc.peers.extend(peers);
                inc.bytes += len;
                inc.next += 1;
                inc.complete = last;
                true
            }
            Ok(_) => {
                slog::warn!(s.logger, "snapshot with too many member addresses refused");
                self.incoming = None;
                false
            }
            Err(e) => {
                slog::warn!(s.logger, "malformed snapshot chunk refused";
                    "from" => from, "seq" => seq, "error" => %e);
                self.incoming = None;
                false
            }
        }
    }

    /// Whether a `MsgSnapshot` names the transfer this follower has completely staged.
    pub(super) fn snapshot_staged(&self, m: &Message) -> bool {
        let snap = m.get_snapshot();
        let Ok((transfer, index)) = decode_descriptor(snap.get_data()) else {
            return false;
        };
        index == snap.get_metadata().index
            && self
                .incoming
                .as_ref()
                .is_some_and(|inc| inc.ready_for(m.from, transfer, index))
    }

    /// Installs the snapshot raft accepted: the staged slot becomes the tree, in one
    /// synced write; then the in-memory tree is replaced, and the watches and hosted
    /// sessions hear what changed.
    pub(super) fn install_snapshot(
        &mut self,
        s: &Shared,
        snap: &Snapshot,
        ready_hs: Option<&HardState>,
    ) -> Result<()> {
        let meta = snap.get_metadata();
        let (transfer, index) = decode_descriptor(snap.get_data())?;
        let staged = self
            .incoming
            .take()
            .filter(|inc| index == meta.index && inc.ready_for(inc.from, transfer, index))
            .ok_or_else(|| {
                Error::Raft(format!(
                    "snapshot at {} to install was not staged",
                    meta.index
                ))
            })?;
        let started = Instant::now();
        let before = crate::storage::member_addresses(self.tree_store.db())?;
        let cs = meta.get_conf_state();
        let tree = self.tree_store.install(
            self.raw.store(),
            (meta.index, meta.term, cs),
            ready_hs,
            &staged.peers,
        )?;
        {
            // The snapshot's configuration and member specs replace the ones applied here;
            // members this node was started with keep their specs unless it names them.
            let mut m = s.membership.lock();
            m.voters = cs.voters.clone();
            m.learners = cs.learners.clone();
            m.version = super::super::open::config_version(&tree);
            for (id, text) in &staged.peers {
                match MemberSpec::parse(text) {
                    Ok(spec) => {
                        if let Err(e) = s.transport.peer_added(*id, &spec.peer_addr()) {
                            slog::warn!(s.logger, "transport cannot reach a member";
                                "node" => id, "spec" => text, "error" => %e);
                        }
                        m.specs.insert(*id, spec);
                    }
                    Err(e) => slog::warn!(s.logger, "member spec unreadable: ignored";
                        "node" => id, "spec" => text, "error" => %e),
                }
            }
            m.specs
                .retain(|id, _| cs.voters.contains(id) || cs.learners.contains(id));
        }
        for (id, _) in before {
            if !staged.peers.iter().any(|(p, _)| *p == id)
                && !cs.voters.contains(&id)
                && !cs.learners.contains(&id)
            {
                s.transport.peer_removed(id);
            }
        }
        slog::info!(s.logger, "installed snapshot";
            "index" => meta.index, "term" => meta.term, "znodes" => tree.len(),
            "ms" => started.elapsed().as_millis() as u64);
        // Counted before the new tree is visible: whoever sees it sees the count too.
        s.counters
            .last_snapshot_bytes
            .store(staged.bytes, Ordering::Relaxed);
        s.counters.snapshot_duration.record(started.elapsed());
        s.counters
            .snapshots_installed
            .fetch_add(1, Ordering::Relaxed);
        s.counters
            .log_first_index
            .store(self.raw.store().first(), Ordering::Relaxed);
        self.replace_tree(s, tree, meta.index);
        // The old tree is compared and gone: its slot is free.
        self.tree_store.clear_staging()?;
        self.applied = meta.index;
        s.applied.store(meta.index, Ordering::Release);
        self.log_bytes = 0;
        self.release_reads();
        // This node's writes the snapshot may cover will never be applied here one by
        // one: their callers hear now that their outcome is unknown.
        self.lose_pending(
            s,
            |_| true,
            "a snapshot replaced this node's log while the write was in flight",
        );
        Ok(())
    }

    /// Swaps in the tree of an installed snapshot. The observer compares the old and the
    /// new tree at the paths it watches (as ZooKeeper's `setWatches` reports what a client
    /// missed), and sessions hosted here that the snapshot no longer holds have expired.
    pub(super) fn replace_tree(&mut self, s: &Shared, mut tree: DataTree, index: u64) {
        let mut guard = s.tree.write();
        tree.set_zxid(index);
        let old = std::mem::replace(&mut *guard, tree);
        // Watches fire for what changed; hosted sessions the snapshot no longer has here
        // end (the host decides how).
        s.observer().tree_replaced(&old, &guard);
        drop(old);
    }

    /// Compacts the log once it is long enough: keeps the newest entries for followers
    /// slightly behind when compacting by count, none when compacting by bytes.
    pub(super) fn maybe_compact(&mut self, s: &Shared) -> Result<()> {
        let first = self.raw.store().first();
        if self.applied < first {
            return Ok(());
        }
        let entries = self.applied - first + 1;
        let by_bytes = self.log_bytes > self.snapshot_log_bytes;
        if entries <= self.snapshot_entries && !by_bytes {
            return Ok(());
        }
        let retain = if by_bytes {
            0
        } else {
            (self.snapshot_entries / 2).min(CATCH_UP_ENTRIES)
        };
        let to = self.applied - retain;
        let started = Instant::now();
        let removed = self.raw.store().compact(to)?;
        self.log_bytes = 0;
        s.counters
            .log_first_index
            .store(self.raw.store().first(), Ordering::Relaxed);
        if removed > 0 {
            s.counters.log_compactions.fetch_add(1, Ordering::Relaxed);
            slog::info!(s.logger, "compacted raft log";
                "through" => to, "removed" => removed, "applied" => self.applied,
                "ms" => started.elapsed().as_millis() as u64);
        }
        Ok(())
    }
}
