//! Fault injection: a queue of one-shot faults, seeded pseudo-random faults,
//! an account-wide token bucket, added latency and lost deliveries.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::ids::mix64;

/// A failure the double answers with instead of (or on top of) its model.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// HTTP 400 `{"__type":"ThrottlingException","Message":"Rate exceeded"}`.
    Throttle,
    /// HTTP 500 `{"__type":"ServiceFault",...,"TurkErrorCode":"AWS.MechanicalTurk.ServiceFault"}`.
    ServiceFault,
    /// HTTP 500 with a plain-text body, as a load balancer in front of the
    /// service would send: not JSON, so the SDK cannot name the error.
    Http500,
    /// HTTP 400 `RequestError` with this `TurkErrorCode` (an unprefixed code
    /// such as `"HITDoesNotExist"` gets `AWS.MechanicalTurk.` put before it).
    RequestError { code: String, message: String },
    /// HTTP 400 `{"__type":"ParameterValidationError",...}`.
    ParameterValidation,
    /// HTTP 400 `{"__type":"UnrecognizedClientException",...}`: what AWS
    /// answers a request signed with credentials it does not know.
    Unrecognized,
    /// The connection is closed without any response bytes. The request has
    /// no effect.
    Drop,
    /// The request takes effect at once, but its answer is held back this long
    /// (in addition to any latency), as with a slow service or network.
    Delay(Duration),
}

impl Fault {
    /// The name recorded in [`crate::Outcome::Fault`].
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Throttle => "Throttle",
            Fault::ServiceFault => "ServiceFault",
            Fault::Http500 => "Http500",
            Fault::RequestError { .. } => "RequestError",
            Fault::ParameterValidation => "ParameterValidation",
            Fault::Unrecognized => "Unrecognized",
            Fault::Drop => "Drop",
            Fault::Delay(_) => "Delay",
        }
    }
}

struct Queued {
    operation: Option<String>,
    remaining: usize,
    fault: Fault,
}

struct FractionRule {
    operation: Option<String>,
    fraction: f64,
    fault: Fault,
    rng: SplitMix,
}

/// A tiny deterministic generator: enough for "fail about this share of
/// requests, the same ones every run", without pulling in `rand`.
struct SplitMix(u64);

impl SplitMix {
    fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        // mix64 adds the increment again; harmless, it stays a bijection.
        let bits = mix64(self.0);
        (bits >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// MTurk's account-wide limit as the double models it: a token bucket of
/// `rate` holding about a second of requests. Public so that the rate
/// limiter's simulation (`rate::sim`) throttles as the double does.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, now: Instant) -> Self {
        // MTurk's documented behaviour is a steady rate with a short burst;
        // about one second's worth of requests is the usual shape.
        let capacity = rate.max(1.0);
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    /// Whether a request at `now` finds a token (and takes it).
    pub fn admit(&mut self, now: Instant) -> bool {
        if self.rate.is_nan() || self.rate <= 0.0 {
            return false;
        }
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

    /// Spends every token at `now`, as another script of the lab would have.
    pub fn empty(&mut self, now: Instant) {
        self.tokens = 0.0;
        self.last = now;
    }
}

fn matches(filter: &Option<String>, operation: &str) -> bool {
    filter.as_deref().is_none_or(|op| op == operation)
}

#[derive(Default)]
pub(crate) struct Faults {
    queue: Vec<Queued>,
    fractions: Vec<FractionRule>,
    bucket: Option<TokenBucket>,
    pub(crate) latency: Duration,
    pub(crate) lost_destinations: HashSet<String>,
}

impl Faults {
    pub(crate) fn throttle_above(&mut self, requests_per_second: Option<f64>) {
        self.bucket = requests_per_second.map(|rate| TokenBucket::new(rate, Instant::now()));
    }

    /// Spends the account-wide bucket's tokens now, as another script of
    /// the lab would have; a no-op without a limit.
    pub(crate) fn empty_bucket(&mut self) {
        if let Some(bucket) = &mut self.bucket {
            bucket.empty(Instant::now());
        }
    }

    pub(crate) fn fail_next(&mut self, operation: Option<&str>, count: usize, fault: Fault) {
        if count > 0 {
            self.queue.push(Queued {
                operation: operation.map(str::to_owned),
                remaining: count,
                fault,
            });
        }
    }

    /// A new rule for the same operation filter replaces the old one, so a
    /// test can turn the rate up or down while traffic flows.
    pub(crate) fn fail_fraction(
        &mut self,
        operation: Option<&str>,
        fraction: f64,
        fault: Fault,
        seed: u64,
    ) {
        let operation = operation.map(str::to_owned);
        self.fractions.retain(|rule| rule.operation != operation);
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        if fraction > 0.0 {
            self.fractions.push(FractionRule {
                operation,
                fraction,
                fault,
                rng: SplitMix(seed),
            });
        }
    }

    pub(crate) fn clear(&mut self) {
        *self = Faults::default();
    }

    /// Whether the account-wide rate limit lets this request in.
    pub(crate) fn admit(&mut self, now: Instant) -> bool {
        self.bucket.as_mut().is_none_or(|bucket| bucket.admit(now))
    }

    /// The injected fault for this request, if any: queued faults first (they
    /// are what a test asked for explicitly), then the random ones.
    pub(crate) fn injected(&mut self, operation: &str) -> Option<Fault> {
        if let Some(index) = self
            .queue
            .iter()
            .position(|queued| matches(&queued.operation, operation))
        {
            let queued = &mut self.queue[index];
            let fault = queued.fault.clone();
            queued.remaining -= 1;
            if queued.remaining == 0 {
                self.queue.remove(index);
            }
            return Some(fault);
        }
        for rule in &mut self.fractions {
            if matches(&rule.operation, operation) && rule.rng.next_unit() < rule.fraction {
                return Some(rule.fault.clone());
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_faults_are_consumed_in_order_and_by_operation() {
        let mut faults = Faults::default();
        faults.fail_next(Some("GetAssignment"), 2, Fault::Throttle);
        faults.fail_next(None, 1, Fault::ServiceFault);
        assert_eq!(faults.injected("ListHITs"), Some(Fault::ServiceFault));
        assert_eq!(faults.injected("ListHITs"), None);
        assert_eq!(faults.injected("GetAssignment"), Some(Fault::Throttle));
        assert_eq!(faults.injected("GetAssignment"), Some(Fault::Throttle));
        assert_eq!(faults.injected("GetAssignment"), None);
    }

    #[test]
    fn fractions_are_deterministic_and_roughly_right() {
        let run = || {
            let mut faults = Faults::default();
            faults.fail_fraction(None, 0.25, Fault::Drop, 42);
            (0..4000)
                .map(|_| faults.injected("X").is_some())
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        let hits = first.iter().filter(|hit| **hit).count();
        assert!((800..1200).contains(&hits), "{hits}");
    }

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(5.0, start);
        let admitted = (0..10).filter(|_| bucket.admit(start)).count();
        assert_eq!(admitted, 5);
        assert!(bucket.admit(start + Duration::from_millis(200)));
        assert!(!bucket.admit(start + Duration::from_millis(200)));
    }

    #[test]
    fn an_emptied_bucket_admits_only_what_it_refilled() {
        let mut faults = Faults::default();
        faults.throttle_above(Some(5.0));
        faults.empty_bucket();
        let now = Instant::now();
        assert!(!faults.admit(now));
        // One token back after a fifth of a second, not the whole burst.
        let later = now + Duration::from_millis(250);
        assert!(faults.admit(later));
        assert!(!faults.admit(later));
    }
}
