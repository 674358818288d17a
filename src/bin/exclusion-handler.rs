//! The Lambda: builds its clients once per cold start, then serves batches.

use std::sync::Arc;

use lambda_runtime::{service_fn, LambdaEvent};
use mturk_exclusion::aws::{self, Limits};
use mturk_exclusion::config::Config;
use mturk_exclusion::handler::{self, Handler};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(error = %e, "bad configuration");
            handler::report_init_error("ConfigError", &e).await;
            return Err(e.into());
        }
    };
    let sdk = aws::load(None, Limits::default()).await;
    let handler = Arc::new(Handler::from_config(&config, &sdk));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<_>| {
        let handler = Arc::clone(&handler);
        async move { handler.handle(event).await }
    }))
    .await
}
