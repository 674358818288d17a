//! Local stand-ins shared by the tests, the quick start and the benchmark.
//!
//! - [`Stack`]: the local DynamoDB and SQS endpoints (started by
//!   `scripts/local-stack.sh`), with fresh, uniquely named tables and queues
//!   so tests can run side by side on one server.
//! - [`table`]: the ledger table, created from `template.yaml` itself.
//! - [`event_source`]: what Lambda's SQS event source mapping does, as a loop.
//! - [`pipeline`]: the whole pipeline from those parts plus the real handler,
//!   and a runner for the CLI binary against it.
//! - [`runtime_api`]: a Lambda Runtime API server, to drive the real binaries.
//! - [`function_url`]: a Lambda Function URL on 127.0.0.1 (payload 2.0, the template's CORS).
//! - [`dynamodb_local`]: a DynamoDB Local of a test's own, to kill and restart.
//! - [`emf`]: CloudWatch's rules for Embedded Metric Format lines, to hold the functions' logs to.
//!
//! The MTurk double is re-exported as [`mturk_double`].

pub mod dynamodb_local;
pub mod emf;
pub mod event_source;
pub mod function_url;
pub mod pipeline;
pub mod recorder;
pub mod runtime_api;
pub mod table;

pub use mturk_double;

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context as _};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::types::QueueAttributeName;

/// Endpoints of the local services, from the environment that
/// `scripts/local-stack.sh env` prints.
#[derive(Clone)]
pub struct Stack {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sdk: aws_config::SdkConfig,
}

/// A source queue with its dead-letter queue.
#[derive(Debug, Clone)]
pub struct Queues {
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
    pub dlq_arn: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other test in this or another process is using.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

impl Stack {
    /// Connects to the local services named by `AWS_ENDPOINT_URL_DYNAMODB`
    /// and `AWS_ENDPOINT_URL_SQS`, which must be on loopback.
    pub async fn from_env() -> anyhow::Result<Stack> {
        // Without these the SDK would look for credentials on the instance
        // metadata address, which is off this machine.
        for (var, wanted) in [
            ("AWS_REGION", None),
            ("AWS_ACCESS_KEY_ID", None),
            ("AWS_SECRET_ACCESS_KEY", None),
            ("AWS_EC2_METADATA_DISABLED", Some("true")),
        ] {
            let value = std::env::var(var).unwrap_or_default();
            if value.is_empty() || wanted.is_some_and(|w| w != value) {
                bail!(
                    "{var} must be set{}: run the tests with scripts/test.sh, or \
                     `eval \"$(scripts/local-stack.sh env)\"` first",
                    wanted.map(|w| format!(" to {w}")).unwrap_or_default()
                );
            }
        }
        for var in ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_SQS"] {
            let value = std::env::var(var).unwrap_or_default();
            if value.is_empty() {
                bail!(
                    "{var} is not set: run the tests with scripts/test.sh, or first \
                     `scripts/local-stack.sh start && eval \"$(scripts/local-stack.sh env)\"`"
                );
            }
            if !(value.starts_with("http://127.") || value.starts_with("http://localhost")) {
                bail!("{var}={value} is not a loopback address; tests only talk to 127.0.0.1");
            }
        }
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "testkit",
            ))
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .load()
            .await;
        Ok(Stack {
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            sdk,
        })
    }

    /// The same stack with DynamoDB at another endpoint (a test's own instance).
    pub fn with_dynamodb_endpoint(&self, endpoint: &str) -> Stack {
        let config = aws_sdk_dynamodb::config::Builder::from(&self.sdk)
            .endpoint_url(endpoint)
            .build();
        Stack {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(config),
            sqs: self.sqs.clone(),
            sdk: self.sdk.clone(),
        }
    }

    /// A fresh ledger table, created from template.yaml.
    pub async fn ledger_table(&self) -> anyhow::Result<String> {
        let name = unique_name("ledger");
        table::create_ledger_table(&self.dynamodb, &name).await?;
        Ok(name)
    }

    /// A fresh queue and dead-letter queue, wired with a redrive policy.
    pub async fn queues(
        &self,
        visibility_timeout_secs: u32,
        max_receive_count: u32,
    ) -> anyhow::Result<Queues> {
        let name = unique_name("exclusion");
        let dlq_url = self
            .sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            .send()
            .await
            .context("creating the dead-letter queue")?
            .queue_url
            .context("no dead-letter queue url")?;
        let dlq_arn = self.queue_arn(&dlq_url).await?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receive_count.to_string(),
        });
        let url = self
            .sqs
            .create_queue()
            .queue_name(&name)
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout_secs.to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .context("creating the queue")?
            .queue_url
            .context("no queue url")?;
        let arn = self.queue_arn(&url).await?;
        Ok(Queues {
            url,
            arn,
            dlq_url,
            dlq_arn,
        })
    }

    async fn queue_arn(&self, url: &str) -> anyhow::Result<String> {
        self.sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .context("reading a queue's ARN")?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .context("queue has no ARN")
    }

    /// Messages visible plus in flight plus delayed.
    pub async fn queue_depth(&self, url: &str) -> anyhow::Result<u64> {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .context("reading queue depth")?
            .attributes
            .unwrap_or_default();
        Ok(attrs.values().filter_map(|v| v.parse::<u64>().ok()).sum())
    }

    /// Receives (and deletes) everything currently visible in a queue; for
    /// looking into the dead-letter queue.
    pub async fn drain_bodies(&self, url: &str) -> anyhow::Result<Vec<String>> {
        let mut bodies = Vec::new();
        for _ in 0..1000 {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .context("receiving")?;
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                if let Some(h) = m.receipt_handle {
                    self.sqs
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(h)
                        .send()
                        .await
                        .context("deleting")?;
                }
                bodies.extend(m.body);
            }
        }
        Ok(bodies)
    }
}
