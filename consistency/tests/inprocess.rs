//! Seeded fault schedules on in-process ensembles: zkraft's history must be linearizable,
//! and the planted bug (reads without `sync`) must be caught. A failure prints the seed;
//! `ZKRAFT_SEED=S cargo test -p zkraft-consistency` replays it.

use std::time::Duration;

use zkraft_consistency::checker::Verdict;
use zkraft_consistency::inprocess::{run, Options};
use zkraft_consistency::schedule::Kind;

fn seeds(default: u64, count: u64) -> Vec<u64> {
    match std::env::var("ZKRAFT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(s) => vec![s],
        None => (default..default + count).collect(),
    }
}

#[test]
fn seeded_fault_schedules_find_no_violation() {
    let opts = Options {
        duration: Duration::from_secs(8),
        ..Options::default()
    };
    for seed in seeds(1, 3) {
        let r = run(seed, &opts).expect("the ensemble runs");
        println!(
            "seed {seed}: {} faults, {} operations ({} unknown): {:?}",
            r.faults, r.ops, r.unknown, r.verdict
        );
        match &r.verdict {
            Verdict::Linearizable { .. } => {}
            Verdict::Violation(report) => panic!("seed {seed}: {report}"),
            Verdict::Unknown { part_ops } => panic!("seed {seed}: undecided ({part_ops} ops)"),
            Verdict::Invalid { reason } => panic!("seed {seed}: {reason}"),
        }
        assert!(r.ops > 100, "seed {seed}: only {} operations", r.ops);
    }
}

#[test]
fn members_removed_and_added_back_keep_the_history_linearizable() {
    let opts = Options {
        duration: Duration::from_secs(10),
        kinds: vec![Kind::Membership],
        ..Options::default()
    };
    let seed = seeds(7, 1)[0];
    let r = run(seed, &opts).expect("the ensemble runs");
    println!(
        "membership, seed {seed}: {} faults, {} re-added, {} operations: {:?}",
        r.faults, r.readded, r.ops, r.verdict
    );
    assert!(
        r.readded >= 1,
        "seed {seed}: no member was removed and added back"
    );
    assert_eq!(r.voters_at_end, [1, 2, 3, 4, 5], "seed {seed}");
    assert!(
        matches!(r.verdict, Verdict::Linearizable { .. }),
        "seed {seed}: {:?}",
        r.verdict
    );
}

#[test]
fn the_planted_stale_reads_are_caught() {
    let opts = Options {
        duration: Duration::from_secs(8),
        kinds: vec![Kind::Partition, Kind::IsolateLeader],
        stale_reads: true,
        ..Options::default()
    };
    let mut caught = Vec::new();
    for seed in seeds(100, 3) {
        let r = run(seed, &opts).expect("the ensemble runs");
        println!(
            "planted, seed {seed}: {} operations: {:?}",
            r.ops,
            matches!(r.verdict, Verdict::Violation(_))
        );
        if let Verdict::Violation(report) = &r.verdict {
            println!("{report}");
            caught.push(seed);
        }
    }
    assert!(
        !caught.is_empty(),
        "reads without sync from cut-off members went unnoticed"
    );
}
