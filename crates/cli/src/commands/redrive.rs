//! `redrive`: move the dead-letter queue's messages back to the queue once
//! the cause of their failure is fixed.

use std::collections::HashMap;
use std::process::ExitCode;

use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use clap::Args as ClapArgs;
use mturk_exclusion::notification::Notification;
use serde::Serialize;
use time::OffsetDateTime;

use super::status::{self, describe_sqs, Probe};
use crate::context::{CliError, Context};
use crate::output;

/// Move the dead-letter queue's messages back to the queue, so the function
/// tries them again.
///
/// Fix the cause first (the function's logs name it for each failed record),
/// then redrive: each message is sent to the queue and deleted from the
/// dead-letter queue only after the send succeeded, so none is lost; a
/// message whose delete failed is in both queues, which is harmless (the
/// function handles duplicates). Redriving is safe for workers: exclusion is
/// idempotent, and a worker released in the meantime is not excluded again.
///
/// --dry-run lists what is there (message id, receive count, the start of
/// the body, and whether the body is a notification the function can read)
/// without moving anything. Peeking receives the messages and makes them
/// visible again at once, which adds one to each one's receive count.
///
/// The messages are sent again with the lab's credentials, so their SenderId
/// is no longer MTurk's: the function only warns about that, unless
/// REJECT_UNKNOWN_SENDERS is on, in which case it refuses them. To move them
/// as they were, use `aws sqs start-message-move-task --source-arn <DLQ ARN>`
/// instead.
///
/// Exit codes: 0 all moved (or listed); 1 some could not be moved (counted;
/// they stay in the dead-letter queue); 2 bad input; 3 queue not found or
/// unreadable; 5 declined at the confirmation (more than 100 messages
/// without --yes).
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// List the messages without moving or deleting any.
    #[arg(long)]
    pub dry_run: bool,
    /// Move (or list) at most N messages.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,
    /// Do not ask before moving more than 100 messages (needed without a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Above this, moving asks first.
const CONFIRM_ABOVE: u64 = 100;
/// Long enough to send and delete a batch; a message we could not send comes
/// back by itself after this even if resetting its visibility fails.
const MOVE_VISIBILITY_SECS: i32 = 60;
/// Long enough to page through the DLQ once without seeing a message twice.
const PEEK_VISIBILITY_SECS: i32 = 30;
const PREVIEW_CHARS: usize = 100;

#[derive(Serialize)]
struct Peeked {
    /// SQS always names its messages; `None` would be shown, never invented.
    message_id: Option<String>,
    receive_count: Option<u64>,
    sent_at: Option<String>,
    body_preview: String,
    /// Whether the body parses as an MTurk notification document.
    notification: bool,
    /// Why it does not, if it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

#[derive(Serialize)]
struct DryRunReport {
    dry_run: bool,
    dead_letter_queue_url: String,
    count: usize,
    messages: Vec<Peeked>,
}

#[derive(Serialize)]
struct MoveReport {
    dry_run: bool,
    dead_letter_queue_url: String,
    queue_url: String,
    /// Sent to the queue and deleted from the dead-letter queue.
    moved: u64,
    /// Not sent: still in the dead-letter queue.
    failed: u64,
    /// Sent but not deleted from the dead-letter queue: now in both (harmless).
    not_deleted: u64,
    errors: Vec<String>,
}

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let sqs = ctx.sqs();
    let dlq_url = match status::resolve_dlq(ctx, &sqs).await {
        Some(url) => url,
        None => ctx.dlq_url()?.to_owned(),
    };
    let dlq_depth = match status::probe(&sqs, &dlq_url).await {
        Probe::Found(d) => d,
        Probe::NotFound => {
            return Err(CliError::environment(
                format!("dead-letter queue not found: {dlq_url}"),
                status::queue_not_found_hint(),
            ))
        }
        Probe::Unreadable(why) => {
            return Err(CliError::environment(
                format!("could not read dead-letter queue {dlq_url}: {why}"),
                "the credentials need sqs:GetQueueAttributes, sqs:ReceiveMessage, sqs:DeleteMessage and sqs:ChangeMessageVisibility on it",
            ))
        }
    };
    if args.dry_run {
        return dry_run(ctx, &sqs, &dlq_url, args.max).await;
    }

    let queue_url = ctx.queue_url()?.to_owned();
    match status::probe(&sqs, &queue_url).await {
        Probe::Found(_) => {}
        Probe::NotFound => {
            return Err(CliError::environment(
                format!("queue not found: {queue_url}"),
                format!("{}; nothing was moved", status::queue_not_found_hint()),
            ))
        }
        Probe::Unreadable(why) => {
            eprintln!("warning: could not read queue {queue_url} ({why}); trying to send anyway")
        }
    }
    let available = dlq_depth.visible;
    let planned = args.max.map_or(available, |m| m.min(available));
    if planned > CONFIRM_ABOVE
        && !args.yes
        && !output::confirm(&format!(
            "Move {planned} messages from {dlq_url} back to {queue_url}?"
        ))
    {
        return Err(CliError::Aborted(format!(
            "not moving {planned} messages without confirmation: pass --yes to move them (or --max N, or --dry-run to look first)"
        )));
    }

    let report = move_messages(ctx, &sqs, &dlq_url, &queue_url, args.max, planned).await;
    if ctx.global.json {
        output::print_json(&report)?;
    } else {
        println!(
            "Moved {} message(s) from {} to {}.",
            report.moved, dlq_url, queue_url
        );
        if report.failed > 0 {
            println!(
                "{} message(s) could not be sent and stay in the dead-letter queue.",
                report.failed
            );
        }
        if report.not_deleted > 0 {
            println!(
                "{} message(s) were sent but not deleted from the dead-letter queue: they are in both now (harmless; the next redrive sends them again).",
                report.not_deleted
            );
        }
        for e in &report.errors {
            println!("  {e}");
        }
    }
    if report.failed > 0 || report.not_deleted > 0 {
        return Err(CliError::Partial(format!(
            "{} message(s) not moved, {} not deleted from {dlq_url}",
            report.failed, report.not_deleted
        )));
    }
    Ok(ExitCode::SUCCESS)
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
async fn release(sqs: &aws_sdk_sqs::Client, url: &str, handles: &[String]) -> Result<(), String> {
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

async fn move_messages(
    ctx: &Context,
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    queue_url: &str,
    max: Option<u64>,
    planned: u64,
) -> MoveReport {
    let bar = output::progress(planned, "redriving", ctx.global.json);
    let mut report = MoveReport {
        dry_run: false,
        dead_letter_queue_url: dlq_url.to_owned(),
        queue_url: queue_url.to_owned(),
        moved: 0,
        failed: 0,
        not_deleted: 0,
        errors: Vec::new(),
    };
    // Held invisible until the end, so the loop does not pick them up again.
    let mut unsent_handles = Vec::new();
    loop {
        let done = report.moved + report.failed + report.not_deleted;
        let remaining = max.map_or(u64::MAX, |m| m.saturating_sub(done));
        if remaining == 0 {
            break;
        }
        let messages = match receive(sqs, dlq_url, remaining, MOVE_VISIBILITY_SECS).await {
            Ok(m) if m.is_empty() => break,
            Ok(m) => m,
            Err(e) => {
                note(&mut report.errors, e);
                break;
            }
        };
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
                    report.failed += 1;
                    unsent_handles.push(handle.to_owned());
                    note(
                        &mut report.errors,
                        format!("could not build a message: {e}"),
                    );
                }
            }
        }
        if entries.is_empty() {
            break;
        }
        let sent = match sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                // The whole batch failed; the next one would too.
                report.failed += handles.len() as u64;
                unsent_handles.extend(handles.into_values());
                note(
                    &mut report.errors,
                    format!("SendMessageBatch to {queue_url}: {}", describe_sqs(&e)),
                );
                break;
            }
        };
        for f in &sent.failed {
            if let Some(h) = handles.remove(f.id()) {
                report.failed += 1;
                unsent_handles.push(h);
            }
            note(
                &mut report.errors,
                format!(
                    "SendMessage to {queue_url}: {}: {}",
                    f.code(),
                    f.message().unwrap_or("no message")
                ),
            );
        }
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
        let sent_count = to_delete.len() as u64;
        if sent_count == 0 {
            // Nothing in this batch could be sent: the cause is not passing.
            break;
        }
        match sqs
            .delete_message_batch()
            .queue_url(dlq_url)
            .set_entries(Some(to_delete))
            .send()
            .await
        {
            Ok(out) => {
                report.not_deleted += out.failed.len() as u64;
                report.moved += sent_count - out.failed.len() as u64;
                for f in &out.failed {
                    note(
                        &mut report.errors,
                        format!("DeleteMessage from {dlq_url}: {}", f.code()),
                    );
                }
            }
            Err(e) => {
                report.not_deleted += sent_count;
                note(
                    &mut report.errors,
                    format!("DeleteMessageBatch from {dlq_url}: {}", describe_sqs(&e)),
                );
            }
        }
        bar.set_position(report.moved + report.failed + report.not_deleted);
    }
    bar.finish_and_clear();
    if let Err(e) = release(sqs, dlq_url, &unsent_handles).await {
        note(&mut report.errors, e);
    }
    report
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
        .map(mturk_exclusion::ledger::stamp);
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

async fn dry_run(
    ctx: &Context,
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    max: Option<u64>,
) -> Result<ExitCode, CliError> {
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
    let released = release(sqs, dlq_url, &handles).await;
    if let Some(e) = error {
        // Release first: a failed listing must not hide messages for long.
        return Err(CliError::environment(
            e,
            "the credentials need sqs:ReceiveMessage and sqs:ChangeMessageVisibility on the dead-letter queue",
        ));
    }
    if let Err(e) = &released {
        eprintln!("warning: {e}");
    }
    let report = DryRunReport {
        dry_run: true,
        dead_letter_queue_url: dlq_url.to_owned(),
        count: listed.len(),
        messages: listed,
    };
    if ctx.global.json {
        output::print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} message(s) in {} (dry run: nothing moved).",
        report.count, dlq_url
    );
    for p in &report.messages {
        println!(
            "\n{}  receives {}  sent {}",
            p.message_id.as_deref().unwrap_or("(no message id)"),
            p.receive_count
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
            p.sent_at.as_deref().unwrap_or("?")
        );
        match &p.problem {
            None => println!("  a notification document"),
            Some(why) => println!("  not a notification the function can read: {why}"),
        }
        println!("  {}", p.body_preview);
    }
    if report.count > 0 {
        println!("\nPeeking added one to each message's receive count. Move them with `mturk-exclusion redrive` once the cause is fixed.");
    }
    Ok(ExitCode::SUCCESS)
}
