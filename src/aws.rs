//! Building the SDK clients: one HTTP client, explicit timeouts, bounded retries.
//!
//! The SDK has no default operation or attempt timeouts, and some dispatch
//! failures are never retried; without limits a hung connection would outlive
//! the Lambda invocation and the batch would time out whole. So every client
//! gets attempt and operation timeouts well inside the function's timeout.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_types::retry::ReconnectMode;

use crate::mturk::MturkEnvironment;

/// The AWS clients a function talks through, built once per cold start.
#[derive(Clone)]
pub struct Clients {
    pub mturk: aws_sdk_mturk::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
}

impl Clients {
    /// MTurk by `MTURK_ENVIRONMENT` (or `AWS_ENDPOINT_URL_MTURK`), the
    /// others as the SDK config says.
    pub fn from_sdk(config: &crate::config::Config, sdk: &SdkConfig) -> Self {
        Clients {
            mturk: mturk_client(
                sdk,
                config.mturk_environment,
                config.mturk_endpoint.as_deref(),
            ),
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            sqs: aws_sdk_sqs::Client::new(sdk),
        }
    }
}

/// MTurk only exists in us-east-1, whatever region the stack is in.
pub const MTURK_REGION: &str = "us-east-1";

/// Timeouts and retries for every client.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connect: Duration,
    pub attempt: Duration,
    pub operation: Duration,
    pub max_attempts: u32,
    /// The first retry's backoff ceiling; the SDK doubles it per attempt, with jitter.
    pub initial_backoff: Duration,
    /// The SDK's stalled-stream protection (on by default). The handler
    /// turns it off: every response it reads is a small JSON body (no
    /// streaming operation), read inside the attempt, and the attempt
    /// timeout ends a stalled one long before the protection's 20 s grace
    /// period could; without it, its interceptor and body wrapper are saved
    /// on every request (BENCHMARKS.md, "Cheap knobs").
    pub stalled_stream_protection: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect: Duration::from_secs(3),
            attempt: Duration::from_secs(5),
            // Three attempts with backoff fit in here; the handler's deadline
            // margin is larger than this, so a started record always ends
            // before the invocation does.
            operation: Duration::from_secs(10),
            max_attempts: 3,
            initial_backoff: Duration::from_secs(1),
            stalled_stream_protection: true,
        }
    }
}

/// Loads the standard chain (environment, profile, SSO, container/instance
/// credentials) with our HTTP client and limits. `AWS_ENDPOINT_URL_DYNAMODB`
/// and `AWS_ENDPOINT_URL_SQS` are honoured by the SDK itself.
pub async fn load(profile: Option<&str>, limits: Limits) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        // rustls on ring: a smaller binary than the SDK's aws-lc default, and
        // it cross-builds to arm64 with zig alone.
        .http_client(
            aws_smithy_http_client::Builder::new()
                .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                .build_https(),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(limits.connect)
                .operation_attempt_timeout(limits.attempt)
                .operation_timeout(limits.operation)
                .build(),
        )
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(limits.max_attempts)
                .with_initial_backoff(limits.initial_backoff)
                .with_reconnect_mode(ReconnectMode::ReconnectOnTransientError),
        );
    if !limits.stalled_stream_protection {
        loader = loader.stalled_stream_protection(StalledStreamProtectionConfig::disabled());
    }
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    let config = loader.load().await;
    if config.region().is_some() {
        config
    } else {
        // A laptop without a configured region still reaches MTurk; the
        // ledger and queue need one, and error out naming it if it is wrong.
        config
            .into_builder()
            .region(Region::new(MTURK_REGION))
            .build()
    }
}

/// The MTurk client: always signed for us-east-1, endpoint by environment
/// unless `endpoint_override` (from `AWS_ENDPOINT_URL_MTURK`) says otherwise.
///
/// Its SDK retries transient faults but never throttling: a throttled call
/// goes back to `Mturk`, whose rate limiter slows down and retries it in its
/// next slot (an SDK retry would go out behind the limiter's back, and hide
/// the throttle from it until every attempt failed).
pub fn mturk_client(
    sdk: &SdkConfig,
    environment: MturkEnvironment,
    endpoint_override: Option<&str>,
) -> aws_sdk_mturk::Client {
    let endpoint = endpoint_override.unwrap_or(environment.endpoint());
    let config = aws_sdk_mturk::config::Builder::from(sdk)
        .region(Region::new(MTURK_REGION))
        .endpoint_url(endpoint)
        .retry_classifier(crate::mturk::ThrottlesGoToTheLimiter)
        .build();
    aws_sdk_mturk::Client::from_conf(config)
}

/// An SDK error as one line for a person: the service's code and message
/// when it sent them, else the whole context (connection refused, timeout).
pub fn describe_sdk_error<E, R>(err: &aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_sqs::error::ProvideErrorMetadata as _;
    match (err.code(), err.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => aws_sdk_sqs::error::DisplayErrorContext(err).to_string(),
    }
}
