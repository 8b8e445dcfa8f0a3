//! `zkraft-consistency`: seeded fault schedules on in-process ensembles, or (`--wire`) on
//! the multi-process ensemble of `tests/kazoo/run.py --proxy` (zkraft-server or Apache
//! ZooKeeper), each history checked for linearizability. Prints a line per schedule and the
//! totals; exits 1 on the first violation, with the seed that replays it.
//!
//! ```sh
//! cargo run --release -p zkraft-consistency -- --schedules 100 --seed 1 --secs 10
//! python3 tests/kazoo/run.py --target zookeeper --proxy --exec \
//!     target/release/zkraft-consistency --wire --schedules 5 --seed 1
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use zkraft_consistency::checker::Verdict;
use zkraft_consistency::inprocess::{self, RunReport};
use zkraft_consistency::wire;

#[derive(Debug, Parser)]
struct Flags {
    /// How many schedules.
    #[arg(long, default_value_t = 100)]
    schedules: u64,
    /// The first schedule's seed (the others follow it).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds of faults and load per schedule (default 10 in-process, 20 over the wire).
    #[arg(long)]
    secs: Option<u64>,
    /// Members of each ensemble.
    #[arg(long, default_value_t = 5)]
    members: usize,
    /// Client sessions of each run.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Run the planted bug instead (reads without sync): every schedule should fail.
    #[arg(long)]
    planted: bool,
    /// Over the wire, against the ensemble of `run.py --proxy --exec` (its environment:
    /// ZK_HOSTS, ZK_CONTROL, ZK_PROXY, ZK_TARGET), three members; `--members` is ignored.
    #[arg(long)]
    wire: bool,
}

fn main() -> ExitCode {
    let f = Flags::parse();
    let target = if f.wire {
        match wire::Target::from_env() {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let secs = f.secs.unwrap_or(if f.wire { 20 } else { 10 });
    let run = |seed: u64| -> Result<RunReport, String> {
        match &target {
            Some(t) => wire::run(
                seed,
                &wire::Options {
                    clients: f.clients,
                    duration: Duration::from_secs(secs),
                    stale_reads: f.planted,
                    ..wire::Options::default()
                },
                t,
            ),
            None => inprocess::run(
                seed,
                &inprocess::Options {
                    members: f.members,
                    clients: f.clients,
                    duration: Duration::from_secs(secs),
                    stale_reads: f.planted,
                    ..inprocess::Options::default()
                },
            )
            .map_err(|e| e.to_string()),
        }
    };
    if let Some(t) = &target {
        println!("over the wire against {} ({})", t.name, t.hosts.join(","));
    }
    let started = Instant::now();
    let (mut ops, mut unknown, mut faults, mut violations) = (0usize, 0usize, 0usize, 0u64);
    let (mut readded, mut undecided) = (0usize, Vec::new());
    for seed in f.seed..f.seed + f.schedules {
        let r = match run(seed) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("seed {seed}: the ensemble did not run: {e}");
                return ExitCode::from(2);
            }
        };
        ops += r.ops;
        unknown += r.unknown;
        faults += r.faults;
        readded += r.readded;
        let verdict = match &r.verdict {
            Verdict::Linearizable { parts, .. } => format!("linearizable ({parts} parts)"),
            Verdict::Violation(_) => "VIOLATION".to_string(),
            Verdict::Unknown { part_ops } => format!("UNDECIDED ({part_ops} ops in a part)"),
            Verdict::Invalid { reason } => format!("INVALID HISTORY: {reason}"),
        };
        let moved = if r.readded > 0 {
            format!(" ({} members removed and added back)", r.readded)
        } else {
            String::new()
        };
        println!(
            "seed {seed}: {} faults{moved}, {} operations, {} unknown: {verdict}",
            r.faults, r.ops, r.unknown
        );
        match r.verdict {
            Verdict::Linearizable { .. } => {}
            Verdict::Violation(report) => {
                violations += 1;
                if !f.planted {
                    println!(
                        "{report}\nreplay: --seed {seed} --schedules 1 --secs {secs}{}",
                        if f.wire { " --wire" } else { "" }
                    );
                    return ExitCode::FAILURE;
                }
            }
            // Over its budget: reported, counted, and the run goes on.
            Verdict::Unknown { .. } => undecided.push(seed),
            Verdict::Invalid { .. } => return ExitCode::FAILURE,
        }
    }
    println!(
        "schedules: {}, faults: {faults} ({readded} members removed and added back), \
         operations: {ops} ({unknown} unknown), violations: {violations}, {:.0} s",
        f.schedules,
        started.elapsed().as_secs_f64()
    );
    if !undecided.is_empty() {
        println!("undecided (the search went over its budget): seeds {undecided:?}");
        if !f.planted {
            return ExitCode::FAILURE;
        }
    }
    if f.planted && violations < f.schedules {
        println!(
            "the planted bug went unnoticed in {} schedules",
            f.schedules - violations
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
