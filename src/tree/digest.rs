//! The tree digest, as ZooKeeper 3.6's digest check keeps it: the wrapping sum of one hash
//! per znode (path, stat fields, data) and one per session. A sum can be kept up to date
//! in constant time per change — subtract a znode's hash before changing it, add it back
//! after — so every replica always knows the digest of its tree at its applied index, and
//! two replicas at the same index hold the same state exactly when their digests agree
//! (up to a 2^-64 chance).
//!
//! A znode's hash covers its ACL too (ZooKeeper's leaves it out): replicas that differ
//! only in an ACL differ in what they allow, and the digest is there to catch that.
//!
//! The hash is FNV-1a with a SplitMix64 finaliser: fixed, so every build and every
//! platform computes the same digest.

use std::sync::{Arc, OnceLock};

use super::{SessionRecord, Znode};
use crate::acl::{self, Acl};

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a of `bytes`, continuing from `h`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// SplitMix64's finaliser: spreads FNV's output over all 64 bits, so sums of many hashes
/// stay well distributed.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hash of a znode's data (kept in the znode, so a parent's hash never rereads it). No
/// data at all (`None`, ZooKeeper's null) hashes apart from empty data, so replicas that
/// differ only there have different digests.
pub(crate) fn data(bytes: Option<&[u8]>) -> u64 {
    match bytes {
        Some(bytes) => fnv(FNV_OFFSET, bytes),
        None => mix(FNV_OFFSET ^ 0x6e75_6c6c),
    }
}

/// Hash of the znode at `path`. `/zookeeper/config` hashes to 0 (ZooKeeper leaves it out
/// of its digest too): each member renders it from the configuration it applied and from
/// the addresses it was started with, which may be written differently (a name here, an
/// address there) without the members disagreeing on anything replicated.
pub(crate) fn znode(path: &str, n: &Znode) -> u64 {
    if path == super::CONFIG_PATH {
        return 0;
    }
    znode_counting_config(path, n)
}

/// Hash of the znode at `path`, `/zookeeper/config` included: what digests persisted by
/// earlier versions summed (see `TreeStore::load`).
pub(crate) fn znode_counting_config(path: &str, n: &Znode) -> u64 {
    let mut h = fnv(FNV_OFFSET, path.as_bytes());
    for v in [
        n.czxid,
        n.mzxid,
        n.pzxid,
        n.ctime,
        n.mtime,
        n.ephemeral_owner,
        i64::from(n.version),
        i64::from(n.creations),
        i64::from(n.aversion),
        i64::from(n.num_children),
    ] {
        h = fnv(h, &v.to_le_bytes());
    }
    h = fnv(h, &acl_hash(&n.acl).to_le_bytes());
    mix(fnv(h, &n.data_hash.to_le_bytes()))
}

/// Hash of an ACL's content. The shared open ACL's (nearly every znode's) is computed
/// once: the same value its content gives, so it does not matter which copy a znode holds.
fn acl_hash(acl: &Arc<[Acl]>) -> u64 {
    fn content(acl: &[Acl]) -> u64 {
        let mut h = FNV_OFFSET;
        for a in acl {
            h = fnv(h, &a.perms.to_le_bytes());
            // Lengths first, so no two lists hash alike by shifting bytes between fields.
            for s in [&a.id.scheme, &a.id.id] {
                h = fnv(h, &(s.len() as u64).to_le_bytes());
                h = fnv(h, s.as_bytes());
            }
        }
        h
    }
    static OPEN: OnceLock<u64> = OnceLock::new();
    let open = acl::open_shared_ref();
    if Arc::ptr_eq(acl, open) {
        *OPEN.get_or_init(|| content(open))
    } else {
        content(acl)
    }
}

/// Hash of session `id`.
pub(crate) fn session(id: i64, s: &SessionRecord) -> u64 {
    let mut h = fnv(FNV_OFFSET ^ 0x5e55, &id.to_le_bytes());
    h = fnv(h, &s.timeout_ms.to_le_bytes());
    h = fnv(h, &s.host.to_le_bytes());
    h = fnv(h, &s.epoch.to_le_bytes());
    h = fnv(h, &s.last_seq.to_le_bytes());
    mix(fnv(h, &s.password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acls_hash_is_its_contents_whichever_copy() {
        let shared = acl::open_shared();
        let copy: Arc<[Acl]> = Acl::open_unsafe().into();
        assert!(!Arc::ptr_eq(&shared, &copy));
        assert_eq!(acl_hash(&shared), acl_hash(&copy));
        assert_ne!(acl_hash(&shared), acl_hash(&Acl::read_unsafe().into()));
        let node = Znode::default();
        let other = Znode {
            acl: copy,
            ..Znode::default()
        };
        assert_eq!(znode("/a", &node), znode("/a", &other));
    }

    #[test]
    fn null_data_hashes_apart_from_empty_data() {
        assert_ne!(data(None), data(Some(b"")));
        let empty = Znode::default();
        let null = Znode {
            data: None,
            data_hash: data(None),
            ..Znode::default()
        };
        assert_ne!(znode("/a", &empty), znode("/a", &null));
    }
}
