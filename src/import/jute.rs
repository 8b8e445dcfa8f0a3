//! Reading ZooKeeper's jute binary encoding (`BinaryInputArchive`) from a file held in
//! memory: big-endian integers, length-prefixed buffers and strings (-1 for null),
//! counted vectors. Every error names the file and the offset it was found at.

use crate::acl::{Acl, Id};
use crate::error::{Error, Result};

/// The most elements room is made for ahead of a vector read from a file: a count larger
/// than this grows the vector as the elements are read, so a corrupt count cannot make
/// the import allocate more than the file holds.
const MAX_PREALLOC: usize = 4096;

/// A position in one file's bytes.
#[derive(Clone)]
pub(super) struct Input<'a> {
    file: &'a str,
    buf: &'a [u8],
    pos: usize,
    /// Where `buf` starts in the file (a record read on its own).
    base: usize,
}

impl<'a> Input<'a> {
    /// Reads `buf`, the contents of `file` (named in errors).
    pub(super) fn new(file: &'a str, buf: &'a [u8]) -> Input<'a> {
        Input::within(file, buf, 0)
    }

    /// Reads `buf`, which starts at offset `base` of `file`.
    pub(super) fn within(file: &'a str, buf: &'a [u8], base: usize) -> Input<'a> {
        Input {
            file,
            buf,
            pos: 0,
            base,
        }
    }

    /// The file's name.
    pub(super) fn file(&self) -> &'a str {
        self.file
    }

    /// The offset of the next byte in the file.
    pub(super) fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// The bytes left.
    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The bytes read so far (for a checksum over them).
    pub(super) fn consumed(&self) -> &'a [u8] {
        &self.buf[..self.pos]
    }

    /// An error at offset `at` of the file.
    pub(super) fn error_at(&self, at: usize, what: impl std::fmt::Display) -> Error {
        corrupt(self.file, at, what)
    }

    /// An error at the current offset.
    pub(super) fn error(&self, what: impl std::fmt::Display) -> Error {
        self.error_at(self.offset(), what)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(self.error(format_args!(
                "truncated: {what} needs {n} bytes, {} left in the file",
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(super) fn byte(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    pub(super) fn boolean(&mut self, what: &str) -> Result<bool> {
        Ok(self.byte(what)? != 0)
    }

    pub(super) fn int(&mut self, what: &str) -> Result<i32> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(super) fn long(&mut self, what: &str) -> Result<i64> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// A length prefix: -1 is null, any other negative length (or one past the end of
    /// the file) is corruption.
    fn length(&mut self, what: &str) -> Result<Option<usize>> {
        let at = self.offset();
        match self.int(what)? {
            -1 => Ok(None),
            n if n < 0 => Err(self.error_at(at, format_args!("{what}: negative length {n}"))),
            n if n as usize > self.remaining() => Err(self.error_at(
                at,
                format_args!(
                    "truncated: {what} of {n} bytes, {} left in the file",
                    self.remaining()
                ),
            )),
            n => Ok(Some(n as usize)),
        }
    }

    /// A jute `buffer`: `None` for null.
    pub(super) fn buffer(&mut self, what: &str) -> Result<Option<Vec<u8>>> {
        match self.length(what)? {
            None => Ok(None),
            Some(n) => Ok(Some(self.take(n, what)?.to_vec())),
        }
    }

    /// A jute `ustring` (null reads as empty, as ZooKeeper's paths never are).
    pub(super) fn string(&mut self, what: &str) -> Result<String> {
        let at = self.offset();
        match self.length(what)? {
            None => Ok(String::new()),
            Some(n) => {
                let b = self.take(n, what)?;
                String::from_utf8(b.to_vec())
                    .map_err(|_| self.error_at(at, format_args!("{what}: not UTF-8")))
            }
        }
    }

    /// A vector's count (`None` for a null vector). Each element takes at least
    /// `min_size` bytes, so a count larger than the file can hold is corruption.
    pub(super) fn count(&mut self, what: &str, min_size: usize) -> Result<Option<usize>> {
        let at = self.offset();
        match self.int(what)? {
            -1 => Ok(None),
            n if n < 0 => Err(self.error_at(at, format_args!("{what}: negative count {n}"))),
            n if (n as usize).saturating_mul(min_size) > self.remaining() => Err(self.error_at(
                at,
                format_args!(
                    "truncated: {what} of {n} elements, {} bytes left",
                    self.remaining()
                ),
            )),
            n => Ok(Some(n as usize)),
        }
    }

    /// How many elements to make room for ahead of a vector of `n` read from the file,
    /// whose elements take at least `min_size` bytes each: never more than the bytes left
    /// could hold, nor more than [`MAX_PREALLOC`].
    pub(super) fn capacity(&self, n: usize, min_size: usize) -> usize {
        n.min(self.remaining() / min_size.max(1)).min(MAX_PREALLOC)
    }

    /// A `vector<ACL>` (`ACL { int perms; Id { ustring scheme; ustring id } }`).
    pub(super) fn acl(&mut self, what: &str) -> Result<Vec<Acl>> {
        Ok(self.acl_opt(what)?.unwrap_or_default())
    }

    /// A `vector<ACL>` that may be null.
    pub(super) fn acl_opt(&mut self, what: &str) -> Result<Option<Vec<Acl>>> {
        let Some(n) = self.count(what, 12)? else {
            return Ok(None);
        };
        let mut acl = Vec::with_capacity(self.capacity(n, 12));
        for _ in 0..n {
            let perms = self.int("ACL perms")?;
            let scheme = self.string("ACL scheme")?;
            let id = self.string("ACL id")?;
            acl.push(Acl::new(perms, Id::new(scheme, id)));
        }
        Ok(Some(acl))
    }
}

/// The error for `what` found at byte `offset` of `file`.
pub(super) fn corrupt(file: &str, offset: usize, what: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("{file}: at offset {offset}: {what}"))
}

/// Adler-32, the checksum ZooKeeper's snapshots and transaction logs carry
/// (`java.util.zip.Adler32`).
pub(super) fn adler32(bytes: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 bytes is the most that can be summed before b could overflow.
    for chunk in bytes.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_matches_known_values() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        let long = vec![0xffu8; 100_000];
        // Reference value computed with zlib's adler32.
        let (mut a, mut b) = (1u64, 0u64);
        for &x in &long {
            a = (a + u64::from(x)) % 65_521;
            b = (b + a) % 65_521;
        }
        assert_eq!(adler32(&long), ((b << 16) | a) as u32);
    }

    #[test]
    fn reads_name_the_file_and_offset() {
        let bytes = [0, 0, 0, 5, b'a'];
        let mut i = Input::new("snapshot.1", &bytes);
        let e = i.string("path").unwrap_err().to_string();
        assert!(
            e.contains("snapshot.1: at offset 0: truncated: path of 5 bytes"),
            "{e}"
        );
        let bytes = [0xff, 0xff, 0xff, 0xfe];
        let e = Input::new("log.1", &bytes)
            .buffer("data")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("log.1: at offset 0: data: negative length -2"),
            "{e}"
        );
        let bytes = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1];
        let mut i = Input::new("f", &bytes);
        assert_eq!(i.buffer("data").unwrap(), None);
        let e = i.long("zxid").unwrap_err().to_string();
        assert!(
            e.contains("at offset 4: truncated: zxid needs 8 bytes, 4 left"),
            "{e}"
        );
    }
}
