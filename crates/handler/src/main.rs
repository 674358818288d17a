//! The SQS-triggered Lambda: builds its clients once per cold start, then
//! hands each batch to the library's [`Handler`]. One CloudWatch EMF line
//! per invocation (`MturkExclusion` metrics by `Pool`, no ids), written to
//! stdout whatever the batch came to.

use std::io::Write as _;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use mturk_exclusion::aws::{self, Limits};
use mturk_exclusion::config::Config;
use mturk_exclusion::handler::Handler;
use mturk_exclusion::lambda::{configured, deadline_from_epoch_ms};
use mturk_exclusion::metrics;

// One thread: a batch's records already share one task (the handler's
// `buffer_unordered`), so a second worker thread only adds hand-offs between
// threads (the HTTP connections' tasks waking the handler's, and back) for
// every request, which cost CPU and add no parallelism. Lambda gives a 128 MB
// function a fraction of one vCPU anyway.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = configured(Config::from_env()).await?;
    let limits = Limits {
        stalled_stream_protection: false,
        ..Limits::default()
    };
    let sdk = aws::load(None, limits).await;
    let handler = Arc::new(Handler::from_config(&config, &sdk));
    let pool: Arc<str> = metrics::pool_from_env().into();
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = Arc::clone(&handler);
        let pool = Arc::clone(&pool);
        async move { handle(&handler, &pool, event).await }
    }))
    .await
}

async fn handle(
    handler: &Handler,
    pool: &str,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Diagnostic> {
    let deadline = deadline_from_epoch_ms(event.context.deadline);
    let (result, measured) = handler
        .process_measured(event.payload.records, deadline)
        .await;
    {
        // Straight to stdout, one JSON line each (CloudWatch reads EMF from the log).
        let mut out = std::io::stdout().lock();
        for line in measured.emf_lines(pool, metrics::now_ms()) {
            let _ = writeln!(out, "{line}");
        }
    }
    match result {
        Ok(report) => Ok(report.response()),
        Err(e) => Err(Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }),
    }
}
