//! What only the Lambda functions need (feature `lambda`): the CLI never
//! links it.

use std::time::Duration;

use tokio::time::Instant;

/// Tells Lambda why the function could not start (`POST /runtime/init/error`),
/// so that the console and the invocation that hit the cold start show our
/// reason as `Runtime.InitError` instead of an anonymous `Runtime.ExitError`.
/// lambda_runtime reports init errors only for SnapStart hooks, hence our own
/// request. Best effort: outside Lambda (no `AWS_LAMBDA_RUNTIME_API`) it does
/// nothing, and a failed report is logged; the caller exits with the original
/// error either way.
pub async fn report_init_error(error_type: &str, error: &(dyn std::error::Error + 'static)) {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        message.push_str(": ");
        message.push_str(&e.to_string());
        cause = e.source();
    }
    let diagnostic = lambda_runtime::Diagnostic {
        error_type: error_type.to_owned(),
        error_message: message,
    };
    let sent = async {
        let base: http::Uri = format!("http://{api}").parse()?;
        let client = lambda_runtime_api_client::Client::builder()
            .with_endpoint(base)
            .build()?;
        let request = lambda_runtime_api_client::build_request()
            .method(http::Method::POST)
            .uri("/2018-06-01/runtime/init/error")
            .header("lambda-runtime-function-error-type", "Runtime.InitError")
            .body(serde_json::to_vec(&diagnostic)?.into())?;
        let response = client.call(request).await?;
        if !response.status().is_success() {
            return Err(format!("the Runtime API answered {}", response.status()).into());
        }
        Ok::<_, lambda_runtime::Error>(())
    };
    if let Err(e) = sent.await {
        tracing::error!(error = %e, "could not report the start-up failure to the Lambda Runtime API");
    }
}

/// The function's configuration, or, when it is bad, the error logged and
/// reported to Lambda ([`report_init_error`]) and returned for `main` to
/// exit with: every function starts this way.
pub async fn configured<T, E>(loaded: Result<T, E>) -> Result<T, lambda_runtime::Error>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match loaded {
        Ok(config) => Ok(config),
        Err(e) => {
            tracing::error!(error = %e, "bad configuration");
            report_init_error("ConfigError", &e).await;
            Err(e.into())
        }
    }
}

/// Lambda gives the deadline in milliseconds since the epoch.
pub fn deadline_from_epoch_ms(deadline_ms: u64) -> Instant {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Instant::now() + Duration::from_millis(remaining_ms(deadline_ms, now_ms))
}

/// Lambda's own limit on an invocation.
const MAX_INVOCATION_MS: u64 = 900_000;

/// Milliseconds left before `deadline_ms`. A value before the year 2000
/// cannot be an epoch deadline: cargo-lambda's emulator sends the timeout
/// itself (600000, ten minutes), and reading it as a time in 1970 would fail
/// every record. Such a value, or none, is taken as a duration, at most
/// Lambda's 15 minutes.
fn remaining_ms(deadline_ms: u64, now_ms: u64) -> u64 {
    const YEAR_2000_MS: u64 = 946_684_800_000;
    match deadline_ms {
        0 => MAX_INVOCATION_MS,
        d if d < YEAR_2000_MS => d.min(MAX_INVOCATION_MS),
        d => d.saturating_sub(now_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_epoch_times_unless_they_cannot_be() {
        let now = 1_795_000_000_000; // 2026
        assert_eq!(remaining_ms(now + 60_000, now), 60_000);
        assert_eq!(
            remaining_ms(now - 5, now),
            0,
            "a real deadline already past"
        );
        assert_eq!(
            remaining_ms(600_000, now),
            600_000,
            "cargo-lambda's timeout"
        );
        assert_eq!(remaining_ms(0, now), MAX_INVOCATION_MS);
        assert_eq!(remaining_ms(5_000_000, now), MAX_INVOCATION_MS);
    }
}
