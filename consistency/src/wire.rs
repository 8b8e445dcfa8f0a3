//! A seeded run over the wire: clients speak ZooKeeper's client protocol (the
//! `zookeeper-client` crate) to a three-member ensemble of separate processes — three
//! `zkraft-server`s, or Apache ZooKeeper itself — that `tests/kazoo/run.py --proxy` started.
//! The [`Schedule`]'s faults go to run.py's control socket: links cut, delayed or broken
//! through its TCP proxies, members paused (SIGSTOP), killed (SIGKILL) and restarted.
//!
//! The same seed gives the same faults against either server, so the checker can be held
//! to ZooKeeper first: a run against ZooKeeper 3.8 must pass, and the planted bug (reads
//! without `sync`) must be caught.
//!
//! Each client has a session on one member only (its connect string names that member), so
//! a pause or a kill of that member longer than the session timeout expires it.
//!
//! `ZKRAFT_HISTORY=PATH` writes each run's history to `PATH.<seed>`, an event a line.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use zookeeper_client as zk;

use crate::checker::history::{ErrKind, Event, Op, Outcome, Recorder, Ret};
use crate::checker::model::Node as ModelNode;
use crate::checker::{check, Limits};
use crate::inprocess::RunReport;
use crate::schedule::{Fault, Kind, Plan, Schedule};

/// Where the ensemble is, from run.py's environment.
#[derive(Debug, Clone)]
pub struct Target {
    /// Client addresses of members 1, 2, 3 (`ZK_HOSTS`).
    pub hosts: Vec<String>,
    /// run.py's control socket (`ZK_CONTROL`).
    pub control: PathBuf,
    /// Whether links can be cut (`ZK_PROXY`, run.py --proxy).
    pub proxied: bool,
    /// `zookeeper` or `zkraft` (`ZK_TARGET`).
    pub name: String,
}

impl Target {
    /// Reads run.py's environment.
    pub fn from_env() -> Result<Target, String> {
        let var = |k: &str| {
            std::env::var(k)
                .map_err(|_| format!("{k} is not set (run under tests/kazoo/run.py --exec)"))
        };
        Ok(Target {
            hosts: var("ZK_HOSTS")?.split(',').map(str::to_string).collect(),
            control: PathBuf::from(var("ZK_CONTROL")?),
            proxied: std::env::var("ZK_PROXY").is_ok_and(|v| v == "1"),
            name: var("ZK_TARGET")?,
        })
    }

    fn ids(&self) -> Vec<u64> {
        (1..=self.hosts.len() as u64).collect()
    }

    /// One command to run.py's control socket; its one-line answer.
    fn control(&self, line: &str) -> Result<(), String> {
        let mut s = UnixStream::connect(&self.control).map_err(|e| format!("control: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(90)))
            .map_err(|e| e.to_string())?;
        s.write_all(format!("{line}\n").as_bytes())
            .map_err(|e| format!("control {line:?}: {e}"))?;
        let mut answer = String::new();
        BufReader::new(s)
            .read_line(&mut answer)
            .map_err(|e| format!("control {line:?}: {e}"))?;
        match answer.trim() {
            "ok" => Ok(()),
            other => Err(format!("control {line:?}: {other}")),
        }
    }

    /// The member that says it leads (four-letter word `srvr`), if one answers so.
    fn leader(&self) -> Option<u64> {
        self.ids().into_iter().find(|&id| {
            four_letter(&self.hosts[id as usize - 1], "srvr")
                .is_some_and(|a| a.contains("Mode: leader"))
        })
    }
}

fn four_letter(addr: &str, word: &str) -> Option<String> {
    let sock = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(word.as_bytes()).ok()?;
    let mut out = String::new();
    s.take(64 * 1024).read_to_string(&mut out).ok()?;
    Some(out)
}

/// What a run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long faults and load last.
    pub duration: Duration,
    /// Client sessions, spread over the members.
    pub clients: usize,
    /// Znodes the clients contend on (and parents of their sequential znodes).
    pub keys: usize,
    /// The kinds of fault to draw (those needing link proxies are left out without them).
    pub kinds: Vec<Kind>,
    /// The planted bug: reads without `sync`.
    pub stale_reads: bool,
    /// The session timeout clients ask for (ZooKeeper's least is 2 ticks: 4 s in run.py).
    pub session_timeout: Duration,
    /// The checker's budget.
    pub limits: Limits,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            duration: Duration::from_secs(20),
            clients: 9,
            keys: 4,
            kinds: Kind::ALL
                .into_iter()
                .filter(|k| *k != Kind::Membership)
                .collect(),
            stale_reads: false,
            session_timeout: Duration::from_secs(4),
            // About a minute of search in a release build: a schedule over it is reported
            // undecided rather than holding the run.
            limits: Limits {
                max_steps: 5_000_000,
                ..Limits::default()
            },
        }
    }
}

/// Kinds a target without link proxies cannot inject.
const LINK_KINDS: [Kind; 5] = [
    Kind::Partition,
    Kind::Bridge,
    Kind::IsolateLeader,
    Kind::Drop,
    Kind::Delay,
];

/// Bound on one client operation; past it the outcome is unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs schedule `seed` against `target`, then checks the history. Each run works under
/// a root of its own, `/consistency-<seed>-<milliseconds since 1970>`, so several share
/// one ensemble and a run never starts from another's znodes.
pub fn run(seed: u64, opts: &Options, target: &Target) -> Result<RunReport, String> {
    let kinds: Vec<Kind> = opts
        .kinds
        .iter()
        .copied()
        .filter(|k| target.proxied || !LINK_KINDS.contains(k))
        .collect();
    let mut plan = Plan::new(target.ids(), opts.duration, &kinds);
    plan.fault_len = (Duration::from_millis(1000), Duration::from_millis(4000));
    plan.gap_len = (Duration::from_millis(1000), Duration::from_millis(3000));
    plan.expire_len = opts.session_timeout + Duration::from_secs(3);
    let schedule = Schedule::generate(seed, &plan);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let root = format!("/consistency-{seed}-{stamp}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(setup(&target.hosts.join(","), &root, opts.keys))?;
    let recorder = Arc::new(Recorder::new());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..opts.clients)
        .map(|c| {
            let host = target.hosts[c % target.hosts.len()].clone();
            let (rec, stop, opts, root) =
                (recorder.clone(), stop.clone(), opts.clone(), root.clone());
            rt.spawn(async move { client(c, seed, host, root, rec, stop, opts).await })
        })
        .collect();
    let started = Instant::now();
    let mut fault_err = None;
    for step in &schedule.steps {
        sleep_until(started + step.at);
        eprintln!(
            "seed {seed}: at {:.1} s for {:.1} s: {:?}",
            step.at.as_secs_f64(),
            step.lasts.as_secs_f64(),
            step.fault
        );
        let undo = match inject(target, &step.fault) {
            Ok(u) => u,
            Err(e) => {
                fault_err = Some(e);
                break;
            }
        };
        sleep_until(started + step.at + step.lasts);
        if let Err(e) = heal(target, &undo) {
            fault_err = Some(e);
            break;
        }
    }
    sleep_until(started + schedule.duration);
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        let _ = rt.block_on(c);
    }
    drop(rt);
    if let Some(e) = fault_err {
        return Err(format!("seed {seed}: a fault could not be injected: {e}"));
    }
    let events = recorder.events();
    let unknown = events
        .iter()
        .filter(|e| e.outcome == Outcome::Unknown)
        .count();
    let mut initial = BTreeMap::new();
    let parents = (0..opts.keys).map(|g| format!("{root}/s{g}"));
    for p in ["/".to_string(), root.clone()].into_iter().chain(parents) {
        initial.insert(
            p,
            ModelNode {
                data: vec![],
                version: 0,
                owner: 0,
            },
        );
    }
    eprintln!(
        "seed {seed}: {} operations recorded ({unknown} unknown), checking",
        events.len()
    );
    if let Ok(path) = std::env::var("ZKRAFT_HISTORY") {
        let lines: Vec<String> = events.iter().map(|e| format!("{e:?}")).collect();
        let _ = std::fs::write(format!("{path}.{seed}"), lines.join("\n"));
    }
    let checking = Instant::now();
    let verdict = check(&events, &initial, opts.limits);
    eprintln!(
        "seed {seed}: checked in {:.1} s",
        checking.elapsed().as_secs_f64()
    );
    Ok(RunReport {
        seed,
        faults: schedule.steps.len(),
        ops: events.len(),
        unknown,
        readded: 0,
        voters_at_end: target.ids(),
        verdict,
    })
}

/// What ends a fault: members to resume and to start again (links are all healed).
#[derive(Default)]
struct Undo {
    paused: Vec<u64>,
    killed: Vec<u64>,
}

fn cut(target: &Target, a: &[u64], b: &[u64]) -> Result<(), String> {
    for &x in a {
        for &y in b {
            target.control(&format!("cut {x} {y}"))?;
            target.control(&format!("cut {y} {x}"))?;
        }
    }
    Ok(())
}

fn inject(target: &Target, f: &Fault) -> Result<Undo, String> {
    let ids = target.ids();
    let mut undo = Undo::default();
    match f {
        Fault::Partition { minority } => {
            let rest: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|i| !minority.contains(i))
                .collect();
            cut(target, minority, &rest)?;
        }
        Fault::Bridge { left, right, .. } => cut(target, left, right)?,
        Fault::IsolateLeader => {
            if let Some(l) = target.leader() {
                let rest: Vec<u64> = ids.iter().copied().filter(|&i| i != l).collect();
                cut(target, &[l], &rest)?;
            }
        }
        Fault::Drop { links, ratio } => {
            for (a, b) in links {
                target.control(&format!("drop {a} {b} {}", (ratio * 100.0).round() as u32))?;
            }
        }
        Fault::Delay { links, by } => {
            for (a, b) in links {
                target.control(&format!("delay {a} {b} {}", by.as_millis()))?;
            }
        }
        Fault::Pause { member } => {
            target.control(&format!("pause {member}"))?;
            undo.paused.push(*member);
        }
        // The sessions of the last member's clients: it is paused past their timeout.
        Fault::ExpireSession => {
            let m = *ids.last().unwrap_or(&1);
            target.control(&format!("pause {m}"))?;
            undo.paused.push(m);
        }
        Fault::Crash { member } => {
            target.control(&format!("kill {member}"))?;
            undo.killed.push(*member);
        }
        Fault::CrashAll => {
            for id in &ids {
                target.control(&format!("kill {id}"))?;
            }
            undo.killed = ids;
        }
        Fault::Membership { .. } => {}
    }
    Ok(undo)
}

fn heal(target: &Target, undo: &Undo) -> Result<(), String> {
    if target.proxied {
        target.control("heal")?;
    }
    for m in &undo.paused {
        target.control(&format!("resume {m}"))?;
    }
    // Started together: one member alone has no quorum and does not serve. A member that
    // does not serve within run.py's bound (a ZooKeeper member restarted after a partition
    // has been seen to stay LOOKING) is killed and started once more: what is checked is
    // safety, and the run goes on.
    let started: Vec<_> = undo
        .killed
        .iter()
        .map(|&m| {
            let t = target.clone();
            std::thread::spawn(move || {
                t.control(&format!("start {m}")).or_else(|e| {
                    eprintln!("{e}: killed and started again");
                    t.control(&format!("kill {m}"))?;
                    t.control(&format!("start {m}"))
                })
            })
        })
        .collect();
    for s in started {
        s.join()
            .map_err(|_| "a start thread panicked".to_string())??;
    }
    Ok(())
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

const ANYONE: zk::Acls<'static> = zk::Acls::anyone_all();

/// Makes the run's root and the parent of its sequential znodes, before the history starts.
async fn setup(hosts: &str, root: &str, keys: usize) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let made = async {
            let c = zk::Client::connector()
                .with_session_timeout(Duration::from_secs(10))
                .connect(hosts)
                .await?;
            let parents = (0..keys).map(|g| format!("{root}/s{g}"));
            for p in std::iter::once(root.to_string()).chain(parents) {
                match c
                    .create(&p, b"", &zk::CreateMode::Persistent.with_acls(ANYONE))
                    .await
                {
                    Ok(_) | Err(zk::Error::NodeExists) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(10), made).await {
            Ok(Ok(())) => return Ok(()),
            r if Instant::now() > deadline => return Err(format!("setup of {root}: {r:?}")),
            r => {
                eprintln!("setup of {root}: {r:?}; again");
                tokio::time::sleep(Duration::from_millis(500)).await
            }
        }
    }
}

fn err_kind(e: &zk::Error) -> Option<ErrKind> {
    Some(match e {
        zk::Error::NoNode => ErrKind::NoNode,
        zk::Error::NodeExists => ErrKind::NodeExists,
        zk::Error::BadVersion => ErrKind::BadVersion,
        zk::Error::NotEmpty => ErrKind::NotEmpty,
        zk::Error::NoChildrenForEphemerals => ErrKind::NoChildrenForEphemerals,
        _ => return None,
    })
}

/// One client: a session on `host`, random operations until stopped.
async fn client(
    c: usize,
    seed: u64,
    host: String,
    root: String,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    opts: Options,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (c as u64).wrapping_mul(0x9e37_79b9));
    // The session, and since when it is known alive: opened, or the invocation of its
    // last operation the ensemble answered.
    let mut session: Option<(zk::Client, u64)> = None;
    let mut last_seq: Option<String> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let (client, alive) = match session.take() {
            Some(s) => s,
            None => {
                let opened = rec.now();
                let connect = zk::Client::connector()
                    .with_session_timeout(opts.session_timeout)
                    .with_fail_eagerly()
                    .connect(&host);
                match tokio::time::timeout(OP_TIMEOUT, connect).await {
                    Ok(Ok(cl)) => (cl, opened),
                    _ => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
        };
        let sid = client.session_id().0 as u64;
        n += 1;
        let key = format!("{root}/{}", rng.gen_range(0..opts.keys));
        // Ephemerals only on the client's own key, and sequential znodes under its own
        // parent: a session's close then ties one key to one parent, and the history
        // splits into a part per key for the checker.
        let group = c % opts.keys;
        let own = format!("{root}/{group}");
        let value = format!("c{c}-{n}").into_bytes();
        let op = match rng.gen_range(0..14) {
            0 => {
                let ephemeral = rng.gen_bool(0.3);
                Op::Create {
                    path: if ephemeral { own.clone() } else { key.clone() },
                    data: value.clone(),
                    ephemeral,
                    sequential: false,
                }
            }
            1 => Op::Delete {
                path: key.clone(),
                version: None,
            },
            2 | 3 => Op::SetData {
                path: key.clone(),
                data: value.clone(),
                version: None,
            },
            4 => Op::SetData {
                path: key.clone(),
                data: value.clone(),
                version: Some(rng.gen_range(0..3)),
            },
            5 => Op::Multi(vec![
                Op::Check {
                    path: key.clone(),
                    version: rng.gen_range(0..3),
                },
                Op::SetData {
                    path: key.clone(),
                    data: value.clone(),
                    version: None,
                },
            ]),
            6 => Op::Create {
                path: format!("{root}/s{group}/q-"),
                data: value.clone(),
                ephemeral: rng.gen_bool(0.3),
                sequential: true,
            },
            7 => Op::GetData {
                path: last_seq
                    .clone()
                    .unwrap_or_else(|| format!("{root}/s{group}")),
            },
            _ => Op::GetData { path: key.clone() },
        };
        let p = rec.invoke(c as u32, sid, op.clone());
        let invoked = p.invoked();
        let result =
            tokio::time::timeout(OP_TIMEOUT, perform(&client, &op, opts.stale_reads)).await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(zk::Error::Timeout),
        };
        match result {
            Ok(r) => {
                if let Ret::Created(name) = &r {
                    if matches!(
                        op,
                        Op::Create {
                            sequential: true,
                            ..
                        }
                    ) {
                        last_seq = Some(name.clone());
                    }
                }
                rec.complete(p, Outcome::Ok(r));
                session = Some((client, invoked));
            }
            Err(e) => {
                if let Some(k) = err_kind(&e) {
                    rec.complete(p, Outcome::Err(k));
                    session = Some((client, invoked));
                    continue;
                }
                rec.complete(p, Outcome::Unknown);
                if e == zk::Error::SessionExpired || client.state().is_terminated() {
                    // Its ephemerals went, after it was last known alive.
                    rec.push(close_after(c, sid, alive));
                } else {
                    session = Some((client, alive));
                }
            }
        }
    }
    if let Some((client, alive)) = session {
        // It may have expired unseen since it was last known alive.
        rec.push(close_after(c, client.session_id().0 as u64, alive));
    }
}

fn close_after(c: usize, session: u64, alive: u64) -> Event {
    Event {
        client: c as u32,
        session,
        op: Op::CloseSession,
        invoke: alive,
        complete: None,
        outcome: Outcome::Unknown,
    }
}

fn mode(ephemeral: bool, sequential: bool) -> zk::CreateMode {
    match (ephemeral, sequential) {
        (false, false) => zk::CreateMode::Persistent,
        (true, false) => zk::CreateMode::Ephemeral,
        (false, true) => zk::CreateMode::PersistentSequential,
        (true, true) => zk::CreateMode::EphemeralSequential,
    }
}

/// Sends `op` and maps the answer to the model's.
async fn perform(client: &zk::Client, op: &Op, stale_reads: bool) -> Result<Ret, zk::Error> {
    match op {
        Op::Create {
            path,
            data,
            ephemeral,
            sequential,
        } => {
            let (_, seq) = client
                .create(path, data, &mode(*ephemeral, *sequential).with_acls(ANYONE))
                .await?;
            Ok(Ret::Created(if *sequential {
                format!("{path}{seq}")
            } else {
                path.clone()
            }))
        }
        Op::Delete { path, version } => client.delete(path, *version).await.map(|()| Ret::Done),
        Op::SetData {
            path,
            data,
            version,
        } => client
            .set_data(path, data, *version)
            .await
            .map(|st| Ret::Version(st.version)),
        Op::GetData { path } => {
            if !stale_reads {
                client.sync(path).await?;
            }
            match client.get_data(path).await {
                Ok((d, st)) => Ok(Ret::Data(Some((d, st.version)))),
                Err(zk::Error::NoNode) => Ok(Ret::Data(None)),
                Err(e) => Err(e),
            }
        }
        Op::Multi(ops) => {
            let mut w = client.new_multi_writer();
            for o in ops {
                match o {
                    Op::Check { path, version } => w.add_check_version(path, *version)?,
                    Op::SetData {
                        path,
                        data,
                        version,
                    } => w.add_set_data(path, data, *version)?,
                    _ => return Err(zk::Error::BadArguments(&"only check and set in a multi")),
                }
            }
            let results = w.commit().await.map_err(zk::Error::from)?;
            results
                .into_iter()
                .map(|r| match r {
                    zk::MultiWriteResult::Check => Ok(Ret::Done),
                    zk::MultiWriteResult::SetData { stat } => Ok(Ret::Version(stat.version)),
                    zk::MultiWriteResult::Delete => Ok(Ret::Done),
                    zk::MultiWriteResult::Create { path, .. } => Ok(Ret::Created(path)),
                    other => Err(zk::Error::UnexpectedError(format!("{other:?}"))),
                })
                .collect::<Result<Vec<_>, zk::Error>>()
                .map(Ret::Multi)
        }
        Op::Check { .. } | Op::GetChildren { .. } | Op::CloseSession => {
            Err(zk::Error::BadArguments(&"not issued alone"))
        }
    }
}
