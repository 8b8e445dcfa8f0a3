//! ZooKeeper's access control: who may do what to a znode.
//!
//! Every znode carries an ACL, a list of [`Acl`] entries. Each entry grants a set of
//! [`perms`] to an [`Id`] — a `scheme` and an `id` within it. A caller is the list of ids
//! it has authenticated as; an operation needs one permission bit, and passes when some
//! entry holding that bit matches one of the caller's ids:
//!
//! | scheme  | an entry's id          | matches the caller's id                              |
//! |---------|------------------------|------------------------------------------------------|
//! | `world` | `anyone`               | everybody                                            |
//! | `digest`| `user:base64(sha1)`    | the same string, from `add_auth("digest", "user:password")` |
//! | `ip`    | `a.b.c.d[/bits]`, IPv6 | a client address inside the (CIDR) range             |
//! | `auth`  | (ignored)              | never stored: a create or set_acl replaces it with the caller's authenticated ids |
//!
//! A caller holding the id `super` (any id in the `super` scheme) passes every check, as
//! ZooKeeper's super user. The functions here are pure and follow ZooKeeper 3.8's
//! `ZooKeeperServer.checkACL`, `PrepRequestProcessor.fixupACL`,
//! `DigestAuthenticationProvider` and `IPAuthenticationProvider`.
//!
//! ```
//! use zkraft::acl::{self, perms, Acl, Id};
//! let alice = Id::new("digest", acl::digest("alice", "secret"));
//! let node_acl = vec![
//!     Acl::new(perms::ALL, alice.clone()),
//!     Acl::new(perms::READ, Id::new("ip", "10.0.0.0/8")),
//! ];
//! assert!(acl::permits(&node_acl, &[alice], perms::WRITE));
//! assert!(acl::permits(&node_acl, &[Id::new("ip", "10.1.2.3")], perms::READ));
//! assert!(!acl::permits(&node_acl, &[Id::new("ip", "10.1.2.3")], perms::WRITE));
//! assert!(!acl::permits(&node_acl, &[], perms::READ));
//! ```

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use sha1::{Digest as _, Sha1};

use crate::error::{Error, Result};

/// Permission bits, ZooKeeper's `ZooDefs.Perms`.
pub mod perms {
    /// Read a znode's data and list its children (and see its stat through `exists`).
    pub const READ: i32 = 1;
    /// Set a znode's data.
    pub const WRITE: i32 = 2;
    /// Create children.
    pub const CREATE: i32 = 4;
    /// Delete children.
    pub const DELETE: i32 = 8;
    /// Set the znode's ACL (and read it unredacted).
    pub const ADMIN: i32 = 16;
    /// Every permission.
    pub const ALL: i32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

/// The `world` scheme: its one id, `anyone`, is everybody.
pub const WORLD: &str = "world";
/// `world`'s one id.
pub const ANYONE: &str = "anyone";
/// The `digest` scheme: `user:base64(sha1("user:password"))`.
pub const DIGEST: &str = "digest";
/// The `ip` scheme: a client address, or a range of them in an ACL.
pub const IP: &str = "ip";
/// A client authenticated by SASL (`sasl:<user>`, see [`crate::SaslConfig`]).
pub const SASL: &str = "sasl";
/// The `auth` scheme: in an ACL given to create or set_acl, stands for every id the
/// caller has authenticated (digest ids, not ip ones).
pub const AUTH: &str = "auth";
/// The scheme of the super user's id: a caller holding one passes every check.
pub const SUPER: &str = "super";

/// An identity: a scheme and an id within it (ZooKeeper's `Id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    /// `world`, `digest`, `ip`, `auth` (in ACLs given to create and set_acl) or `super`.
    pub scheme: String,
    /// The id within the scheme.
    pub id: String,
}

impl Id {
    /// The id `scheme:id`.
    pub fn new(scheme: impl Into<String>, id: impl Into<String>) -> Id {
        Id {
            scheme: scheme.into(),
            id: id.into(),
        }
    }

    /// `world:anyone`, everybody (ZooKeeper's `ANYONE_ID_UNSAFE`).
    pub fn anyone() -> Id {
        Id::new(WORLD, ANYONE)
    }

    /// `auth:` — in an ACL, the caller's authenticated ids (ZooKeeper's `AUTH_IDS`).
    pub fn auth() -> Id {
        Id::new(AUTH, "")
    }

    /// The super user's id, `super:` (what a session that authenticated with the node's
    /// super digest holds; also the identity of a [`Node`](crate::Node)'s own calls).
    pub fn super_user() -> Id {
        Id::new(SUPER, "")
    }

    /// The digest id of `user` with `password`: `digest:user:base64(sha1)`.
    pub fn digest(user: &str, password: &str) -> Id {
        Id::new(DIGEST, digest(user, password))
    }

    /// True for an id of the `super` scheme.
    pub fn is_super(&self) -> bool {
        self.scheme == SUPER
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.scheme, self.id)
    }
}

/// One ACL entry: the permissions ([`perms`]) granted to an [`Id`] (ZooKeeper's `ACL`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Acl {
    /// Bits of [`perms`].
    pub perms: i32,
    /// Who gets them.
    pub id: Id,
}

impl Acl {
    /// The entry granting `perms` to `id`.
    pub fn new(perms: i32, id: Id) -> Acl {
        Acl { perms, id }
    }

    /// Everybody may do everything: `world:anyone` with [`perms::ALL`] (ZooKeeper's
    /// `OPEN_ACL_UNSAFE`). The ACL of znodes created without one.
    pub fn open_unsafe() -> Vec<Acl> {
        vec![Acl::new(perms::ALL, Id::anyone())]
    }

    /// Everybody may read: `world:anyone` with [`perms::READ`] (ZooKeeper's
    /// `READ_ACL_UNSAFE`).
    pub fn read_unsafe() -> Vec<Acl> {
        vec![Acl::new(perms::READ, Id::anyone())]
    }

    /// Everything for the creator's authenticated ids: `auth:` with [`perms::ALL`]
    /// (ZooKeeper's `CREATOR_ALL_ACL`). The caller needs a digest identity
    /// ([`Session::add_auth`](crate::Session::add_auth)), else [`Error::InvalidAcl`].
    pub fn creator_all() -> Vec<Acl> {
        vec![Acl::new(perms::ALL, Id::auth())]
    }
}

impl std::fmt::Display for Acl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.id, perms_letters(self.perms))
    }
}

/// Permissions as zkCli writes them: `cdrwa`, each letter a permission held.
pub(crate) fn perms_letters(bits: i32) -> String {
    let mut p = String::with_capacity(5);
    for (bit, c) in [
        (perms::CREATE, 'c'),
        (perms::DELETE, 'd'),
        (perms::READ, 'r'),
        (perms::WRITE, 'w'),
        (perms::ADMIN, 'a'),
    ] {
        if bits & bit != 0 {
            p.push(c);
        }
    }
    p
}

/// True for the open ACL (`world:anyone` with every permission, alone), checked without
/// allocating.
pub(crate) fn is_open(acl: &[Acl]) -> bool {
    matches!(acl, [a] if a.perms == perms::ALL && a.id.scheme == WORLD && a.id.id == ANYONE)
}

/// The open ACL, shared: every znode with it points at this one allocation.
pub(crate) fn open_shared() -> Arc<[Acl]> {
    open_shared_ref().clone()
}

/// [`open_shared`], borrowed.
pub(crate) fn open_shared_ref() -> &'static Arc<[Acl]> {
    static OPEN: OnceLock<Arc<[Acl]>> = OnceLock::new();
    OPEN.get_or_init(|| Acl::open_unsafe().into())
}

/// `[super:]`: the identities of the super user (a node's own calls).
pub(crate) fn super_ids() -> &'static [Id] {
    static SUPER_IDS: OnceLock<[Id; 1]> = OnceLock::new();
    SUPER_IDS.get_or_init(|| [Id::super_user()])
}

/// The digest id of `user` with `password`: `user:` followed by the base64 of the SHA-1
/// of `user:password`, exactly as ZooKeeper's
/// `DigestAuthenticationProvider.generateDigest("user:password")`. Use it to write a
/// `digest` ACL entry, or a super digest for
/// [`NodeBuilder::super_digest`](crate::NodeBuilder::super_digest).
///
/// ```
/// assert_eq!(zkraft::acl::digest("super", "test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
/// ```
pub fn digest(user: &str, password: &str) -> String {
    let hash = Sha1::new()
        .chain_update(user.as_bytes())
        .chain_update(b":")
        .chain_update(password.as_bytes())
        .finalize();
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// True when `ids` may do `perm` (one of [`perms`]) to a znode with ACL `acl`: some
/// entry holding `perm` matches one of `ids`, or `ids` holds a super id. An empty ACL
/// permits everything, as in ZooKeeper (no znode gets one: [`fixup`] refuses it).
pub fn permits(acl: &[Acl], ids: &[Id], perm: i32) -> bool {
    if acl.is_empty() || ids.iter().any(Id::is_super) {
        return true;
    }
    acl.iter().filter(|a| a.perms & perm != 0).any(|a| {
        if a.id.scheme == WORLD && a.id.id == ANYONE {
            return true;
        }
        let matches: fn(&str, &str) -> bool = match a.id.scheme.as_str() {
            DIGEST => |id, expr| id == expr,
            IP => ip_matches,
            // ZooKeeper's SASLAuthenticationProvider: the same user, or `sasl:super`.
            SASL => |id, expr| id == expr || id == "super",
            // No provider for the scheme: nobody matches it.
            _ => return false,
        };
        ids.iter()
            .any(|id| id.scheme == a.id.scheme && matches(&id.id, &a.id.id))
    })
}

/// [`permits`], as the state machine and the read path use it: `NoAuth(path)` if not.
pub(crate) fn check(acl: &[Acl], ids: &[Id], perm: i32, path: &str) -> Result<()> {
    if permits(acl, ids, perm) {
        Ok(())
    } else {
        Err(Error::NoAuth(path.to_string()))
    }
}

/// Checks and completes an ACL given to a create or a set_acl of `path` by a caller
/// holding `ids`, as ZooKeeper's `PrepRequestProcessor.fixupACL`: duplicates are dropped
/// (the first kept); each `auth` entry is replaced by one entry per authenticated id of
/// the caller (its `digest` ids: `ip` ids are not authenticated, `super` has no
/// provider) with the same permissions. [`Error::InvalidAcl`] for an empty list, an
/// `auth` entry from a caller with no authenticated id, `world` with an id other than
/// `anyone`, a malformed `digest` or `ip` id, or any other scheme.
///
/// ```
/// use zkraft::acl::{self, perms, Acl, Id};
/// let me = Id::digest("me", "pw");
/// let acl = acl::fixup("/a", &Acl::creator_all(), &[Id::new("ip", "127.0.0.1"), me.clone()])?;
/// assert_eq!(acl, [Acl::new(perms::ALL, me)]);
/// assert!(acl::fixup("/a", &Acl::creator_all(), &[]).is_err());
/// assert!(acl::fixup("/a", &[], &[]).is_err());
/// # Ok::<(), zkraft::Error>(())
/// ```
pub fn fixup(path: &str, acl: &[Acl], ids: &[Id]) -> Result<Vec<Acl>> {
    let invalid = |reason: String| Error::InvalidAcl {
        path: path.to_string(),
        reason,
    };
    if acl.is_empty() {
        return Err(invalid("empty ACL".into()));
    }
    let mut unique: Vec<&Acl> = Vec::with_capacity(acl.len());
    for a in acl {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    let mut out = Vec::with_capacity(unique.len());
    for a in unique {
        if a.id.scheme == AUTH {
            let before = out.len();
            out.extend(
                ids.iter()
                    .filter(|id| id.scheme == DIGEST || id.scheme == SASL)
                    .map(|id| Acl::new(a.perms, id.clone())),
            );
            if out.len() == before {
                return Err(invalid(
                    "the auth scheme needs an authenticated (digest or sasl) identity".into(),
                ));
            }
        } else if is_valid_id(&a.id) {
            out.push(a.clone());
        } else {
            return Err(invalid(format!("{} is not a valid id", a.id)));
        }
    }
    Ok(out)
}

/// True for an id an ACL may hold: `world:anyone`, a well-formed `digest` id
/// (`user:hash`: two `:`-separated parts, as ZooKeeper splits them) or a well-formed `ip`
/// id (an IPv4 or IPv6 address, optionally `/bits`).
pub fn is_valid_id(id: &Id) -> bool {
    match id.scheme.as_str() {
        WORLD => id.id == ANYONE,
        DIGEST => java_split_len(&id.id, ':') == 2,
        IP => ip_is_valid(&id.id),
        SASL => kerberos_name_is_valid(&id.id),
        _ => false,
    }
}

/// A `sasl` id as ZooKeeper's `SASLAuthenticationProvider.isValid` takes it (through
/// Hadoop's `KerberosName`): anything without `@`; with one, a Kerberos principal's form,
/// `name[/host]@REALM`, no part holding `/` or `@` (parts may be empty).
fn kerberos_name_is_valid(id: &str) -> bool {
    let Some((principal, realm)) = id.split_once('@') else {
        return true;
    };
    let (name, host) = principal.split_once('/').unwrap_or((principal, ""));
    !realm.contains(['/', '@']) && !name.contains('/') && !host.contains('/')
}

/// The number of parts Java's `s.split(c)` returns: trailing empty parts are dropped.
fn java_split_len(s: &str, c: char) -> usize {
    let mut parts: Vec<&str> = s.split(c).collect();
    if parts.len() > 1 {
        while parts.last() == Some(&"") {
            parts.pop();
        }
    }
    parts.len()
}

/// `acl` as getACL shows it to a caller holding `ids`: whole with ADMIN permission, else
/// [`redacted`].
pub(crate) fn as_shown(acl: &[Acl], ids: &[Id]) -> Vec<Acl> {
    if permits(acl, ids, perms::ADMIN) {
        acl.to_vec()
    } else {
        redacted(acl)
    }
}

/// What ZooKeeper's getACL shows a caller without ADMIN permission: digest ids with the
/// hash replaced by `x` (`user:x`).
pub(crate) fn redacted(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| match a.id.id.find(':') {
            Some(i) if a.id.scheme == DIGEST => {
                Acl::new(a.perms, Id::new(DIGEST, format!("{}:x", &a.id.id[..i])))
            }
            _ => a.clone(),
        })
        .collect()
}

/// The ids `add_auth(scheme, auth)` gives a session, as ZooKeeper's authentication
/// providers: `digest` with `user:password` gives `digest:user:hash`, and also `super:`
/// when `user:hash` equals the node's `super_digest`. `ip` gives nothing here: an ip
/// identity is the client's address, which only a network front end knows (it adds it
/// itself); an embedded session has none. Anything else is [`Error::AuthFailed`]: an
/// unknown scheme, or digest credentials that are not UTF-8 `user:password`.
pub(crate) fn authenticate(
    scheme: &str,
    auth: &[u8],
    super_digest: Option<&str>,
) -> Result<Vec<Id>> {
    match scheme {
        DIGEST => {
            let creds = std::str::from_utf8(auth)
                .map_err(|_| Error::AuthFailed("digest credentials are not UTF-8".into()))?;
            let Some((user, password)) = creds.split_once(':') else {
                return Err(Error::AuthFailed(
                    "digest credentials must be user:password".into(),
                ));
            };
            let id = digest(user, password);
            let mut ids = Vec::with_capacity(2);
            if super_digest == Some(id.as_str()) {
                ids.push(Id::super_user());
            }
            ids.push(Id::new(DIGEST, id));
            Ok(ids)
        }
        IP => Ok(Vec::new()),
        other => Err(Error::AuthFailed(format!(
            "no authentication provider for scheme {other:?}"
        ))),
    }
}

/// An address as ZooKeeper's `IPAuthenticationProvider.addr2Bytes` reads it: with a `:`,
/// IPv6 (16 bytes); else with a `.`, IPv4 (4 bytes); else none.
fn addr_bytes(addr: &str) -> Option<Vec<u8>> {
    if addr.contains(':') {
        v6_bytes(addr)
    } else if addr.contains('.') {
        v4_bytes(addr)
    } else {
        None
    }
}

/// `a.b.c.d`, each part a decimal in 0..=255 (Java's `Integer.parseInt`: a sign allowed).
fn v4_bytes(addr: &str) -> Option<Vec<u8>> {
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.len() != 4 {
        return None;
    }
    parts
        .iter()
        .map(|p| {
            p.parse::<i32>()
                .ok()
                .filter(|v| (0..=255).contains(v))
                .map(|v| v as u8)
        })
        .collect()
}

/// An IPv6 address, full (eight groups) or with one `::`, each group 1–4 hex digits
/// (ZooKeeper's `parseV6addr`; no embedded IPv4, no zone).
fn v6_bytes(addr: &str) -> Option<Vec<u8>> {
    let parts: Vec<&str> = addr.split("::").collect();
    let groups = |s: &str| -> Vec<String> {
        if s.is_empty() {
            Vec::new()
        } else {
            s.split(':').map(str::to_string).collect()
        }
    };
    let (head, tail) = match parts.as_slice() {
        [all] => {
            let head: Vec<String> = all.split(':').map(str::to_string).collect();
            if head.len() != 8 {
                return None;
            }
            (head, Vec::new())
        }
        [a, b] => {
            let (head, tail) = (groups(a), groups(b));
            if head.len() + tail.len() >= 8 {
                return None;
            }
            (head, tail)
        }
        _ => return None,
    };
    let mut out = vec![0u8; 16];
    let mut fill = |at: usize, groups: &[String]| -> Option<()> {
        for (k, g) in groups.iter().enumerate() {
            if g.is_empty() || g.chars().count() > 4 {
                return None;
            }
            let v = i32::from_str_radix(g, 16).ok()?;
            out[at + 2 * k] = ((v >> 8) & 0xFF) as u8;
            out[at + 2 * k + 1] = (v & 0xFF) as u8;
        }
        Some(())
    };
    fill(0, &head)?;
    fill(16 - 2 * tail.len(), &tail)?;
    Some(out)
}

/// Keeps the first `bits` bits of `b`, zeroing the rest.
fn mask(b: &mut [u8], bits: usize) {
    for (i, byte) in b.iter_mut().enumerate() {
        let keep = bits.saturating_sub(i * 8).min(8);
        *byte &= !(0xFFu16 >> keep) as u8;
    }
}

/// `addr[/bits]`: the address bytes and the prefix length (all bits without `/`).
fn ip_range(expr: &str) -> Option<(Vec<u8>, usize)> {
    let (addr, bits) = match expr.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (expr, None),
    };
    let bytes = addr_bytes(addr)?;
    let max = bytes.len() * 8;
    let bits = match bits {
        None => max,
        Some(b) => usize::try_from(b.parse::<i32>().ok()?)
            .ok()
            .filter(|b| *b <= max)?,
    };
    Some((bytes, bits))
}

/// ZooKeeper's `IPAuthenticationProvider.isValid`.
fn ip_is_valid(expr: &str) -> bool {
    ip_range(expr).is_some()
}

/// ZooKeeper's `IPAuthenticationProvider.matches`: the client address `id` lies in the
/// range `expr` (an IPv4 id never matches an IPv6 range, nor the reverse).
fn ip_matches(id: &str, expr: &str) -> bool {
    let Some((mut range, bits)) = ip_range(expr) else {
        return false;
    };
    let Some(mut addr) = addr_bytes(id) else {
        return false;
    };
    mask(&mut range, bits);
    mask(&mut addr, bits);
    addr == range
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Id {
        Id::new(IP, s)
    }

    #[test]
    fn digest_is_zookeepers_generate_digest() {
        // Printed by ZooKeeper 3.8.0's DigestAuthenticationProvider main.
        assert_eq!(
            digest("super", "test"),
            "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
        );
        assert_eq!(
            digest("user", "password"),
            "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY="
        );
        // generateDigest("u:p:q"): the user ends at the first colon.
        assert_eq!(digest("u", "p:q"), "u:VIgTKUjc2iscZoJn2UUrdGNNgW4=");
        assert_eq!(digest("", "x"), ":57b19mLA2vMhI/edHul/TytWqWE=");
    }

    #[test]
    fn world_anyone_matches_everybody_and_only_for_its_bits() {
        let acl = Acl::read_unsafe();
        assert!(permits(&acl, &[], perms::READ));
        assert!(!permits(&acl, &[], perms::WRITE));
        assert!(permits(&Acl::open_unsafe(), &[], perms::ADMIN));
        // `world` with another id is nobody.
        let odd = vec![Acl::new(perms::ALL, Id::new(WORLD, "someone"))];
        assert!(!permits(&odd, &[Id::new(WORLD, "someone")], perms::READ));
    }

    #[test]
    fn digest_matches_exactly() {
        let alice = Id::digest("alice", "pw");
        let acl = vec![Acl::new(perms::READ | perms::WRITE, alice.clone())];
        assert!(permits(&acl, std::slice::from_ref(&alice), perms::WRITE));
        assert!(!permits(&acl, std::slice::from_ref(&alice), perms::DELETE));
        assert!(!permits(&acl, &[Id::digest("alice", "other")], perms::READ));
        assert!(!permits(&acl, &[Id::digest("bob", "pw")], perms::READ));
        // The same string in another scheme is not the same id.
        assert!(!permits(
            &acl,
            &[Id::new(IP, alice.id.clone())],
            perms::READ
        ));
    }

    #[test]
    fn super_passes_everything_and_empty_acls_pass_everybody() {
        let acl = vec![Acl::new(perms::READ, Id::digest("a", "b"))];
        assert!(permits(&acl, &[Id::super_user()], perms::ADMIN));
        assert!(permits(&acl, &[Id::new(SUPER, "anything")], perms::DELETE));
        assert!(permits(&[], &[], perms::ALL));
        // An ACL entry in the super scheme matches nobody (there is no provider).
        let s = vec![Acl::new(perms::ALL, Id::new(SUPER, "x"))];
        assert!(!permits(&s, &[Id::digest("a", "b")], perms::READ));
    }

    #[test]
    fn ip_matches_addresses_and_cidr_ranges() {
        let cases = [
            ("10.0.0.1", "10.0.0.1", true),
            ("10.0.0.1", "10.0.0.2", false),
            ("10.0.0.0/8", "10.200.3.4", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("192.168.1.0/24", "192.168.1.255", true),
            ("192.168.1.0/24", "192.168.2.1", false),
            ("192.168.1.7/30", "192.168.1.4", true),
            ("192.168.1.7/30", "192.168.1.8", false),
            ("0.0.0.0/0", "1.2.3.4", true),
            ("1.2.3.4/32", "1.2.3.4", true),
            ("1.2.3.4/33", "1.2.3.4", false),
            ("1.2.3.4/-1", "1.2.3.4", false),
            ("1.2.3.4/", "1.2.3.4", false),
            ("1.2.3", "1.2.3", false),
            ("1.2.3.256", "1.2.3.0", false),
            ("localhost", "localhost", false),
            // Java's parseInt takes a sign.
            ("+1.2.3.4", "1.2.3.4", true),
            // IPv6.
            ("::1", "0:0:0:0:0:0:0:1", true),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            (
                "2001:db8::1",
                "2001:0db8:0000:0000:0000:0000:0000:0001",
                true,
            ),
            ("fe80::/10", "febf::1", true),
            ("fe80::/10", "fec0::1", false),
            ("::/0", "1::", true),
            ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8", true),
            ("1:2:3:4:5:6:7::8", "1:2:3:4:5:6:7:8", false),
            (":::1", "::1", false),
            ("1::2::3", "1::3", false),
            ("12345::", "12345::", false),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4", false),
            // Families never match each other, whatever the prefix.
            ("::/0", "1.2.3.4", false),
            ("0.0.0.0/0", "::1", false),
        ];
        for (expr, addr, want) in cases {
            let acl = vec![Acl::new(perms::READ, ip(expr))];
            assert_eq!(
                permits(&acl, &[ip(addr)], perms::READ),
                want,
                "{addr} in {expr}"
            );
        }
    }

    #[test]
    fn ip_ids_are_validated_as_zookeeper_does() {
        for good in [
            "1.2.3.4",
            "1.2.3.4/0",
            "10.0.0.0/8",
            "::1",
            "2001:db8::/128",
            "::",
        ] {
            assert!(is_valid_id(&ip(good)), "{good}");
        }
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.4/33",
            "1.2.3.4/x",
            "1.2.3.4/",
            "::1/129",
            "host",
            "1::2::3",
            "g::1",
            "::1%eth0",
        ] {
            assert!(!is_valid_id(&ip(bad)), "{bad}");
        }
    }

    #[test]
    fn digest_ids_are_validated_as_java_splits_them() {
        for good in ["u:hash", ":hash", "a:b:"] {
            assert!(is_valid_id(&Id::new(DIGEST, good)), "{good}");
        }
        for bad in ["", "u", "u:", ":", "a:b:c", "a::b"] {
            assert!(!is_valid_id(&Id::new(DIGEST, bad)), "{bad}");
        }
    }

    #[test]
    fn fixup_validates_and_expands_as_zookeeper() {
        let me = Id::digest("me", "pw");
        let ids = [ip("127.0.0.1"), Id::super_user(), me.clone()];
        // Empty: invalid.
        assert_eq!(fixup("/a", &[], &ids).unwrap_err().code(), -114);
        // `auth` expands to the digest ids only; its own id string is ignored.
        let got = fixup(
            "/a",
            &[Acl::new(perms::READ, Id::new(AUTH, "whatever"))],
            &ids,
        )
        .unwrap();
        assert_eq!(got, [Acl::new(perms::READ, me.clone())]);
        // No digest id: invalid, even for super or with an ip id.
        for ids in [&[][..], &[ip("1.2.3.4")][..], &[Id::super_user()][..]] {
            assert!(matches!(
                fixup("/a", &Acl::creator_all(), ids),
                Err(Error::InvalidAcl { .. })
            ));
        }
        // Duplicates go, the first kept; order stays.
        let dup = [
            Acl::new(perms::READ, Id::anyone()),
            Acl::new(perms::ALL, ip("10.0.0.0/8")),
            Acl::new(perms::READ, Id::anyone()),
        ];
        assert_eq!(fixup("/a", &dup, &[]).unwrap(), dup[..2]);
        // Unknown schemes, world with another id, malformed ids: invalid.
        for bad in [
            Id::new(SASL, "a@b@c"),
            Id::new(SASL, "a/b/c@R"),
            Id::new(SASL, "a@R/x"),
            Id::new("x509", "CN=someone"),
            Id::new(SUPER, ""),
            Id::new(WORLD, "everyone"),
            Id::new(DIGEST, "no-colon"),
            Id::new(IP, "not-an-address"),
        ] {
            let acl = [Acl::open_unsafe()[0].clone(), Acl::new(perms::ALL, bad)];
            assert!(
                matches!(fixup("/p", &acl, &ids), Err(Error::InvalidAcl { ref path, .. }) if path == "/p"),
                "{acl:?}"
            );
        }
        // Several authenticated ids: one entry each; a SASL identity is one too.
        let two = [Id::digest("a", "1"), Id::digest("b", "2")];
        assert_eq!(fixup("/a", &Acl::creator_all(), &two).unwrap().len(), 2);
        let sasl = Id::new(SASL, "alice");
        assert_eq!(
            fixup("/a", &Acl::creator_all(), &[ip("1.2.3.4"), sasl.clone()]).unwrap(),
            [Acl::new(perms::ALL, sasl.clone())]
        );
        // SASL ids (Kerberos principals' form) are valid, and match the same user only
        // (or `sasl:super`, as ZooKeeper's provider).
        for good in [
            "alice",
            "zookeeper/host.example@EXAMPLE.COM",
            "bob@REALM",
            "",
            "a/b/c",
            "a@",
            "/h@R",
        ] {
            assert!(is_valid_id(&Id::new(SASL, good)), "{good}");
        }
        let acl = [Acl::new(perms::READ, sasl.clone())];
        assert!(permits(&acl, &[sasl], perms::READ));
        assert!(permits(&acl, &[Id::new(SASL, "super")], perms::READ));
        assert!(!permits(&acl, &[Id::new(SASL, "bob")], perms::READ));
        assert!(!permits(&acl, &[Id::new(DIGEST, "alice")], perms::READ));
    }

    #[test]
    fn authentication_gives_zookeepers_ids() {
        let super_digest = digest("super", "test");
        assert_eq!(
            authenticate(DIGEST, b"user:password", Some(&super_digest)).unwrap(),
            [Id::new(DIGEST, "user:tpUq/4Pn5A64fVZyQ0gOJ8ZWqkY=")]
        );
        assert_eq!(
            authenticate(DIGEST, b"super:test", Some(&super_digest)).unwrap(),
            [Id::super_user(), Id::new(DIGEST, super_digest.clone())]
        );
        assert!(!authenticate(DIGEST, b"super:test", None).unwrap()[0].is_super());
        assert!(!authenticate(DIGEST, b"super:wrong", Some(&super_digest)).unwrap()[0].is_super());
        for (scheme, auth) in [
            (DIGEST, &b"no colon"[..]),
            (DIGEST, &[0xff, b':', 0xfe][..]),
            ("sasl", &b"x"[..]),
            ("", &b""[..]),
        ] {
            assert_eq!(authenticate(scheme, auth, None).unwrap_err().code(), -115);
        }
        assert!(authenticate(IP, b"anything", None).unwrap().is_empty());
    }

    #[test]
    fn redaction_hides_digest_hashes_only() {
        let acl = vec![
            Acl::new(perms::ALL, Id::digest("alice", "pw")),
            Acl::new(perms::READ, ip("10.0.0.0/8")),
            Acl::new(perms::READ, Id::anyone()),
        ];
        let r = redacted(&acl);
        assert_eq!(r[0].id, Id::new(DIGEST, "alice:x"));
        assert_eq!(r[1..], acl[1..]);
    }

    #[test]
    fn display_is_zkclis() {
        let a = Acl::new(perms::READ | perms::ADMIN, Id::digest("u", "p"));
        assert!(a.to_string().starts_with("digest:u:") && a.to_string().ends_with(":ra"));
        assert_eq!(Acl::open_unsafe()[0].to_string(), "world:anyone:cdrwa");
    }
}
