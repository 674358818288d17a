//! The accept-time check (Function URL, `lambda_http`): builds its client
//! once per cold start, then hands each request to the library's
//! [`mturk_exclusion::check`] rules. One CloudWatch EMF line per request;
//! no CORS headers (Lambda adds them from the URL's `Cors` block) and no
//! worker ids in the logs.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use lambda_http::tracing::subscriber::EnvFilter;
use lambda_http::{service_fn, Body, Error, Request, Response};
use mturk_exclusion::aws::{self, Limits};
use mturk_exclusion::check::{emf_line, log_filter, respond, CheckConfig, Checker};
use mturk_exclusion::lambda::configured;
use time::OffsetDateTime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_logs();
    let config = configured(CheckConfig::from_env()).await?;
    // A HIT page waits for the answer (and fails open after 4 s): short
    // timeouts, two attempts, well inside the function's 5 s.
    let limits = Limits {
        connect: std::time::Duration::from_millis(500),
        attempt: std::time::Duration::from_millis(1200),
        operation: std::time::Duration::from_millis(3000),
        max_attempts: 2,
        initial_backoff: std::time::Duration::from_millis(50),
        ..Limits::default()
    };
    let sdk = aws::load(None, limits).await;
    let checker = Arc::new(Checker::from_config(&config, &sdk));
    let pool: Arc<str> = config.pool.into();
    lambda_http::run(service_fn(move |request: Request| {
        let checker = Arc::clone(&checker);
        let pool = Arc::clone(&pool);
        async move { handle(&checker, &pool, request).await }
    }))
    .await
}

/// Like `lambda_http::tracing::init_default_subscriber`, but with
/// [`log_filter`]: the runtime and the SDKs never log below INFO here, as
/// at DEBUG and TRACE they log the request (its query string names the
/// worker). `RUST_LOG` is not read, for the same reason.
fn init_logs() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok();
    let filter = EnvFilter::builder().parse_lossy(log_filter(level.as_deref()));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let logs = lambda_http::tracing::subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
}

async fn handle(checker: &Checker, pool: &str, request: Request) -> Result<Response<Body>, Error> {
    let started = Instant::now();
    let body_len = match request.body() {
        Body::Empty => 0,
        Body::Text(t) => t.len(),
        Body::Binary(b) => b.len(),
        _ => 0,
    };
    let answer = respond(
        checker,
        request.method().as_str(),
        request.uri().query(),
        body_len,
        OffsetDateTime::now_utc(),
    )
    .await;
    tracing::debug!(
        status = answer.status,
        reason = answer.metric_reason,
        "answered"
    );
    let timestamp_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let line = emf_line(pool, answer.metric_reason, started.elapsed(), timestamp_ms);
    // One line, straight to stdout (CloudWatch reads EMF from the log).
    let _ = writeln!(std::io::stdout().lock(), "{line}");
    let mut response = Response::builder()
        .status(answer.status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store");
    if answer.status == 405 {
        response = response.header("allow", "GET");
    }
    Ok(response.body(Body::Text(answer.body))?)
}
