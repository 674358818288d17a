//! How MTurk calls are counted and how throttled ones are retried: the
//! task-locals that carry a piece of work's call count and its throttle
//! deadline, and the SDK retry classifier that leaves throttling to the
//! limiter.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_mturk::config::interceptors::InterceptorContext;
use aws_sdk_mturk::config::retry::{ClassifyRetry, RetryAction};
use aws_sdk_mturk::error::ProvideErrorMetadata;
use tokio::time::Instant;

use super::error::each_operation_error;
#[cfg(doc)]
use super::{Mturk, MturkErrorKind};

tokio::task_local! {
    /// Until when a throttled call may wait for its next slot and try again.
    static THROTTLE_DEADLINE: Instant;
}

tokio::task_local! {
    /// Where the calls of one piece of work are counted, if anywhere.
    pub(super) static CALLS: Arc<CallCounter>;
}

#[derive(Default)]
pub(super) struct CallCounter {
    pub(super) sent: AtomicU64,
    pub(super) throttled: AtomicU64,
}

/// MTurk calls made by one piece of work (see [`counting_calls`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCount {
    /// Calls sent: each attempt, throttled ones included.
    pub sent: u64,
    /// Of those, how many MTurk throttled.
    pub throttled: u64,
}

/// Runs `work`, counting the MTurk calls it makes (in its own task, as the
/// handler's records are): the handler's metrics per invocation, exact even
/// when several batches share one [`Mturk`] at once.
pub async fn counting_calls<F: Future>(work: F) -> (F::Output, CallCount) {
    let counter = Arc::new(CallCounter::default());
    let output = CALLS.scope(counter.clone(), work).await;
    let count = CallCount {
        sent: counter.sent.load(Ordering::Relaxed),
        throttled: counter.throttled.load(Ordering::Relaxed),
    };
    (output, count)
}

/// How long a throttled call keeps retrying when no deadline was set (the CLI).
pub const THROTTLE_BUDGET: Duration = Duration::from_secs(120);

/// Throttled calls are retried at most this often, whatever the time left.
pub(super) const MAX_THROTTLED_ATTEMPTS: u32 = 50;

/// Runs `work` so that its throttled MTurk calls wait in the process for
/// their next slot and try again, until `deadline`; only then does a call
/// fail as [`MturkErrorKind::Throttled`]. Without it a call keeps retrying
/// for [`THROTTLE_BUDGET`].
pub async fn retrying_throttles_until<F: Future>(deadline: Instant, work: F) -> F::Output {
    THROTTLE_DEADLINE.scope(deadline, work).await
}

pub(super) fn throttle_deadline() -> Instant {
    THROTTLE_DEADLINE
        .try_with(|d| *d)
        .unwrap_or_else(|_| Instant::now() + THROTTLE_BUDGET)
}

/// MTurk's throttling, as `classify` and the SDK's retry classifier see it.
pub(super) fn is_throttling(code: Option<&str>, message: Option<&str>) -> bool {
    code.unwrap_or_default().contains("Throttl")
        || message.unwrap_or_default().contains("Rate exceeded")
}

/// Keeps the SDK from retrying throttled MTurk calls. Those retries would
/// go out unspaced, behind the limiter's back, and hide from it that MTurk
/// is throttling until all attempts failed; `Mturk` retries them itself,
/// each in a slot of the (then slower) limiter. Transient faults are still
/// the SDK's to retry.
#[derive(Debug)]
pub(crate) struct ThrottlesGoToTheLimiter;

impl ClassifyRetry for ThrottlesGoToTheLimiter {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(err)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        let Some(err) = err.as_operation_error() else {
            return RetryAction::NoActionIndicated;
        };
        macro_rules! throttled {
            ($($error:ty),* $(,)?) => {
                $(if let Some(e) = err.downcast_ref::<$error>() {
                    return if is_throttling(e.code(), e.message()) {
                        RetryAction::RetryForbidden
                    } else {
                        RetryAction::NoActionIndicated
                    };
                })*
            };
        }
        each_operation_error!(throttled);
        RetryAction::NoActionIndicated
    }

    fn name(&self) -> &'static str {
        "ThrottlesGoToTheLimiter"
    }
}
