//! `zkraft-consistency`: seeded fault schedules on in-process ensembles, each history checked
//! for linearizability. Prints a line per schedule and the totals; exits 1 on the first
//! violation, with the seed that replays it.
//!
//! ```sh
//! cargo run --release -p zkraft-consistency -- --schedules 100 --seed 1 --secs 10
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use zkraft_consistency::checker::Verdict;
use zkraft_consistency::inprocess::{run, Options};

#[derive(Debug, Parser)]
struct Flags {
    /// How many schedules.
    #[arg(long, default_value_t = 100)]
    schedules: u64,
    /// The first schedule's seed (the others follow it).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds of faults and load per schedule.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Members of each ensemble.
    #[arg(long, default_value_t = 5)]
    members: usize,
    /// Client sessions of each run.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Run the planted bug instead (reads without sync): every schedule should fail.
    #[arg(long)]
    planted: bool,
}

fn main() -> ExitCode {
    let f = Flags::parse();
    let opts = Options {
        members: f.members,
        clients: f.clients,
        duration: Duration::from_secs(f.secs),
        stale_reads: f.planted,
        ..Options::default()
    };
    let started = Instant::now();
    let (mut ops, mut unknown, mut faults, mut violations) = (0usize, 0usize, 0usize, 0u64);
    for seed in f.seed..f.seed + f.schedules {
        let r = match run(seed, &opts) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("seed {seed}: the ensemble did not run: {e}");
                return ExitCode::from(2);
            }
        };
        ops += r.ops;
        unknown += r.unknown;
        faults += r.faults;
        let verdict = match &r.verdict {
            Verdict::Linearizable { parts, .. } => format!("linearizable ({parts} parts)"),
            Verdict::Violation(_) => "VIOLATION".to_string(),
            Verdict::Unknown { part_ops } => format!("UNDECIDED ({part_ops} ops in a part)"),
        };
        println!(
            "seed {seed}: {} faults, {} operations, {} unknown: {verdict}",
            r.faults, r.ops, r.unknown
        );
        match r.verdict {
            Verdict::Linearizable { .. } => {}
            Verdict::Violation(report) => {
                violations += 1;
                if !f.planted {
                    println!(
                        "{report}\nreplay: --seed {seed} --schedules 1 --secs {}",
                        f.secs
                    );
                    return ExitCode::FAILURE;
                }
            }
            Verdict::Unknown { .. } if !f.planted => return ExitCode::FAILURE,
            Verdict::Unknown { .. } => {}
        }
    }
    println!(
        "schedules: {}, faults: {faults}, operations: {ops} ({unknown} unknown), violations: \
         {violations}, {:.0} s",
        f.schedules,
        started.elapsed().as_secs_f64()
    );
    if f.planted && violations < f.schedules {
        println!(
            "the planted bug went unnoticed in {} schedules",
            f.schedules - violations
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
