//! The peer addresses of members added by configuration changes, so a restarted node can
//! reach members its own start-up list never named. Keys in `meta`: `peer_addr.` + id
//! (u64, big-endian); values: `host:port`.

use super::Db;
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};

use super::{cf, CF_META};
use crate::error::{Error, Result};

pub(crate) const PREFIX: &[u8] = b"peer_addr.";

/// Most bytes of a member address.
pub(crate) const MAX_ADDRESS_LEN: usize = 255;

/// The member id in a `meta` key, if the key is a member address key.
pub(crate) fn parse_key(k: &[u8]) -> Option<Result<u64>> {
    let id = k.strip_prefix(PREFIX)?;
    Some(
        <[u8; 8]>::try_from(id)
            .map(u64::from_be_bytes)
            .map_err(|_| Error::Corrupt("peer address key".into())),
    )
}

pub(crate) fn key(id: u64) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend(id.to_be_bytes());
    k
}

/// Records (`Some`) or forgets (`None`) member `id`'s address in `batch`.
pub(crate) fn record_address_into(db: &DB, batch: &mut WriteBatch, id: u64, addr: Option<&str>) {
    match addr {
        Some(a) => batch.put_cf(cf(db, CF_META), key(id), a.as_bytes()),
        None => batch.delete_cf(cf(db, CF_META), key(id)),
    }
}

/// Every recorded member address.
pub(crate) fn addresses(db: &DB) -> Result<Vec<(u64, String)>> {
    let mut out = Vec::new();
    let iter = db.iterator_cf(
        cf(db, CF_META),
        IteratorMode::From(PREFIX, Direction::Forward),
    );
    for item in iter {
        let (k, v) = item.db()?;
        let Some(id) = parse_key(&k) else { break };
        let id = id?;
        let addr =
            String::from_utf8(v.to_vec()).map_err(|_| Error::Corrupt("peer address".into()))?;
        out.push((id, addr));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_recorded_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let db = super::super::open_db(dir.path()).unwrap();
        let mut batch = WriteBatch::default();
        record_address_into(&db, &mut batch, 4, Some("h4:1"));
        record_address_into(&db, &mut batch, 300, Some("h300:1"));
        db.write(batch).unwrap();
        assert_eq!(
            addresses(&db).unwrap(),
            [(4, "h4:1".to_string()), (300, "h300:1".to_string())]
        );
        let mut batch = WriteBatch::default();
        record_address_into(&db, &mut batch, 4, None);
        db.write(batch).unwrap();
        assert_eq!(addresses(&db).unwrap(), [(300, "h300:1".to_string())]);
    }
}
