//! A small, explicit binary encoding (little-endian integers, length-prefixed byte strings)
//! used for replicated commands and persisted znodes. Every top-level record starts with a
//! format version byte so the encoding can evolve.

use crate::acl::{Acl, Id};
use crate::error::{Error, Result};

/// The length that stands for absent bytes ([`Writer::opt_bytes`]).
const NULL_LEN: u32 = u32::MAX;

/// Appends primitive values to a byte buffer.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
    }
    pub(crate) fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    /// Bytes that may be absent (a znode's null data): `None` is the length `u32::MAX`,
    /// which no byte string of a record can have, so records written before null data
    /// existed read back unchanged.
    pub(crate) fn opt_bytes(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => self.bytes(v),
            None => self.u32(NULL_LEN),
        }
    }
    /// Identities: a count, then each scheme and id.
    pub(crate) fn ids(&mut self, ids: &[Id]) {
        self.u32(u32::try_from(ids.len()).unwrap_or(u32::MAX));
        for id in ids {
            self.str(&id.scheme);
            self.str(&id.id);
        }
    }
    /// An ACL: a count, then each entry's perms, scheme and id.
    pub(crate) fn acl(&mut self, acl: &[Acl]) {
        self.u32(u32::try_from(acl.len()).unwrap_or(u32::MAX));
        for a in acl {
            self.i32(a.perms);
            self.str(&a.id.scheme);
            self.str(&a.id.id);
        }
    }
    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads primitive values back; every read is bounds-checked and fails with `Corrupt`.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(Error::Corrupt(format!(
                "truncated record: need {n} bytes, have {}",
                self.buf.len()
            )));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub(crate) fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub(crate) fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    /// Bytes written by [`Writer::opt_bytes`].
    pub(crate) fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>> {
        let n = self.u32()?;
        if n == NULL_LEN {
            return Ok(None);
        }
        Ok(Some(self.take(n as usize)?.to_vec()))
    }
    pub(crate) fn str(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?).map_err(|_| Error::Corrupt("invalid utf-8".into()))
    }
    /// Identities written by [`Writer::ids`]. Each takes at least 8 bytes, so a hostile
    /// count cannot make it allocate more than the record holds.
    pub(crate) fn ids(&mut self) -> Result<Vec<Id>> {
        let n = self.u32()? as usize;
        let mut ids = Vec::with_capacity(n.min(self.buf.len() / 8));
        for _ in 0..n {
            ids.push(Id::new(self.str()?, self.str()?));
        }
        Ok(ids)
    }
    /// An ACL written by [`Writer::acl`] (each entry at least 12 bytes).
    pub(crate) fn acl(&mut self) -> Result<Vec<Acl>> {
        let n = self.u32()? as usize;
        let mut acl = Vec::with_capacity(n.min(self.buf.len() / 12));
        for _ in 0..n {
            let perms = self.i32()?;
            acl.push(Acl::new(perms, Id::new(self.str()?, self.str()?)));
        }
        Ok(acl)
    }
    /// True when every byte has been read.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Error::Corrupt(format!("{} trailing bytes", self.buf.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut w = Writer::default();
        w.u8(7);
        w.i32(-3);
        w.u64(u64::MAX);
        w.i64(-9);
        w.str("/a");
        w.bytes(b"xyz");
        let buf = w.finish();
        let mut r = Reader::new(&buf);
        assert_eq!(r.u8().unwrap(), 7);
        assert_eq!(r.i32().unwrap(), -3);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.i64().unwrap(), -9);
        assert_eq!(r.str().unwrap(), "/a");
        assert_eq!(r.bytes().unwrap(), b"xyz");
        r.finish().unwrap();
        let mut r = Reader::new(&buf[..buf.len() - 1]);
        r.u8().unwrap();
        r.i32().unwrap();
        r.u64().unwrap();
        r.i64().unwrap();
        r.str().unwrap();
        assert!(matches!(r.bytes(), Err(Error::Corrupt(_))));
    }

    #[test]
    fn absent_bytes_stay_apart_from_empty_ones() {
        let mut w = Writer::default();
        w.opt_bytes(None);
        w.opt_bytes(Some(b""));
        w.opt_bytes(Some(b"ab"));
        let buf = w.finish();
        let mut r = Reader::new(&buf);
        assert_eq!(r.opt_bytes().unwrap(), None);
        assert_eq!(r.opt_bytes().unwrap(), Some(Vec::new()));
        assert_eq!(r.opt_bytes().unwrap(), Some(b"ab".to_vec()));
        r.finish().unwrap();
        // Present bytes are written as `bytes` writes them: older records read the same.
        let mut w = Writer::default();
        w.bytes(b"ab");
        assert_eq!(
            Reader::new(&w.finish()).opt_bytes().unwrap(),
            Some(b"ab".to_vec())
        );
    }
}
