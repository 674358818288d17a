//! A per-instance, self-tuning limit on MTurk calls.
//!
//! MTurk publishes no rate limit, throttles ("Rate exceeded") from a few
//! requests per second per account, and the account's rate is shared by every
//! function instance and every script of the lab. No fixed per-instance rate
//! is right: too low and a burst takes several times longer than MTurk
//! allows, too high and throttled calls are wasted. So each instance finds
//! its share by itself, the way TCP finds a path's capacity:
//!
//! - **Spacing, not a bucket with burst.** Calls are handed evenly spaced
//!   slots at the current rate; idle time is never banked as a burst.
//! - **Slow start.** From [`INITIAL_RATE`] (or the ceiling, if lower) every
//!   call that had to wait for its slot and succeeded raises the rate by
//!   [`SLOW_START_GROWTH`] (×1.05), until the first throttle.
//! - **Multiplicative decrease.** A throttled call cuts the rate to
//!   [`DECREASE`] × rate (×0.5 for the first cut out of slow start, which
//!   overshoots most). Only one cut per round: calls sent before the last cut
//!   were sent at the old rate, and their throttles say nothing new.
//! - **Additive increase.** After a cut, each succeeded call that waited for
//!   its slot raises the rate so that it climbs by [`INCREASE`] × the rate at
//!   the last cut per second (5 %/s): back to where it was throttled in
//!   about 4 s, whatever R and `MaximumConcurrency` are. Past that point it
//!   keeps probing at 5 %/s of the current rate, so it recovers when MTurk
//!   allows more again (another script stopped).
//! - **A ceiling.** `MTURK_MAX_RPS` is the most one instance ever sends.
//!
//! Only calls that waited for their slot raise the rate: an instance whose
//! calls are spaced by something else (DynamoDB, too little work) has not
//! shown that MTurk takes more, and must not wander up to the ceiling and
//! then burst.
//!
//! Several instances adapt independently against one account-wide limit; the
//! simulation tests below (a shared token bucket of rate R, as MTurk and the
//! double have) show their sum settling just under R.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Where an instance starts (or at the ceiling, if that is lower): safe for
/// a few instances on an account that allows a few calls per second.
pub const INITIAL_RATE: f64 = 1.0;
/// The ceiling when nothing is configured: with `MaximumConcurrency` 2, the
/// instances can reach 50 calls/s together, the most the lab's account is
/// expected to allow; at 5, they still reach MTurk's limit if it is lower.
pub const DEFAULT_CEILING: f64 = 25.0;
/// Never slower than this (one call every 10 s), however often throttled, so
/// a batch still moves.
pub const MIN_RATE: f64 = 0.1;
/// Rate × this after a throttle.
pub const DECREASE: f64 = 0.8;
/// Rate × this after the first throttle out of slow start.
pub const SLOW_START_DECREASE: f64 = 0.5;
/// After a cut, throttles of calls sent within this many intervals (at the
/// new rate) do not cut again: the other instances are cutting too, and
/// MTurk's bucket needs a moment to refill.
const HOLD_INTERVALS: u32 = 2;
/// Growth per waited, succeeded call in slow start.
pub const SLOW_START_GROWTH: f64 = 0.05;
/// Additive increase per accepted call, as a share of the rate at the last cut.
pub const INCREASE: f64 = 0.005;

#[derive(Debug)]
pub struct RateLimiter {
    ceiling: f64,
    adaptive: bool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    rate: f64,
    next_slot: Instant,
    slow_start: bool,
    /// The rate when the last cut happened.
    last_limit: f64,
    /// Calls sent before this do not cut again.
    last_cut: Option<Instant>,
    throttles: u64,
    cuts: u64,
}

/// One call's slot, handed back with its outcome.
#[derive(Debug, Clone, Copy)]
pub struct Permit {
    /// When the call was let through.
    pub sent_at: Instant,
    /// Whether the call had to wait for its slot (the limit was what held it back).
    pub waited: bool,
}

/// A snapshot, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub rate: f64,
    pub ceiling: f64,
    pub slow_start: bool,
    pub throttles: u64,
    pub cuts: u64,
}

impl RateLimiter {
    /// At most `ceiling` calls per second, adapting below it to what MTurk
    /// accepts. `ceiling` must be positive and finite (the config checks it).
    pub fn per_second(ceiling: f64) -> Self {
        Self::build(ceiling, INITIAL_RATE.min(ceiling), true)
    }

    /// Like [`RateLimiter::per_second`], starting at `initial` calls per
    /// second (at most the ceiling) instead of [`INITIAL_RATE`].
    pub fn starting_at(ceiling: f64, initial: f64) -> Self {
        Self::build(ceiling, initial.min(ceiling), true)
    }

    /// Exactly `rate` calls per second, evenly spaced, whatever MTurk answers
    /// (the behaviour before the limit adapted; for comparisons and tests).
    pub fn fixed(rate: f64) -> Self {
        Self::build(rate, rate, false)
    }

    fn build(ceiling: f64, initial: f64, adaptive: bool) -> Self {
        let ceiling = if ceiling.is_finite() && ceiling > 0.0 {
            ceiling
        } else {
            DEFAULT_CEILING
        };
        let rate = initial.clamp(MIN_RATE.min(ceiling), ceiling);
        RateLimiter {
            ceiling,
            adaptive,
            state: Mutex::new(State {
                rate,
                next_slot: Instant::now(),
                slow_start: true,
                last_limit: rate,
                last_cut: None,
                throttles: 0,
                cuts: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another task panicked mid-update of
        // plain numbers; they are still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for this caller's slot. Slots are handed out in call order, at
    /// the rate of the moment they are handed out.
    pub async fn acquire(&self) -> Permit {
        let (slot, waited) = {
            let mut s = self.state();
            let now = Instant::now();
            let slot = s.next_slot.max(now);
            s.next_slot = slot + Duration::from_secs_f64(1.0 / s.rate);
            (slot, slot > now)
        };
        tokio::time::sleep_until(slot).await;
        Permit {
            sent_at: slot,
            waited,
        }
    }

    /// When a call asking now would get its slot.
    pub fn next_slot(&self) -> Instant {
        self.state().next_slot.max(Instant::now())
    }

    /// MTurk accepted the call (answered it, even with an error of its own).
    pub fn succeeded(&self, permit: &Permit) {
        if !self.adaptive || !permit.waited {
            return;
        }
        let mut s = self.state();
        let grown = if s.slow_start {
            s.rate * (1.0 + SLOW_START_GROWTH)
        } else {
            s.rate + INCREASE * s.last_limit.max(s.rate)
        };
        s.rate = grown.min(self.ceiling);
    }

    /// MTurk throttled the call: slow down, once per round.
    pub fn throttled(&self, permit: &Permit) {
        let mut s = self.state();
        s.throttles += 1;
        if !self.adaptive || s.last_cut.is_some_and(|cut| permit.sent_at < cut) {
            return;
        }
        let factor = if s.slow_start {
            SLOW_START_DECREASE
        } else {
            DECREASE
        };
        let now = Instant::now();
        s.last_limit = s.rate;
        s.rate = (s.rate * factor).max(MIN_RATE.min(self.ceiling));
        s.slow_start = false;
        let interval = Duration::from_secs_f64(1.0 / s.rate);
        s.last_cut = Some(now + HOLD_INTERVALS * interval);
        s.cuts += 1;
        // The next call waits a whole interval at the new rate.
        s.next_slot = s.next_slot.max(now + interval);
    }

    pub fn snapshot(&self) -> Snapshot {
        let s = self.state();
        Snapshot {
            rate: s.rate,
            ceiling: self.ceiling,
            slow_start: s.slow_start,
            throttles: s.throttles,
            cuts: s.cuts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn the_ceiling_is_never_exceeded() {
        let limiter = RateLimiter::per_second(10.0);
        let start = Instant::now();
        for _ in 0..201 {
            let p = limiter.acquire().await;
            limiter.succeeded(&p);
        }
        assert!(limiter.snapshot().rate <= 10.0);
        // 200 intervals, none shorter than 1/10 s.
        assert!(
            start.elapsed() >= Duration::from_secs(20),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn calls_that_did_not_wait_do_not_raise_the_rate() {
        let limiter = RateLimiter::per_second(25.0);
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let p = limiter.acquire().await;
            limiter.succeeded(&p);
        }
        assert_eq!(limiter.snapshot().rate, INITIAL_RATE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_limiter_ignores_throttles() {
        let limiter = RateLimiter::fixed(2.0);
        let p = limiter.acquire().await;
        limiter.throttled(&p);
        assert_eq!(limiter.snapshot().rate, 2.0);
        assert_eq!(limiter.snapshot().throttles, 1);
    }

    /// A shared account-wide limit, as MTurk (and the double) have it: a
    /// token bucket of rate R holding about one second of calls.
    pub(crate) struct Account {
        rate: f64,
        capacity: f64,
        tokens: f64,
        last: Instant,
    }

    impl Account {
        pub(crate) fn new(rate: f64) -> Self {
            Account {
                rate,
                capacity: rate.max(1.0),
                tokens: rate.max(1.0),
                last: Instant::now(),
            }
        }

        pub(crate) fn admit(&mut self) -> bool {
            let now = Instant::now();
            let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
            self.last = now;
            self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                true
            } else {
                false
            }
        }
    }

    /// What a simulated run came to.
    #[derive(Debug)]
    struct Run {
        /// Accepted calls per second after the warm-up, ÷ R.
        utilisation: f64,
        throttled_share: f64,
        /// Sum of the instances' rates, sampled every second after the warm-up, ÷ R.
        sums: Vec<f64>,
    }

    /// `instances` limiters, each with `workers` concurrent callers that
    /// always have work, against one account of rate `r`, for `secs` seconds
    /// of the paused clock. A call takes 30 ms; between calls a worker spends
    /// 10 ms on other things (the ledger).
    async fn simulate(r: f64, instances: usize, ceiling: f64, secs: u64) -> Run {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        let account = Arc::new(Mutex::new(Account::new(r)));
        let limiters: Vec<Arc<RateLimiter>> = (0..instances)
            .map(|_| Arc::new(RateLimiter::per_second(ceiling)))
            .collect();
        let start = Instant::now();
        let end = start + Duration::from_secs(secs);
        let warm = start + Duration::from_secs(20.min(secs / 4));
        let ok = Arc::new(AtomicU64::new(0));
        let ok_warm = Arc::new(AtomicU64::new(0));
        let throttled = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for limiter in &limiters {
            for _ in 0..4 {
                let (limiter, account) = (limiter.clone(), account.clone());
                let (ok, ok_warm, throttled) = (ok.clone(), ok_warm.clone(), throttled.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < end {
                        let permit = limiter.acquire().await;
                        tokio::time::sleep(Duration::from_millis(15)).await;
                        let admitted = account.lock().unwrap().admit();
                        tokio::time::sleep(Duration::from_millis(15)).await;
                        if admitted {
                            limiter.succeeded(&permit);
                            ok.fetch_add(1, Ordering::Relaxed);
                            if permit.sent_at >= warm {
                                ok_warm.fetch_add(1, Ordering::Relaxed);
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        } else {
                            limiter.throttled(&permit);
                            throttled.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
        }
        let mut sums = Vec::new();
        tokio::time::sleep_until(warm).await;
        while Instant::now() < end {
            let sum: f64 = limiters.iter().map(|l| l.snapshot().rate).sum();
            sums.push(sum / r);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        let (ok, throttled) = (
            ok.load(Ordering::Relaxed),
            throttled.load(Ordering::Relaxed),
        );
        Run {
            utilisation: ok_warm.load(Ordering::Relaxed) as f64 / (r * (end - warm).as_secs_f64()),
            throttled_share: throttled as f64 / (ok + throttled) as f64,
            sums,
        }
    }

    fn summary(run: &Run) -> String {
        let mean = run.sums.iter().sum::<f64>() / run.sums.len() as f64;
        let min = run.sums.iter().cloned().fold(f64::MAX, f64::min);
        let max = run.sums.iter().cloned().fold(0.0, f64::max);
        format!(
            "accepted {:.3} × R, throttled {:.3} of calls, sum of rates ÷ R: mean {mean:.2}, min {min:.2}, max {max:.2}",
            run.utilisation, run.throttled_share
        )
    }

    /// Independent instances against one account: after a 20 s warm-up, the
    /// sum of their rates stays near R (neither far above it, which would be
    /// throttled calls, nor far below, which would be a slow drain), MTurk
    /// accepts about R calls a second, and few calls are throttled.
    #[tokio::test(start_paused = true)]
    async fn instances_converge_just_under_the_account_rate() {
        for (r, c) in [
            (2.0, 2),
            (5.0, 2),
            (5.0, 5),
            (20.0, 2),
            (20.0, 5),
            (50.0, 2),
            (50.0, 5),
        ] {
            let run = simulate(r, c, DEFAULT_CEILING, 300).await;
            let line = format!("R = {r}, {c} instances: {}", summary(&run));
            println!("{line}");
            assert!(run.utilisation >= 0.9, "{line}");
            assert!(run.throttled_share < 0.05, "{line}");
            // Settled: on average near R, and nine samples in ten within
            // -30 %/+40 % of it (an instance that escaped the throttles
            // for a while can briefly probe higher).
            let mean = run.sums.iter().sum::<f64>() / run.sums.len() as f64;
            let close = run.sums.iter().filter(|s| (0.7..=1.4).contains(*s)).count();
            assert!((0.8..=1.2).contains(&mean), "{line}");
            assert!(
                close * 10 >= run.sums.len() * 9,
                "the sum oscillated wildly: {line}"
            );
        }
    }

    /// The hard case, shown rather than asserted: five instances sharing
    /// 2 calls/s, whose bucket holds only 2, collide by chance even well
    /// under R (BENCHMARKS.md).
    #[tokio::test(start_paused = true)]
    async fn five_instances_at_two_per_second() {
        let run = simulate(2.0, 5, DEFAULT_CEILING, 600).await;
        println!("R = 2, 5 instances: {}", summary(&run));
        assert!(run.utilisation >= 0.4, "{}", summary(&run));
    }

    /// Calls one after another through `limiter` for `secs` seconds.
    async fn phase(limiter: &RateLimiter, account: &mut Account, secs: u64) -> (u64, u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        let (mut accepted, mut throttled) = (0, 0);
        while Instant::now() < end {
            let p = limiter.acquire().await;
            if account.admit() {
                limiter.succeeded(&p);
                accepted += 1;
            } else {
                limiter.throttled(&p);
                throttled += 1;
            }
        }
        (accepted, throttled)
    }

    /// One limiter: backs off when the account allows less, and climbs back
    /// when it allows more again.
    #[tokio::test(start_paused = true)]
    async fn backs_off_on_throttling_and_recovers_afterwards() {
        let limiter = RateLimiter::per_second(DEFAULT_CEILING);
        let mut account = Account::new(10.0);
        // Slow start from INITIAL_RATE finds an account of 10/s.
        phase(&limiter, &mut account, 60).await;
        let found = limiter.snapshot();
        assert!(
            !found.slow_start && (7.0..=12.0).contains(&found.rate),
            "{found:?}"
        );
        // The account drops to 2/s (another script started): it backs off.
        account = Account::new(2.0);
        account.tokens = 0.0;
        let (_, throttled) = phase(&limiter, &mut account, 30).await;
        let backed = limiter.snapshot();
        assert!(throttled > 0 && backed.rate <= 2.6, "{backed:?}");
        // And back to 20/s: it climbs back without being told.
        account = Account::new(20.0);
        let (accepted, throttled) = phase(&limiter, &mut account, 180).await;
        let recovered = limiter.snapshot();
        assert!(recovered.rate >= 15.0, "{recovered:?}");
        assert!(
            (throttled as f64) < 0.05 * (accepted + throttled) as f64,
            "{throttled} of {} throttled",
            accepted + throttled
        );
    }
}
