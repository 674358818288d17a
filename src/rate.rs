//! A per-instance limit on MTurk calls.
//!
//! MTurk publishes no rate limit and throttles from a few requests per second
//! per account. Each Lambda instance spaces its own calls evenly, so that
//! `MaximumConcurrency × MTURK_MAX_RPS` bounds the account's rate. Spacing,
//! not a bucket with burst: a burst is exactly what trips the throttle.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next_slot: Mutex<Instant>,
}

impl RateLimiter {
    /// `per_second` must be positive and finite (the config checks it).
    pub fn per_second(per_second: f64) -> Self {
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / per_second),
            next_slot: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this caller's slot. Slots are handed out in call order.
    pub async fn acquire(&self) {
        let slot = {
            // A poisoned lock only means another task panicked mid-update of a
            // plain Instant; its value is still usable.
            let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_calls_evenly() {
        let limiter = RateLimiter::per_second(4.0);
        let start = Instant::now();
        for _ in 0..9 {
            limiter.acquire().await;
        }
        // Nine calls at 4 per second: the first at once, the ninth 2 s later.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_is_not_banked_as_burst() {
        let limiter = RateLimiter::per_second(2.0);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let start = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_millis(500));
    }
}
