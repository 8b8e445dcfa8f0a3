//! How `Stat.ephemeral_owner` encodes what owns a znode, as ZooKeeper's `EphemeralType`:
//! 0 for plain persistent znodes, a session id for ephemerals, `i64::MIN` for containers
//! and `0xFF` in the top byte plus the TTL in the low 40 bits for TTL znodes.

/// `ephemeral_owner` of a container znode.
pub const CONTAINER_OWNER: i64 = i64::MIN;
/// Top byte marking a TTL znode's `ephemeral_owner`.
const EXTENDED_MASK: u64 = 0xFF00_0000_0000_0000;
/// Largest TTL, in milliseconds (40 bits).
pub const MAX_TTL_MS: i64 = 0xFF_FFFF_FFFF;

/// What an `ephemeral_owner` value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Owner {
    /// A plain persistent znode.
    None,
    /// An ephemeral znode of this session.
    Session(i64),
    /// A container znode.
    Container,
    /// A znode with this TTL in milliseconds.
    Ttl(i64),
}

impl Owner {
    /// Decodes an `ephemeral_owner` value.
    pub fn from_raw(raw: i64) -> Owner {
        if raw == 0 {
            Owner::None
        } else if raw == CONTAINER_OWNER {
            Owner::Container
        } else if (raw as u64) & EXTENDED_MASK == EXTENDED_MASK {
            Owner::Ttl(raw & MAX_TTL_MS)
        } else {
            Owner::Session(raw)
        }
    }

    /// Encodes it as an `ephemeral_owner` value.
    pub fn to_raw(self) -> i64 {
        match self {
            Owner::None => 0,
            Owner::Session(s) => s,
            Owner::Container => CONTAINER_OWNER,
            Owner::Ttl(ttl) => (EXTENDED_MASK | (ttl & MAX_TTL_MS) as u64) as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_round_trip() {
        for o in [
            Owner::None,
            Owner::Session(42),
            Owner::Container,
            Owner::Ttl(1),
            Owner::Ttl(MAX_TTL_MS),
        ] {
            assert_eq!(Owner::from_raw(o.to_raw()), o);
        }
    }
}
