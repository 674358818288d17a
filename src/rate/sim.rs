//! The limiter against a simulated MTurk, on tokio's paused clock: one
//! account-wide token bucket of rate R holding about a second of calls (the
//! double's model of MTurk's), a share of stray throttles whatever the
//! rate, and instances of four callers each. The tests use it through
//! [`burst`] and [`steady`]; `figures` prints BENCHMARKS.md's simulation
//! table and runs only when asked:
//! `cargo test --lib rate::sim -- --ignored --nocapture`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use mturk_double::TokenBucket;

use super::{RateLimiter, DEFAULT_CEILING};

/// MTurk's account-wide limit, as the double models it, on tokio's clock
/// (paused in these tests).
pub(crate) struct Account(TokenBucket);

impl Account {
    pub(crate) fn new(rate: f64) -> Self {
        Account(TokenBucket::new(rate, Instant::now().into_std()))
    }

    /// The bucket empty now (another script spent it).
    pub(crate) fn empty(&mut self) {
        self.0.empty(Instant::now().into_std());
    }

    pub(crate) fn admit(&mut self) -> bool {
        self.0.admit(Instant::now().into_std())
    }
}

/// Stray throttles: each call with probability `share` (seeded), and the
/// first `first` calls whatever the share.
pub(crate) struct Stray {
    share: f64,
    state: u64,
    first: usize,
}

impl Stray {
    pub(crate) fn new(share: f64, seed: u64) -> Self {
        Stray {
            share,
            state: seed,
            first: 0,
        }
    }

    pub(crate) fn hits(&mut self) -> bool {
        if self.first > 0 {
            self.first -= 1;
            return true;
        }
        // SplitMix64.
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z >> 11) as f64 / (1u64 << 53) as f64) < self.share
    }
}

/// How a simulated run begins and what it faces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Case {
    /// MTurk's rate for the account.
    pub r: f64,
    /// Instances, each as the handler builds it for `MaximumConcurrency` = this.
    pub instances: usize,
    /// Share of calls throttled whatever the rate.
    pub stray: f64,
    pub seed: u64,
    /// Calls throttled first, whatever the bucket holds.
    pub first: usize,
    /// The bucket empty at the start (another script spent it).
    pub empty: bool,
}

impl Case {
    pub(crate) fn new(r: f64, instances: usize, stray: f64) -> Self {
        Case {
            r,
            instances,
            stray,
            seed: 1,
            first: 0,
            empty: false,
        }
    }
}

/// What a simulated run came to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    /// Time to the last accepted call ÷ (calls ÷ R); for [`steady`], the
    /// accepted calls after the warm-up ÷ (R × its length) instead.
    pub over: f64,
    pub throttled: f64,
    /// The least share of its due (0.7 is the goal) an instance got
    /// between 10 and 20 s: accepted calls sent then ÷ (10 s × R × (1 −
    /// stray) ÷ instances).
    pub start: f64,
}

/// `calls` MTurk calls shared by the case's cold instances (4 callers
/// each, a 30 ms call and 10 ms of other work between calls, each call
/// retried until accepted), or, with `secs`, calls for that long.
pub(crate) async fn run(case: Case, calls: usize, secs: Option<u64>) -> Run {
    let limiter = || {
        Arc::new(RateLimiter::configured(
            DEFAULT_CEILING,
            None,
            Some(case.instances),
        ))
    };
    run_with(case, calls, secs, limiter).await
}

/// [`run`] with instances built by `limiter`.
pub(crate) async fn run_with(
    case: Case,
    calls: usize,
    secs: Option<u64>,
    limiter: impl Fn() -> Arc<RateLimiter>,
) -> Run {
    let mut strays = Stray::new(case.stray, case.seed);
    strays.first = case.first;
    let mut account = Account::new(case.r);
    if case.empty {
        account.empty();
    }
    let account = Arc::new(Mutex::new((account, strays)));
    let left = Arc::new(Mutex::new(if secs.is_some() { usize::MAX } else { calls }));
    let start = Instant::now();
    let end = secs.map(|s| start + Duration::from_secs(s));
    let warm = start + Duration::from_secs(secs.map_or(0, |s| 20.min(s / 4)));
    // Per instance: accepted calls sent 10-20 s in; accepted and
    // throttled calls in all; accepted after the warm-up.
    let counts = Arc::new(Mutex::new(vec![[0u64; 4]; case.instances]));
    let mut tasks = Vec::new();
    for i in 0..case.instances {
        let limiter = limiter();
        for _ in 0..4 {
            let (limiter, account) = (limiter.clone(), account.clone());
            let (left, counts) = (left.clone(), counts.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    if end.is_some_and(|e| Instant::now() >= e) {
                        return;
                    }
                    {
                        let mut left = left.lock().unwrap();
                        if *left == 0 {
                            return;
                        }
                        *left -= 1;
                    }
                    loop {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        let permit = limiter.acquire().await;
                        tokio::time::sleep(Duration::from_millis(15)).await;
                        let ok = {
                            let mut a = account.lock().unwrap();
                            a.0.admit() && !a.1.hits()
                        };
                        tokio::time::sleep(Duration::from_millis(15)).await;
                        let mut c = counts.lock().unwrap();
                        if !ok {
                            limiter.throttled(&permit);
                            c[i][2] += 1;
                            continue;
                        }
                        limiter.succeeded(&permit);
                        let t = permit.sent_at.duration_since(start).as_secs_f64();
                        c[i][0] += u64::from((10.0..20.0).contains(&t));
                        c[i][1] += 1;
                        c[i][3] += u64::from(permit.sent_at >= warm);
                        break;
                    }
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let counts = counts.lock().unwrap();
    let sum = |k: usize| counts.iter().map(|c| c[k]).sum::<u64>() as f64;
    let due = 10.0 * case.r * (1.0 - case.stray) / case.instances as f64;
    let over = match end {
        Some(end) => sum(3) / (case.r * (end - warm).as_secs_f64()),
        None => start.elapsed().as_secs_f64() / (calls as f64 / case.r),
    };
    Run {
        over,
        throttled: sum(2) / (sum(1) + sum(2)),
        start: counts
            .iter()
            .map(|c| c[0] as f64 / due)
            .fold(f64::MAX, f64::min),
    }
}

/// A burst of `calls` for seeds 1 to `seeds`: the mean run, and the worst
/// drain and start.
pub(crate) async fn burst(case: Case, calls: usize, seeds: u64) -> (Run, Run) {
    let mut mean = Run {
        over: 0.0,
        throttled: 0.0,
        start: 0.0,
    };
    let mut worst = Run {
        over: 0.0,
        throttled: 0.0,
        start: f64::MAX,
    };
    let n = seeds.max(1);
    for seed in 1..=n {
        let run = run(Case { seed, ..case }, calls, None).await;
        mean.over += run.over / n as f64;
        mean.throttled += run.throttled / n as f64;
        mean.start += run.start / n as f64;
        worst.over = worst.over.max(run.over);
        worst.throttled = worst.throttled.max(run.throttled);
        worst.start = worst.start.min(run.start);
    }
    (mean, worst)
}

/// Calls for `secs` seconds: accepted after the warm-up ÷ R, and the
/// throttled share.
pub(crate) async fn steady(case: Case, secs: u64) -> Run {
    run(case, 0, Some(secs)).await
}

/// The table of BENCHMARKS.md's simulation: bursts of about 30 s of
/// calls over twenty seeds (mean, worst: the worst seeds are where a
/// limiter fails), and five minutes of calls.
#[tokio::test(start_paused = true)]
#[ignore = "prints BENCHMARKS.md's simulation table"]
async fn figures() {
    println!("| case | drain ÷ floor (worst) | throttled (worst) | start (least) |");
    println!("|---|---|---|---|");
    for (name, case, calls) in bursts() {
        let (mean, worst) = burst(case, calls, 20).await;
        println!(
            "| {name} | {:.2} ({:.2}) | {:.1} % ({:.1} %) | {:.2} ({:.2}) |",
            mean.over,
            worst.over,
            mean.throttled * 100.0,
            worst.throttled * 100.0,
            mean.start,
            worst.start
        );
    }
    println!("| five minutes | accepted ÷ R | throttled | |");
    for (name, case) in [
        ("R = 2", Case::new(2.0, 2, 0.0)),
        ("R = 8, 10 % stray", Case::new(8.0, 2, 0.1)),
        ("R = 20", Case::new(20.0, 2, 0.0)),
        ("R = 20, 10 % stray", Case::new(20.0, 2, 0.1)),
        ("R = 50", Case::new(50.0, 2, 0.0)),
        ("R = 20, five instances", Case::new(20.0, 5, 0.0)),
    ] {
        let run = steady(case, 300).await;
        println!(
            "| {name} | {:.2} | {:.1} % | |",
            run.over,
            run.throttled * 100.0
        );
    }
}

/// The bursts of [`figures`]: about 30 s of calls each.
fn bursts() -> Vec<(&'static str, Case, usize)> {
    vec![
        (
            "R = 8, 10 % stray, first calls throttled",
            Case {
                first: 2,
                ..Case::new(8.0, 2, 0.1)
            },
            240,
        ),
        (
            "R = 8, 10 % stray, bucket empty",
            Case {
                empty: true,
                ..Case::new(8.0, 2, 0.1)
            },
            240,
        ),
        ("R = 8, 10 % stray (D)", Case::new(8.0, 2, 0.1), 240),
        ("R = 8, 5 % stray", Case::new(8.0, 2, 0.05), 240),
        ("R = 8, 20 % stray", Case::new(8.0, 2, 0.2), 240),
        (
            "R = 20, 10 % stray, first calls throttled",
            Case {
                first: 2,
                ..Case::new(20.0, 2, 0.1)
            },
            600,
        ),
        (
            "R = 20, 10 % stray, bucket empty",
            Case {
                empty: true,
                ..Case::new(20.0, 2, 0.1)
            },
            600,
        ),
        ("R = 20, 10 % stray", Case::new(20.0, 2, 0.1), 600),
        (
            "R = 5, no stray (the fault test's burst)",
            Case::new(5.0, 2, 0.0),
            180,
        ),
        (
            "R = 5, five instances, no stray",
            Case::new(5.0, 5, 0.0),
            180,
        ),
        ("R = 2, no stray", Case::new(2.0, 2, 0.0), 60),
        ("R = 5, no stray", Case::new(5.0, 2, 0.0), 150),
        ("R = 20, no stray", Case::new(20.0, 2, 0.0), 600),
        ("R = 50, no stray", Case::new(50.0, 2, 0.0), 1500),
        (
            "R = 20, five instances, no stray",
            Case::new(20.0, 5, 0.0),
            600,
        ),
        (
            "R = 20, five instances, 10 % stray",
            Case::new(20.0, 5, 0.1),
            600,
        ),
    ]
}
