//! The limiter's behaviours, each forced through its public API on tokio's
//! paused clock (nothing here depends on how fast the machine is), and
//! the goals the simulation ([`super::sim`]) holds it to.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::sim::{self, Account, Case};
use super::*;

/// `n` calls through `limiter`, each accepted.
async fn accept(limiter: &RateLimiter, n: usize) {
    for _ in 0..n {
        let p = limiter.acquire().await;
        limiter.succeeded(&p);
    }
}

/// A limiter handed `share` of the pool's rate before its first call.
fn resuming_at(share: f64) -> RateLimiter {
    let limiter = RateLimiter::per_second(DEFAULT_CEILING);
    drop(limiter.batch(0, Some(share)));
    limiter
}

/// One call through `limiter`, throttled; the limiter's state after it.
async fn throttle(limiter: &RateLimiter) -> Snapshot {
    let p = limiter.acquire().await;
    limiter.throttled(&p);
    limiter.snapshot()
}

/// Calls one after another for `secs` seconds against `account`, with
/// the share `stray` of them throttled whatever the rate (seeded).
async fn phase(limiter: &RateLimiter, account: &mut Account, secs: u64, stray: f64) -> (u64, u64) {
    let end = Instant::now() + Duration::from_secs(secs);
    let (mut accepted, mut throttled) = (0, 0);
    let mut strays = sim::Stray::new(stray, 11);
    while Instant::now() < end {
        let p = limiter.acquire().await;
        if account.admit() && !strays.hits() {
            limiter.succeeded(&p);
            accepted += 1;
        } else {
            limiter.throttled(&p);
            throttled += 1;
        }
    }
    (accepted, throttled)
}

#[tokio::test(start_paused = true)]
async fn spaces_calls_evenly() {
    let limiter = RateLimiter::fixed(4.0);
    let start = Instant::now();
    for _ in 0..9 {
        limiter.acquire().await;
    }
    // Nine calls at 4 per second: the first at once, the ninth 2 s later.
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn idle_time_is_not_banked_as_burst() {
    let limiter = RateLimiter::fixed(2.0);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let start = Instant::now();
    limiter.acquire().await;
    limiter.acquire().await;
    assert_eq!(start.elapsed(), Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn a_fixed_limiter_ignores_throttles() {
    let limiter = RateLimiter::fixed(2.0);
    let seen = throttle(&limiter).await;
    assert_eq!((seen.rate, seen.throttles, seen.cuts), (2.0, 1, 0));
}

#[tokio::test(start_paused = true)]
async fn the_ceiling_is_never_exceeded() {
    let limiter = RateLimiter::per_second(10.0);
    let start = Instant::now();
    accept(&limiter, 201).await;
    assert!(limiter.snapshot().rate <= 10.0);
    // 200 intervals, none shorter than 1/10 s.
    assert!(start.elapsed() >= Duration::from_secs(20));
}

/// A trickle (calls spaced by something else than the limit) shows
/// nothing of what MTurk takes: the rate stays, and nothing is reported
/// to the pool.
#[tokio::test(start_paused = true)]
async fn calls_that_did_not_wait_do_not_raise_the_rate() {
    let limiter = RateLimiter::per_second(25.0);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        accept(&limiter, 1).await;
    }
    let seen = limiter.snapshot();
    assert_eq!((seen.rate, seen.held_back), (INITIAL_RATE, None));
    assert!(seen.last_accepted.is_some());
}

#[test]
fn cold_instances_share_the_pools_first_rate() {
    assert_eq!(initial_rate(None), INITIAL_RATE);
    assert_eq!(initial_rate(Some(1)), INITIAL_RATE);
    assert!((initial_rate(Some(5)) * 5.0 - 2.0 * INITIAL_RATE).abs() < 1e-9);
}

/// The start from the pool's rate: the first batch's share is taken
/// before any slot, with no slow start; afterwards a share changes nothing.
#[tokio::test(start_paused = true)]
async fn a_cold_instance_starts_from_the_pools_rate() {
    let limiter = RateLimiter::per_second(DEFAULT_CEILING);
    drop(limiter.batch(4, Some(10.0)));
    let seen = limiter.snapshot();
    assert!(!seen.slow_start && seen.rate == 10.0, "{seen:?}");
    // The second call goes a tenth of a second after the first, not half.
    let first = limiter.acquire().await;
    limiter.succeeded(&first);
    let second = limiter.acquire().await;
    assert_eq!(second.sent_at - first.sent_at, Duration::from_millis(100));
    drop(limiter.batch(4, Some(3.0)));
    assert!(limiter.snapshot().rate >= 10.0);

    // A share above the ceiling is held to it; a used limiter keeps its start.
    let capped = RateLimiter::per_second(4.0);
    drop(capped.batch(1, Some(10.0)));
    assert_eq!(capped.snapshot().rate, 4.0);
    let used = RateLimiter::per_second(DEFAULT_CEILING);
    accept(&used, 1).await;
    drop(used.batch(1, Some(10.0)));
    assert!(used.snapshot().slow_start);
}

/// Slow start's rate says only "at least": nothing is reported to the
/// pool below the ceiling; once it ended, the calls the limit held back
/// say what MTurk takes.
#[tokio::test(start_paused = true)]
async fn slow_start_reports_no_rate_below_its_ceiling() {
    let limiter = RateLimiter::per_second(DEFAULT_CEILING);
    accept(&limiter, 4).await;
    let seen = limiter.snapshot();
    assert!(seen.slow_start && seen.held_back.is_none(), "{seen:?}");
    throttle(&limiter).await;
    throttle(&limiter).await;
    accept(&limiter, 2).await;
    let seen = limiter.snapshot();
    assert!(
        !seen.slow_start && seen.held_back == Some(Instant::now()),
        "{seen:?}"
    );
    // At its ceiling, slow start has nothing more to find.
    let capped = RateLimiter::per_second(INITIAL_RATE * 2.0);
    accept(&capped, 6).await;
    let seen = capped.snapshot();
    assert!(seen.slow_start && seen.held_back.is_some(), "{seen:?}");
}

/// A burst's first call finds its slot free; the caller queued behind it
/// shows the limit holds them back, so its success grows slow start. A
/// batch's first call answered before the next record's caller came
/// grows it too (for that caller), but a lone record's does not.
#[tokio::test(start_paused = true)]
async fn a_batchs_first_call_grows_slow_start() {
    let limiter = Arc::new(RateLimiter::per_second(DEFAULT_CEILING));
    let first = limiter.acquire().await;
    let queued = tokio::spawn({
        let limiter = limiter.clone();
        async move { limiter.acquire().await }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    limiter.succeeded(&first);
    assert_eq!(limiter.snapshot().rate, 2.0 * INITIAL_RATE);
    assert!(queued.await.unwrap().waited);

    for records in [2, 1] {
        let limiter = RateLimiter::per_second(DEFAULT_CEILING);
        let batch = limiter.batch(records, None);
        let first = limiter.acquire().await;
        limiter.succeeded(&first);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let next = limiter.acquire().await;
        let expected = if records > 1 { 2.0 } else { 1.0 } * INITIAL_RATE;
        assert_eq!(
            next.sent_at - first.sent_at,
            Duration::from_secs_f64(1.0 / expected),
            "{records} records"
        );
        drop(batch);
    }
}

/// A throttled first call (an empty bucket, a stray throttle) does not end
/// slow start, nor does a stray one after MTurk took calls: it goes on
/// once MTurk takes calls. Two throttles among its last calls end it, and
/// three with nothing accepted end it at half the start.
#[tokio::test(start_paused = true)]
async fn a_throttled_first_call_recovers() {
    let limiter = RateLimiter::per_second(DEFAULT_CEILING);
    throttle(&limiter).await;
    let seen = throttle(&limiter).await;
    assert!(seen.slow_start && seen.cuts == 0, "{seen:?}");
    accept(&limiter, 3).await;
    let seen = throttle(&limiter).await;
    assert!(seen.slow_start && seen.rate > INITIAL_RATE, "{seen:?}");
    accept(&limiter, 2).await;
    let seen = throttle(&limiter).await;
    assert!(!seen.slow_start && seen.cuts == 1, "{seen:?}");

    let starved = RateLimiter::per_second(DEFAULT_CEILING);
    throttle(&starved).await;
    throttle(&starved).await;
    let seen = throttle(&starved).await;
    assert!(!seen.slow_start, "{seen:?}");
    assert_eq!(seen.rate, 0.5 * INITIAL_RATE);
}

/// Congestion cuts to what MTurk accepted, whatever slow start reached:
/// an account of 5/s behind a limiter that slow start took far above it.
#[tokio::test(start_paused = true)]
async fn congestion_cuts_to_what_mturk_accepted() {
    let limiter = RateLimiter::per_second(DEFAULT_CEILING);
    let mut account = Account::new(5.0);
    phase(&limiter, &mut account, 20, 0.0).await;
    let seen = limiter.snapshot();
    assert!(
        seen.cuts >= 1 && (3.5..=6.5).contains(&seen.rate),
        "{seen:?}"
    );
}

/// Stray throttles (a share of calls whatever the rate) do not collapse
/// the rate. Two instances (the template's) over five minutes with a
/// tenth of their calls throttled at random hold most of what MTurk takes
/// (0.79 × R at R = 8, 0.90 at R = 20), throttled at most 5 points above
/// the stray share. One limiter alone, before it has learned the noise
/// (every throttle near its peak cuts until then), still sends two thirds
/// of what an account of 10/s takes in its first two minutes (0.66; 0.70
/// with `219d410`'s quick probing after 10 s without a cut).
#[tokio::test(start_paused = true)]
async fn stray_throttles_do_not_collapse_the_rate() {
    for (r, least) in [(8.0, 0.75), (20.0, 0.85)] {
        let run = sim::steady(Case::new(r, 2, 0.1), 300).await;
        assert!(
            run.over >= least && run.throttled < 0.15,
            "R = {r}: {run:?}"
        );
    }
    let limiter = RateLimiter::per_second(DEFAULT_CEILING);
    let mut account = Account::new(10.0);
    let (accepted, throttled) = phase(&limiter, &mut account, 120, 0.1).await;
    let share = throttled as f64 / (accepted + throttled) as f64;
    assert!(
        accepted as f64 >= 0.65 * 10.0 * 0.9 * 120.0,
        "{accepted} accepted"
    );
    assert!(share < 0.15, "{share:.3} throttled");
}

/// A collapse (MTurk throttled everything for a while) recovers within
/// seconds once MTurk accepts again: slow start finds the rate anew.
#[tokio::test(start_paused = true)]
async fn a_collapse_recovers_in_seconds() {
    let limiter = RateLimiter::per_second(DEFAULT_CEILING);
    let mut account = Account::new(10.0);
    phase(&limiter, &mut account, 30, 0.0).await;
    assert!(limiter.snapshot().rate >= 7.0, "{:?}", limiter.snapshot());
    phase(&limiter, &mut account, 20, 1.0).await;
    let collapsed = limiter.snapshot();
    assert!(collapsed.rate <= 1.0, "{collapsed:?}");
    let mut account = Account::new(10.0);
    phase(&limiter, &mut account, 30, 0.0).await;
    let back = limiter.snapshot();
    assert!(back.rate >= 6.0, "{back:?}");
}

/// A cold batch of 10 on an account of 100/s (case A): slow start takes
/// it in about twice the time of a limiter fixed at the ceiling, and the
/// pool's share in about the same.
#[tokio::test(start_paused = true)]
async fn a_cold_batch_is_quick_without_history() {
    async fn batch(limiter: RateLimiter) -> f64 {
        let limiter = Arc::new(limiter);
        let account = Arc::new(std::sync::Mutex::new(Account::new(100.0)));
        let _records = limiter.batch(10, None);
        let start = Instant::now();
        // Each record: two calls (the assignment, then the grant), 10 ms of
        // ledger before each, 30 ms each, four records at a time.
        let left = Arc::new(std::sync::Mutex::new(10usize));
        let mut workers = Vec::new();
        for _ in 0..4 {
            let (limiter, account, left) = (limiter.clone(), account.clone(), left.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    {
                        let mut left = left.lock().unwrap();
                        if *left == 0 {
                            return;
                        }
                        *left -= 1;
                    }
                    let mut calls = 0;
                    while calls < 2 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        let permit = limiter.acquire().await;
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        if account.lock().unwrap().admit() {
                            limiter.succeeded(&permit);
                            calls += 1;
                        } else {
                            limiter.throttled(&permit);
                        }
                    }
                }
            }));
        }
        for w in workers {
            w.await.unwrap();
        }
        start.elapsed().as_secs_f64()
    }
    let fixed = batch(RateLimiter::fixed(DEFAULT_CEILING)).await;
    let cold = batch(RateLimiter::per_second(DEFAULT_CEILING)).await;
    let pool = batch(resuming_at(50.0)).await;
    assert!(cold <= 2.0 * fixed + 0.05, "cold {cold} s, fixed {fixed} s");
    assert!(pool <= 1.05 * fixed, "pool {pool} s, fixed {fixed} s");
}

/// The bad starts (issue 31) in simulation: two cold instances, R = 8,
/// 10 % stray throttles, a burst of about 30 s of calls, five seeds.
/// Each instance's first call throttled drained in 1.62 × the floor
/// (worst 2.03) before this controller, the bucket empty in 2.53 (3.00),
/// case D in 1.33 (1.44); now 1.24 (1.40), 1.33 (1.72), 1.22 (1.39). The
/// climb back after a cut costs throttles: 15-16 % on average, up to 24 %
/// in one seed's burst.
#[tokio::test(start_paused = true)]
async fn a_bad_start_does_not_cost_the_burst() {
    let d = Case::new(8.0, 2, 0.1);
    for (case, at_most) in [
        (Case { first: 2, ..d }, 1.3),
        (Case { empty: true, ..d }, 1.4),
        (d, 1.3),
    ] {
        let (mean, worst) = sim::burst(case, 240, 5).await;
        assert!(
            mean.over <= at_most && worst.throttled < 0.25,
            "{case:?}: {mean:?}, worst {worst:?}"
        );
    }
}

/// Without stray throttles, two cold instances not told R find it
/// together: the burst drains near its floor and few calls are
/// throttled (R = 2 starts at twice the account's rate together: 16.7 %
/// of a 30-second burst's calls, as with the controller before; R = 5
/// 9.1 %, 7.4 % before).
#[tokio::test(start_paused = true)]
async fn instances_find_the_account_rate_together() {
    for (r, calls, allowed) in [(2.0, 60, 0.17), (5.0, 180, 0.1), (20.0, 600, 0.05)] {
        let (mean, _) = sim::burst(Case::new(r, 2, 0.0), calls, 5).await;
        assert!(mean.over <= 1.15, "R = {r}: {mean:?}");
        assert!(mean.throttled < allowed, "R = {r}: {mean:?}");
    }
    // Over five minutes the sum settles just under R.
    for r in [2.0, 20.0] {
        let run = sim::steady(Case::new(r, 2, 0.0), 300).await;
        assert!(run.over >= 0.9 && run.throttled < 0.1, "R = {r}: {run:?}");
    }
}

/// The pool's share in the ledger can be stale (MTurk took more when it
/// was reported): two instances resuming at 25/s each on an account that
/// now takes 5 or 10 give it up at their first congestion, most of their
/// calls throttled sending them back to slow start: 10.1 % and 5.4 % of a
/// minute's calls throttled.
#[tokio::test(start_paused = true)]
async fn a_stale_pool_share_is_given_up_within_seconds() {
    for r in [5.0, 10.0] {
        let run = sim::run_with(Case::new(r, 2, 0.0), 0, Some(60), || {
            Arc::new(resuming_at(25.0))
        })
        .await;
        assert!(run.throttled < 0.11 && run.over >= 0.9, "R = {r}: {run:?}");
    }
}
