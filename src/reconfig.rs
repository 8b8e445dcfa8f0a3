//! ZooKeeper's `reconfig` request on a hosted session: its incremental form (servers
//! joining, ids leaving) and its non-incremental one (the new member list), checked in
//! the order ZooKeeper's `PrepRequestProcessor` checks them, then made as membership
//! changes of the replica, one member at a time. The answer is `/zookeeper/config` as it
//! then is, as ZooKeeper answers.
//!
//! Order of the checks: reconfig enabled (`ReconfigDisabled`); the expected configuration
//! version (`BadVersion`); the servers given (`BadArguments`); WRITE permission on
//! `/zookeeper/config` (`NoAuth`: its ACL is read-only for everyone, so only the super
//! user may). Another change not yet applied is answered `ReconfigInProgress` by the
//! leader, at once.
//!
//! Where ZooKeeper changes several members in one step (joint consensus), zkraft changes
//! them one at a time, leaving ids first, then joining servers in the order given: each
//! step is a safe single-member change, and a participant joins as a learner and votes once
//! it has caught up. Should a step fail, the steps before it stay made, and the answer is
//! that step's error.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::acl::{self, perms, Id};
use crate::error::{Error, Result};
use crate::host::Host;
use crate::member::{parse_server, Configuration, MemberRole};
use crate::pipeline::Reply;
use crate::replica::MemberChange;
use crate::time::deadline_after;
use crate::tree::CONFIG_PATH;

/// A `reconfig` request's fields, as ZooKeeper's `ReconfigRequest` holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconfig {
    /// Incremental: servers joining, `server.N=SPEC` separated by commas.
    pub joining: Option<String>,
    /// Incremental: ids of the servers leaving, separated by commas.
    pub leaving: Option<String>,
    /// Non-incremental: every member of the new configuration, `server.N=SPEC` separated
    /// by commas or newlines (when given, `joining` and `leaving` are not read).
    pub new_members: Option<String>,
    /// The configuration version the change is meant for, or -1 for any.
    pub from_config: i64,
}

/// The membership changes `request` asks of `config`, in the order they are made.
pub(crate) fn changes(config: &Configuration, request: &Reconfig) -> Result<Vec<MemberChange>> {
    let mut out = Vec::new();
    if let Some(members) = &request.new_members {
        let mut wanted = BTreeMap::new();
        for line in members
            .split([',', '\n'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            if line.starts_with("version=") {
                continue;
            }
            let (id, spec) = parse_server(line)?;
            if wanted.insert(id, spec).is_some() {
                return Err(Error::BadArguments(format!("server {id} is given twice")));
            }
        }
        if wanted.is_empty() {
            return Err(Error::BadArguments(
                "no member in the new configuration".into(),
            ));
        }
        for id in config.members.keys() {
            if !wanted.contains_key(id) {
                out.push(MemberChange::Remove(*id));
            }
        }
        for (id, spec) in wanted {
            if config.members.get(&id) != Some(&spec) {
                out.push(MemberChange::Add(id, spec));
            }
        }
        return keeps_two_voters(config, out);
    }
    let mut seen = BTreeSet::new();
    for id in request.leaving.iter().flat_map(|l| l.split(',')) {
        let id = id.trim();
        if id.is_empty() {
            continue;
        }
        let id = id
            .parse::<u64>()
            .map_err(|_| Error::BadArguments(format!("a leaving server is an id, not {id:?}")))?;
        // Removing a server that is not a member changes nothing, as in ZooKeeper.
        if seen.insert(id) && config.members.contains_key(&id) {
            out.push(MemberChange::Remove(id));
        }
    }
    for line in request.joining.iter().flat_map(|j| j.split(',')) {
        if line.trim().is_empty() {
            continue;
        }
        let (id, spec) = parse_server(line)?;
        if !seen.insert(id) {
            return Err(Error::BadArguments(format!(
                "server {id} is given twice (leaving and joining, or joining twice)"
            )));
        }
        out.push(MemberChange::Add(id, spec));
    }
    keeps_two_voters(config, out)
}

/// `changes`, unless they leave an ensemble of several voters with fewer than two, which
/// ZooKeeper refuses too ("new configuration must include at least 2 followers"): a
/// single voter is made only on purpose, through `Node::remove_member`.
fn keeps_two_voters(
    config: &Configuration,
    changes: Vec<MemberChange>,
) -> Result<Vec<MemberChange>> {
    let mut voters: BTreeSet<u64> = config.voters().into_iter().collect();
    if voters.len() < 2 {
        return Ok(changes);
    }
    for change in &changes {
        match change {
            MemberChange::Remove(id) => {
                voters.remove(id);
            }
            MemberChange::Add(id, spec) if spec.role == MemberRole::Participant => {
                voters.insert(*id);
            }
            MemberChange::Add(id, _) => {
                voters.remove(id);
            }
        }
    }
    if voters.len() < 2 {
        return Err(Error::BadArguments(
            "the new configuration must keep at least 2 voters".into(),
        ));
    }
    Ok(changes)
}

/// Where the outcome goes, once.
type Done = Arc<Mutex<Option<Box<dyn FnOnce(Result<Reply>) + Send>>>>;

fn finish(done: &Done, result: Result<Reply>) {
    if let Some(f) = done.lock().take() {
        f(result)
    }
}

/// Checks `request` from a caller holding `auth` and starts its changes on `host`'s
/// replica. Refusals found before anything is proposed are returned; a request that
/// changes nothing is answered at once (`Some`: `/zookeeper/config` as it is). Otherwise
/// `done` hears the outcome — `/zookeeper/config`'s data and stat once every change is
/// applied here — on the node's answer thread.
pub(crate) fn start(
    host: &Arc<Host>,
    auth: &[Id],
    request: &Reconfig,
    done: Box<dyn FnOnce(Result<Reply>) + Send>,
) -> Result<Option<Reply>> {
    let replica = host.replica();
    if !replica.config().reconfig_enabled {
        return Err(Error::ReconfigDisabled);
    }
    let config = replica.configuration();
    if request.from_config != -1 && request.from_config != config.version as i64 {
        return Err(Error::BadConfigVersion {
            expected: request.from_config,
            actual: Some(config.version),
        });
    }
    let changes: VecDeque<MemberChange> = changes(&config, request)?.into();
    {
        let tree = replica.tree().read();
        let node = tree
            .get(CONFIG_PATH)
            .ok_or_else(|| Error::NoNode(CONFIG_PATH.into()))?;
        acl::check(node.acl(), auth, perms::WRITE, CONFIG_PATH)?;
    }
    if changes.is_empty() {
        return current(host).map(Some);
    }
    let deadline = deadline_after(Instant::now(), replica.config().request_timeout);
    step(
        host.clone(),
        changes,
        deadline,
        Arc::new(Mutex::new(Some(done))),
    )?;
    Ok(None)
}

/// Starts the first of `changes`; its answer starts the next, and the last answers
/// `done`. Err: the first was refused before it was proposed (`done` is not called).
fn step(
    host: Arc<Host>,
    mut changes: VecDeque<MemberChange>,
    deadline: Instant,
    done: Done,
) -> Result<()> {
    let Some(change) = changes.pop_front() else {
        finish(&done, current(&host));
        return Ok(());
    };
    let replica = host.replica().clone();
    let (h, d) = (host, done);
    let reply = replica.callback(move |res: Result<()>| match res {
        Ok(()) => {
            if let Err(e) = step(h, changes, deadline, d.clone()) {
                finish(&d, Err(e));
            }
        }
        Err(e) => finish(&d, Err(e)),
    });
    replica.start_member_change(&change, deadline, reply)
}

/// `/zookeeper/config` as this node has it now.
fn current(host: &Host) -> Result<Reply> {
    let tree = host.replica().tree().read();
    let node = tree
        .get(CONFIG_PATH)
        .ok_or_else(|| Error::NoNode(CONFIG_PATH.into()))?;
    Ok(Reply::Data(node.data.clone(), node.stat()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::MemberSpec;

    fn config() -> Configuration {
        let mut c = Configuration {
            version: 7,
            ..Configuration::default()
        };
        for id in 1..=3 {
            c.members.insert(
                id,
                MemberSpec::participant(format!("h{id}"), 2700 + id as u16),
            );
        }
        c
    }

    fn incremental(joining: Option<&str>, leaving: Option<&str>) -> Reconfig {
        Reconfig {
            joining: joining.map(Into::into),
            leaving: leaving.map(Into::into),
            new_members: None,
            from_config: -1,
        }
    }

    #[test]
    fn incremental_changes_leave_first_then_join_in_order() {
        let c = config();
        let got = changes(
            &c,
            &incremental(
                Some("server.5=h5:1:2:observer, server.4=h4:1"),
                Some("3, 9"),
            ),
        )
        .unwrap();
        assert_eq!(
            got,
            [
                MemberChange::Remove(3),
                MemberChange::Add(5, MemberSpec::parse("h5:1:2:observer").unwrap()),
                MemberChange::Add(4, MemberSpec::parse("h4:1").unwrap()),
            ],
            "9 is not a member: leaving it changes nothing"
        );
        assert!(changes(&c, &incremental(None, None)).unwrap().is_empty());
    }

    #[test]
    fn bad_input_is_bad_arguments() {
        let c = config();
        for (joining, leaving) in [
            (Some("some thing"), None),
            (Some("server.4=h4"), None),
            (None, Some("x")),
            (Some("server.4=h:1,server.4=h:2"), None),
            (Some("server.3=h:1"), Some("3")),
            (None, Some("1,2")),
        ] {
            let e = changes(&c, &incremental(joining, leaving)).unwrap_err();
            assert_eq!(e.code(), -8, "{joining:?} {leaving:?}: {e}");
        }
    }

    #[test]
    fn the_new_member_list_is_compared_with_the_current_one() {
        let c = config();
        let request = |members: &str| Reconfig {
            new_members: Some(members.into()),
            // Not read in the non-incremental form.
            joining: Some("server.9=h9:1".into()),
            ..Reconfig::default()
        };
        let got = changes(
            &c,
            &request("server.1=h1:2701:0:participant\nserver.2=h2:2702,server.4=h4:1\nversion=7"),
        )
        .unwrap();
        assert_eq!(
            got,
            [
                MemberChange::Remove(3),
                MemberChange::Add(4, MemberSpec::parse("h4:1").unwrap()),
            ]
        );
        assert_eq!(
            changes(&c, &request("server.1=h1:2701"))
                .unwrap_err()
                .code(),
            -8
        );
        assert_eq!(changes(&c, &request("")).unwrap_err().code(), -8);
    }
}
