//! SASL on the client port: the server side of DIGEST-MD5 (RFC 2831), as a ZooKeeper server
//! runs it with the users of its JAAS `Server` section (`DigestLoginModule`, `user_<name>`
//! entries).
//!
//! A client that completes the exchange holds the identity `sasl:<name>` for ACLs (and
//! `super:` when `<name>` is the configured super user, ZooKeeper's
//! `zookeeper.superUser`). Bad credentials are `AuthFailed`.
//!
//! The exchange, as kazoo (pure-sasl) and ZooKeeper's Java client run it:
//! 1. the client sends an empty token; the server answers a challenge
//!    (`realm="zk-sasl-md5",nonce="…",qop="auth",charset=utf-8,algorithm=md5-sess`);
//! 2. the client answers with its digest of the password; the server checks it and
//!    answers `rspauth=…`, its own digest, which proves to the client it knows the password
//!    too.
//!
//! DIGEST-MD5 is obsolete (RFC 6331) and no maintained Rust crate serves it, so it is
//! written out here: ZooKeeper deployments (Kafka, HBase) still use it, over TLS where the
//! network is not trusted. Only `qop=auth` is served (no integrity or confidentiality
//! layer, which ZooKeeper does not use either). Kerberos (GSSAPI) is not served.

use std::collections::BTreeMap;
use std::path::Path;

use md5::{Digest, Md5};

use crate::acl::Id;
use crate::error::{Error, Result};

/// The realm and server name ZooKeeper uses for DIGEST-MD5 (its `SecurityUtils`).
pub(crate) const REALM: &str = "zk-sasl-md5";
/// The digest-uri a client must name: `zookeeper/zk-sasl-md5`.
const DIGEST_URI: &str = "zookeeper/zk-sasl-md5";
/// The longest client token read (a digest-response is a few hundred bytes).
const MAX_TOKEN: usize = 4096;

/// The users a client port authenticates with DIGEST-MD5, and its super user.
///
/// ```
/// let sasl = zkraft::SaslConfig::from_jaas(r#"
///     Server {
///         org.apache.zookeeper.server.auth.DigestLoginModule required
///         user_super="adminsecret"
///         user_bob="bobsecret";
///     };
/// "#)?.super_user("super");
/// assert_eq!(sasl.users().count(), 2);
/// # Ok::<(), zkraft::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct SaslConfig {
    users: BTreeMap<String, String>,
    super_user: Option<String>,
}

impl std::fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslConfig")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("super_user", &self.super_user)
            .finish()
    }
}

impl SaslConfig {
    /// No users.
    pub fn new() -> SaslConfig {
        SaslConfig::default()
    }

    /// Adds (or replaces) a user.
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.users.insert(name.into(), password.into());
        self
    }

    /// The user who is also the super user once authenticated (ZooKeeper's
    /// `zookeeper.superUser`).
    pub fn super_user(mut self, name: impl Into<String>) -> Self {
        self.super_user = Some(name.into());
        self
    }

    /// The names of the users.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// The users of the `Server` section of a JAAS file as ZooKeeper reads it: each
    /// `user_<name>="<password>"` option of its login module is a user.
    pub fn from_jaas(text: &str) -> Result<SaslConfig> {
        let bad = |m: &str| Error::Config(format!("JAAS file: {m}"));
        let tokens = jaas_tokens(text).map_err(|m| bad(&m))?;
        let mut at = 0;
        let mut config = None;
        while at < tokens.len() {
            // NAME { entries } ;
            let name = &tokens[at];
            if tokens.get(at + 1).map(String::as_str) != Some("{") {
                return Err(bad(&format!("expected {{ after {name:?}")));
            }
            let end = tokens[at..]
                .iter()
                .position(|t| t == "}")
                .map(|i| at + i)
                .ok_or_else(|| bad(&format!("section {name:?} has no closing }}")))?;
            if name == "Server" {
                let mut users = SaslConfig::new();
                let body = &tokens[at + 2..end];
                let mut i = 0;
                while i < body.len() {
                    if body.get(i + 1).map(String::as_str) == Some("=") {
                        let value = body
                            .get(i + 2)
                            .ok_or_else(|| bad(&format!("{} has no value", body[i])))?;
                        if let Some(user) = body[i].strip_prefix("user_") {
                            users = users.user(user, unquote(value));
                        }
                        i += 3;
                    } else {
                        i += 1;
                    }
                }
                config = Some(users);
            }
            at = end + 1;
            if tokens.get(at).map(String::as_str) == Some(";") {
                at += 1;
            }
        }
        let config = config.ok_or_else(|| bad("no Server section"))?;
        if config.users.is_empty() {
            return Err(bad("the Server section has no user_<name> entry"));
        }
        Ok(config)
    }

    /// [`SaslConfig::from_jaas`] of a file.
    pub fn from_jaas_file(path: impl AsRef<Path>) -> Result<SaslConfig> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("JAAS file {}: {e}", path.display())))?;
        Self::from_jaas(&text).map_err(|e| Error::Config(format!("{} ({})", e, path.display())))
    }
}

/// Splits a JAAS file into words, quoted strings (kept with their quotes), and the
/// punctuation `{ } ; =`, without comments.
fn jaas_tokens(text: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                loop {
                    match chars.next() {
                        Some('/') if last == '*' => break,
                        Some(c) => last = c,
                        None => return Err("unterminated comment".into()),
                    }
                }
            }
            '{' | '}' | ';' | '=' => out.push(c.to_string()),
            '"' => {
                let mut s = String::from('"');
                loop {
                    match chars.next() {
                        Some('\\') => match chars.next() {
                            Some(e) => s.push(e),
                            None => return Err("unterminated string".into()),
                        },
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err("unterminated string".into()),
                    }
                }
                s.push('"');
                out.push(s);
            }
            c => {
                let mut s = c.to_string();
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || "{};=\"".contains(n) {
                        break;
                    }
                    s.push(n);
                    chars.next();
                }
                out.push(s);
            }
        }
    }
    Ok(out)
}

fn unquote(s: &str) -> String {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
        .to_string()
}

/// What one step of an exchange answers.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A token for the client; the exchange goes on.
    Continue(Vec<u8>),
    /// The client is authenticated with these ids; the token (`rspauth`) goes to it.
    Done { token: Vec<u8>, ids: Vec<Id> },
}

/// One connection's DIGEST-MD5 exchange, server side.
#[derive(Debug, Default)]
pub(crate) struct Exchange {
    /// The nonce of the challenge sent, once sent.
    nonce: Option<String>,
    done: bool,
}

impl Exchange {
    /// Takes the client's next token: the answer, or `AuthFailed` (the exchange is over).
    pub(crate) fn step(&mut self, config: &SaslConfig, token: &[u8]) -> Result<Step> {
        let failed = |m: &str| Error::AuthFailed(format!("SASL DIGEST-MD5: {m}"));
        if self.done {
            return Err(failed("already authenticated"));
        }
        let Some(nonce) = self.nonce.take() else {
            // The first token is empty (DIGEST-MD5 has no initial response): challenge.
            let nonce = new_nonce()?;
            let challenge = format!(
                "realm=\"{REALM}\",nonce=\"{nonce}\",qop=\"auth\",charset=utf-8,algorithm=md5-sess"
            );
            self.nonce = Some(nonce);
            return Ok(Step::Continue(challenge.into_bytes()));
        };
        // Whatever comes now ends the exchange: one digest-response per challenge.
        self.done = true;
        if token.len() > MAX_TOKEN {
            return Err(failed("response too long"));
        }
        let text = std::str::from_utf8(token).map_err(|_| failed("response is not UTF-8"))?;
        let fields = parse_fields(text).ok_or_else(|| failed("malformed response"))?;
        let field = |k: &str| fields.get(k).map(String::as_str);
        let need = |k: &str| field(k).ok_or_else(|| failed(&format!("no {k}")));
        let user = need("username")?;
        if need("nonce")? != nonce {
            return Err(failed("not the nonce of the challenge"));
        }
        let nc = need("nc")?;
        if nc != "00000001" {
            return Err(failed("nonce count is not 1"));
        }
        let cnonce = need("cnonce")?;
        let qop = field("qop").unwrap_or("auth");
        if qop != "auth" {
            return Err(failed("only qop=auth is served"));
        }
        let uri = need("digest-uri")?;
        if !uri.eq_ignore_ascii_case(DIGEST_URI) {
            return Err(failed(&format!("digest-uri {uri:?} is not {DIGEST_URI}")));
        }
        // A response without a realm hashes an empty one (RFC 2831 §2.1.2.1).
        let realm = field("realm").unwrap_or("");
        if !realm.is_empty() && realm != REALM {
            return Err(failed("another realm"));
        }
        let authzid = field("authzid");
        if authzid.is_some_and(|a| a != user) {
            return Err(failed("authorization id other than the user"));
        }
        let known = config.users.get(user);
        let key = Secret {
            user,
            realm,
            // An unknown user costs the same digests as a known one.
            password: known.map_or("", String::as_str),
            nonce: &nonce,
            cnonce,
            authzid,
            latin1: field("charset").is_some_and(|c| c.eq_ignore_ascii_case("utf-8")),
        };
        let expected = key.digest(&format!("AUTHENTICATE:{uri}"), nc, qop);
        let given = need("response")?.to_ascii_lowercase();
        if known.is_none() {
            return Err(failed(&format!("unknown user {user:?}")));
        }
        if !same(expected.as_bytes(), given.as_bytes()) {
            return Err(failed(&format!("wrong password for {user:?}")));
        }
        let rspauth = format!("rspauth={}", key.digest(&format!(":{uri}"), nc, qop));
        let mut ids = vec![Id::new(crate::acl::SASL, user)];
        if config.super_user.as_deref() == Some(user) {
            ids.push(Id::super_user());
        }
        Ok(Step::Done {
            token: rspauth.into_bytes(),
            ids,
        })
    }
}

/// What both digests are made of.
struct Secret<'a> {
    user: &'a str,
    realm: &'a str,
    password: &'a str,
    nonce: &'a str,
    cnonce: &'a str,
    authzid: Option<&'a str>,
    /// The client said `charset=utf-8`: the user, realm and password are hashed in
    /// ISO-8859-1 when they fit in it (RFC 2831 §2.1.2.1, as Java's SASL does).
    latin1: bool,
}

impl Secret<'_> {
    /// RFC 2831 §2.1.2.1: HEX(KD(HEX(H(A1)), nonce:nc:cnonce:qop:HEX(H(A2)))), with
    /// A1 = H(user:realm:password):nonce:cnonce[:authzid].
    fn digest(&self, a2: &str, nc: &str, qop: &str) -> String {
        let mut key = Md5::new();
        key.update(self.encoded(self.user));
        key.update(b":");
        key.update(self.encoded(self.realm));
        key.update(b":");
        key.update(self.encoded(self.password));
        let key = key.finalize();
        let mut a1 = Md5::new();
        a1.update(key);
        a1.update(format!(":{}:{}", self.nonce, self.cnonce));
        if let Some(z) = self.authzid {
            a1.update(format!(":{z}"));
        }
        let ha1 = hex(&a1.finalize());
        let ha2 = hex(&Md5::digest(a2));
        hex(&Md5::digest(format!(
            "{ha1}:{}:{nc}:{}:{qop}:{ha2}",
            self.nonce, self.cnonce
        )))
    }
}

impl Secret<'_> {
    /// `s` as the digest hashes it: ISO-8859-1 if the client said `charset=utf-8` and
    /// every character fits, else UTF-8.
    fn encoded(&self, s: &str) -> Vec<u8> {
        if self.latin1 && s.chars().all(|c| u32::from(c) <= 0xff) {
            s.chars().map(|c| u32::from(c) as u8).collect()
        } else {
            s.as_bytes().to_vec()
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal, comparing every byte (no early exit on the first difference).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 16 random bytes from the system's generator, base64.
fn new_nonce() -> Result<String> {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::AuthFailed("no randomness for a SASL nonce".into()))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// `key=value,key="quoted, \"value\"",…` as RFC 2831 writes a digest-response; `None`
/// when malformed or when a key repeats.
fn parse_fields(text: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        loop {
            match chars.next()? {
                '=' => break,
                // A directive without a value.
                ',' => return None,
                c => key.push(c),
            }
        }
        let key = key.trim().to_ascii_lowercase();
        if key.is_empty() {
            return None;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '"' => break,
                    c => value.push(c),
                }
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek().is_some_and(|c| *c != ',') {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        if out.insert(key, value).is_some() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's digest-response, as pure-sasl (kazoo's) makes it.
    fn respond(challenge: &[u8], user: &str, password: &str, uri: &str) -> Vec<u8> {
        let fields = parse_fields(std::str::from_utf8(challenge).unwrap()).unwrap();
        let nonce = &fields["nonce"];
        let key = Secret {
            user,
            realm: REALM,
            password,
            nonce,
            cnonce: "0.8137",
            authzid: None,
            latin1: false,
        };
        let response = key.digest(&format!("AUTHENTICATE:{uri}"), "00000001", "auth");
        format!(
            "qop=auth,realm=\"{REALM}\",username=\"{user}\",nonce=\"{nonce}\",cnonce=\"0.8137\",\
             nc=00000001,digest-uri=\"{uri}\",response={response}"
        )
        .into_bytes()
    }

    fn config() -> SaslConfig {
        SaslConfig::new()
            .user("alice", "wonderland")
            .user("root", "toor")
            .super_user("root")
    }

    #[test]
    fn the_right_password_authenticates_and_the_server_proves_it_knows_it() {
        let mut x = Exchange::default();
        let Step::Continue(challenge) = x.step(&config(), b"").unwrap() else {
            panic!("no challenge");
        };
        let text = String::from_utf8(challenge.clone()).unwrap();
        assert!(text.contains("realm=\"zk-sasl-md5\"") && text.contains("qop=\"auth\""));
        let answer = x
            .step(
                &config(),
                &respond(&challenge, "alice", "wonderland", DIGEST_URI),
            )
            .unwrap();
        let Step::Done { token, ids } = answer else {
            panic!("not done");
        };
        assert_eq!(ids, [Id::new("sasl", "alice")]);
        // rspauth is the digest with A2 = ":digest-uri" (what the client checks).
        let fields = parse_fields(std::str::from_utf8(&challenge).unwrap()).unwrap();
        let key = Secret {
            user: "alice",
            realm: REALM,
            password: "wonderland",
            nonce: &fields["nonce"],
            cnonce: "0.8137",
            authzid: None,
            latin1: false,
        };
        let want = format!(
            "rspauth={}",
            key.digest(&format!(":{DIGEST_URI}"), "00000001", "auth")
        );
        assert_eq!(token, want.into_bytes());
        // The super user gets super too.
        let mut x = Exchange::default();
        let Step::Continue(c) = x.step(&config(), b"").unwrap() else {
            panic!()
        };
        let Step::Done { ids, .. } = x
            .step(&config(), &respond(&c, "root", "toor", DIGEST_URI))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(ids, [Id::new("sasl", "root"), Id::super_user()]);
    }

    /// A known digest from RFC 2831 §4 (the IMAP example), checking the arithmetic.
    #[test]
    fn the_rfc_example_digest() {
        let key = Secret {
            user: "chris",
            realm: "elwood.innosoft.com",
            password: "secret",
            nonce: "OA6MG9tEQGm2hh",
            cnonce: "OA6MHXh6VqTrRk",
            authzid: None,
            latin1: false,
        };
        assert_eq!(
            key.digest("AUTHENTICATE:imap/elwood.innosoft.com", "00000001", "auth"),
            "d388dad90d4bbd760a152321f2143af7"
        );
        assert_eq!(
            key.digest(":imap/elwood.innosoft.com", "00000001", "auth"),
            "ea40f60335c427b5527b84dbabcdfffd"
        );
    }

    /// With `charset=utf-8`, a password that fits ISO-8859-1 is hashed in it (as a Java
    /// client hashes it); without, in UTF-8 (as pure-sasl hashes it).
    #[test]
    fn non_ascii_passwords_are_hashed_as_the_charset_says() {
        let config = SaslConfig::new().user("jörg", "pässword");
        for charset in [true, false] {
            let mut x = Exchange::default();
            let Step::Continue(c) = x.step(&config, b"").unwrap() else {
                panic!()
            };
            let fields = parse_fields(std::str::from_utf8(&c).unwrap()).unwrap();
            let key = Secret {
                user: "jörg",
                realm: REALM,
                password: "pässword",
                nonce: &fields["nonce"],
                cnonce: "c",
                authzid: None,
                latin1: charset,
            };
            let response = key.digest(&format!("AUTHENTICATE:{DIGEST_URI}"), "00000001", "auth");
            let mut token = format!(
                "username=\"jörg\",realm=\"{REALM}\",nonce=\"{}\",cnonce=\"c\",nc=00000001,\
                 qop=auth,digest-uri=\"{DIGEST_URI}\",response={response}",
                fields["nonce"]
            );
            if charset {
                token.push_str(",charset=utf-8");
            }
            assert!(
                matches!(x.step(&config, token.as_bytes()), Ok(Step::Done { .. })),
                "charset {charset}"
            );
        }
        let latin1 = Secret {
            user: "ä",
            realm: "",
            password: "",
            nonce: "",
            cnonce: "",
            authzid: None,
            latin1: true,
        };
        assert_eq!(latin1.encoded("ä"), [0xe4]);
        assert_eq!(latin1.encoded("€"), "€".as_bytes());
    }

    #[test]
    fn bad_credentials_and_bad_responses_fail() {
        type Respond = Box<dyn Fn(&[u8]) -> Vec<u8>>;
        let cases: Vec<Respond> = vec![
            Box::new(|c| respond(c, "alice", "guess", DIGEST_URI)),
            Box::new(|c| respond(c, "mallory", "wonderland", DIGEST_URI)),
            Box::new(|c| respond(c, "alice", "wonderland", "imap/zk-sasl-md5")),
            Box::new(|c| {
                let r = String::from_utf8(respond(c, "alice", "wonderland", DIGEST_URI)).unwrap();
                r.replace("nc=00000001", "nc=00000002").into_bytes()
            }),
            Box::new(|_| b"username=\"alice\",nonce=\"forged\"".to_vec()),
            Box::new(|_| b"username=\"alice".to_vec()),
            Box::new(|c| {
                let r = String::from_utf8(respond(c, "alice", "wonderland", DIGEST_URI)).unwrap();
                format!("{r},username").into_bytes()
            }),
            Box::new(|_| vec![0xff; 10]),
            Box::new(|_| vec![b'a'; MAX_TOKEN + 1]),
        ];
        for (i, make) in cases.iter().enumerate() {
            let mut x = Exchange::default();
            let Step::Continue(c) = x.step(&config(), b"").unwrap() else {
                panic!()
            };
            let got = x.step(&config(), &make(&c));
            assert!(
                matches!(got, Err(Error::AuthFailed(_))),
                "case {i}: {got:?}"
            );
            // The exchange is over: nothing more is taken.
            assert!(x.step(&config(), b"").is_err());
        }
    }

    #[test]
    fn jaas_files_are_read_as_zookeeper_reads_them() {
        let c = SaslConfig::from_jaas(
            r#"
            // ZooKeeper's server section, and a client one that is not ours.
            Server {
                org.apache.zookeeper.server.auth.DigestLoginModule required
                /* users */ user_super="admin secret"
                user_bob="bob\"s";
            };
            Client {
                org.apache.zookeeper.server.auth.DigestLoginModule required
                username="bob" password="x";
            };
            "#,
        )
        .unwrap();
        assert_eq!(c.users["super"], "admin secret");
        assert_eq!(c.users["bob"], "bob\"s");
        assert_eq!(c.users.len(), 2);
        for bad in [
            "",
            "Client { m required user_a=\"b\"; };",
            "Server { m required; };",
            "Server { m required user_a=\"b\"; ",
            "Server { user_a=\"unterminated; };",
        ] {
            assert!(SaslConfig::from_jaas(bad).is_err(), "{bad:?}");
        }
    }
}
