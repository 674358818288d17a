//! A per-instance, self-tuning limit on MTurk calls.
//!
//! MTurk publishes no rate limit, throttles ("Rate exceeded") from a few
//! calls per second per account, shares that rate among every function
//! instance and script of the lab, and throttles some calls whatever the
//! rate (stray throttles). Each instance finds its share by itself:
//!
//! - **Pacing.** Calls go one interval at the current rate apart; idle time
//!   is never banked as a burst.
//! - **Start.** At this instance's share of the rate the pool sustained
//!   lately (read from the ledger, handed to [`RateLimiter::batch`], kept
//!   as the peak until MTurk's first congestion: it may be stale), else in
//!   slow start from [`initial_rate`], doubling per round trip of calls
//!   the limit held back. Slow start ends at two throttles among its last
//!   eight calls (three before MTurk took any), not at one: a lone stray
//!   throttle or an empty bucket cost a burst up to ten times its floor.
//! - **Congestion is a share, not a throttle.** A throttle cuts when the
//!   calls since the last cut (at most [`WINDOW`]) hold more throttles than
//!   the noise explains: the throttled share of calls sent below [`NEAR`] ×
//!   the peak (none under 3 %). Below the peak one throttle more and two
//!   standard deviations pass; near it only the expected count, so that
//!   two instances do not learn each other's congestion as noise.
//! - **A cut goes to what MTurk accepted**: [`BACKOFF`] × the rate it took
//!   this instance's last calls at, corrected for the noise, between half
//!   and [`BACKOFF`] × the rate (after slow start, half of what it took).
//! - **The peak** is the highest rate at which ten held-back calls since the
//!   last cut went through, kept for [`MEMORY`].
//! - **Back to what MTurk accepted, then probing.** After slow start's cut
//!   (its last calls rode MTurk's bucket) and, once stray throttles are
//!   known, after any cut, the rate climbs back to what MTurk accepted in
//!   half a window of held-back calls: such a cut is the bucket's or the
//!   noise's, and a slow climb from it cost a burst its first minute. Then
//!   each accepted held-back call adds [`PROBE`] × the peak.
//! - **A collapse starts over.** When most of the last [`WINDOW`] calls were
//!   throttled (another script took the account, MTurk throttled everything
//!   for a while, the pool's rate was stale), the peak is forgotten and
//!   slow start finds what MTurk takes now.
//! - **A ceiling.** `MTURK_MAX_RPS` is the most one instance ever sends.
//!
//! Only calls the limit held back (that waited for their slot, or went
//! while others waited) raise the rate: calls spaced by something else
//! have not shown that MTurk takes more. Throttles of calls sent before a
//! cut's hold (two intervals) is over say nothing new. Figures and the
//! variants rejected: BENCHMARKS.md and docs/benchmarks-history.md; the
//! simulation: `rate::sim` (`cargo test --lib rate::sim -- --ignored
//! --nocapture`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Where an instance starts when the pool has no history: 2 calls/s. Two
/// cold instances (the template's `MaximumConcurrency`) send 4/s together,
/// under what accounts allow in practice; slow start finds more in a second.
pub const INITIAL_RATE: f64 = 2.0;
/// The ceiling when nothing is configured: two instances reach 50 calls/s
/// together, the most the lab's account is expected to allow.
pub const DEFAULT_CEILING: f64 = 25.0;
/// Never slower than this (one call every 10 s), so a batch still moves.
const MIN_RATE: f64 = 0.1;
/// The calls a throttle is judged among: one stray throttle is a small
/// share of them, and they span seconds, not minutes, at low rates.
const WINDOW: usize = 20;
/// A cut goes to this share of the rate MTurk accepted lately: headroom
/// under the share MTurk gave, so that the bucket refills and the other
/// instances' calls find tokens too; a cut on stray throttles costs 15 %.
const BACKOFF: f64 = 0.85;
/// Near the peak from this share of it on: congestion starts there, so
/// only the noise's expected throttles are let pass; below it, the calls
/// teach the noise.
const NEAR: f64 = 0.8;
/// Probing per held-back call, as a share of the peak: a cycle of cut and
/// climb costs a throttle or two in 30-odd calls at any rate (per second,
/// it cost 10-20 % of the calls at R = 2 to 5).
const PROBE: f64 = 0.005;
/// How long the peak is remembered: a rate MTurk took five minutes ago
/// says little now (another script of the lab may have started).
const MEMORY: Duration = Duration::from_secs(300);

/// Where a cold instance with no history starts when `instances` may run at
/// once: its share of the 4/s that two instances at [`INITIAL_RATE`] send.
/// Fewer than two count as two.
pub fn initial_rate(instances: Option<usize>) -> f64 {
    INITIAL_RATE * 2.0 / instances.unwrap_or(2).max(2) as f64
}

#[derive(Debug)]
pub struct RateLimiter {
    ceiling: f64,
    adaptive: bool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    rate: f64,
    /// When the last call was let through; none goes before `not_before`.
    last_sent: Option<Instant>,
    not_before: Option<Instant>,
    slow_start: bool,
    initial: f64,
    /// The last [`WINDOW`] calls (when sent, throttled), how many of them
    /// were sent after the last cut's hold, and when that hold ends.
    recent: VecDeque<(Instant, bool)>,
    since_cut: usize,
    hold_until: Option<Instant>,
    peak: Option<(f64, Instant)>,
    /// After a cut: what MTurk accepted, and the step per call back to it.
    climb: Option<(f64, f64)>,
    /// The peak came from the pool, and MTurk has not throttled us since.
    resumed: bool,
    /// Accepted calls the limit held back since the last cut.
    run: u32,
    /// Calls sent below [`NEAR`] × the peak and their throttles, decayed.
    low_calls: f64,
    low_thrown: f64,
    /// Callers waiting for a slot; records in progress.
    waiting: usize,
    busy: usize,
    /// Slow start's growth from a batch's call answered alone, for the
    /// next caller that waits.
    credit: Option<f64>,
    last_accepted: Option<Instant>,
    held_back: Option<Instant>,
    throttles: u64,
    cuts: u64,
}

/// One call's slot: when it was let through, whether the limit held it
/// back, and at what rate. Handed back with the call's outcome.
#[derive(Debug, Clone, Copy)]
pub struct Permit {
    sent_at: Instant,
    waited: bool,
    rate: f64,
}

/// What the limiter knows, for logs, metrics, the pool's record and tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub rate: f64,
    pub ceiling: f64,
    pub slow_start: bool,
    pub throttles: u64,
    pub cuts: u64,
    /// When MTurk last accepted a held-back call outside slow start below
    /// the ceiling: then the rate says what MTurk takes (the pool's record).
    pub held_back: Option<Instant>,
    /// When MTurk last accepted a call: records waiting for the rate are
    /// making progress, and are never dead-lettered.
    pub last_accepted: Option<Instant>,
}

/// The records of a batch in progress ([`RateLimiter::batch`]), until dropped.
pub struct Batch<'a>(&'a RateLimiter, usize);

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.busy = s.busy.saturating_sub(self.1);
    }
}

/// Counts a caller out of the waiting ones if its wait is dropped.
struct Waiting<'a>(&'a RateLimiter);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut s = self.0.state();
        s.waiting = s.waiting.saturating_sub(1);
    }
}

impl RateLimiter {
    /// At most `ceiling` calls per second, adapting below it, from
    /// [`INITIAL_RATE`] in slow start.
    pub fn per_second(ceiling: f64) -> Self {
        Self::build(ceiling, INITIAL_RATE, true)
    }

    /// What a function's configuration asks for: slow start from `start`
    /// (`MTURK_START_RPS`) if set, else from [`initial_rate`] of `instances`.
    pub fn configured(ceiling: f64, start: Option<f64>, instances: Option<usize>) -> Self {
        Self::build(
            ceiling,
            start.unwrap_or_else(|| initial_rate(instances)),
            true,
        )
    }

    /// Exactly `rate` calls per second, whatever MTurk answers.
    pub fn fixed(rate: f64) -> Self {
        Self::build(rate, rate, false)
    }

    /// `ceiling` positive and finite (the config checks it), or the default.
    fn build(ceiling: f64, initial: f64, adaptive: bool) -> Self {
        let ceiling = Some(ceiling).filter(|c| c.is_finite() && *c > 0.0);
        let ceiling = ceiling.unwrap_or(DEFAULT_CEILING);
        let initial = Some(initial).filter(|i| i.is_finite());
        let rate = initial
            .unwrap_or(INITIAL_RATE)
            .clamp(MIN_RATE.min(ceiling), ceiling);
        let state = State {
            rate,
            slow_start: adaptive,
            initial: rate,
            ..State::default()
        };
        RateLimiter {
            ceiling,
            adaptive,
            state: Mutex::new(state),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another task panicked mid-update of
        // plain numbers; they are still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A batch of `records` begins: while it lasts, a call answered before
    /// the next record's caller came still grows slow start (a cold batch's
    /// records reach MTurk a moment apart). With `pool_share`, before the
    /// first slot, the limiter starts at that share of the pool's rate
    /// instead of in slow start, kept as the peak until the first cut.
    pub fn batch(&self, records: usize, pool_share: Option<f64>) -> Batch<'_> {
        let mut s = self.state();
        let usable = |r: &f64| self.adaptive && s.last_sent.is_none() && r.is_finite() && *r > 0.0;
        if let Some(share) = pool_share.filter(usable) {
            s.rate = share.clamp(MIN_RATE.min(self.ceiling), self.ceiling);
            s.slow_start = false;
            s.peak = Some((s.rate, Instant::now()));
            s.resumed = true;
        }
        s.busy += records;
        Batch(self, records)
    }

    fn slot(s: &State, now: Instant) -> Instant {
        let after = s
            .last_sent
            .map_or(now, |last| last + Duration::from_secs_f64(1.0 / s.rate));
        s.not_before.map_or(after, |t| after.max(t)).max(now)
    }

    /// Waits for this caller's slot, reckoned at the rate of the moment it comes.
    pub async fn acquire(&self) -> Permit {
        let mut waited = false;
        loop {
            let slot = {
                let mut s = self.state();
                let now = Instant::now();
                let mut slot = Self::slot(&s, now);
                // The first caller to wait after a batch's call was answered
                // alone takes that call's growth (a credit is only left in
                // slow start while nobody waits).
                if slot > now {
                    if let Some(rate) = s.credit.take() {
                        s.rate = rate.min(self.ceiling).max(s.rate);
                        slot = Self::slot(&s, now);
                    }
                }
                if slot <= now {
                    s.credit = None;
                    s.last_sent = Some(now);
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
            std::mem::forget(counted);
        }
    }

    /// When a call asking now would get its slot.
    pub fn next_slot(&self) -> Instant {
        Self::slot(&self.state(), Instant::now())
    }

    /// A peak set within [`MEMORY`], or 0.
    fn fresh(peak: Option<(f64, Instant)>, now: Instant) -> f64 {
        let fresh = peak.filter(|(_, at)| now.saturating_duration_since(*at) <= MEMORY);
        fresh.map_or(0.0, |(r, _)| r)
    }

    /// The throttles among the last `calls` calls.
    fn thrown(s: &State, calls: usize) -> f64 {
        let throttled = s.recent.iter().rev().take(calls).filter(|(_, t)| *t);
        throttled.count() as f64
    }

    /// The stray share, from the calls sent below [`NEAR`] × the peak, with
    /// a window of accepted calls assumed first (a first throttle is not
    /// much noise); under 3 % is none (others' congestion reaches them too).
    fn noise(s: &State) -> f64 {
        let noise = s.low_thrown / (s.low_calls + WINDOW as f64);
        Some(noise).filter(|n| *n >= 0.03).unwrap_or(0.0)
    }

    /// Whether most of the last [`WINDOW`] calls were throttled (a
    /// collapse, module doc). Not reckoned above the noise: a noise
    /// learned from such calls would hide it.
    fn rising(s: &State) -> bool {
        let n = s.recent.len();
        n >= WINDOW / 2 && Self::thrown(s, n) > 0.5 * n as f64
    }

    /// Records one outcome: in the window, and among the low calls.
    fn record(&self, s: &mut State, permit: &Permit, throttled: bool, now: Instant) {
        if s.recent.len() == WINDOW {
            s.recent.pop_front();
        }
        s.recent.push_back((permit.sent_at, throttled));
        if s.hold_until.is_none_or(|h| permit.sent_at >= h) {
            s.since_cut = (s.since_cut + 1).min(WINDOW);
        }
        let low = permit.rate <= NEAR * Self::fresh(s.peak, now);
        // Not while throttles are rising: the low calls are congested too.
        if !s.slow_start && !Self::rising(s) && low {
            // Decayed by 1 % a call: about the last hundred count.
            s.low_calls = s.low_calls * 0.99 + 1.0;
            s.low_thrown = s.low_thrown * 0.99 + f64::from(u8::from(throttled));
        }
    }

    /// MTurk accepted the call (answered it, even with an error of its own).
    pub fn succeeded(&self, permit: &Permit) {
        self.outcome(permit, false);
    }

    /// MTurk throttled the call: slow down if the throttles are congestion.
    pub fn throttled(&self, permit: &Permit) {
        self.outcome(permit, true);
    }

    fn outcome(&self, permit: &Permit, throttled: bool) {
        let mut s = self.state();
        let (before, now) = (s.rate, Instant::now());
        if throttled {
            s.throttles += 1;
        } else {
            // Throttles before MTurk took any call were passed over: they do
            // not count towards ending slow start once it takes calls.
            if s.last_accepted.is_none() {
                s.recent.clear();
            }
            s.last_accepted = Some(now);
        }
        if self.adaptive {
            self.record(&mut s, permit, throttled, now);
            if !throttled {
                self.grow(&mut s, permit, now);
            } else if Self::congested(&s, permit, now) {
                self.cut(&mut s, now);
            }
        }
        // `RUST_LOG=mturk_exclusion::rate=trace`: one line per outcome.
        tracing::trace!(
            throttled,
            waited = permit.waited,
            sent_at = permit.rate,
            before,
            after = s.rate,
            peak = s.peak.map_or(0.0, |(k, _)| k),
            noise = Self::noise(&s),
            slow_start = s.slow_start,
            "MTurk call's outcome"
        );
    }

    fn grow(&self, s: &mut State, permit: &Permit, now: Instant) {
        let round_trip = now.saturating_duration_since(permit.sent_at).as_secs_f64();
        // Slow start doubles per round trip: per call while fewer than one
        // call is in flight.
        let doubled = s.rate * 2f64.powf(1.0 / (s.rate * round_trip).max(1.0));
        // Held back: this call waited for its slot, or, in slow start,
        // another caller waits now (the first call of a burst finds its
        // slot free). A call answered while other records of a batch are in
        // progress leaves its growth to the next caller that has to wait.
        if !(permit.waited || (s.slow_start && s.waiting > 0)) {
            if s.slow_start && s.busy > 1 {
                s.credit = Some(doubled);
            }
            return;
        }
        if !s.slow_start || s.rate >= self.ceiling {
            s.held_back = Some(now);
        }
        s.run += 1;
        let peak = Self::fresh(s.peak, now);
        // A run of calls since the last cut went through at this rate (not
        // a few on MTurk's burst): MTurk takes it.
        if !s.slow_start && s.run as usize >= WINDOW / 2 && s.rate >= NEAR * peak {
            s.peak = Some((s.rate.max(peak), now));
        }
        let grown = match s.climb {
            _ if s.slow_start => doubled,
            Some((to, step)) if s.rate + step < to => s.rate + step,
            Some((to, _)) => {
                s.climb = None;
                to.max(s.rate)
            }
            None => s.rate + PROBE * peak.max(s.rate),
        };
        s.rate = grown.min(self.ceiling);
    }

    /// Whether this throttle, with those before it, is congestion.
    fn congested(s: &State, permit: &Permit, now: Instant) -> bool {
        if s.hold_until.is_some_and(|h| permit.sent_at < h) {
            return false;
        }
        if s.slow_start {
            // Two of the last eight (three before MTurk took any): module doc.
            let limit = if s.last_accepted.is_some() { 2.0 } else { 3.0 };
            return Self::thrown(s, 8) >= limit;
        }
        let n = s.since_cut as f64;
        let noise = Self::noise(s);
        let peak = Self::fresh(s.peak, now);
        let near = peak > 0.0 && s.rate >= NEAR * peak;
        let tolerated = if near {
            (noise * n).floor()
        } else {
            // One throttle more, and two standard deviations of the count.
            1.0 + noise * n + 2.0 * (noise * (1.0 - noise) * n).sqrt()
        };
        Self::thrown(s, s.since_cut) > tolerated
    }

    /// Cuts (module doc). Calls sent within two intervals do not cut again:
    /// the other instances are cutting too, and the bucket needs a moment.
    fn cut(&self, s: &mut State, now: Instant) {
        // What MTurk accepted over the window, corrected for the noise:
        // what it would take without stray throttles.
        let span = s.recent.front().map_or(0.0, |(first, _)| {
            now.saturating_duration_since(*first).as_secs_f64()
        });
        let accepted = s.recent.len() as f64 - Self::thrown(s, WINDOW);
        let taken = accepted / span.max(0.1) / (1.0 - Self::noise(s));
        let mut rate = (BACKOFF * taken).clamp(0.5 * s.rate, BACKOFF * s.rate);
        if s.slow_start {
            // It outran the throttles on MTurk's bucket: at most half the
            // rate it reached, at least half where it began.
            rate = (0.5 * taken).min(0.5 * s.rate).max(0.5 * s.initial);
        }
        let rate = rate.max(MIN_RATE.min(self.ceiling));
        // A rate handed down from the pool holds only until MTurk throttles
        // it (it may be stale); a collapse starts over (module doc).
        let rising = Self::rising(s);
        if std::mem::take(&mut s.resumed) || rising {
            s.peak = None;
        }
        // The climb back to what MTurk accepted (module doc).
        let to = taken.min(s.rate);
        s.climb = (s.slow_start || Self::noise(s) > 0.0)
            .then(|| (to, (to - rate).max(0.0) / (WINDOW / 2) as f64));
        s.run = 0;
        s.rate = rate;
        s.slow_start = rising;
        s.credit = None;
        s.since_cut = 0;
        s.cuts += 1;
        let interval = Duration::from_secs_f64(1.0 / rate);
        s.hold_until = Some(now + 2 * interval);
        let until = now + interval;
        s.not_before = Some(s.not_before.map_or(until, |t| t.max(until)));
    }

    pub fn snapshot(&self) -> Snapshot {
        let s = self.state();
        Snapshot {
            rate: s.rate,
            ceiling: self.ceiling,
            slow_start: s.slow_start,
            throttles: s.throttles,
            cuts: s.cuts,
            held_back: s.held_back,
            last_accepted: s.last_accepted,
        }
    }
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
