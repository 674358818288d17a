//! Reading the lab's SQS queues: how many messages each holds, and which
//! dead-letter queue belongs to a queue. Shared by `status`, `subscribe` and
//! `redrive`; read-only, and a queue that cannot be read is an answer
//! (`Probe`), not an error.

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;

use crate::aws::describe_sdk_error as describe_sqs;

/// Message counts of one queue, as SQS approximates them.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Depth {
    /// Waiting to be received.
    pub visible: u64,
    /// Received by a consumer and not yet deleted (being processed, or failed
    /// and waiting for the visibility timeout).
    pub in_flight: u64,
    pub delayed: u64,
}

impl Depth {
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

/// What reading a queue's attributes came to.
#[derive(Debug, Clone)]
pub enum Probe {
    Found(Depth),
    NotFound,
    /// Could not tell (permissions, network): the message says why.
    Unreadable(String),
}

impl Probe {
    /// The depth, when the queue could be read.
    pub fn depth(&self) -> Option<Depth> {
        match self {
            Probe::Found(d) => Some(*d),
            _ => None,
        }
    }
}

/// SQS's "no such queue", whichever protocol (JSON or the older query
/// protocol's code) the endpoint answered with.
fn is_queue_missing<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    matches!(
        err.code(),
        Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue")
    )
}

/// What to check when a queue is not found.
pub const QUEUE_NOT_FOUND_HINT: &str = "check --queue-url / --dlq-url (or --stack) and the region (AWS_REGION or the profile's): a queue URL names its region and account";

pub async fn probe(sqs: &aws_sdk_sqs::Client, url: &str) -> Probe {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await;
    match out {
        Ok(out) => {
            let attrs = out.attributes.unwrap_or_default();
            let count = |name: &QueueAttributeName| {
                attrs
                    .get(name)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            Probe::Found(Depth {
                visible: count(&QueueAttributeName::ApproximateNumberOfMessages),
                in_flight: count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
                delayed: count(&QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            })
        }
        Err(e) if is_queue_missing(&e) => Probe::NotFound,
        Err(e) => Probe::Unreadable(describe_sqs(&e)),
    }
}

/// The dead-letter queue named by the queue's redrive policy, if it has one
/// and SQS tells us its URL. Best effort: `None` on any failure.
async fn dead_letter_queue_of(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Option<String> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .ok()?
        .attributes?;
    let policy: serde_json::Value =
        serde_json::from_str(attrs.get(&QueueAttributeName::RedrivePolicy)?).ok()?;
    // arn:aws:sqs:<region>:<account>:<name>
    let arn = policy.get("deadLetterTargetArn")?.as_str()?;
    let mut parts = arn.splitn(6, ':');
    let (account, name) = (parts.nth(4)?, parts.next()?);
    sqs.get_queue_url()
        .queue_name(name)
        .queue_owner_aws_account_id(account)
        .send()
        .await
        .ok()?
        .queue_url
}

/// The dead-letter queue to use: the one the lab named (flag or stack),
/// else the queue's redrive target. An empty URL counts as none given.
pub async fn resolve_dlq(
    sqs: &aws_sdk_sqs::Client,
    named: Option<&str>,
    queue_url: Option<&str>,
) -> Option<String> {
    if let Some(url) = named.filter(|u| !u.is_empty()) {
        return Some(url.to_owned());
    }
    let queue = queue_url.filter(|u| !u.is_empty())?;
    dead_letter_queue_of(sqs, queue).await
}
