//! Seeded fault schedules: which fault, on which members, when and for how long. A schedule
//! is a pure function of its seed and its [`Plan`], so a seed printed by a failing run
//! replays the same faults (the timing of the system under them still varies).

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One fault. Members are named by id; "the leader" is whoever leads when the fault
/// starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The members split in two: `minority` cut off from the rest, both directions.
    Partition { minority: Vec<u64> },
    /// Two sides that only one member (`bridge`) connects: it hears both, they do not
    /// hear each other.
    Bridge {
        left: Vec<u64>,
        bridge: u64,
        right: Vec<u64>,
    },
    /// The leader cut off from every other member.
    IsolateLeader,
    /// A share of the messages on each directed link between these members lost.
    Drop { links: Vec<(u64, u64)>, ratio: f64 },
    /// Messages on each of these directed links held back.
    Delay {
        links: Vec<(u64, u64)>,
        by: Duration,
    },
    /// The member's process paused (SIGSTOP) and resumed when the fault ends; in-process,
    /// where a thread cannot be paused, cut off from everyone instead.
    Pause { member: u64 },
    /// The member killed at once (kill -9; in-process, stopped) and restarted from its
    /// directory when the fault ends.
    Crash { member: u64 },
    /// Every member killed at once, all restarted when the fault ends.
    CrashAll,
    /// One client session's host cut off for longer than the session timeout, so its
    /// session expires and its ephemerals go.
    ExpireSession,
    /// A follower removed from the ensemble, and added back when the fault ends.
    Membership { member: u64 },
}

impl Fault {
    /// The fault's kind, as [`Plan::kinds`] names it.
    pub fn kind(&self) -> Kind {
        match self {
            Fault::Partition { .. } => Kind::Partition,
            Fault::Bridge { .. } => Kind::Bridge,
            Fault::IsolateLeader => Kind::IsolateLeader,
            Fault::Drop { .. } => Kind::Drop,
            Fault::Delay { .. } => Kind::Delay,
            Fault::Pause { .. } => Kind::Pause,
            Fault::Crash { .. } => Kind::Crash,
            Fault::CrashAll => Kind::CrashAll,
            Fault::ExpireSession => Kind::ExpireSession,
            Fault::Membership { .. } => Kind::Membership,
        }
    }
}

/// The kinds of fault a schedule may hold (a target that cannot inject one leaves it out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Partition,
    Bridge,
    IsolateLeader,
    Drop,
    Delay,
    Pause,
    Crash,
    CrashAll,
    ExpireSession,
    Membership,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 10] = [
        Kind::Partition,
        Kind::Bridge,
        Kind::IsolateLeader,
        Kind::Drop,
        Kind::Delay,
        Kind::Pause,
        Kind::Crash,
        Kind::CrashAll,
        Kind::ExpireSession,
        Kind::Membership,
    ];
}

/// A fault and when it holds, counted from the start of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at: Duration,
    pub fault: Fault,
    /// How long it holds; then everything is healed (and crashed members restarted).
    pub lasts: Duration,
}

/// What a schedule is drawn from.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The members' ids.
    pub members: Vec<u64>,
    /// How long the whole schedule runs.
    pub duration: Duration,
    /// The kinds of fault to draw from.
    pub kinds: Vec<Kind>,
    /// Bounds of one fault's length.
    pub fault_len: (Duration, Duration),
    /// Bounds of the healed gap after each fault.
    pub gap_len: (Duration, Duration),
    /// The least an [`Fault::ExpireSession`] lasts: longer than the clients' session
    /// timeout, or nothing expires.
    pub expire_len: Duration,
}

impl Plan {
    /// Faults of 0.5–2 s with healed gaps of 0.3–1 s, over `duration`.
    pub fn new(members: Vec<u64>, duration: Duration, kinds: &[Kind]) -> Plan {
        Plan {
            members,
            duration,
            kinds: kinds.to_vec(),
            fault_len: (Duration::from_millis(500), Duration::from_millis(2000)),
            gap_len: (Duration::from_millis(300), Duration::from_millis(1000)),
            expire_len: Duration::from_millis(2500),
        }
    }
}

/// A seeded sequence of faults.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub seed: u64,
    pub steps: Vec<Step>,
    pub duration: Duration,
}

fn between(rng: &mut ChaCha8Rng, (lo, hi): (Duration, Duration)) -> Duration {
    let (lo, hi) = (
        lo.as_millis() as u64,
        hi.as_millis().max(lo.as_millis()) as u64,
    );
    Duration::from_millis(rng.gen_range(lo..=hi))
}

impl Schedule {
    /// The schedule of `seed` under `plan`: faults one after another, each followed by a
    /// healed gap, until the plan's duration (the last fault ends before it).
    pub fn generate(seed: u64, plan: &Plan) -> Schedule {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut steps = Vec::new();
        let mut at = between(&mut rng, plan.gap_len);
        while !plan.kinds.is_empty() {
            let mut lasts = between(&mut rng, plan.fault_len);
            if at + lasts > plan.duration {
                break;
            }
            let kind = *plan.kinds.choose(&mut rng).unwrap_or(&Kind::Partition);
            if kind == Kind::ExpireSession {
                lasts = lasts.max(plan.expire_len);
                if at + lasts > plan.duration {
                    break;
                }
            }
            steps.push(Step {
                at,
                fault: draw(&mut rng, kind, &plan.members),
                lasts,
            });
            at += lasts + between(&mut rng, plan.gap_len);
        }
        Schedule {
            seed,
            steps,
            duration: plan.duration,
        }
    }
}

/// A random directed link set: every link out of or into one random member.
fn links_of(rng: &mut ChaCha8Rng, members: &[u64]) -> Vec<(u64, u64)> {
    let m = *members.choose(rng).unwrap_or(&1);
    members
        .iter()
        .filter(|&&o| o != m)
        .flat_map(|&o| [(m, o), (o, m)])
        .collect()
}

fn draw(rng: &mut ChaCha8Rng, kind: Kind, members: &[u64]) -> Fault {
    let mut shuffled = members.to_vec();
    shuffled.shuffle(rng);
    let pick = shuffled.first().copied().unwrap_or(1);
    match kind {
        Kind::Partition => {
            let size = rng.gen_range(1..=(members.len().saturating_sub(1) / 2).max(1));
            let mut minority = shuffled[..size.min(shuffled.len())].to_vec();
            minority.sort_unstable();
            Fault::Partition { minority }
        }
        Kind::Bridge => {
            let bridge = pick;
            let rest = &shuffled[1..];
            let (l, r) = rest.split_at(rest.len() / 2);
            let (mut left, mut right) = (l.to_vec(), r.to_vec());
            left.sort_unstable();
            right.sort_unstable();
            Fault::Bridge {
                left,
                bridge,
                right,
            }
        }
        Kind::IsolateLeader => Fault::IsolateLeader,
        Kind::Drop => Fault::Drop {
            links: links_of(rng, members),
            ratio: [0.2, 0.5, 0.9][rng.gen_range(0..3)],
        },
        Kind::Delay => Fault::Delay {
            links: links_of(rng, members),
            by: Duration::from_millis([20, 100, 400][rng.gen_range(0..3)]),
        },
        Kind::Pause => Fault::Pause { member: pick },
        Kind::Crash => Fault::Crash { member: pick },
        Kind::CrashAll => Fault::CrashAll,
        Kind::ExpireSession => Fault::ExpireSession,
        Kind::Membership => Fault::Membership { member: pick },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan::new(vec![1, 2, 3, 4, 5], Duration::from_secs(20), &Kind::ALL)
    }

    #[test]
    fn a_seed_gives_the_same_schedule_and_another_seed_another() {
        let a = Schedule::generate(7, &plan());
        assert_eq!(a, Schedule::generate(7, &plan()));
        assert_ne!(a, Schedule::generate(8, &plan()));
        assert!(a.steps.len() >= 5, "{a:?}");
    }

    #[test]
    fn faults_stay_inside_the_run_and_do_not_overlap() {
        for seed in 0..200 {
            let s = Schedule::generate(seed, &plan());
            let mut end = Duration::ZERO;
            for step in &s.steps {
                assert!(step.at >= end, "seed {seed}: overlapping faults");
                end = step.at + step.lasts;
                assert!(end <= s.duration, "seed {seed}: past the end");
                match &step.fault {
                    Fault::Partition { minority } => {
                        assert!(!minority.is_empty() && minority.len() <= 2, "{minority:?}")
                    }
                    Fault::Bridge {
                        left,
                        bridge,
                        right,
                    } => {
                        assert_eq!(left.len() + right.len() + 1, 5);
                        assert!(!left.contains(bridge) && !right.contains(bridge));
                    }
                    Fault::Drop { links, ratio } => {
                        assert_eq!(links.len(), 8);
                        assert!(*ratio > 0.0 && *ratio < 1.0);
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn only_the_kinds_asked_for_are_drawn() {
        let p = Plan::new(
            vec![1, 2, 3],
            Duration::from_secs(60),
            &[Kind::Crash, Kind::Drop],
        );
        let s = Schedule::generate(1, &p);
        assert!(s
            .steps
            .iter()
            .all(|st| matches!(st.fault.kind(), Kind::Crash | Kind::Drop)));
        let none = Plan::new(vec![1, 2, 3], Duration::from_secs(60), &[]);
        assert!(Schedule::generate(1, &none).steps.is_empty());
    }
}
