//! The scheduled Lambda: builds its clients once per cold start, then each
//! invocation is one run of the library's [`watch::run`]. The event's
//! content is ignored, so the schedule's event and a hand invocation with
//! `{}` do the same. One CloudWatch EMF line per run (`UnguardedHits`,
//! `HitTypesSubscribed`, `SubmissionsBackfilled`, `WatchErrors` by `Pool`,
//! no ids); the run's report (no worker ids) is the invocation's answer.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use mturk_exclusion::aws::{self, Clients, Limits};
use mturk_exclusion::config::Config;
use mturk_exclusion::lambda::{configured, deadline_from_epoch_ms};
use mturk_exclusion::metrics;
use mturk_exclusion::ops::watch::{self, Settings};
use mturk_exclusion::ops::Lab;
use serde_json::Value;

// One thread, as the handler: the run's concurrent work is one task's
// futures, and Lambda gives a small function a fraction of one vCPU.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let (config, settings) =
        configured(Config::from_env().and_then(|c| Ok((c, Settings::from_env()?)))).await?;
    let limits = Limits {
        stalled_stream_protection: false,
        ..Limits::default()
    };
    let sdk = aws::load(None, limits).await;
    let lab = Arc::new(Lab::from_config(&config, &Clients::from_sdk(&config, &sdk)));
    let settings = Arc::new(settings);
    let margin = config.deadline_margin;
    let pool: Arc<str> = metrics::pool_from_env().into();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (lab, settings, pool) = (lab.clone(), settings.clone(), pool.clone());
        async move { handle(&lab, &settings, margin, &pool, event).await }
    }))
    .await
}

async fn handle(
    lab: &Lab,
    settings: &Settings,
    margin: Duration,
    pool: &str,
    event: LambdaEvent<Value>,
) -> Result<Value, Diagnostic> {
    // Stop starting work a margin before Lambda's own deadline, so the run
    // ends cleanly and writes its heartbeat; the rest is the next run's.
    let lambda_deadline = deadline_from_epoch_ms(event.context.deadline);
    let deadline = lambda_deadline
        .checked_sub(margin)
        .unwrap_or(lambda_deadline);
    // Boxed: the run's future is deep enough to overflow the compiler's
    // layout recursion when inlined into the runtime's.
    let report = Box::pin(watch::run(lab, settings, deadline)).await;
    {
        let mut out = std::io::stdout().lock();
        for line in report.emf_lines(pool, metrics::now_ms()) {
            let _ = writeln!(out, "{line}");
        }
    }
    for e in &report.errors {
        tracing::warn!(error = %e, "watch");
    }
    tracing::info!(
        hits = report.counts.hits,
        live_unguarded = report.counts.live_unguarded,
        hit_types_subscribed = report.hit_types_subscribed.len(),
        submissions_backfilled = report.submissions_backfilled,
        backfill_left = report.backfill_left.len(),
        errors = report.errors.len(),
        mturk_calls = report.mturk_calls,
        "watch run"
    );
    serde_json::to_value(&report).map_err(|e| Diagnostic {
        error_type: "ReportError".into(),
        error_message: e.to_string(),
    })
}
