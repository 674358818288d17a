//! A per-instance, self-tuning limit on MTurk calls.
//!
//! MTurk publishes no rate limit, throttles ("Rate exceeded") from a few
//! requests per second per account, and the account's rate is shared by every
//! function instance and every script of the lab. No fixed per-instance rate
//! is right: too low and a burst takes several times longer than MTurk
//! allows, too high and throttled calls are wasted. So each instance finds
//! its share by itself, the way TCP finds a path's capacity:
//!
//! - **Spacing, not a bucket with burst.** Calls go one interval at the
//!   current rate apart; idle time is never banked as a burst. A waiting
//!   call's slot is reckoned at the rate of the moment it comes, so callers
//!   queued at a cold start's 2/s go as soon as the rate has grown.
//! - **Where to start.** At the pool's recently accepted rate ÷ the
//!   instances that reported it ([`RateLimiter::resuming_at`]; the handler
//!   reads it from the ledger), on probation for its first seconds: if
//!   MTurk throttles much of it (another script of the lab started since),
//!   it is given up as slow start's rate is below. With no history, at its
//!   share of two instances' [`INITIAL_RATE`] ([`initial_rate`]) in slow
//!   start: the rate doubles per round trip (per call while fewer than one
//!   call is in flight), counting only calls the limit held back (that
//!   waited for their slot, or, like a burst's first, succeeded while
//!   another caller waited or, if other records are in progress
//!   ([`RateLimiter::busy`]), before the next caller has to wait) and that
//!   succeeded, until the first throttle after MTurk accepted a call (two
//!   before it, an empty bucket or stray ones, are passed over; a third
//!   ends it at half where it began). That ends it at half the rate
//!   MTurk accepted this instance's calls at in the last second (never
//!   below half where it began), not at half the rate it had reached:
//!   doubling per round trip outruns the throttles (MTurk's bucket lets a
//!   burst through first), and the rate reached then is far above what
//!   MTurk takes.
//! - **A lone throttle is noise below the rate MTurk took.** MTurk (or
//!   another script of the lab) throttles now and then whatever the rate.
//!   Below `NEAR_PEAK` × the highest rate at which a run of calls went
//!   through lately (the peak), a throttle cuts only if another came among
//!   the last [`WINDOW`] calls; near or above it, where the rate was
//!   throttled before, one throttle is the congestion it usually is. Before
//!   the first peak, the same holds if slow start climbed (it ended at or
//!   above where it began, so MTurk took at least twice that) and
//!   throttles are not rising; if it did not, MTurk takes little and one
//!   throttle cuts.
//! - **Noise, learned where congestion rarely reaches.** The throttled
//!   share of the last `NOISE_CALLS` calls sent at most at `LOW_SHARE`
//!   × the peak is the noise (from `MIN_NOISE`; less reads as none).
//!   Below the peak, the throttles it explains (its share of the window
//!   plus `NOISE_MARGIN` standard deviations) do not cut, and "rising"
//!   and "forgotten" below are reckoned above it. A cut near the peak that
//!   the noise explains still cuts, but makes that rate the peak: a run of
//!   calls went through there, so the floor can climb with the rate.
//! - **The peak rises under noise.** Near the peak every throttle cuts, and
//!   the increase (0.5 % of about the peak per call) does not pass the peak
//!   between two stray throttles: a peak set in the first seconds (a stray
//!   throttle ended slow start early) held the rate under it for good. So
//!   when the calls the limit held back near the peak, over at least
//!   `RAISE_SPAN` and `RAISE_CALLS`, were throttled clearly less than the
//!   noise (by `RAISE_MARGIN` standard deviations), the throttles cutting
//!   there are noise too, and the peak rises by `RAISE_STEP` (never above
//!   the ceiling). The bar is below the noise, not at it: a peak raised above
//!   MTurk's rate holds the floor, and the rate, above it until throttles
//!   rise. Only with at most two instances: with more, the others'
//!   congestion reaches the low calls and reads as noise. A raised peak
//!   also lets the calls up to `LOW_SHARE` × it teach the noise; they were
//!   throttled less than the noise to raise it.
//! - **Multiplicative decrease, once per round.** A cut multiplies the rate
//!   by [`DECREASE`] (×0.5 for the first cut out of slow start, which
//!   overshoots most). Calls sent before the last cut were sent at the old
//!   rate, and their throttles say nothing new.
//! - **A floor under a cut.** A cut never goes below [`FLOOR_SHARE`] × the
//!   peak, unless throttles keep rising (more than `RISING_SHARE` of the
//!   last [`WINDOW`] calls throttled, counted across cuts: among the few
//!   calls since a cut, one stray throttle looked like most of them). With
//!   most of them throttled, MTurk takes much less than it did (another
//!   script started): the peak is forgotten. While throttles rise, the
//!   calls below the peak teach no noise.
//! - **Additive increase, not tied to a collapse.** Each succeeded call that
//!   waited for its slot raises the rate by [`INCREASE`] × the highest rate
//!   MTurk took in the last five minutes (or the rate at the last cut, if
//!   higher), at least that much per second under 1/s: back where it was
//!   throttled in about 40 calls. Below half of that rate, after 10 s
//!   without a cut, the rate doubles every second instead: a collapse
//!   recovers in seconds, not minutes.
//! - **A ceiling.** `MTURK_MAX_RPS` is the most one instance ever sends.
//!
//! What this does not do: make a steady 10 % of stray throttles cost only
//! its share at every rate. The noise keeps the rate from collapsing, the
//! floor holds and the peak rises: over five minutes with 10 % stray, two
//! instances hold 0.82 × R at R = 8 and 0.77 at R = 20 (0.77 and 0.62
//! before the peak rose under noise; 0.27 at R = 8 in 0.1.0), with 10.6–
//! 10.8 % of calls throttled (the real handlers drain a 9-minute burst at
//! R = 20 in 1.6 × its floor, 1.9–2.1 × before). But a 30-second burst is
//! mostly its first seconds: it drains in 1.33 × its floor at R = 8 (the real handler,
//! 1.43–1.48 ×), 1.57 × at R = 20 (1.60 before), and at R = 50, where the
//! peak has to rise from a fifth of R, two instances hold 0.31 × R and a
//! burst takes 3.7 × its floor. Every way of letting noise pass near the
//! peak, or of raising it sooner, bought throughput with throttles beyond
//! the stray share:
//! - learning the noise among all calls, the quiet blocks, the calls right
//!   after a cut, the lowest of blocks of calls, or the low calls above,
//!   with a milder cut while it explains the throttles: the noise learned
//!   the other instances' congestion, 9 % to 24 % throttled with five
//!   instances and no noise at all;
//! - (these and the next, 2026-12-05, in the simulation of all R and C
//!   below) passing over the throttles the noise explains (expected count,
//!   no margin): 0.77 × R at R = 8, 0.70 at 20, 0.30 at 50; 8–12 %
//!   throttled with five instances and no stray throttles;
//! - slow start passing over one throttle among its calls: R = 50 rose to
//!   0.29 × R, and the R = 8 burst's worst seed grew from 1.49 to 2.01 ×
//!   its floor (with the rule above, R = 20 reached 0.88 × R, 15 %
//!   throttled);
//! - an increase growing with the time since the last cut the noise does
//!   not explain (× (1 + t / 10 s), once noise is learned): 0.86–0.87 × R
//!   at R = 5, 8 and 20, 0.49 at 50, but 14–15 % throttled under 10 %
//!   stray, 13 % under 5 % (6.5 % now), 13–15 % at R = 20 and 50 with five
//!   instances and none stray; holding it to moments with no more
//!   throttles than the noise changed little;
//! - (2026-12-06) near the peak, passing over the throttles the noise
//!   explains once it is at least 6 % or 8 %: 16–18 % throttled at R = 50
//!   with five instances and none stray, the noise learned their
//!   congestion; a lone throttle near the peak cutting by 0.9 or 0.95, or
//!   `NEAR_PEAK` at 0.9: 5.3–6.3 % throttled at R = 8 or 20 with none
//!   stray (2.9–4.4 %); slow start's end taken as the peak: 32 % throttled
//!   at R = 2 with 10 % stray; near the peak, judging the throttled share
//!   of the last 50 or 100 calls sent there against the noise (with its
//!   margin): 0.88 × R at R = 20 and 0.57–0.70 at 50, but 19–22 %
//!   throttled at R = 20 under 10 % stray, and 24–30 % at R = 20 and 50
//!   with five instances and none stray. Growing × 4 per call in slow
//!   start took a cold batch from 1.12 to 0.89 s, and R = 2 from 4.3 to
//!   6.7 % throttled with none stray;
//! - (2026-12-06, the peak rising under noise) with the bar at the noise
//!   instead of below it: 0.81 × R at R = 20, but 15 % throttled there
//!   and 8.5 % under 5 % stray (6.5 % now); judged every 2 s over 20
//!   calls, or rising by 30 %: 0.84–0.87 × R at R = 20, 13–25 %
//!   throttled; against the lowest noise seen instead: 0.36 × R at R = 50
//!   (the bar fell with each estimate); with five instances: 9–22 %
//!   throttled with none stray.
//!
//! A lab's exposure time would gain from each, and the goal that stray
//! throttles cost no more than their share would be lost: that trade is
//! the lab's to make, not the limiter's to make silently. Records that
//! wait for the rate are never dead-lettered for it (`handler.rs`).
//!
//! Only calls the limit held back raise the rate: an instance whose calls
//! are spaced by something else (DynamoDB, too little work) has not shown
//! that MTurk takes more, and must not wander up to the ceiling and then
//! burst.
//!
//! Several instances adapt independently against one account-wide limit; the
//! simulation tests below (a shared token bucket of rate R, as MTurk and the
//! double have) show their sum settling just under R, also with a share of
//! throttles that comes whatever the rate.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Where an instance starts when the pool has no history: 2 calls/s, twice
/// the 1/s that made a cold instance's first batch wait 15 s. With
/// `MaximumConcurrency` 2 (the template's default) two cold instances send
/// 4/s together, under what accounts allow in practice; on an account that
/// allows 2/s, starting at 4/s each cost twice the throttles in the
/// simulation below (5.9 % of calls against 3.8 %).
pub const INITIAL_RATE: f64 = 2.0;

/// Where a cold instance with no history starts when `instances` may run at
/// once: its share of the 4/s that two instances at [`INITIAL_RATE`] send
/// together. More instances each start lower, so that five cold ones do not
/// open at 10/s on an account that allows 5 and spend their first seconds
/// throttled; fewer than two count as two.
pub fn initial_rate(instances: Option<usize>) -> f64 {
    let instances = instances.unwrap_or(2).max(2) as f64;
    INITIAL_RATE * 2.0 / instances
}
/// The ceiling when nothing is configured: with `MaximumConcurrency` 2, the
/// instances can reach 50 calls/s together, the most the lab's account is
/// expected to allow; at 5, they still reach MTurk's limit if it is lower.
pub const DEFAULT_CEILING: f64 = 25.0;
/// Never slower than this (one call every 10 s), however often throttled, so
/// a batch still moves.
pub const MIN_RATE: f64 = 0.1;
/// Rate × this after a cut.
pub const DECREASE: f64 = 0.8;
/// Rate × this after the first cut out of slow start.
pub const SLOW_START_DECREASE: f64 = 0.5;
/// After a cut, throttles of calls sent within this many intervals (at the
/// new rate) do not cut again: the other instances are cutting too, and
/// MTurk's bucket needs a moment to refill.
const HOLD_INTERVALS: u32 = 2;
/// In slow start the rate doubles per round trip (a call's slot to its
/// answer): each waited, succeeded call multiplies it by
/// 2^(1 / calls per round trip), at most by this (a doubling per call).
pub const SLOW_START_GROWTH: f64 = 2.0;
/// What slow start's exit measures MTurk's rate over: the calls it accepted
/// within this long.
const ACCEPTED_SPAN: Duration = Duration::from_secs(1);
/// Additive increase per accepted call, as a share of the reference rate
/// (the rate at the last cut, or the highest MTurk recently took).
pub const INCREASE: f64 = 0.005;
/// The calls a throttle is judged among.
pub const WINDOW: usize = 20;
/// Waited calls accepted since the last cut that establish a rate as taken.
const ESTABLISHED: u32 = 10;
/// Throttles among the window that never cut.
const ISOLATED: f64 = 1.0;
/// Below this share of the highest rate recently taken, a lone throttle
/// does not cut.
const NEAR_PEAK: f64 = 0.8;
/// A cut never goes below this share of the peak, unless throttles keep
/// rising.
pub const FLOOR_SHARE: f64 = 0.7;
/// More than this share of the last [`WINDOW`] calls throttled (beyond
/// the noise) is throttles rising: a cut may then go below the floor.
const RISING_SHARE: f64 = 0.3;
/// How long a rate handed down from the pool ([`RateLimiter::resume_at`])
/// is on probation: MTurk may take much less than the pool sustained then
/// (another script of the lab started since).
const PROBATION: Duration = Duration::from_secs(5);
/// Calls on probation before their throttled share says anything.
const PROBATION_CALLS: u32 = 10;
/// The quick recovery waits for this long without a cut.
const CALM: Duration = Duration::from_secs(10);
/// More than this share of the last [`WINDOW`] calls throttled (beyond
/// the noise) forgets the peak.
const FORGET_SHARE: f64 = 0.5;
/// How long, at least, the calls sent near the peak are watched before
/// the peak may rise under noise.
const RAISE_SPAN: Duration = Duration::from_secs(5);
/// Calls sent near the peak before their throttled share says anything.
const RAISE_CALLS: u32 = 40;
/// How far below the noise (in standard deviations of that share) the
/// throttled share near the peak must be for the peak to rise.
const RAISE_MARGIN: f64 = 1.0;
/// The peak × this when it rises under noise.
const RAISE_STEP: f64 = 1.2;
/// How long a sustained rate is remembered for the report to the pool.
pub const SUSTAINED_MEMORY: Duration = Duration::from_secs(60);
/// How long the peak and the reference are remembered.
const PEAK_MEMORY: Duration = Duration::from_secs(300);
/// Calls sent at most at this share of the peak measure the noise: below
/// the rate MTurk took, congestion rarely reaches them.
const LOW_SHARE: f64 = 0.8;
/// The low calls the noise is measured over.
const NOISE_CALLS: usize = 100;
/// Accepted calls assumed before any is measured, so that a few early
/// throttles do not read as much noise.
const NOISE_PRIOR: f64 = 20.0;
/// Less noise than this is taken as none: the congestion of the other
/// instances reaches the low calls too, a few per hundred.
const MIN_NOISE: f64 = 0.03;
/// The most of the throttles taken as noise.
const MAX_NOISE: f64 = 0.25;
/// How far above the noise (in standard deviations of the window's count)
/// throttles must be to be congestion.
const NOISE_MARGIN: f64 = 2.0;

#[derive(Debug)]
pub struct RateLimiter {
    ceiling: f64,
    adaptive: bool,
    /// Whether the peak may rise under noise ([`RateLimiter::configured`]).
    raises: bool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    rate: f64,
    /// When the last call was let through.
    last_sent: Option<Instant>,
    /// No call goes before this (a cut's pause).
    not_before: Instant,
    slow_start: bool,
    /// The rate slow start began at.
    initial: f64,
    /// The rate when the last cut happened.
    last_limit: f64,
    /// Calls sent before this do not cut again.
    last_cut: Option<Instant>,
    /// The last [`WINDOW`] outcomes, cuts or not, true for throttled:
    /// whether throttles keep rising is judged among these. Among the few
    /// calls since a cut, one stray throttle read as most of them
    /// throttled, took the floor away and forgot the peak.
    recent: VecDeque<bool>,
    /// How many of `recent` came since the last cut: the window a throttle
    /// is judged among.
    since_cut: usize,
    /// Waited calls accepted since the last cut.
    accepted_since_cut: u32,
    /// The outcomes of the last [`NOISE_CALLS`] calls sent at most at
    /// [`LOW_SHARE`] × the peak, true for throttled.
    low: VecDeque<bool>,
    /// The rate at the last accepted waited call, and when.
    sustained: Option<(f64, Instant)>,
    /// The highest rate at which a run of calls went through (or to which
    /// it rose under noise), and when: the floor and the quick recovery
    /// aim there; forgotten when MTurk plainly takes much less.
    peak: Option<(f64, Instant)>,
    /// The highest rate at which a run of calls went through, never
    /// forgotten for [`PEAK_MEMORY`]: what the increase is
    /// reckoned on.
    reference: Option<(f64, Instant)>,
    /// When MTurk last accepted a call.
    last_accepted: Option<Instant>,
    /// When the first slot was handed out.
    first_slot: Option<Instant>,
    /// When MTurk accepted the calls of the last [`ACCEPTED_SPAN`], in slow
    /// start only.
    accepted: VecDeque<Instant>,
    /// Whether a slot was handed out yet.
    used: bool,
    /// Callers waiting for their slot now.
    waiting: usize,
    /// A rate handed down by [`RateLimiter::resume_at`] that MTurk has not
    /// yet been seen to take.
    probation: Option<Probation>,
    /// Pieces of work (the handler's records) in progress that call MTurk
    /// through this limiter ([`RateLimiter::busy`]).
    busy: usize,
    /// In slow start, the rate a call answered while no caller waited, but
    /// other records were in progress, would have grown it to: taken by the
    /// next caller that has to wait for its slot, dropped by one that finds
    /// its slot free.
    credit: Option<f64>,
    /// Slow start ended at or above the rate it began at (MTurk took at
    /// least twice that), and no peak is known since: a lone throttle is
    /// then noise, as below a peak.
    climbed: bool,
    /// The calls sent near the peak that the next judgement of whether it
    /// rises under noise counts.
    near: Near,
    throttles: u64,
    cuts: u64,
}

/// Waited calls sent near `peak` ([`NEAR_PEAK`] × it or above) since
/// `since`: how many, and how many were throttled.
#[derive(Debug, Clone, Copy, Default)]
struct Near {
    since: Option<Instant>,
    peak: f64,
    calls: u32,
    thrown: u32,
}

/// The calls sent since a rate was handed down, until [`PROBATION`] is over.
#[derive(Debug, Clone, Copy)]
struct Probation {
    since: Instant,
    calls: u32,
    thrown: u32,
}

/// Counts a caller out of the waiting ones if its wait is dropped (a
/// deadline passed).
struct Waiting<'a>(&'a RateLimiter);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.waiting = s.waiting.saturating_sub(1);
    }
}

/// One piece of work in progress ([`RateLimiter::busy`]), until dropped.
pub struct Busy<'a>(&'a RateLimiter);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.busy = s.busy.saturating_sub(1);
    }
}

/// One call's slot, handed back with its outcome.
#[derive(Debug, Clone, Copy)]
pub struct Permit {
    /// When the call was let through.
    pub sent_at: Instant,
    /// Whether the call had to wait for its slot (the limit was what held it back).
    pub waited: bool,
    /// The rate it was sent at.
    rate: f64,
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
    /// accepts, from [`INITIAL_RATE`] in slow start. `ceiling` must be
    /// positive and finite (the config checks it).
    pub fn per_second(ceiling: f64) -> Self {
        Self::build(ceiling, INITIAL_RATE, true, true)
    }

    /// Like [`RateLimiter::per_second`], starting at `initial` calls per
    /// second (at most the ceiling) in slow start.
    pub fn starting_at(ceiling: f64, initial: f64) -> Self {
        Self::build(ceiling, initial, true, true)
    }

    /// What a function's configuration asks for: slow start from `start`
    /// (`MTURK_START_RPS`) if it is set, else from its share of the pool's
    /// first rate, [`initial_rate`] of the `instances` that may run at once.
    pub fn configured(ceiling: f64, start: Option<f64>, instances: Option<usize>) -> Self {
        let mut limiter =
            Self::starting_at(ceiling, start.unwrap_or_else(|| initial_rate(instances)));
        // With more instances, the others' congestion reaches the calls
        // well below the peak and reads as noise (4-7 % with five and no
        // stray throttles): raising the peak on it held them at 10-20 %
        // throttled in the simulation.
        limiter.raises = instances.unwrap_or(2) <= 2;
        limiter
    }

    /// Like [`RateLimiter::per_second`], starting at `share` calls per
    /// second, this instance's share of a rate the pool recently sustained:
    /// no slow start (MTurk took that rate), and the floor under a first cut
    /// and the increase are reckoned on it.
    pub fn resuming_at(ceiling: f64, share: f64) -> Self {
        let limiter = Self::build(ceiling, share, true, false);
        limiter.resume_at(share);
        limiter
    }

    /// Switches a limiter that has not handed out a slot yet to
    /// [`RateLimiter::resuming_at`] `share` (at most its ceiling): what the
    /// handler does once it has read the pool's rate. Returns whether it did.
    pub fn resume_at(&self, share: f64) -> bool {
        if !self.adaptive || !share.is_finite() || share <= 0.0 {
            return false;
        }
        let mut s = self.state();
        if s.used {
            return false;
        }
        let now = Instant::now();
        let rate = share.clamp(MIN_RATE.min(self.ceiling), self.ceiling);
        s.rate = rate;
        s.last_limit = rate;
        s.slow_start = false;
        // Not `sustained`: only calls this instance sends while the limit
        // holds them back say what it sustains. Reporting the share it was
        // handed would halve the pool's record at each quiet cold start.
        s.peak = Some((rate, now));
        s.reference = Some((rate, now));
        s.probation = Some(Probation {
            since: now,
            calls: 0,
            thrown: 0,
        });
        true
    }

    /// Exactly `rate` calls per second, evenly spaced, whatever MTurk answers
    /// (the behaviour before the limit adapted; for comparisons and tests).
    pub fn fixed(rate: f64) -> Self {
        Self::build(rate, rate, false, false)
    }

    fn build(ceiling: f64, initial: f64, adaptive: bool, slow_start: bool) -> Self {
        let ceiling = if ceiling.is_finite() && ceiling > 0.0 {
            ceiling
        } else {
            DEFAULT_CEILING
        };
        let initial = if initial.is_finite() {
            initial
        } else {
            INITIAL_RATE
        };
        let rate = initial.clamp(MIN_RATE.min(ceiling), ceiling);
        RateLimiter {
            ceiling,
            adaptive,
            raises: true,
            state: Mutex::new(State {
                rate,
                last_sent: None,
                not_before: Instant::now(),
                slow_start,
                initial: rate,
                last_limit: rate,
                last_cut: None,
                since_cut: 0,
                recent: VecDeque::with_capacity(WINDOW),
                accepted_since_cut: 0,
                low: VecDeque::with_capacity(NOISE_CALLS),
                sustained: None,
                peak: None,
                reference: None,
                last_accepted: None,
                first_slot: None,
                accepted: VecDeque::new(),
                used: false,
                waiting: 0,
                probation: None,
                busy: 0,
                credit: None,
                climbed: false,
                near: Near::default(),
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

    /// The next slot: one interval at the current rate after the last call,
    /// and not before a cut's pause is over.
    fn slot(s: &State, now: Instant) -> Instant {
        let after = s
            .last_sent
            .map_or(now, |last| last + Duration::from_secs_f64(1.0 / s.rate));
        after.max(s.not_before).max(now)
    }

    /// Waits for this caller's slot. The slot is reckoned at the rate of
    /// the moment it comes, not when the caller asked: callers queued behind
    /// slow start's first slots go as soon as the rate has doubled, and
    /// those queued when a cut comes wait at the new rate.
    pub async fn acquire(&self) -> Permit {
        let mut waited = false;
        loop {
            let slot = {
                let mut s = self.state();
                let now = Instant::now();
                let mut slot = Self::slot(&s, now);
                // A cold batch's records reach MTurk a moment apart (each
                // reads the ledger first), so its first call is answered
                // before the next caller comes. That caller is held back all
                // the same: the first call's growth is its. Without this it
                // waited a whole interval at the starting rate, 0.5 s of a
                // first batch's 1.1-1.7 s (case A in BENCHMARKS.md). A
                // credit is only left while nobody waits and only in slow
                // start (a cut drops it), so whoever finds it is that caller.
                if slot > now {
                    if let Some(rate) = s.credit.take() {
                        s.rate = rate.min(self.ceiling).max(s.rate);
                        slot = Self::slot(&s, now);
                    }
                }
                if slot <= now {
                    s.credit = None;
                    s.last_sent = Some(now);
                    s.used = true;
                    s.first_slot.get_or_insert(now);
                    if waited {
                        s.waiting = s.waiting.saturating_sub(1);
                    }
                    return Permit {
                        sent_at: now,
                        waited,
                        rate: s.rate,
                    };
                }
                if !waited {
                    s.waiting += 1;
                }
                slot
            };
            waited = true;
            let counted = Waiting(self);
            tokio::time::sleep_until(slot).await;
            // Still waiting: counted out when the slot is taken above.
            std::mem::forget(counted);
        }
    }

    /// Counts one piece of work (a record) in progress until the guard is
    /// dropped. In slow start, a call answered while others are in progress
    /// grows the rate for the next caller that has to wait.
    pub fn busy(&self) -> Busy<'_> {
        self.state().busy += 1;
        Busy(self)
    }

    /// When a call asking now would get its slot.
    pub fn next_slot(&self) -> Instant {
        Self::slot(&self.state(), Instant::now())
    }

    fn fresh(memory: Option<(f64, Instant)>, keep: Duration, now: Instant) -> Option<f64> {
        memory
            .filter(|(_, at)| now.saturating_duration_since(*at) <= keep)
            .map(|(r, _)| r)
    }

    /// Records one outcome in the window, and among the low calls.
    fn record(&self, s: &mut State, permit: &Permit, throttled: bool, now: Instant) {
        let peak = Self::fresh(s.peak, PEAK_MEMORY, now).unwrap_or(0.0);
        // A low call teaches the noise, but not while throttles are rising
        // (judged before this call counts): MTurk then takes less than the
        // peak (another script started), the low calls are congested too,
        // and learning that as noise let the instance sit at half its calls
        // throttled, its noise at the maximum, never cutting to the new rate.
        let teaches = permit.rate <= LOW_SHARE * peak
            && Self::recent_share(s) <= Self::noise(s) + RISING_SHARE;
        if s.recent.len() == WINDOW {
            s.recent.pop_front();
        }
        s.recent.push_back(throttled);
        s.since_cut = (s.since_cut + 1).min(WINDOW);
        if let Some(p) = &mut s.probation {
            p.calls += 1;
            p.thrown += u32::from(throttled);
        }
        if self.raises {
            self.raise_under_noise(s, permit, throttled, peak, now);
        }
        if teaches {
            if s.low.len() == NOISE_CALLS {
                s.low.pop_front();
            }
            s.low.push_back(throttled);
        }
    }

    /// Raises the peak by [`RAISE_STEP`] once the calls sent near it over
    /// [`RAISE_SPAN`] were throttled clearly less than the noise: MTurk
    /// throttles there no more than where congestion rarely reaches, so
    /// the throttles that keep cutting the rate there are noise, and the
    /// peak they hold it under was set too low (in the first seconds, by
    /// a stray throttle that ended slow start early). The bar is below
    /// the noise, not at it: a peak raised above MTurk's rate holds the
    /// floor, and the rate, above it until throttles rise.
    fn raise_under_noise(
        &self,
        s: &mut State,
        permit: &Permit,
        throttled: bool,
        peak: f64,
        now: Instant,
    ) {
        // Only calls the limit held back: a trickle sent near the peak's
        // rate has not shown what MTurk takes there. The cheap checks come
        // first: this runs on every MTurk call.
        if s.slow_start || !permit.waited || peak == 0.0 || permit.rate < NEAR_PEAK * peak {
            return;
        }
        let noise = Self::noise(s);
        if noise == 0.0 {
            return;
        }
        // Calls counted under a higher peak (it expired, or MTurk took much
        // less and it was forgotten, and a lower one was set since) say
        // nothing about this one. No time limit: the rate is near the peak
        // only between cuts, so 40 such calls can take longer than twice
        // the span; capping the window there took R = 20 with 10 % stray
        // from 0.77 to 0.69 × R in the simulation.
        if s.near.since.is_none() || peak < s.near.peak {
            s.near = Near {
                since: Some(now),
                ..Near::default()
            };
        }
        s.near.peak = peak;
        let since = s.near.since.unwrap_or(now);
        s.near.calls += 1;
        s.near.thrown += u32::from(throttled);
        if now.saturating_duration_since(since) < RAISE_SPAN || s.near.calls < RAISE_CALLS {
            return;
        }
        let n = f64::from(s.near.calls);
        let share = f64::from(s.near.thrown) / n;
        // At the ceiling there is nothing to raise, and refreshing the
        // peak's time would keep it from ever expiring.
        if peak < self.ceiling && share <= noise - RAISE_MARGIN * (noise * (1.0 - noise) / n).sqrt()
        {
            s.peak = Some(((peak * RAISE_STEP).min(self.ceiling), now));
        }
        s.near = Near::default();
    }

    /// The throttled share of the last [`WINDOW`] calls, cuts or not; 0
    /// until half of them were sent, too few to say.
    fn recent_share(s: &State) -> f64 {
        if s.recent.len() < WINDOW / 2 {
            return 0.0;
        }
        s.recent.iter().filter(|t| **t).count() as f64 / s.recent.len() as f64
    }

    /// The share of calls MTurk throttles whatever the rate, as the calls
    /// sent well below the peak show it.
    fn noise(s: &State) -> f64 {
        let thrown = s.low.iter().filter(|t| **t).count() as f64;
        let noise = (thrown / (s.low.len() as f64 + NOISE_PRIOR)).min(MAX_NOISE);
        if noise < MIN_NOISE {
            0.0
        } else {
            noise
        }
    }

    /// The throttles among the calls since the last cut (at most
    /// [`WINDOW`]), and how many calls that is.
    fn window(s: &State) -> (f64, f64) {
        let thrown = s
            .recent
            .iter()
            .rev()
            .take(s.since_cut)
            .filter(|t| **t)
            .count();
        (thrown as f64, s.since_cut as f64)
    }

    /// The most throttles among the window that the noise explains.
    fn explained(s: &State) -> f64 {
        let n = Self::window(s).1;
        let noise = Self::noise(s);
        noise * n + NOISE_MARGIN * (noise * (1.0 - noise) * n).sqrt()
    }

    /// The most throttles among the window that do not cut.
    fn tolerated(s: &State, now: Instant) -> f64 {
        // Near or above the highest rate MTurk recently took, where the rate
        // was throttled before, one throttle is the sign of congestion it
        // usually is; well below it, a throttle alone is noise.
        // Below the peak, also the throttles the noise explains; near it,
        // none: that is where congestion starts, and tolerating noise there
        // let the instances run far above MTurk's rate.
        // With no peak yet, after a slow start that climbed, neither is a
        // lone throttle, unless throttles are rising: cutting at each stray
        // one kept the rate from ever running long enough to set a peak,
        // until one was set low, and the rate stayed under it (case D in
        // BENCHMARKS.md: 2.5 × the floor, 1.5 × without those cuts). But
        // right after slow start overshot, the throttles that come every
        // few calls are congestion, and forgiving every other one cost
        // throttles (case C: 4.8–5.8 % of calls, 2.7–3.1 % before).
        match Self::fresh(s.peak, PEAK_MEMORY, now) {
            Some(peak) if s.rate < NEAR_PEAK * peak => ISOLATED + Self::explained(s),
            None if s.climbed && Self::recent_share(s) <= Self::noise(s) + RISING_SHARE => ISOLATED,
            _ => 0.0,
        }
    }

    /// Slow start's growth for one call answered now: doubling per round
    /// trip (the call's slot to its answer), and per call while fewer than
    /// one call is in flight (low rates).
    fn doubled(rate: f64, permit: &Permit, now: Instant) -> f64 {
        let round_trip = now.saturating_duration_since(permit.sent_at).as_secs_f64();
        let calls = (rate * round_trip).max(1.0);
        rate * SLOW_START_GROWTH.powf(1.0 / calls)
    }

    /// MTurk accepted the call (answered it, even with an error of its own).
    pub fn succeeded(&self, permit: &Permit) {
        let mut s = self.state();
        let before = s.rate;
        self.on_success(&mut s, permit);
        Self::trace(&s, permit, false, before);
    }

    fn on_success(&self, s: &mut State, permit: &Permit) {
        let now = Instant::now();
        s.last_accepted = Some(now);
        if !self.adaptive {
            return;
        }
        self.record(s, permit, false, now);
        if s.slow_start {
            while s
                .accepted
                .front()
                .is_some_and(|at| now.saturating_duration_since(*at) > ACCEPTED_SPAN)
            {
                s.accepted.pop_front();
            }
            s.accepted.push_back(now);
        }
        // Held back: this call waited for its slot, or, in slow start, where
        // the first call of a burst finds its slot free, another caller is
        // waiting for one now.
        if !(permit.waited || (s.slow_start && s.waiting > 0)) {
            // Not a trickle (one record, its grant right after its
            // GetAssignment): the other records in progress will be held
            // back if the next caller has to wait.
            if s.slow_start && s.busy > 1 {
                s.credit = Some(Self::doubled(s.rate, permit, now));
            }
            return;
        }
        let rate = s.rate;
        s.sustained = Some((rate, now));
        s.accepted_since_cut += 1;
        let peak = Self::fresh(s.peak, PEAK_MEMORY, now).unwrap_or(0.0);
        // A rate counts as taken once a run of calls since the last cut went
        // through at it (not a few, on MTurk's burst).
        if !s.slow_start && s.accepted_since_cut >= ESTABLISHED && rate >= NEAR_PEAK * peak {
            s.peak = Some((rate.max(peak), now));
            s.climbed = false;
        }
        let reference = Self::fresh(s.reference, PEAK_MEMORY, now).unwrap_or(0.0);
        if !s.slow_start && s.accepted_since_cut >= ESTABLISHED && rate >= reference {
            s.reference = Some((rate, now));
        }
        let calm = s
            .last_cut
            .is_none_or(|cut| now.saturating_duration_since(cut) >= CALM);
        let grown = if s.slow_start {
            Self::doubled(rate, permit, now)
        } else if rate < 0.5 * reference && calm {
            // Well below what MTurk took lately, and no cut for a while:
            // double per second (this call's share of one), so a collapse
            // recovers in seconds.
            (rate * 2f64.powf(1.0 / rate)).min(0.5 * reference)
        } else {
            // Reckoned on the highest rate MTurk took in the last five
            // minutes, even if heavy throttling made the limiter forget it
            // as a target, and at least per second at rates under 1/s: the
            // increase is not tied to a collapsed rate.
            let reference = reference.max(s.last_limit).max(rate);
            rate + INCREASE * reference * (1.0 / rate).max(1.0)
        };
        s.rate = grown.min(self.ceiling);
    }

    /// MTurk throttled the call: slow down if it is congestion, once per round.
    pub fn throttled(&self, permit: &Permit) {
        let mut s = self.state();
        let before = s.rate;
        self.on_throttle(&mut s, permit);
        Self::trace(&s, permit, true, before);
    }

    fn on_throttle(&self, s: &mut State, permit: &Permit) {
        s.throttles += 1;
        if !self.adaptive {
            return;
        }
        self.record(s, permit, true, Instant::now());
        if self.fails_probation(s) {
            return;
        }
        if s.last_cut.is_some_and(|cut| permit.sent_at < cut) {
            return;
        }
        // Before MTurk accepted any call, its first throttles say nothing
        // of the rate: an empty bucket (another script of the lab spent it)
        // or a stray throttle. Ending slow start there left the instance at
        // half its start, and every stray throttle after cut it further,
        // with no peak to hold a floor: 0.5-0.8 calls/s for a whole burst
        // where MTurk took 8 (BENCHMARKS.md, bad starts). A third throttle
        // with nothing accepted is MTurk taking very little: it cuts.
        if s.slow_start && s.last_accepted.is_none() && s.throttles <= 2 {
            return;
        }
        let thrown = Self::window(s).0;
        // Slow start overshoots on purpose: its first throttle ends it.
        if !s.slow_start && thrown <= Self::tolerated(s, Instant::now()) {
            return;
        }
        let now = Instant::now();
        // Much of the last calls throttled (cuts or not), beyond the noise:
        // throttles keep rising.
        let noise = Self::noise(s);
        let share = Self::recent_share(s);
        let rising = share > noise + RISING_SHARE;
        // Near the peak, throttles the noise explains still cut (they may
        // be congestion) but show that a run of calls went through at this
        // rate: it becomes the peak, so the rate can climb under noise.
        if !s.slow_start
            && noise > 0.0
            && thrown <= Self::explained(s)
            && s.accepted_since_cut >= ESTABLISHED
        {
            let peak = Self::fresh(s.peak, PEAK_MEMORY, now).unwrap_or(0.0);
            s.peak = Some((s.rate.max(peak), now));
            s.climbed = false;
        }
        let factor = if s.slow_start {
            SLOW_START_DECREASE
        } else {
            DECREASE
        };
        let mut rate = s.rate * factor;
        if s.slow_start {
            // Slow start grows faster than throttles come back (MTurk's
            // bucket lets a burst through first): no higher than half the
            // rate MTurk accepted this instance's calls at lately, which
            // that burst inflated.
            let span = s
                .first_slot
                .map_or(ACCEPTED_SPAN, |first| now.saturating_duration_since(first))
                .clamp(Duration::from_millis(100), ACCEPTED_SPAN);
            let taken = s.accepted.len() as f64 / span.as_secs_f64();
            // But never below half where slow start began: with nothing
            // accepted yet (the first call throttled), that is all it knows.
            rate = rate
                .min(SLOW_START_DECREASE * taken)
                .max(SLOW_START_DECREASE * s.initial);
            s.accepted.clear();
        }
        if !rising && !s.slow_start {
            if let Some(peak) = Self::fresh(s.peak, PEAK_MEMORY, now) {
                rate = rate.max((FLOOR_SHARE * peak).min(s.rate));
            }
        }
        // Most of the last calls throttled: MTurk takes much less than it did
        // (another script started); the higher rate it took is forgotten,
        // so neither the floor nor the quick recovery aims there.
        if share > noise + FORGET_SHARE {
            s.peak = None;
            s.climbed = false;
            s.near = Near::default();
        }
        // The rate at a cut out of slow start is the overshoot, not a rate
        // MTurk took: the increase is reckoned on what it took.
        s.last_limit = if s.slow_start {
            rate / SLOW_START_DECREASE
        } else {
            s.rate
        };
        if s.slow_start {
            s.climbed = rate >= s.initial;
        }
        Self::cut_to(s, rate.max(MIN_RATE.min(self.ceiling)), now);
    }

    /// A rate handed down from the pool is given up when MTurk throttles
    /// much of it ([`RISING_SHARE`] of the calls since) within
    /// [`PROBATION`]: it was sustained before MTurk took less. Kept as the
    /// peak and the floor, it held the instances far above MTurk's rate
    /// for minutes, and the throttles read as noise. The rate then falls
    /// as slow start's does, to half of what MTurk took since, and the peak,
    /// the reference and the noise are forgotten. Returns whether it did.
    fn fails_probation(&self, s: &mut State) -> bool {
        let Some(p) = s.probation else {
            return false;
        };
        let now = Instant::now();
        if now.saturating_duration_since(p.since) >= PROBATION {
            s.probation = None;
            return false;
        }
        if p.calls < PROBATION_CALLS || f64::from(p.thrown) <= RISING_SHARE * f64::from(p.calls) {
            return false;
        }
        s.probation = None;
        s.peak = None;
        s.reference = None;
        s.low.clear();
        s.near = Near::default();
        let span = now
            .saturating_duration_since(p.since)
            .max(Duration::from_millis(100));
        let taken = f64::from(p.calls - p.thrown) / span.as_secs_f64();
        let rate = (s.rate * SLOW_START_DECREASE)
            .min(SLOW_START_DECREASE * taken)
            .max(MIN_RATE.min(self.ceiling));
        // The increase is reckoned on what MTurk took, not on the share.
        s.last_limit = taken.max(rate);
        Self::cut_to(s, rate, now);
        true
    }

    /// Sets a cut's new rate: its calls wait a whole interval, and the
    /// throttles of calls sent before its hold is over do not cut again.
    fn cut_to(s: &mut State, rate: f64, now: Instant) {
        s.rate = rate;
        s.credit = None;
        let interval = Duration::from_secs_f64(1.0 / s.rate);
        s.last_cut = Some(now + HOLD_INTERVALS * interval);
        s.accepted_since_cut = 0;
        s.slow_start = false;
        s.since_cut = 0;
        s.cuts += 1;
        s.not_before = s.not_before.max(now + interval);
    }

    /// The rate this instance sent at lately while the limit held it back,
    /// for the pool's record in the ledger; `None` if it has not been busy
    /// enough in the last minute for its rate to mean anything, or is still
    /// in slow start below its ceiling: that rate says only that MTurk took
    /// at least as much. A trickle of single submissions leaves slow start
    /// at 4/s; recorded, it had the next cold instance resume there, with
    /// no slow start, and take 9 s over a first batch that slow start
    /// takes 1.1 s over.
    pub fn sustained_rate(&self) -> Option<f64> {
        let s = self.state();
        if s.slow_start && s.rate < self.ceiling {
            return None;
        }
        Self::fresh(s.sustained, SUSTAINED_MEMORY, Instant::now()).map(|_| s.rate)
    }

    /// Whether MTurk accepted any call of this instance within `within`:
    /// records that wait for the rate are then making progress, and must
    /// not be dead-lettered for it.
    pub fn accepted_within(&self, within: Duration) -> bool {
        let s = self.state();
        s.last_accepted
            .is_some_and(|at| Instant::now().saturating_duration_since(at) <= within)
    }

    /// One line per outcome at TRACE level
    /// (`RUST_LOG=mturk_exclusion::rate=trace`): how the rate moved and
    /// what it was judged against, for a lab asking why a batch was slow.
    fn trace(s: &State, permit: &Permit, throttled: bool, before: f64) {
        // The fields are only evaluated when TRACE is on: nothing is added
        // to each call otherwise.
        tracing::trace!(
            throttled,
            waited = permit.waited,
            sent_at = permit.rate,
            before,
            after = s.rate,
            peak = Self::fresh(s.peak, PEAK_MEMORY, Instant::now()).unwrap_or(0.0),
            noise = Self::noise(s),
            slow_start = s.slow_start,
            "MTurk call's outcome"
        );
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
    #[tokio::test(start_paused = true)]
    async fn a_resumed_instance_reports_no_rate_until_its_own_calls_wait() {
        let limiter = RateLimiter::per_second(25.0);
        assert!(limiter.resume_at(10.0));
        // One call, not held back by the limit: nothing sustained.
        let permit = limiter.acquire().await;
        limiter.succeeded(&permit);
        assert_eq!(limiter.sustained_rate(), None);
    }

    /// Slow start's rate is a lower bound, not MTurk's rate: a trickle
    /// (each submission's grant waits for its slot behind its GetAssignment)
    /// reports nothing, and a resumed instance would otherwise start there
    /// with no slow start (9.1 s over the cold batch of
    /// `a_cold_batch_is_quick_without_history`, at 2/s). Once a throttle
    /// ended slow start, or at the ceiling, the rate is reported.
    #[tokio::test(start_paused = true)]
    async fn slow_start_reports_no_rate_below_its_ceiling() {
        let limiter = RateLimiter::per_second(DEFAULT_CEILING);
        for _ in 0..3 {
            // One submission: GetAssignment, then the grant right after.
            let get = limiter.acquire().await;
            limiter.succeeded(&get);
            let grant = limiter.acquire().await;
            assert!(grant.waited);
            limiter.succeeded(&grant);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        assert!(limiter.snapshot().slow_start);
        assert_eq!(limiter.sustained_rate(), None);
        // A throttle ends slow start: the rate now says what MTurk takes.
        let p = limiter.acquire().await;
        limiter.throttled(&p);
        let p = limiter.acquire().await;
        assert!(p.waited);
        limiter.succeeded(&p);
        assert_eq!(limiter.sustained_rate(), Some(limiter.snapshot().rate));
        // At its ceiling, slow start has nothing more to find.
        let capped = RateLimiter::per_second(INITIAL_RATE * 2.0);
        for _ in 0..6 {
            let p = capped.acquire().await;
            capped.succeeded(&p);
        }
        assert!(capped.snapshot().slow_start);
        assert_eq!(capped.sustained_rate(), Some(INITIAL_RATE * 2.0));
    }

    #[test]
    fn cold_instances_share_the_pools_first_rate() {
        assert_eq!(initial_rate(None), INITIAL_RATE);
        assert_eq!(initial_rate(Some(1)), INITIAL_RATE);
        assert_eq!(initial_rate(Some(2)), INITIAL_RATE);
        assert!((initial_rate(Some(5)) * 5.0 - 2.0 * INITIAL_RATE).abs() < 1e-9);
    }

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

    /// A throttled first call (nothing accepted yet: an empty bucket, or a
    /// stray throttle) does not end slow start, which goes on from where it
    /// was once MTurk takes calls; a third throttle with nothing accepted
    /// does end it, at half the start (nothing taken yet).
    #[tokio::test(start_paused = true)]
    async fn a_throttled_first_call_does_not_end_slow_start() {
        let limiter = RateLimiter::per_second(25.0);
        let p = limiter.acquire().await;
        limiter.throttled(&p);
        let seen = limiter.snapshot();
        assert!(seen.slow_start && seen.cuts == 0, "{seen:?}");
        assert_eq!(seen.rate, INITIAL_RATE);
        accept(&limiter, 3).await;
        let seen = limiter.snapshot();
        assert!(seen.slow_start && seen.rate > INITIAL_RATE, "{seen:?}");

        let starved = RateLimiter::per_second(4.0);
        for _ in 0..3 {
            let p = starved.acquire().await;
            starved.throttled(&p);
        }
        let seen = starved.snapshot();
        assert!(!seen.slow_start, "{seen:?}");
        assert_eq!(seen.rate, SLOW_START_DECREASE * INITIAL_RATE);
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

    /// A throttle that comes whatever the rate: each call, with probability
    /// `share` (deterministic, seeded), as another script of the lab or
    /// MTurk itself might cause.
    pub(crate) struct Stray {
        share: f64,
        state: u64,
        /// Calls still to throttle at the start, whatever the share.
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

    /// One simulated MTurk call through `limiter`: its slot, 15 ms out, the
    /// account's answer, 15 ms back, and the outcome told to the limiter.
    /// As the double does, the bucket answers first, then the stray
    /// throttle (which has spent a token). Returns whether MTurk accepted
    /// it, and its permit.
    async fn call(limiter: &RateLimiter, account: &Mutex<(Account, Stray)>) -> (bool, Permit) {
        let permit = limiter.acquire().await;
        tokio::time::sleep(Duration::from_millis(15)).await;
        let admitted = {
            let mut a = account.lock().unwrap();
            a.0.admit() && !a.1.hits()
        };
        tokio::time::sleep(Duration::from_millis(15)).await;
        if admitted {
            limiter.succeeded(&permit);
        } else {
            limiter.throttled(&permit);
        }
        (admitted, permit)
    }

    /// `instances` limiters, each with 4 concurrent callers that always have
    /// work, against one account of rate `r` that also throttles a share
    /// `stray` of calls whatever the rate, for `secs` seconds of the paused
    /// clock. A call takes 30 ms; between calls a worker spends 10 ms on
    /// other things (the ledger). Each starts as the handler's does with no
    /// history, `MaxConcurrency` being `instances`.
    async fn simulate(r: f64, instances: usize, ceiling: f64, secs: u64) -> Run {
        simulate_with(r, instances, secs, 0.0, 7, || {
            RateLimiter::configured(ceiling, None, Some(instances))
        })
        .await
    }

    async fn simulate_with(
        r: f64,
        instances: usize,
        secs: u64,
        stray: f64,
        seed: u64,
        limiter: impl Fn() -> RateLimiter,
    ) -> Run {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        let account = Arc::new(Mutex::new((Account::new(r), Stray::new(stray, seed))));
        let limiters: Vec<Arc<RateLimiter>> = (0..instances).map(|_| Arc::new(limiter())).collect();
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
                        let (admitted, permit) = call(&limiter, &account).await;
                        if admitted {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if permit.sent_at >= warm {
                                ok_warm.fetch_add(1, Ordering::Relaxed);
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        } else {
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
            // The goal is under 5 % with the template's two instances. At
            // R = 2 they start at twice R together, and a lone throttle
            // below 0.8 × the peak does not cut: 4.3 % here. Five instances
            // (no longer a goal, README) collide more: 6.7 % at R = 50 since
            // a stray throttle right after a cut no longer reads as
            // throttles rising (6.2 % before).
            let allowed = if r <= 2.0 || c > 2 { 0.07 } else { 0.05 };
            assert!(run.throttled_share < allowed, "{line}");
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

    /// A cold instance's first batch: `submissions` records, 4 at a time
    /// (the handler's `RECORD_CONCURRENCY`), each two MTurk calls of 30 ms
    /// (the assignment, then the grant) with 10 ms of ledger around them,
    /// against an account of rate `r`. Returns the simulated time until the
    /// last grant, in seconds.
    async fn first_batch(limiter: RateLimiter, r: f64, submissions: usize) -> f64 {
        use std::sync::Arc;
        let limiter = Arc::new(limiter);
        let account = Arc::new(Mutex::new(Account::new(r)));
        let queue = Arc::new(Mutex::new(submissions));
        let start = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..4 {
            let (limiter, account, queue) = (limiter.clone(), account.clone(), queue.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    {
                        let mut left = queue.lock().unwrap();
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

    /// A cold instance with no history of the pool: slow start doubles the
    /// rate per round trip, so a first batch of 10 on an account of 100/s
    /// takes under twice the time of an instance fixed at the default
    /// ceiling (where resuming at the pool's share starts): 1.12 s, where
    /// growing by 5 % per call from queued slots took 7.5 s.
    #[tokio::test(start_paused = true)]
    async fn a_cold_batch_is_quick_without_history() {
        let fixed = first_batch(RateLimiter::fixed(50.0), 100.0, 10).await;
        let at_ceiling = first_batch(RateLimiter::fixed(DEFAULT_CEILING), 100.0, 10).await;
        let cold = first_batch(RateLimiter::per_second(DEFAULT_CEILING), 100.0, 10).await;
        let pool = first_batch(RateLimiter::resuming_at(DEFAULT_CEILING, 50.0), 100.0, 10).await;

        println!(
            "first batch of 10 at R = 100: fixed 50/s {fixed:.2} s, fixed {DEFAULT_CEILING}/s {at_ceiling:.2} s, cold (slow start from {INITIAL_RATE}/s) {cold:.2} s, resuming at the pool's share {pool:.2} s"
        );
        assert!(
            cold <= 2.0 * at_ceiling + 0.05,
            "cold {cold} s, at the ceiling {at_ceiling} s"
        );
        assert!(
            pool <= 1.05 * at_ceiling,
            "resuming {pool} s, at the ceiling {at_ceiling} s"
        );
    }

    /// The figures: accepted calls ÷ R and the throttled share, 300 s, for
    /// R ∈ {2, 5, 20, 50} × 2 or 5 instances, without and with 10 % stray
    /// throttles, and 0-20 % stray at R = 8 with 2 instances; each the mean
    /// of three runs with differently seeded stray throttles, with the
    /// lowest accepted rate of the three (one seed flatters or wrongs a
    /// mechanism this sensitive to where the throttles fall). It asserts
    /// nothing (the tests above hold the goals) and simulates 140 minutes,
    /// so it runs only when asked: `-- --ignored --nocapture`.
    #[tokio::test(start_paused = true)]
    #[ignore = "prints BENCHMARKS.md's simulation table"]
    async fn figures() {
        let mut rows = Vec::new();
        for stray in [0.0, 0.1] {
            for r in [2.0, 5.0, 20.0, 50.0] {
                for c in [2, 5] {
                    rows.push((r, c, stray));
                }
            }
        }
        rows.extend([(8.0, 2, 0.0), (8.0, 2, 0.05), (8.0, 2, 0.1), (8.0, 2, 0.2)]);
        println!("| R | instances | stray | accepted ÷ R (lowest) | throttled |");
        println!("|---|---|---|---|---|");
        for (r, c, stray) in rows {
            let (mut accepted, mut lowest, mut throttled) = (0.0, f64::MAX, 0.0);
            for seed in SEEDS {
                let run = simulate_with(r, c, 300, stray, seed, || {
                    RateLimiter::configured(DEFAULT_CEILING, None, Some(c))
                })
                .await;
                accepted += run.utilisation / SEEDS.len() as f64;
                lowest = lowest.min(run.utilisation);
                throttled += run.throttled_share / SEEDS.len() as f64;
            }
            println!(
                "| {r} | {c} | {:.0} % | {accepted:.2} ({lowest:.2}) | {:.1} % |",
                stray * 100.0,
                throttled * 100.0
            );
        }
        let fixed = first_batch(RateLimiter::fixed(50.0), 100.0, 10).await;
        let cold = first_batch(RateLimiter::per_second(DEFAULT_CEILING), 100.0, 10).await;
        println!(
            "cold start, first batch of 10 at R = 100: {cold:.2} s (fixed 50/s: {fixed:.2} s)"
        );
        // Case D's burst scaled to R = 20 and 50 (about 30 s of calls).
        for (r, calls) in [(20.0, 600), (50.0, 1500)] {
            let (mean, worst, throttled) = bursts(r, calls, 0.1).await;
            println!(
                "burst of {calls} calls, R = {r}, 2 cold instances, 10 % stray: drain ÷ floor {mean:.2} (worst {worst:.2}), throttled {:.1} %",
                throttled * 100.0
            );
        }
    }

    /// A burst of `calls` MTurk calls shared by `instances` cold instances
    /// (4 callers each, started as the handler starts them with no
    /// history), each call retried until accepted, against an account of
    /// rate `r` that also throttles a share `stray` of calls whatever the
    /// rate. Returns the time to the last accepted call ÷ the floor
    /// (`calls` ÷ `r`), and the throttled share of calls.
    async fn burst(r: f64, instances: usize, calls: usize, stray: f64, seed: u64) -> (f64, f64) {
        burst_from(r, instances, calls, stray, seed, Account::new(r), 0).await
    }

    /// [`burst`] against `account` as it is at the start.
    async fn burst_from(
        r: f64,
        instances: usize,
        calls: usize,
        stray: f64,
        seed: u64,
        account: Account,
        first: usize,
    ) -> (f64, f64) {
        use std::sync::Arc;
        let mut strays = Stray::new(stray, seed);
        strays.first = first;
        let account = Arc::new(Mutex::new((account, strays)));
        let left = Arc::new(Mutex::new(calls));
        let thrown = Arc::new(Mutex::new(0usize));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..instances {
            let limiter = Arc::new(RateLimiter::configured(
                DEFAULT_CEILING,
                None,
                Some(instances),
            ));
            for _ in 0..4 {
                let (limiter, account) = (limiter.clone(), account.clone());
                let (left, thrown) = (left.clone(), thrown.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        {
                            let mut left = left.lock().unwrap();
                            if *left == 0 {
                                return;
                            }
                            *left -= 1;
                        }
                        loop {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            if call(&limiter, &account).await.0 {
                                break;
                            }
                            *thrown.lock().unwrap() += 1;
                        }
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let over = start.elapsed().as_secs_f64() / (calls as f64 / r);
        let thrown = *thrown.lock().unwrap() as f64;
        (over, thrown / (thrown + calls as f64))
    }

    /// The case D in simulation: a burst of 240 calls (about 120
    /// submissions) from two cold instances at R = 8, with and without
    /// stray throttles; the mean of five seeds and the worst. The goal is
    /// 1.5 × the floor under 10 % stray.
    #[tokio::test(start_paused = true)]
    async fn a_cold_burst_under_stray_throttles() {
        for (stray, at_most) in [(0.0, 1.1), (0.05, 1.3), (0.1, 1.5)] {
            let (mean, worst, throttled) = bursts(8.0, 240, stray).await;
            let line = format!(
                "burst of 240 calls, R = 8, 2 cold instances, {stray} stray: drain ÷ floor {mean:.2} (worst {worst:.2}), throttled {throttled:.3}"
            );
            println!("{line}");
            assert!(mean <= at_most, "{line}");
        }
    }

    /// A bad start: each cold instance's first call throttled, or the
    /// account's bucket empty when the burst begins, under 10 % stray
    /// throttles at R = 8. When a throttled first call ended slow start
    /// (at half the start, with every stray throttle after it cutting
    /// further), these bursts took 4.4-5.3 × the floor on every seed; now
    /// 1.39-2.03 × and 2.31-3.00 ×. Still short of 1.5 ×: slow start's end
    /// at the first stray throttle after it is the same as in case D.
    #[tokio::test(start_paused = true)]
    async fn a_burst_whose_first_calls_are_throttled_is_not_held_back() {
        let (mut first, mut empty) = (0.0f64, 0.0f64);
        for seed in 1..=5u64 {
            let (over, _) = burst_from(8.0, 2, 240, 0.1, seed, Account::new(8.0), 2).await;
            first = first.max(over);
            let mut account = Account::new(8.0);
            account.tokens = 0.0;
            let (over, _) = burst_from(8.0, 2, 240, 0.1, seed, account, 0).await;
            empty = empty.max(over);
        }
        assert!(first <= 2.2, "first calls throttled: worst {first:.2}");
        assert!(empty <= 3.2, "bucket empty: worst {empty:.2}");
    }

    /// [`burst`] from two cold instances over five seeds: the mean drain ÷
    /// floor, the worst, and the mean throttled share.
    async fn bursts(r: f64, calls: usize, stray: f64) -> (f64, f64, f64) {
        let (mut mean, mut worst, mut throttled) = (0.0, 0.0f64, 0.0);
        for seed in 1..=5u64 {
            let (over, thrown) = burst(r, 2, calls, stray, seed).await;
            mean += over / 5.0;
            worst = worst.max(over);
            throttled += thrown / 5.0;
        }
        (mean, worst, throttled)
    }

    /// The seeds of the stray throttles the figures and the stray test run.
    const SEEDS: [u64; 3] = [1, 2, 3];

    /// Calls one after another through `limiter` for `secs` seconds.
    async fn phase(
        limiter: &RateLimiter,
        account: &mut Account,
        secs: u64,
        stray: f64,
    ) -> (u64, u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        let (mut accepted, mut throttled) = (0, 0);
        let mut strays = Stray::new(stray, 11);
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

    /// One limiter: backs off when the account allows less, and climbs back
    /// when it allows more again.
    #[tokio::test(start_paused = true)]
    async fn backs_off_on_throttling_and_recovers_afterwards() {
        let limiter = RateLimiter::per_second(DEFAULT_CEILING);
        let mut account = Account::new(10.0);
        // Slow start from INITIAL_RATE finds an account of 10/s.
        phase(&limiter, &mut account, 60, 0.0).await;
        let found = limiter.snapshot();
        assert!(
            !found.slow_start && (7.0..=12.0).contains(&found.rate),
            "{found:?}"
        );
        // The account drops to 2/s (another script started): it backs off.
        account = Account::new(2.0);
        account.tokens = 0.0;
        let (_, throttled) = phase(&limiter, &mut account, 30, 0.0).await;
        let backed = limiter.snapshot();
        assert!(throttled > 0 && backed.rate <= 2.6, "{backed:?}");
        // And back to 20/s: it climbs back without being told.
        account = Account::new(20.0);
        let (accepted, throttled) = phase(&limiter, &mut account, 180, 0.0).await;
        let recovered = limiter.snapshot();
        assert!(recovered.rate >= 15.0, "{recovered:?}");
        assert!(
            (throttled as f64) < 0.05 * (accepted + throttled) as f64,
            "{throttled} of {} throttled",
            accepted + throttled
        );
    }

    /// Stray throttles, a share of calls whatever the rate: the limiter
    /// learns that share from the calls sent well below the peak, lets the
    /// throttles it explains pass below the peak and keeps the floor, so
    /// the rate does not collapse. It still costs more than its share
    /// (module doc): shown per seed, asserted below what is achieved (the
    /// lowest seed: 0.90 × R at 5 %, 0.77 × R at 10 %; before the rising
    /// throttles were judged across cuts, 0.54 and 0.42). Holding the rate
    /// costs a little more in throttled calls than the stray share: up to
    /// 7.3 % at 5 %.
    #[tokio::test(start_paused = true)]
    async fn stray_throttles_do_not_collapse_the_rate() {
        for (stray, at_least) in [(0.05, 0.85), (0.1, 0.6)] {
            for seed in SEEDS {
                let run = simulate_with(8.0, 2, 300, stray, seed, || {
                    RateLimiter::per_second(DEFAULT_CEILING)
                })
                .await;
                let line = format!(
                    "R = 8, 2 instances, {stray} stray, seed {seed}: {}",
                    summary(&run)
                );
                println!("{line}");
                assert!(run.utilisation >= at_least, "{line}");
                assert!(run.throttled_share < stray + 0.03, "{line}");
            }
        }
    }

    /// A stray throttle soon after a cut is one among the last calls, not
    /// most of the few calls since the cut: the second cut stops at the
    /// floor under the peak. Judged among the calls since the cut (one
    /// throttled of one), it read as throttles rising: the floor went, and
    /// the peak was forgotten.
    #[tokio::test(start_paused = true)]
    async fn a_stray_throttle_soon_after_a_cut_keeps_the_floor() {
        let limiter = RateLimiter::per_second(DEFAULT_CEILING);
        let mut account = Account::new(10.0);
        phase(&limiter, &mut account, 60, 0.0).await;
        // A calm spell below the account's rate, all calls accepted.
        let mut calm = Account::new(1000.0);
        phase(&limiter, &mut calm, 5, 0.0).await;
        let before = limiter.snapshot();
        // Two stray throttles, the second once the first cut's hold is over.
        let p = limiter.acquire().await;
        limiter.throttled(&p);
        let first = limiter.snapshot();
        assert_eq!(first.cuts, before.cuts + 1, "{first:?}");
        // One call inside the cut's hold, accepted; the next is judged.
        let p = limiter.acquire().await;
        limiter.succeeded(&p);
        let p = limiter.acquire().await;
        limiter.throttled(&p);
        let second = limiter.snapshot();
        assert_eq!(second.cuts, first.cuts + 1, "{second:?}");
        // Unfloored, the second cut would go to 0.8 × the first.
        assert!(
            second.rate > DECREASE * first.rate * 1.05,
            "the floor went: {before:?} -> {first:?} -> {second:?}"
        );
    }

    /// A collapse (MTurk throttled everything for a while) recovers within
    /// seconds once MTurk accepts again, even with 10 % stray throttles.
    #[tokio::test(start_paused = true)]
    async fn a_collapse_recovers_in_seconds() {
        let limiter = RateLimiter::per_second(DEFAULT_CEILING);
        let mut account = Account::new(10.0);
        phase(&limiter, &mut account, 30, 0.0).await;
        assert!(limiter.snapshot().rate >= 7.0, "{:?}", limiter.snapshot());
        // Everything throttled for 20 s: the rate falls as far as it goes.
        phase(&limiter, &mut account, 20, 1.0).await;
        let collapsed = limiter.snapshot();
        assert!(collapsed.rate <= 0.5, "{collapsed:?}");
        // MTurk accepts again: after 10 s without a cut the rate doubles per
        // second towards half the rate taken before, then grows by 0.5 % of
        // it per call: back above 0.6 × R within 30 s. (Before, the increase
        // was a share of the collapsed rate: minutes.)
        account = Account::new(10.0);
        phase(&limiter, &mut account, 30, 0.0).await;
        let back = limiter.snapshot();
        assert!(back.rate >= 6.0, "{back:?}");
    }

    /// A burst's first call finds its slot free, but the callers queued
    /// behind it show the limit holds them back: its success counts for
    /// slow start like a waited call's (a cold batch of 10 at R = 100 took
    /// 1.58 s in `first_batch` without it, 1.12 s with it).
    #[tokio::test(start_paused = true)]
    async fn a_bursts_first_call_grows_slow_start_while_others_wait() {
        use std::sync::Arc;
        let limiter = Arc::new(RateLimiter::per_second(DEFAULT_CEILING));
        let first = limiter.acquire().await;
        assert!(!first.waited);
        let queued = tokio::spawn({
            let limiter = limiter.clone();
            async move { limiter.acquire().await }
        });
        // The second caller is waiting for its slot.
        tokio::time::sleep(Duration::from_millis(10)).await;
        limiter.succeeded(&first);
        assert_eq!(limiter.snapshot().rate, 2.0 * INITIAL_RATE);
        let second = queued.await.unwrap();
        assert!(second.waited);
        // With nobody waiting, a call that did not wait raises nothing.
        limiter.succeeded(&second);
        let rate = limiter.snapshot().rate;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let lone = limiter.acquire().await;
        assert!(!lone.waited);
        limiter.succeeded(&lone);
        assert_eq!(limiter.snapshot().rate, rate);
    }

    /// A batch's records reach MTurk a moment apart (each reads the ledger
    /// first): its first call is answered before the next record's caller
    /// comes. That caller is held back all the same, so it goes at the
    /// doubled rate. One record alone (a trickle: its grant right after its
    /// GetAssignment) grows nothing this way.
    #[tokio::test(start_paused = true)]
    async fn a_batchs_first_call_answered_alone_grows_slow_start() {
        for records in [2, 1] {
            let limiter = RateLimiter::per_second(DEFAULT_CEILING);
            let busy: Vec<_> = (0..records).map(|_| limiter.busy()).collect();
            let first = limiter.acquire().await;
            limiter.succeeded(&first);
            assert_eq!(limiter.snapshot().rate, INITIAL_RATE);
            tokio::time::sleep(Duration::from_millis(10)).await;
            let next = limiter.acquire().await;
            assert!(next.waited);
            let interval = next.sent_at - first.sent_at;
            let expected = if records > 1 {
                2.0 * INITIAL_RATE
            } else {
                INITIAL_RATE
            };
            assert_eq!(
                interval,
                Duration::from_secs_f64(1.0 / expected),
                "{records} records"
            );
            drop(busy);
            assert_eq!(limiter.state().busy, 0);
        }
    }

    /// `n` calls through `limiter`, each accepted.
    async fn accept(limiter: &RateLimiter, n: usize) {
        for _ in 0..n {
            let p = limiter.acquire().await;
            limiter.succeeded(&p);
        }
    }

    /// One call through `limiter`, throttled; the limiter's state after it.
    async fn throttle(limiter: &RateLimiter) -> Snapshot {
        let p = limiter.acquire().await;
        limiter.throttled(&p);
        limiter.snapshot()
    }

    /// A limiter whose slow start climbed: five calls accepted in its first
    /// second, then a throttle ends it at half of what MTurk took, above
    /// where it began; then three calls accepted, past the cut's hold.
    async fn climbed() -> (RateLimiter, Snapshot) {
        let limiter = RateLimiter::per_second(DEFAULT_CEILING);
        accept(&limiter, 5).await;
        let exit = throttle(&limiter).await;
        assert!(!exit.slow_start && exit.rate >= INITIAL_RATE, "{exit:?}");
        accept(&limiter, 3).await;
        (limiter, exit)
    }

    /// Between slow start's end and the first peak, a lone throttle is
    /// noise if slow start climbed (it ended at or above where it began):
    /// cutting at each stray one, the rate never ran long enough to set a
    /// peak until one was set low. A second throttle among the window
    /// cuts, and so does a lone one while throttles are rising. If slow
    /// start ended below where it began, MTurk took little, and one
    /// throttle cuts.
    #[tokio::test(start_paused = true)]
    async fn a_lone_throttle_before_the_first_peak_cuts_only_if_slow_start_did_not_climb() {
        let (limiter, exit) = climbed().await;
        let lone = throttle(&limiter).await;
        assert_eq!(lone.cuts, exit.cuts, "a lone throttle cut: {lone:?}");
        let second = throttle(&limiter).await;
        assert_eq!(second.cuts, exit.cuts + 1, "{second:?}");

        // Climbed, but throttles are rising: more than 30 % of the last 20
        // calls throttled (slow start overshot, and they come every few
        // calls), so a lone throttle since the last cut is congestion.
        let (limiter, exit) = climbed().await;
        {
            let mut s = limiter.state();
            let earlier = [true, false, false, true, false, false, true];
            let since_cut = [false, false, false];
            s.recent = earlier.into_iter().chain(since_cut).collect();
            assert_eq!(s.since_cut, since_cut.len());
        }
        assert_eq!(throttle(&limiter).await.cuts, exit.cuts + 1);

        // Did not climb: three throttles before MTurk took any call leave
        // half the start.
        let limiter = RateLimiter::per_second(DEFAULT_CEILING);
        throttle(&limiter).await;
        throttle(&limiter).await;
        let exit = throttle(&limiter).await;
        assert!(exit.rate < INITIAL_RATE, "{exit:?}");
        accept(&limiter, 3).await;
        assert_eq!(throttle(&limiter).await.cuts, exit.cuts + 1);
    }

    fn peak(limiter: &RateLimiter) -> f64 {
        let s = limiter.state();
        RateLimiter::fresh(s.peak, PEAK_MEMORY, Instant::now()).unwrap_or(0.0)
    }

    /// A limiter at a peak of 10/s that has learned a noise of 10 % (8.3 %
    /// with its prior) among its low calls, past its probation.
    async fn noisy(instances: Option<usize>, noise: usize) -> RateLimiter {
        noisy_under(DEFAULT_CEILING, instances, noise).await
    }

    /// [`noisy`] under a ceiling of `ceiling`.
    async fn noisy_under(ceiling: f64, instances: Option<usize>, noise: usize) -> RateLimiter {
        let limiter = RateLimiter::configured(ceiling, None, instances);
        assert!(limiter.resume_at(10.0));
        tokio::time::advance(PROBATION).await;
        limiter.state().low = (0..NOISE_CALLS).map(|i| i < noise).collect();
        limiter
    }

    /// 51 waited calls at 10/s over 5.1 s, `thrown` of them throttled.
    async fn near_peak(limiter: &RateLimiter, thrown: usize) {
        calls_at(limiter, 10.0, true, 51, thrown, Duration::from_millis(102)).await;
    }

    /// `calls` calls sent at `rate`, `gap` apart, the first `thrown` of
    /// them throttled, `waited` for their slot or not; the rate held there
    /// (no increase carries it past the peak).
    async fn calls_at(
        limiter: &RateLimiter,
        rate: f64,
        waited: bool,
        calls: usize,
        thrown: usize,
        gap: Duration,
    ) {
        for i in 0..calls {
            limiter.state().rate = rate;
            let permit = Permit {
                sent_at: Instant::now(),
                waited,
                rate,
            };
            if i < thrown {
                limiter.throttled(&permit);
            } else {
                limiter.succeeded(&permit);
            }
            tokio::time::advance(gap).await;
        }
    }

    /// Under stray throttles, a peak set low in the first seconds rises:
    /// near it, MTurk throttles clearly less than the noise, so the
    /// throttles that cut there are noise too. Not when the share near the
    /// peak is within a standard deviation of the noise or above it (it
    /// may be congestion), not before 5 s and 40 calls say so, not on
    /// calls the limit did not hold back or counted under a higher peak
    /// since fallen, not with no noise learned (the rate then passes the
    /// peak by itself), and not with more than two instances (their
    /// congestion reads as noise).
    #[tokio::test(start_paused = true)]
    async fn the_peak_rises_under_noise_when_throttles_near_it_are_fewer() {
        let limiter = noisy(Some(2), 10).await;
        near_peak(&limiter, 1).await;
        assert!((peak(&limiter) - 10.0 * RAISE_STEP).abs() < 1e-9);
        // The next span starts afresh: no more than the noise, no rise.
        near_peak(&limiter, 5).await;
        assert!((peak(&limiter) - 10.0 * RAISE_STEP).abs() < 1e-9);

        // 4 of 51 (7.8 %) against a noise of 8.3 %: below it, but within
        // a standard deviation (3.9 %).
        let at_the_noise = noisy(Some(2), 10).await;
        near_peak(&at_the_noise, 4).await;
        assert_eq!(peak(&at_the_noise), 10.0);

        let too_soon = noisy(Some(2), 10).await;
        calls_at(&too_soon, 10.0, true, 51, 0, Duration::from_millis(50)).await;
        assert_eq!(peak(&too_soon), 10.0);
        let too_few = noisy(Some(2), 10).await;
        calls_at(&too_few, 10.0, true, 30, 0, Duration::from_millis(200)).await;
        assert_eq!(peak(&too_few), 10.0);
        // Judged once both are reached.
        calls_at(&too_few, 10.0, true, 10, 0, Duration::from_millis(200)).await;
        assert!((peak(&too_few) - 10.0 * RAISE_STEP).abs() < 1e-9);

        // Calls the limit did not hold back (a trickle) show nothing.
        let trickle = noisy(Some(2), 10).await;
        calls_at(&trickle, 10.0, false, 51, 0, Duration::from_millis(102)).await;
        assert_eq!(peak(&trickle), 10.0);

        // Calls counted under a peak that has since fallen (it expired and
        // a lower one was set) do not count under the new one.
        let fallen = noisy(Some(2), 10).await;
        calls_at(&fallen, 10.0, true, 30, 0, Duration::from_millis(200)).await;
        fallen.state().peak = Some((8.0, Instant::now()));
        calls_at(&fallen, 8.0, true, 20, 0, Duration::from_millis(200)).await;
        assert_eq!(peak(&fallen), 8.0);

        let no_noise = noisy(Some(2), 0).await;
        near_peak(&no_noise, 0).await;
        assert_eq!(peak(&no_noise), 10.0);

        let five = noisy(Some(5), 10).await;
        near_peak(&five, 0).await;
        assert_eq!(peak(&five), 10.0);

        // Never above the ceiling.
        let limiter = noisy_under(11.0, None, 10).await;
        near_peak(&limiter, 0).await;
        assert_eq!(peak(&limiter), 11.0);
    }

    /// What that buys: at R = 20 with 10 % stray, two instances accept
    /// 0.77 × R over five minutes (three seeds), where they held 0.62 under
    /// the peak of their first seconds, and the throttles stay near the
    /// stray share.
    #[tokio::test(start_paused = true)]
    async fn under_stray_throttles_the_rate_climbs_past_an_early_peak() {
        let (mut accepted, mut throttled) = (0.0, 0.0);
        for seed in SEEDS {
            let run = simulate_with(20.0, 2, 300, 0.1, seed, || {
                RateLimiter::configured(DEFAULT_CEILING, None, Some(2))
            })
            .await;
            accepted += run.utilisation / SEEDS.len() as f64;
            throttled += run.throttled_share / SEEDS.len() as f64;
        }
        assert!(accepted >= 0.72, "{accepted:.3} × R");
        assert!(throttled < 0.12, "{throttled:.3} throttled");
    }

    /// A caller that gives up waiting (a deadline) is no longer counted as
    /// waiting.
    #[tokio::test(start_paused = true)]
    async fn a_caller_that_gives_up_waiting_is_not_counted() {
        let limiter = RateLimiter::per_second(DEFAULT_CEILING);
        let first = limiter.acquire().await;
        let gave_up = tokio::time::timeout(Duration::from_millis(10), limiter.acquire()).await;
        assert!(gave_up.is_err());
        limiter.succeeded(&first);
        assert_eq!(limiter.snapshot().rate, INITIAL_RATE);
    }

    /// The pool's share in the ledger can be stale: sustained when MTurk
    /// took more than it takes now. Two instances resuming at 25/s each on
    /// an account that now takes 5 or 10 give it up within seconds; before
    /// the probation they kept it as peak and floor, read their own
    /// throttles as noise and spent 30 % and 46 % of a minute's calls
    /// throttled.
    #[tokio::test(start_paused = true)]
    async fn a_stale_pool_share_is_given_up_within_seconds() {
        for r in [5.0, 10.0] {
            let run = simulate_with(r, 2, 60, 0.0, 1, || {
                RateLimiter::resuming_at(DEFAULT_CEILING, 25.0)
            })
            .await;
            let line = format!("R = {r}, resumed at 25/s each: {}", summary(&run));
            println!("{line}");
            assert!(run.throttled_share < 0.1, "{line}");
            assert!(run.utilisation >= 0.9, "{line}");
        }
    }

    /// The probation does not take the floor from a share that was right:
    /// with 10 % stray throttles at R = 8, two instances resuming at 4/s
    /// each accept what they accepted with the share kept as peak (0.72 × R
    /// over a minute, three seeds), where resuming without a peak gave
    /// 0.68.
    #[tokio::test(start_paused = true)]
    async fn a_right_pool_share_keeps_its_floor_under_stray_throttles() {
        let mut accepted = 0.0;
        for seed in SEEDS {
            let run = simulate_with(8.0, 2, 60, 0.1, seed, || {
                RateLimiter::resuming_at(DEFAULT_CEILING, 4.0)
            })
            .await;
            println!(
                "R = 8, 10 % stray, resumed at 4/s each, seed {seed}: {}",
                summary(&run)
            );
            accepted += run.utilisation / SEEDS.len() as f64;
        }
        assert!(accepted >= 0.72, "{accepted:.3} × R");
    }

    /// An instance that starts at the pool's share sends its first calls at
    /// that rate at once: 20 calls at a share of 20/s take about a second,
    /// where slow start from [`INITIAL_RATE`] takes about seven.
    #[tokio::test(start_paused = true)]
    async fn a_cold_instance_resumes_at_the_pools_share() {
        for (limiter, at_most) in [
            (RateLimiter::resuming_at(DEFAULT_CEILING, 20.0), 1.0),
            (RateLimiter::per_second(DEFAULT_CEILING), 8.0),
        ] {
            let mut account = Account::new(100.0);
            let start = Instant::now();
            for _ in 0..20 {
                let p = limiter.acquire().await;
                assert!(account.admit());
                limiter.succeeded(&p);
            }
            let took = start.elapsed().as_secs_f64();
            assert!(took <= at_most, "{took} s: {:?}", limiter.snapshot());
        }
        // The share is a start, not a fixed rate: on an account that allows
        // less, it is cut like any other.
        let limiter = RateLimiter::resuming_at(DEFAULT_CEILING, 20.0);
        let mut account = Account::new(5.0);
        phase(&limiter, &mut account, 30, 0.0).await;
        assert!(limiter.snapshot().rate <= 7.0, "{:?}", limiter.snapshot());
    }
}
