//! `redrive`: move the dead-letter queue's messages back to the queue once
//! the cause of their failure is fixed.

use std::process::ExitCode;

use clap::Args as ClapArgs;
use mturk_exclusion::ops::{redrive, Progress};

use crate::context::{CliError, Context};
use crate::output;
use mturk_exclusion::ops::queues::{self, Probe};

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

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let sqs = ctx.sqs();
    let dlq_url =
        match queues::resolve_dlq(&sqs, ctx.dlq_url.as_deref(), ctx.queue_url.as_deref()).await {
            Some(url) => url,
            None => ctx.dlq_url()?.to_owned(),
        };
    let dlq_depth = match queues::probe(&sqs, &dlq_url).await {
        Probe::Found(d) => d,
        Probe::NotFound => {
            return Err(CliError::environment(
                format!("dead-letter queue not found: {dlq_url}"),
                queues::QUEUE_NOT_FOUND_HINT,
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
    match queues::probe(&sqs, &queue_url).await {
        Probe::Found(_) => {}
        Probe::NotFound => {
            return Err(CliError::environment(
                format!("queue not found: {queue_url}"),
                format!("{}; nothing was moved", queues::QUEUE_NOT_FOUND_HINT),
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

    let bar = output::Bar::new(ctx.global.json);
    bar.start(planned, "redriving");
    let report = redrive::move_messages(&sqs, &dlq_url, &queue_url, args.max, &bar).await;
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

async fn dry_run(
    ctx: &Context,
    sqs: &aws_sdk_sqs::Client,
    dlq_url: &str,
    max: Option<u64>,
) -> Result<ExitCode, CliError> {
    let (report, warning) = redrive::peek(sqs, dlq_url, max).await.map_err(|e| {
        CliError::environment(
            e,
            "the credentials need sqs:ReceiveMessage and sqs:ChangeMessageVisibility on the dead-letter queue",
        )
    })?;
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
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
