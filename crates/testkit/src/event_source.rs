//! What Lambda's SQS event source mapping does, as a loop we can run here.
//!
//! Up to `max_concurrency` pollers each receive up to `batch_size` messages,
//! hand them to the function as an SQS event, and delete the records the
//! function did not report as failed. A function error, or a failure naming
//! an id that is not in the batch, deletes nothing, exactly as Lambda treats
//! them. Failed records come back after their visibility timeout, and the
//! queue's redrive policy moves them to the dead-letter queue.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use tokio::time::Instant;

use crate::Stack;

/// What one invocation of a function returns to the event source: the
/// partial batch response, or an error that fails the whole batch.
pub type Invocation = futures::future::BoxFuture<'static, Result<SqsBatchResponse, String>>;

#[derive(Debug, Clone)]
pub struct EventSource {
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: i32,
    pub max_concurrency: usize,
    /// moto cannot send as MTurk, so its messages carry moto's SenderId. Set
    /// this to present MTurk's documented sender to the function instead.
    pub sender_id_override: Option<String>,
}

/// Counts over one run.
#[derive(Debug, Default)]
pub struct Stats {
    pub invocations: AtomicU64,
    pub records: AtomicU64,
    pub failed_records: AtomicU64,
    pub failed_invocations: AtomicU64,
    pub deleted: AtomicU64,
    /// Receives that returned nothing: the drain check looks at the queue
    /// only after one of these.
    pub empty_receives: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub invocations: u64,
    pub records: u64,
    pub failed_records: u64,
    pub failed_invocations: u64,
    pub deleted: u64,
}

impl Stats {
    pub fn totals(&self) -> Totals {
        Totals {
            invocations: self.invocations.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            failed_records: self.failed_records.load(Ordering::Relaxed),
            failed_invocations: self.failed_invocations.load(Ordering::Relaxed),
            deleted: self.deleted.load(Ordering::Relaxed),
        }
    }
}

impl EventSource {
    pub fn new(queue_url: &str, queue_arn: &str) -> Self {
        EventSource {
            queue_url: queue_url.to_owned(),
            queue_arn: queue_arn.to_owned(),
            batch_size: 10,
            max_concurrency: 2,
            sender_id_override: None,
        }
    }

    /// Runs pollers until the queue (visible, in flight and delayed) stays
    /// empty, or `limit` passes. Returns the counts and whether it drained.
    pub async fn drain<F, Fut>(&self, stack: &Stack, invoke: F, limit: Duration) -> (Totals, bool)
    where
        F: Fn(SqsEvent) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = Result<SqsBatchResponse, String>> + Send,
    {
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let pollers: Vec<_> = (0..self.max_concurrency.max(1))
            .map(|_| {
                let this = self.clone();
                let sqs = stack.sqs.clone();
                let (invoke, stats, stop) = (invoke.clone(), stats.clone(), stop.clone());
                tokio::spawn(async move { this.poll(&sqs, invoke, &stats, &stop).await })
            })
            .collect();
        let started = Instant::now();
        let mut empty_checks = 0;
        let mut empty_receives = 0;
        let drained = loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Ask for the depth only once a poller found nothing: while
            // messages flow the answer is known, and moto computes it by
            // scanning the whole queue (three times), which at 70,000
            // messages took most of its only thread away from receives.
            let seen = stats.empty_receives.load(Ordering::Relaxed);
            if seen != empty_receives {
                empty_receives = seen;
                match stack.queue_depth(&self.queue_url).await {
                    Ok(0) => empty_checks += 1,
                    _ => empty_checks = 0,
                }
            }
            // Twice in a row: the counts are approximate.
            if empty_checks >= 2 {
                break true;
            }
            if started.elapsed() > limit {
                break false;
            }
        };
        stop.store(true, Ordering::Relaxed);
        for p in pollers {
            let _ = p.await;
        }
        (stats.totals(), drained)
    }

    async fn poll<F, Fut>(
        &self,
        sqs: &aws_sdk_sqs::Client,
        invoke: F,
        stats: &Stats,
        stop: &AtomicBool,
    ) where
        F: Fn(SqsEvent) -> Fut,
        Fut: Future<Output = Result<SqsBatchResponse, String>>,
    {
        while !stop.load(Ordering::Relaxed) {
            let received = sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(self.batch_size)
                .wait_time_seconds(1)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                // Lambda's events carry the message attributes too (the
                // handler reads those of records it sent back itself).
                .message_attribute_names("All")
                .send()
                .await;
            let messages = match received {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receive failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            if messages.is_empty() {
                stats.empty_receives.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let mut event = SqsEvent::default();
            event.records = messages.iter().map(|m| self.record(m)).collect();
            let handles: HashMap<String, String> = messages
                .iter()
                .filter_map(|m| Some((m.message_id.clone()?, m.receipt_handle.clone()?)))
                .collect();
            stats.invocations.fetch_add(1, Ordering::Relaxed);
            stats
                .records
                .fetch_add(messages.len() as u64, Ordering::Relaxed);
            let to_delete: Vec<&String> = match invoke(event).await {
                Ok(response) => {
                    let failed: HashSet<&str> = response
                        .batch_item_failures
                        .iter()
                        .map(|f| f.item_identifier.as_str())
                        .collect();
                    if failed.iter().any(|id| !handles.contains_key(*id)) {
                        // Lambda fails the whole batch for an empty or unknown identifier.
                        stats.failed_invocations.fetch_add(1, Ordering::Relaxed);
                        stats
                            .failed_records
                            .fetch_add(messages.len() as u64, Ordering::Relaxed);
                        Vec::new()
                    } else {
                        stats
                            .failed_records
                            .fetch_add(failed.len() as u64, Ordering::Relaxed);
                        handles
                            .iter()
                            .filter(|(id, _)| !failed.contains(id.as_str()))
                            .map(|(_, h)| h)
                            .collect()
                    }
                }
                Err(_) => {
                    stats.failed_invocations.fetch_add(1, Ordering::Relaxed);
                    stats
                        .failed_records
                        .fetch_add(messages.len() as u64, Ordering::Relaxed);
                    Vec::new()
                }
            };
            if to_delete.is_empty() {
                continue;
            }
            let entries: Vec<_> = to_delete
                .iter()
                .enumerate()
                .filter_map(|(i, h)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(format!("d{i}"))
                        .receipt_handle(h.as_str())
                        .build()
                        .ok()
                })
                .collect();
            match sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => {
                    stats
                        .deleted
                        .fetch_add(out.successful.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "delete failed")
                }
            }
        }
    }

    fn record(&self, m: &aws_sdk_sqs::types::Message) -> SqsMessage {
        let mut r = SqsMessage::default();
        r.message_id = m.message_id.clone();
        r.receipt_handle = m.receipt_handle.clone();
        r.body = m.body.clone();
        r.md5_of_body = m.md5_of_body.clone();
        r.attributes = m
            .attributes
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
            .collect();
        r.message_attributes = m
            .message_attributes
            .iter()
            .flatten()
            .map(|(k, v)| {
                let mut a = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
                a.string_value = v.string_value.clone();
                a.data_type = Some(v.data_type.clone());
                (k.clone(), a)
            })
            .collect();
        if let Some(sender) = &self.sender_id_override {
            r.attributes.insert("SenderId".into(), sender.clone());
        }
        r.event_source = Some("aws:sqs".into());
        r.event_source_arn = Some(self.queue_arn.clone());
        r.aws_region = Some("us-east-1".into());
        r
    }
}
