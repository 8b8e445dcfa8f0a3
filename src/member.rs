//! The members of an ensemble as its configuration holds them, in ZooKeeper's dynamic
//! configuration syntax: a [`MemberSpec`] is what follows `server.N=` in ZooKeeper's
//! `zoo.cfg` or `/zookeeper/config`, and [`Configuration`] renders the text of
//! `/zookeeper/config`.
//!
//! ```text
//! server.1=10.0.0.1:2888:3888:participant;10.0.0.1:2181
//! server.4=10.0.0.4:2888:3888:observer;2181
//! version=100000000
//! ```
//!
//! zkraft members talk over one peer port: the first port is the one peers dial; the
//! second (ZooKeeper's election port) is kept only to be shown, and may be left out
//! (`host:port`, zkraft's short form). The role is `participant` (a raft voter) or
//! `observer` (a raft learner: it receives the log and serves, but never votes); the client
//! address, after `;`, is `host:port` or a port alone (on `0.0.0.0`, as ZooKeeper reads it).
//! Nothing here does I/O: addresses are not resolved.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::{Error, Result};

/// Most bytes of a member spec (it is persisted and carried in raft entries).
pub const MAX_SPEC_LEN: usize = 255;

/// A member's part in the ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberRole {
    /// Votes and can lead (a raft voter): ZooKeeper's participant.
    Participant,
    /// Receives the log and serves reads, sessions and watches, forwards writes, and never
    /// counts towards a quorum (a raft learner): ZooKeeper's observer.
    Observer,
}

impl MemberRole {
    /// ZooKeeper's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Participant => "participant",
            MemberRole::Observer => "observer",
        }
    }
}

/// One member: where peers reach it, its role, and where clients reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MemberSpec {
    /// The host peers dial (a name, an IPv4 address, or an IPv6 address without brackets).
    pub host: String,
    /// The peer port.
    pub port: u16,
    /// ZooKeeper's election port, when one was given (zkraft does not use it).
    pub election_port: Option<u16>,
    /// Participant or observer.
    pub role: MemberRole,
    /// Where clients connect (`host`, port), when known.
    pub client: Option<(String, u16)>,
}

fn bad(spec: &str, why: &str) -> Error {
    Error::BadArguments(format!("wrong format of server string {spec:?}: {why}"))
}

/// Splits `host:port[:more...]`, the host possibly an IPv6 address in brackets.
fn host_and_rest(s: &str) -> Option<(&str, Vec<&str>)> {
    if let Some(inner) = s.strip_prefix('[') {
        let (host, rest) = inner.split_once(']')?;
        let rest = rest.strip_prefix(':')?;
        Some((host, rest.split(':').collect()))
    } else {
        let mut parts = s.split(':');
        let host = parts.next()?;
        Some((host, parts.collect()))
    }
}

fn port(spec: &str, s: &str) -> Result<u16> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(bad(spec, "a port is a number from 1 to 65535")),
    }
}

fn valid_host(spec: &str, host: &str) -> Result<()> {
    if host.is_empty()
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "[];=,|/".contains(c))
    {
        return Err(bad(spec, "a host name or address is expected"));
    }
    Ok(())
}

impl MemberSpec {
    /// A participant reached by peers at `host:port`, with no client address.
    pub fn participant(host: impl Into<String>, port: u16) -> MemberSpec {
        MemberSpec {
            host: host.into(),
            port,
            election_port: None,
            role: MemberRole::Participant,
            client: None,
        }
    }

    /// Reads `host:port[:electionPort][:participant|:observer][;[clientHost:]clientPort]`.
    /// Refused with [`Error::BadArguments`]: anything else, more than [`MAX_SPEC_LEN`]
    /// bytes, ZooKeeper's multi-address form (`|`), equal peer and election ports.
    pub fn parse(spec: &str) -> Result<MemberSpec> {
        if spec.len() > MAX_SPEC_LEN {
            return Err(bad(spec, "too long"));
        }
        let spec_trimmed = spec.trim();
        let (server, client) = match spec_trimmed.split_once(';') {
            Some((s, c)) => (s, Some(c)),
            None => (spec_trimmed, None),
        };
        if server.contains('|') {
            return Err(bad(spec, "one address per member"));
        }
        let (host, rest) = host_and_rest(server).ok_or_else(|| bad(spec, "host:port expected"))?;
        valid_host(spec, host)?;
        // An election port of 0 is none (what `Display` writes for none).
        let election = |e: &str| -> Result<Option<u16>> {
            match e {
                "0" => Ok(None),
                e => port(spec, e).map(Some),
            }
        };
        let (peer_port, election_port, role) = match rest[..] {
            [p] => (port(spec, p)?, None, None),
            [p, x] if x.parse::<u16>().is_ok() => (port(spec, p)?, election(x)?, None),
            [p, r] => (port(spec, p)?, None, Some(r)),
            [p, e, r] => (port(spec, p)?, election(e)?, Some(r)),
            _ => return Err(bad(spec, "host:port[:port][:role] expected")),
        };
        if election_port == Some(peer_port) {
            return Err(bad(spec, "the peer and election ports must differ"));
        }
        let role = match role {
            None | Some("participant") => MemberRole::Participant,
            Some("observer") => MemberRole::Observer,
            Some(_) => return Err(bad(spec, "the role is participant or observer")),
        };
        let client = match client {
            None => None,
            Some(c) => {
                let c = c.trim();
                let (chost, cport) = match c.parse::<u16>() {
                    Ok(_) => ("0.0.0.0", c),
                    Err(_) => match host_and_rest(c) {
                        Some((h, rest)) if rest.len() == 1 => (h, rest[0]),
                        _ => return Err(bad(spec, "the client address is [host:]port")),
                    },
                };
                valid_host(spec, chost)?;
                Some((chost.to_string(), port(spec, cport)?))
            }
        };
        Ok(MemberSpec {
            host: host.to_string(),
            port: peer_port,
            election_port,
            role,
            client,
        })
    }

    /// `host:port`, for dialling (an IPv6 address in brackets).
    pub fn peer_addr(&self) -> String {
        format!("{}:{}", bracketed(&self.host), self.port)
    }

    /// The client address as `host:port`, when known.
    pub fn client_addr(&self) -> Option<String> {
        self.client
            .as_ref()
            .map(|(h, p)| format!("{}:{p}", bracketed(h)))
    }

    /// This spec with another role.
    pub fn with_role(mut self, role: MemberRole) -> MemberSpec {
        self.role = role;
        self
    }
}

fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// ZooKeeper's form, `host:port:electionPort:role[;clientHost:clientPort]`, which
/// ZooKeeper's own parser (and so Curator's ensemble tracker) reads: a member without an
/// election port shows `0` there. [`MemberSpec::parse`] reads it back to the same spec.
impl fmt::Display for MemberSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}:{}",
            bracketed(&self.host),
            self.port,
            self.election_port.unwrap_or(0),
            self.role.as_str()
        )?;
        if let Some(client) = self.client_addr() {
            write!(f, ";{client}")?;
        }
        Ok(())
    }
}

/// Reads one `server.N=SPEC` line (or `N=SPEC`, zkraft's `--peers` form) into the id and
/// the spec.
pub fn parse_server(line: &str) -> Result<(u64, MemberSpec)> {
    let (key, spec) = line
        .split_once('=')
        .ok_or_else(|| bad(line, "server.N=host:port... expected"))?;
    let key = key.trim();
    let id = key.strip_prefix("server.").unwrap_or(key);
    let id = match id.parse::<u64>() {
        Ok(id) if id > 0 => id,
        _ => return Err(bad(line, "the server id is a positive number")),
    };
    Ok((id, MemberSpec::parse(spec)?))
}

/// The ensemble's configuration: every member by id, and its version (the zxid of the
/// entry that made it, 0 for the configuration an ensemble was started with).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Configuration {
    /// The members by id, each with the role it has now.
    pub members: BTreeMap<u64, MemberSpec>,
    /// The zxid of the change that made this configuration.
    pub version: u64,
}

impl Configuration {
    /// The voters' ids.
    pub fn voters(&self) -> Vec<u64> {
        self.with_role(MemberRole::Participant)
    }

    /// The observers' ids.
    pub fn observers(&self) -> Vec<u64> {
        self.with_role(MemberRole::Observer)
    }

    fn with_role(&self, role: MemberRole) -> Vec<u64> {
        self.members
            .iter()
            .filter(|(_, m)| m.role == role)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The text of `/zookeeper/config`: a `server.N=SPEC` line per member by id, then
    /// `version=` and the version in hexadecimal, as ZooKeeper writes it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (id, m) in &self.members {
            out.push_str(&format!("server.{id}={m}\n"));
        }
        out.push_str(&format!("version={:x}", self.version));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zookeeper_server_strings_are_read_and_written_back() {
        for s in [
            "0.0.0.0:1234:2345:observer;0.0.0.0:3456",
            "10.0.0.1:2888:3888:participant;10.0.0.1:2181",
            "zk-1.internal:2888:3888:participant",
            "[::1]:2888:3888:observer;[::1]:2181",
        ] {
            assert_eq!(MemberSpec::parse(s).unwrap().to_string(), s);
        }
        let short = MemberSpec::parse("127.0.0.1:2701").unwrap();
        assert_eq!(short, MemberSpec::participant("127.0.0.1", 2701));
        assert_eq!(short.to_string(), "127.0.0.1:2701:0:participant");
        assert_eq!(MemberSpec::parse(&short.to_string()).unwrap(), short);
        assert_eq!(short.peer_addr(), "127.0.0.1:2701");
        let port_only = MemberSpec::parse("h:1:2;2181").unwrap();
        assert_eq!(port_only.client_addr().unwrap(), "0.0.0.0:2181");
        assert_eq!(port_only.role, MemberRole::Participant);
        let observer = MemberSpec::parse("h:1:observer").unwrap();
        assert_eq!(
            (observer.role, observer.election_port),
            (MemberRole::Observer, None)
        );
        assert_eq!(MemberSpec::parse("[::1]:7").unwrap().peer_addr(), "[::1]:7");
    }

    #[test]
    fn malformed_server_strings_are_bad_arguments() {
        for s in [
            "some thing",
            "",
            "host",
            "host:",
            "host:0",
            "host:70000",
            "host:1:1",
            "host:1:2:leader",
            "host:1:2:observer:9",
            "a|b:1:2",
            "host:1:2;",
            "host:1:2;h:x",
            "ho st:1",
            "[::1:2",
        ] {
            let e = MemberSpec::parse(s).unwrap_err();
            assert_eq!(e.code(), -8, "{s:?}: {e}");
        }
        assert!(MemberSpec::parse(&format!("{}:1", "h".repeat(300))).is_err());
        for line in ["some thing", "server.x=h:1", "server.0=h:1", "server.1=h"] {
            assert_eq!(parse_server(line).unwrap_err().code(), -8, "{line:?}");
        }
        assert_eq!(
            parse_server("server.100=0.0.0.0:1:2:observer;0.0.0.0:3")
                .unwrap()
                .0,
            100
        );
        assert_eq!(parse_server("4=h:1").unwrap().0, 4);
    }

    #[test]
    fn the_configuration_renders_as_zookeeper_writes_it() {
        let mut c = Configuration::default();
        c.members.insert(3, MemberSpec::participant("h3", 3));
        c.members
            .insert(1, MemberSpec::parse("h1:1:11;2181").unwrap());
        c.members
            .insert(100, MemberSpec::parse("h:5:6:observer;h:7").unwrap());
        c.version = 0x1_0000_0002;
        assert_eq!(
            c.render(),
            "server.1=h1:1:11:participant;0.0.0.0:2181\nserver.3=h3:3:0:participant\n\
             server.100=h:5:6:observer;h:7\nversion=100000002"
        );
        assert_eq!(c.voters(), [1, 3]);
        assert_eq!(c.observers(), [100]);
    }
}
