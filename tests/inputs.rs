//! A property test over the input space: random paths (lengths up to megabytes, every
//! Unicode plane, control and forbidden characters), data sizes around each limit, multis
//! of up to tens of thousands of operations, and extreme configuration values, driven
//! against in-process ensembles. Every call must return success or a typed error within
//! a time bound; a refused call changes nothing; no node stops (a panic inside a node
//! stops it); the replicas are identical afterwards.
//!
//! The seeds are fixed so a failure reproduces; `ZKRAFT_SEED=n` runs another one.

mod common;

use std::time::{Duration, Instant};

use common::{image, Cluster};
use zkraft::{CreateMode, Error, Node, Op, DEFAULT_MAX_REQUEST_SIZE};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

fn random_char(rng: &mut Rng) -> char {
    let code = match rng.below(10) {
        0..=3 => u32::from(rng.pick(b"abcxyz0129-_")),
        4 => rng.pick(&[0x1, 0x1f, 0x7f, 0x80, 0x9f, 0xa0]),
        5 => 0,
        // Any plane: the BMP, the emoji plane, up to the last.
        6 => (rng.below(17) as u32) << 16 | rng.below(0x1_0000) as u32,
        7 => rng.pick(&[0xd7ff, 0xe000, 0xf8ff, 0xf900, 0xffef, 0xfff0, 0xffff]),
        8 => u32::from(rng.pick(b"/.")),
        _ => 0x1f600,
    };
    char::from_u32(code).unwrap_or('\u{fffd}')
}

/// Mostly paths that may exist, sometimes hostile ones, rarely megabytes long.
fn random_path(rng: &mut Rng) -> String {
    match rng.below(20) {
        0..=9 => {
            let depth = 1 + rng.below(3);
            (0..depth).map(|_| format!("/n{}", rng.below(5))).collect()
        }
        10..=15 => {
            let len = rng.below(12);
            let body: String = (0..len).map(|_| random_char(rng)).collect();
            if rng.below(4) == 0 {
                body
            } else {
                format!("/n{}/{body}", rng.below(3))
            }
        }
        16 | 17 => rng
            .pick(&["/", "/zookeeper", "/zookeeper/config", "", "//", "/n0/"])
            .into(),
        _ => {
            // Around the request limit, or far beyond it.
            let len = match rng.below(3) {
                0 => DEFAULT_MAX_REQUEST_SIZE - 60 + rng.below(120),
                1 => 4 << 20,
                _ => rng.below(64 << 10),
            };
            let mut p = String::with_capacity(len + 1);
            p.push('/');
            let c = if rng.below(2) == 0 {
                'a'
            } else {
                random_char(rng)
            };
            while p.len() < len {
                p.push(c);
            }
            p
        }
    }
}

fn random_data(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(12) {
        0..=6 => rng.below(64),
        7 | 8 => DEFAULT_MAX_REQUEST_SIZE - 80 + rng.below(160),
        9 => 2 * DEFAULT_MAX_REQUEST_SIZE,
        10 => 16 << 20,
        _ => rng.below(64 << 10),
    };
    vec![rng.below(256) as u8; len]
}

fn random_mode(rng: &mut Rng) -> CreateMode {
    // No containers or TTL znodes: the reaper would change the tree behind the test.
    rng.pick(&[
        CreateMode::Persistent,
        CreateMode::PersistentSequential,
        CreateMode::Ephemeral,
        CreateMode::EphemeralSequential,
    ])
}

fn small_op(rng: &mut Rng) -> Op {
    match rng.below(4) {
        0 => Op::create(random_path(rng), random_data(rng), random_mode(rng)),
        1 => Op::delete(random_path(rng), None),
        2 => Op::set_data(random_path(rng), random_data(rng), None),
        _ => Op::check(random_path(rng), rng.pick(&[None, Some(0), Some(-5)])),
    }
}

fn random_multi(rng: &mut Rng) -> Vec<Op> {
    match rng.below(10) {
        // Tens of thousands of operations: about 15,000 such creates fit the default limit.
        0 => {
            let base = rng.below(1000);
            (0..15_000)
                .map(|i| Op::create(format!("/n0/m{base}-{i}"), vec![], CreateMode::Persistent))
                .collect()
        }
        1 => (0..40_000).map(|_| Op::check("/", None)).collect(),
        2 => (0..100_000).map(|_| Op::check("/", None)).collect(),
        _ => (0..1 + rng.below(6)).map(|_| small_op(rng)).collect(),
    }
}

/// What every call must answer: success, or a typed error whose outcome is known.
fn acceptable(e: &Error) -> bool {
    e.is_logical() || matches!(e, Error::SessionExpired | Error::SessionClosed)
}

/// Bound on any one call: far beyond what any of them needs, short of a hang.
const CALL_BOUND: Duration = Duration::from_secs(20);

fn run_seed(seed: u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed.wrapping_mul(0x1000_0000_01b3));
    let c = Cluster::new(3);
    c.wait_leader();
    let leader = c.leader();
    for p in ["/n0", "/n1", "/n2"] {
        common::retry(|| leader.create(p, b"", CreateMode::Persistent));
    }
    let nodes: Vec<&Node> = c.running().collect();
    let session = common::retry(|| nodes[1].session());
    let (mut ok, mut refused, mut big_multis) = (0, 0, 0);
    for step in 0..150 {
        let node = nodes[rng.below(nodes.len())];
        let on_session = rng.below(3) == 0;
        // Every replica has applied everything acknowledged so far, so a refused call is
        // the only thing that could change `node`'s tree during the step.
        let applied = nodes.iter().map(|n| n.applied_index()).max().unwrap_or(0);
        c.wait_applied(applied, CALL_BOUND);
        let before = (image(nodes[0]).len() < 3000).then(|| image(node));
        let started = Instant::now();
        let (what, res): (String, zkraft::Result<()>) = match rng.below(8) {
            0 | 1 => {
                let (p, d, m) = (
                    random_path(&mut rng),
                    random_data(&mut rng),
                    random_mode(&mut rng),
                );
                let r = if on_session {
                    session.create(&p, &d, m)
                } else {
                    node.create(&p, &d, m)
                };
                (
                    format!(
                        "create {} bytes path, {} bytes data, {m:?}",
                        p.len(),
                        d.len()
                    ),
                    r.map(drop),
                )
            }
            2 => {
                let (p, d) = (random_path(&mut rng), random_data(&mut rng));
                ("set_data".into(), node.set_data(&p, &d, None).map(drop))
            }
            3 => ("delete".into(), node.delete(&random_path(&mut rng), None)),
            4 => {
                let ops = random_multi(&mut rng);
                let n = ops.len();
                let r = if on_session {
                    session.multi(ops)
                } else {
                    node.multi(ops)
                };
                (format!("multi of {n}"), r.map(drop))
            }
            5 => {
                let p = random_path(&mut rng);
                let r = node.get_data(&p).map(drop);
                let r2 = node.get_children(&p).map(drop);
                let r3 = node.exists(&p).map(drop);
                // All three reads judge the path alike.
                assert_eq!(r.is_ok() || matches!(r, Err(Error::NoNode(_))), r3.is_ok());
                ("reads".into(), r2)
            }
            6 => ("sync".into(), node.sync(&random_path(&mut rng))),
            _ => (
                "session read".into(),
                session.get_children(&random_path(&mut rng), None).map(drop),
            ),
        };
        let took = started.elapsed();
        assert!(
            took < CALL_BOUND,
            "seed {seed} step {step}: {what} took {took:?}"
        );
        match &res {
            Ok(()) if what.starts_with("multi of") && what.len() > "multi of 9999".len() => {
                ok += 1;
                big_multis += 1;
            }
            Ok(()) => ok += 1,
            Err(e) => {
                assert!(acceptable(e), "seed {seed} step {step}: {what}: {e:?}");
                refused += 1;
                if let Some(before) = before {
                    // A refused call changes nothing (sequential creates that failed leave
                    // no trace either: the tree is compared whole).
                    // (Not assert_eq: the trees may hold megabytes.)
                    assert!(
                        image(node) == before,
                        "seed {seed} step {step}: {what}: {e}"
                    );
                }
            }
        }
    }
    eprintln!("seed {seed}: {ok} ok ({big_multis} multis of 10,000+), {refused} refused");
    assert!(
        ok > 20 && refused > 20,
        "seed {seed}: {ok} ok, {refused} refused"
    );
    session.close().unwrap();
    for n in c.running() {
        assert!(!n.is_stopped(), "seed {seed}: node {} stopped", n.id());
    }
    common::retry(|| nodes[0].sync("/"));
    c.wait_converged(Duration::from_secs(30));
}

#[test]
fn random_inputs_get_an_answer_and_change_nothing_when_refused() {
    let seeds: Vec<u64> = match std::env::var("ZKRAFT_SEED") {
        Ok(s) => vec![s.parse().expect("ZKRAFT_SEED is a number")],
        Err(_) => vec![1, 2, 3],
    };
    for seed in seeds {
        run_seed(seed);
    }
}

#[test]
fn random_extreme_configurations_start_or_are_refused_never_panic() {
    let durations = [
        Duration::ZERO,
        Duration::from_nanos(1),
        Duration::from_millis(20),
        Duration::from_secs(1),
        Duration::from_secs(61),
        Duration::from_secs(u64::MAX / 2),
        Duration::MAX,
    ];
    let sizes = [
        0,
        1,
        1023,
        1024,
        4096,
        DEFAULT_MAX_REQUEST_SIZE,
        256 << 20,
        usize::MAX,
    ];
    let ticks = [0, 1, 2, 10, 10_000, 10_001, usize::MAX];
    let mut rng = Rng(0xdead_beef);
    let (mut started, mut refused) = (0, 0);
    for _ in 0..60 {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Node::builder(1)
            .data_dir(dir.path())
            .tick_interval(Duration::from_millis(20));
        // Each field is extreme one time in four, so some configurations start.
        let extreme = |rng: &mut Rng| rng.below(4) == 0;
        if extreme(&mut rng) {
            b = b.tick_interval(rng.pick(&durations));
        }
        if extreme(&mut rng) {
            b = b.election_tick(rng.pick(&ticks));
        }
        if extreme(&mut rng) {
            b = b.heartbeat_tick(rng.pick(&ticks[..4]));
        }
        if extreme(&mut rng) {
            b = b.request_timeout(rng.pick(&durations));
        }
        if extreme(&mut rng) {
            b = b.session_timeout(rng.pick(&durations));
        }
        if extreme(&mut rng) {
            b = b.session_timeout_bounds(rng.pick(&durations), rng.pick(&durations));
        }
        if extreme(&mut rng) {
            b = b.reap_interval(rng.pick(&durations));
        }
        if extreme(&mut rng) {
            b = b.max_request_size(rng.pick(&sizes));
        }
        if extreme(&mut rng) {
            b = b.max_data_size(rng.pick(&sizes));
        }
        let builder = b;
        match builder.start() {
            Ok(node) => {
                started += 1;
                // A working node whatever the values: a write answers (maybe Timeout
                // with a nanosecond timeout), a read answers, shutdown returns.
                let r = node.create("/x", b"", CreateMode::Persistent);
                assert!(
                    r.is_ok()
                        || matches!(r, Err(Error::Timeout(_) | Error::RequestTooLarge { .. })),
                    "{r:?} with {:?}",
                    node.config()
                );
                node.exists("/x").unwrap();
                node.shutdown();
            }
            Err(Error::Config(_)) => refused += 1,
            Err(e) => panic!("not a configuration error: {e:?}"),
        }
    }
    assert!(
        started > 0 && refused > 0,
        "{started} started, {refused} refused"
    );
}
