//! Jute, ZooKeeper's record encoding: big-endian integers, one-byte booleans, and buffers,
//! strings and vectors prefixed with a 4-byte length (-1 for null). Everything a client
//! sends is read through [`JuteReader`], which checks every length against the bytes that
//! are actually there before taking or allocating anything: a hostile length is a
//! [`WireError`], never a panic or a large allocation.

use crate::tree::Stat;

/// What is wrong with a frame a client sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    /// The frame ended inside a field.
    #[error("frame truncated: {0} more bytes needed")]
    Truncated(usize),
    /// A length prefix is negative (other than -1 for null) or larger than the frame.
    #[error("bad length {0}")]
    BadLength(i64),
    /// A string is not UTF-8.
    #[error("string is not UTF-8")]
    NotUtf8,
    /// Bytes left over after the record.
    #[error("{0} trailing bytes after the record")]
    Trailing(usize),
    /// An operation code this server does not know.
    #[error("unknown operation code {0}")]
    UnknownOp(i32),
    /// A value outside its allowed range.
    #[error("bad value: {0}")]
    BadValue(String),
}

/// Result of reading a frame.
pub(crate) type WireResult<T> = std::result::Result<T, WireError>;

/// Reads jute fields from a frame, bounds-checked.
pub(crate) struct JuteReader<'a> {
    buf: &'a [u8],
}

impl<'a> JuteReader<'a> {
    /// A reader over one frame's bytes.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        JuteReader { buf }
    }

    fn take(&mut self, n: usize) -> WireResult<&'a [u8]> {
        if self.buf.len() < n {
            return Err(WireError::Truncated(n - self.buf.len()));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// `int`.
    pub(crate) fn int(&mut self) -> WireResult<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// `long`.
    pub(crate) fn long(&mut self) -> WireResult<i64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    /// `boolean` (any non-zero byte is true, as Java's `readBoolean`).
    pub(crate) fn boolean(&mut self) -> WireResult<bool> {
        Ok(self.take(1)?[0] != 0)
    }

    /// A length prefix: `None` for -1 (null); refused if negative otherwise, or longer
    /// than what is left (each element takes at least `unit` bytes).
    fn length(&mut self, unit: usize) -> WireResult<Option<usize>> {
        let n = self.int()?;
        match n {
            -1 => Ok(None),
            n if n < 0 => Err(WireError::BadLength(i64::from(n))),
            n => {
                let n = n as usize;
                if n.saturating_mul(unit.max(1)) > self.buf.len() {
                    return Err(WireError::BadLength(n as i64));
                }
                Ok(Some(n))
            }
        }
    }

    /// `buffer` (null reads as empty: for passwords, tokens and auth data, where
    /// ZooKeeper's servers make no difference either).
    pub(crate) fn buffer(&mut self) -> WireResult<Vec<u8>> {
        Ok(self.nullable_buffer()?.unwrap_or_default())
    }

    /// `buffer`, with null (length -1) kept apart from empty: znode data, which
    /// ZooKeeper stores and answers as null.
    pub(crate) fn nullable_buffer(&mut self) -> WireResult<Option<Vec<u8>>> {
        match self.length(1)? {
            None => Ok(None),
            Some(n) => Ok(Some(self.take(n)?.to_vec())),
        }
    }

    /// `ustring` (null reads as empty).
    pub(crate) fn string(&mut self) -> WireResult<String> {
        String::from_utf8(self.buffer()?).map_err(|_| WireError::NotUtf8)
    }

    /// `ustring`, with null kept apart from empty.
    pub(crate) fn nullable_string(&mut self) -> WireResult<Option<String>> {
        self.nullable_buffer()?
            .map(|b| String::from_utf8(b).map_err(|_| WireError::NotUtf8))
            .transpose()
    }

    /// `vector<T>` read with `item`, each element at least `unit` bytes.
    pub(crate) fn vector<T>(
        &mut self,
        unit: usize,
        mut item: impl FnMut(&mut Self) -> WireResult<T>,
    ) -> WireResult<Vec<T>> {
        let Some(n) = self.length(unit)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// `vector<ustring>`.
    pub(crate) fn strings(&mut self) -> WireResult<Vec<String>> {
        self.vector(4, Self::string)
    }

    /// Skips whatever is left: for a record ZooKeeper does not read either.
    pub(crate) fn skip_rest(&mut self) {
        self.buf = &[];
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(self) -> WireResult<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.buf.len()))
        }
    }
}

/// Writes jute fields.
#[derive(Default)]
pub(crate) struct JuteWriter {
    buf: Vec<u8>,
}

impl JuteWriter {
    /// An empty writer with room for `n` bytes.
    pub(crate) fn with_capacity(n: usize) -> Self {
        JuteWriter {
            buf: Vec::with_capacity(n),
        }
    }

    /// `int`.
    pub(crate) fn int(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// `long`.
    pub(crate) fn long(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// `boolean`.
    pub(crate) fn boolean(&mut self, v: bool) -> &mut Self {
        self.buf.push(u8::from(v));
        self
    }

    /// `buffer` (lengths beyond `i32::MAX` cannot occur: frames are bounded far below).
    pub(crate) fn buffer(&mut self, v: &[u8]) -> &mut Self {
        self.int(i32::try_from(v.len()).unwrap_or(i32::MAX));
        self.buf.extend_from_slice(v);
        self
    }

    /// `buffer`, or null (length -1) for `None`.
    pub(crate) fn nullable_buffer(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            Some(v) => self.buffer(v),
            None => self.int(-1),
        }
    }

    /// `ustring`.
    pub(crate) fn string(&mut self, v: &str) -> &mut Self {
        self.buffer(v.as_bytes())
    }

    /// `vector<ustring>`.
    pub(crate) fn strings<S: AsRef<str>>(&mut self, v: &[S]) -> &mut Self {
        self.int(i32::try_from(v.len()).unwrap_or(i32::MAX));
        for s in v {
            self.string(s.as_ref());
        }
        self
    }

    /// `Stat`.
    pub(crate) fn stat(&mut self, s: &Stat) -> &mut Self {
        self.long(s.czxid)
            .long(s.mzxid)
            .long(s.ctime)
            .long(s.mtime)
            .int(s.version)
            .int(s.cversion)
            .int(s.aversion)
            .long(s.ephemeral_owner)
            .int(s.data_length)
            .int(s.num_children)
            .long(s.pzxid)
    }

    /// The bytes written.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads a `Stat` (68 bytes).
pub(crate) fn read_stat(r: &mut JuteReader<'_>) -> WireResult<Stat> {
    Ok(Stat {
        czxid: r.long()?,
        mzxid: r.long()?,
        ctime: r.long()?,
        mtime: r.long()?,
        version: r.int()?,
        cversion: r.int()?,
        aversion: r.int()?,
        ephemeral_owner: r.long()?,
        data_length: r.int()?,
        num_children: r.int()?,
        pzxid: r.long()?,
    })
}

/// An `Id` (scheme, id) and an `ACL` entry (permission bits and who gets them): the
/// crate's own, which the jute records carry as they are.
pub(crate) use crate::acl::{Acl, Id};

/// Reads `vector<ACL>` (each at least 12 bytes).
pub(crate) fn read_acls(r: &mut JuteReader<'_>) -> WireResult<Vec<Acl>> {
    r.vector(12, |r| {
        Ok(Acl {
            perms: r.int()?,
            id: Id {
                scheme: r.string()?,
                id: r.string()?,
            },
        })
    })
}

/// Writes `vector<ACL>`.
#[allow(dead_code)] // getACL answers (ACLs land next)
pub(crate) fn write_acls(w: &mut JuteWriter, acls: &[Acl]) {
    w.int(i32::try_from(acls.len()).unwrap_or(i32::MAX));
    for a in acls {
        w.int(a.perms).string(&a.id.scheme).string(&a.id.id);
    }
}
