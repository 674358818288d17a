//! The SQS-triggered Lambda: builds its clients once per cold start, then
//! hands each batch to the library's [`Handler`].

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use mturk_exclusion::aws::{self, Limits};
use mturk_exclusion::config::Config;
use mturk_exclusion::handler::{deadline_from_epoch_ms, Handler};
use mturk_exclusion::lambda::report_init_error;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "bad configuration");
            report_init_error("ConfigError", &e).await;
            return Err(e.into());
        }
    };
    let sdk = aws::load(None, Limits::default()).await;
    let handler = Arc::new(Handler::from_config(&config, &sdk));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let handler = Arc::clone(&handler);
        async move { handle(&handler, event).await }
    }))
    .await
}

async fn handle(
    handler: &Handler,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Diagnostic> {
    let deadline = deadline_from_epoch_ms(event.context.deadline);
    match handler.process(event.payload.records, deadline).await {
        Ok(report) => Ok(report.response()),
        Err(e) => Err(Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }),
    }
}
