//! `redrive`'s rules: peek at the dead-letter queue, and move its messages
//! back to the queue without losing one. A message is deleted from the
//! dead-letter queue only after SQS accepted its copy; one whose delete fails
//! is then in both queues, which is harmless (the handler treats copies as
//! duplicates).

use std::collections::HashMap;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use serde::Serialize;
use time::OffsetDateTime;

use crate::aws::describe_sdk_error as describe_sqs;
use crate::notification::Notification;
use crate::ops::Progress;

/// Long enough to send and delete a batch; a message we could not send comes
/// back by itself after this even if resetting its visibility fails.
const MOVE_VISIBILITY_SECS: i32 = 60;
/// Long enough to page through the DLQ once without seeing a message twice.
const PEEK_VISIBILITY_SECS: i32 = 30;
const PREVIEW_CHARS: usize = 100;

/// One message of the dead-letter queue, as a dry run lists it.
#[derive(Serialize)]
pub struct Peeked {
    /// SQS always names its messages; `None` would be shown, never invented.
    pub message_id: Option<String>,
    pub receive_count: Option<u64>,
    pub sent_at: Option<String>,
    pub body_preview: String,
    /// Whether the body parses as an MTurk notification document.
    pub notification: bool,
    /// Why it does not, if it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What a dry run saw.
#[derive(Serialize)]
pub struct DryRun {
    pub dry_run: bool,
    pub dead_letter_queue_url: String,
    pub count: usize,
    pub messages: Vec<Peeked>,
}

/// What moving came to.
#[derive(Serialize)]
pub struct Moved {
    pub dry_run: bool,
    pub dead_letter_queue_url: String,
    pub queue_url: String,
    /// Sent to the queue and deleted from the dead-letter queue.
    pub moved: u64,
    /// Not sent: still in the dead-letter queue.
    pub failed: u64,
    /// Sent but not deleted from the dead-letter queue: now in both (harmless).
    pub not_deleted: u64,
    pub errors: Vec<String>,
}

async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    max: u64,
    visibility: i32,
) -> Result<Vec<Message>, String> {
    sqs.receive_message()
        .queue_url(url)
        .max_number_of_messages(max.clamp(1, 10) as i32)
        .wait_time_seconds(1)
        .visibility_timeout(visibility)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
        .message_attribute_names("All")
        .send()
        .await
        .map(|out| out.messages.unwrap_or_default())
        .map_err(|e| format!("ReceiveMessage from {url}: {}", describe_sqs(&e)))
}

/// Makes messages visible again at once. Best effort: on failure they come
/// back by themselves after their visibility timeout.
async fn make_visible(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    handles: &[String],
) -> Result<(), String> {
    let mut failures = 0;
    for chunk in handles.chunks(10) {
        let entries: Vec<_> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(format!("v{i}"))
                    .receipt_handle(h)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        match sqs
            .change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => failures += out.failed.len(),
            Err(_) => failures += chunk.len(),
        }
    }
    if failures > 0 {
        return Err(format!(
            "{failures} message(s) could not be made visible again; they will be after their visibility timeout"
        ));
    }
    Ok(())
}

/// Moves up to `max` messages (all, without it) from the dead-letter queue
/// to the queue, batch by batch; stops at the first batch that cannot be
/// sent at all, since the next would fail the same way. Messages it could
/// not send are made visible again before it returns.
pub async fn move_messages(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    queue_url: &str,
    max: Option<u64>,
    progress: &dyn Progress,
) -> Moved {
    let mut mover = Mover {
        sqs,
        dlq_url,
        queue_url,
        report: Moved {
            dry_run: false,
            dead_letter_queue_url: dlq_url.to_owned(),
            queue_url: queue_url.to_owned(),
            moved: 0,
            failed: 0,
            not_deleted: 0,
            errors: Vec::new(),
        },
        unsent_handles: Vec::new(),
    };
    loop {
        let done = mover.handled();
        let remaining = max.map_or(u64::MAX, |m| m.saturating_sub(done));
        if remaining == 0 || !mover.move_batch(remaining).await {
            break;
        }
        for _ in done..mover.handled() {
            progress.inc();
        }
    }
    progress.finish();
    let mut report = mover.report;
    if let Err(e) = make_visible(sqs, dlq_url, &mover.unsent_handles).await {
        note(&mut report.errors, e);
    }
    report
}

/// One redrive under way: what it did so far, and the messages it could not
/// send, held invisible until the end so the loop does not pick them up again.
struct Mover<'a> {
    sqs: &'a aws_sdk_sqs::Client,
    dlq_url: &'a str,
    queue_url: &'a str,
    report: Moved,
    unsent_handles: Vec<String>,
}

impl Mover<'_> {
    fn handled(&self) -> u64 {
        self.report.moved + self.report.failed + self.report.not_deleted
    }

    /// Receives, sends and deletes one batch; false when there is nothing
    /// (more) to move, or the batch showed that the next would fail too.
    async fn move_batch(&mut self, remaining: u64) -> bool {
        let messages = match receive(self.sqs, self.dlq_url, remaining, MOVE_VISIBILITY_SECS).await
        {
            Ok(m) if m.is_empty() => return false,
            Ok(m) => m,
            Err(e) => {
                note(&mut self.report.errors, e);
                return false;
            }
        };
        let (mut handles, entries) = self.entries(&messages);
        if entries.is_empty() {
            return false;
        }
        let Some(sent) = self.send(&mut handles, entries).await else {
            return false;
        };
        let to_delete: Vec<_> = sent
            .successful
            .iter()
            .filter_map(|s| {
                let handle = handles.get(s.id())?;
                DeleteMessageBatchRequestEntry::builder()
                    .id(s.id())
                    .receipt_handle(handle)
                    .build()
                    .ok()
            })
            .collect();
        if to_delete.is_empty() {
            // Nothing in this batch could be sent: the cause is not passing.
            return false;
        }
        self.delete(to_delete).await;
        true
    }

    /// The batch's copies to send, by entry id with their receipt handles.
    fn entries(
        &mut self,
        messages: &[aws_sdk_sqs::types::Message],
    ) -> (HashMap<String, String>, Vec<SendMessageBatchRequestEntry>) {
        let mut handles = HashMap::new();
        let mut entries = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let (Some(handle), Some(body)) = (m.receipt_handle(), m.body()) else {
                continue;
            };
            let id = format!("m{i}");
            let entry = SendMessageBatchRequestEntry::builder()
                .id(&id)
                .message_body(body)
                .set_message_attributes(m.message_attributes.clone())
                .build();
            match entry {
                Ok(entry) => {
                    handles.insert(id, handle.to_owned());
                    entries.push(entry);
                }
                Err(e) => {
                    self.report.failed += 1;
                    self.unsent_handles.push(handle.to_owned());
                    note(
                        &mut self.report.errors,
                        format!("could not build a message: {e}"),
                    );
                }
            }
        }
        (handles, entries)
    }

    /// Sends the copies; those that failed are taken out of `handles` and
    /// kept to be made visible again. None when the whole batch failed.
    async fn send(
        &mut self,
        handles: &mut HashMap<String, String>,
        entries: Vec<SendMessageBatchRequestEntry>,
    ) -> Option<aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput> {
        let queue_url = self.queue_url;
        let sent = match self
            .sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                // The whole batch failed; the next one would too.
                self.report.failed += handles.len() as u64;
                self.unsent_handles.extend(handles.drain().map(|(_, h)| h));
                note(
                    &mut self.report.errors,
                    format!("SendMessageBatch to {queue_url}: {}", describe_sqs(&e)),
                );
                return None;
            }
        };
        for f in &sent.failed {
            if let Some(h) = handles.remove(f.id()) {
                self.report.failed += 1;
                self.unsent_handles.push(h);
            }
            note(
                &mut self.report.errors,
                format!(
                    "SendMessage to {queue_url}: {}: {}",
                    f.code(),
                    f.message().unwrap_or("no message")
                ),
            );
        }
        Some(sent)
    }

    /// Deletes the originals of the copies that were sent.
    async fn delete(&mut self, to_delete: Vec<DeleteMessageBatchRequestEntry>) {
        let dlq_url = self.dlq_url;
        let sent_count = to_delete.len() as u64;
        match self
            .sqs
            .delete_message_batch()
            .queue_url(dlq_url)
            .set_entries(Some(to_delete))
            .send()
            .await
        {
            Ok(out) => {
                self.report.not_deleted += out.failed.len() as u64;
                self.report.moved += sent_count - out.failed.len() as u64;
                for f in &out.failed {
                    note(
                        &mut self.report.errors,
                        format!("DeleteMessage from {dlq_url}: {}", f.code()),
                    );
                }
            }
            Err(e) => {
                self.report.not_deleted += sent_count;
                note(
                    &mut self.report.errors,
                    format!("DeleteMessageBatch from {dlq_url}: {}", describe_sqs(&e)),
                );
            }
        }
    }
}

/// Keeps each distinct error once: a failing batch repeats the same one.
fn note(errors: &mut Vec<String>, e: String) {
    if !errors.contains(&e) {
        errors.push(e);
    }
}

fn preview(body: &str) -> String {
    let mut out = String::new();
    for (i, c) in body.chars().enumerate() {
        if i == PREVIEW_CHARS {
            out.push('\u{2026}');
            break;
        }
        // Bodies are anyone's text: keep control characters off the terminal.
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn peeked(m: &Message) -> Peeked {
    let attr = |name: MessageSystemAttributeName| {
        m.attributes
            .as_ref()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let sent_at = attr(MessageSystemAttributeName::SentTimestamp)
        .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .map(crate::ledger::stamp);
    let body = m.body().unwrap_or_default();
    let problem = Notification::parse(body).err().map(|e| e.to_string());
    Peeked {
        message_id: m.message_id().map(str::to_owned),
        receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount),
        sent_at,
        body_preview: preview(body),
        notification: problem.is_none(),
        problem,
    }
}

/// Lists up to `max` messages of the dead-letter queue (all, without it)
/// without moving any, and makes them visible again. Receiving adds one to
/// each message's receive count. The error is a failed receive; a failed
/// release comes back as the warning beside the listing (the messages come
/// back by themselves after their visibility timeout).
pub async fn peek(
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    max: Option<u64>,
) -> Result<(DryRun, Option<String>), String> {
    let mut listed: Vec<Peeked> = Vec::new();
    // The latest receipt handle per message: only that one can release it.
    let mut handles: HashMap<String, String> = HashMap::new();
    let mut error = None;
    loop {
        let remaining = max.map_or(u64::MAX, |m| m.saturating_sub(listed.len() as u64));
        if remaining == 0 {
            break;
        }
        let messages = match receive(sqs, dlq_url, remaining, PEEK_VISIBILITY_SECS).await {
            Ok(m) => m,
            Err(e) => {
                error = Some(e);
                break;
            }
        };
        let mut new = 0;
        for m in &messages {
            let (Some(id), Some(handle)) = (m.message_id(), m.receipt_handle()) else {
                continue;
            };
            if handles.insert(id.to_owned(), handle.to_owned()).is_none() {
                new += 1;
                listed.push(peeked(m));
            }
        }
        // Empty, or only messages seen already (a long peek outlived their
        // visibility timeout): everything has been seen.
        if new == 0 {
            break;
        }
    }
    let handles: Vec<String> = handles.into_values().collect();
    // Release first: a failed listing must not hide messages for long.
    let released = make_visible(sqs, dlq_url, &handles).await;
    if let Some(e) = error {
        return Err(e);
    }
    let report = DryRun {
        dry_run: true,
        dead_letter_queue_url: dlq_url.to_owned(),
        count: listed.len(),
        messages: listed,
    };
    Ok((report, released.err()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_is_bounded_and_keeps_control_characters_off_the_terminal() {
        let body = format!("\u{1b}[2J{}", "x".repeat(500));
        let shown = preview(&body);
        assert!(!shown.contains('\u{1b}'), "{shown}");
        assert!(shown.starts_with("\\u{1b}[2J"), "{shown}");
        // The escape counts as one character of the body; then the ellipsis.
        let escaped = "\\u{1b}".len();
        assert_eq!(shown.chars().count(), escaped + (PREVIEW_CHARS - 1) + 1);
        assert!(shown.ends_with('\u{2026}'));
        assert_eq!(preview("short"), "short");
    }

    #[test]
    fn each_distinct_error_is_noted_once() {
        let mut errors = Vec::new();
        note(&mut errors, "SendMessage: denied".into());
        note(&mut errors, "SendMessage: denied".into());
        note(&mut errors, "DeleteMessage: gone".into());
        assert_eq!(errors.len(), 2);
    }
}
