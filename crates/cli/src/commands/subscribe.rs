//! `subscribe` / `unsubscribe`: point HIT types' notifications at the
//! stack's queue, and prove the path works before the study launches.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args as ClapArgs;
use mturk_exclusion::ids::shown;
use mturk_exclusion::ids::HitTypeId;
use mturk_exclusion::ledger::{parse_stamp, Heartbeat, Ledger, OwnCustomer};
use serde::Serialize;
use time::OffsetDateTime;

use crate::context::{CliError, Context};
use crate::output;
use mturk_exclusion::ops::status::{self, Depth, Probe};

/// Send each HIT type's AssignmentSubmitted notifications to the stack's
/// queue (with AssignmentReturned and AssignmentAbandoned, which free the
/// accept-time check's claims), then prove that a notification really gets
/// through. Running it again on a HIT type subscribed earlier adds the
/// event types it lacks: MTurk replaces the whole setting.
///
/// MTurk notifies per HIT type, and changing a HIT's title, reward or
/// requirements makes a new HIT type: subscribe every HIT type a study uses,
/// after its HITs are created (or use --all-active).
///
/// The proof: MTurk is asked to send one test event to the queue, and the
/// command waits until the function has consumed it and written a heartbeat
/// to the ledger. That proves MTurk may send to the queue, the function
/// consumes it, and it can write the ledger. A test event tests the queue,
/// not a HIT type (MTurk has no way to read a HIT type's settings back), so
/// the HIT types are trusted to be set because MTurk accepted each setting.
///
/// Only this run's own test event counts: its EventTimestamp must fall
/// after the call, and its sender must be the lab (the CustomerId learned
/// before, or, the first time, a SourceAccount equal to the AWS account in
/// the queue URL). Another requester's Ping never passes. The first run
/// that passes keeps the lab's CustomerId in the ledger; from then on the
/// function acknowledges other requesters' documents without calling MTurk.
///
/// If no heartbeat comes before --timeout, the queues are inspected and the
/// command says where the event got stuck and what to do (with --stack, also
/// when the stack's RequireSourceAccount=true is the likely cause).
///
/// Exit codes: 0 subscribed and verified (or --no-verify); 1 some HIT types
/// were refused by MTurk (each is named), the others were subscribed;
/// 2 bad input; 3 environment (credentials, table or queue not found);
/// 4 the test event did not come through (the diagnosis is printed).
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// HIT type ids to subscribe (as in the HIT's HITTypeId).
    #[arg(value_name = "HIT_TYPE_ID")]
    pub hit_types: Vec<HitTypeId>,
    /// Also subscribe every HIT type that has a live HIT in the account
    /// (Assignable, Unassignable or Reviewable), for HITs made with other tools.
    #[arg(long)]
    pub all_active: bool,
    /// How long to wait for the heartbeat: seconds, or with a unit (90s, 2m).
    #[arg(long, default_value = "60s", value_parser = parse_timeout, value_name = "DURATION")]
    pub timeout: Duration,
    /// Subscribe without sending a test event: nothing is proven.
    #[arg(long)]
    pub no_verify: bool,
}

/// Turn HIT types' notifications off (the ledger keeps the subscription,
/// marked inactive).
///
/// Workers who submit assignments of these HIT types afterwards are no
/// longer excluded automatically.
///
/// Exit codes: 0 all done; 1 MTurk refused some (each is named); 2 bad input;
/// 3 environment.
#[derive(ClapArgs, Debug)]
pub struct UnsubscribeArgs {
    /// HIT type ids to unsubscribe.
    #[arg(value_name = "HIT_TYPE_ID", required = true)]
    pub hit_types: Vec<HitTypeId>,
}

const MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How far apart the laptop's clock and the function's may be. Heartbeats
/// seen before the test event was sent are excluded by id, so a wide window
/// cannot pass an old heartbeat off as this run's.
const CLOCK_SKEW: time::Duration = time::Duration::minutes(2);
const POLL_EVERY: Duration = Duration::from_secs(1);

fn parse_timeout(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (digits, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => raw.split_at(i),
        None => (raw, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{raw:?} is not a duration: use seconds (60) or 60s, 2m"))?;
    let secs = match unit.trim() {
        "s" | "sec" | "secs" => n,
        "m" | "min" | "mins" => n.saturating_mul(60),
        other => return Err(format!("unknown unit {other:?}: use s or m (60s, 2m)")),
    };
    let d = Duration::from_secs(secs);
    if d.is_zero() || d > MAX_TIMEOUT {
        return Err(format!("{raw} is out of range: between 1s and 15m"));
    }
    Ok(d)
}

#[derive(Serialize)]
struct HitTypeOutcome {
    hit_type_id: String,
    subscribed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Where the test event got stuck.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Cause {
    /// MTurk refused to send the test event.
    TestEventRefused,
    QueueNotFound,
    /// The event waits in the queue: nothing receives from it.
    NotConsumed,
    /// Received but not deleted, or moved to the dead-letter queue.
    HandlerFailing,
    /// Nowhere to be seen: MTurk could not deliver (or the function writes elsewhere).
    NotDelivered,
    /// Nowhere to be seen, and the stack's queue policy requires
    /// aws:SourceAccount (RequireSourceAccount=true).
    SourceAccountCondition,
    /// Test events came through, but none was this run's: they came from
    /// another requester (another CustomerId or AWS account).
    OnlyForeignTestEvents,
}

#[derive(Serialize)]
struct Diagnosis {
    cause: Cause,
    message: String,
    what_to_do: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<Depth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead_letter_queue: Option<Depth>,
}

#[derive(Serialize)]
struct Report {
    queue_url: String,
    table: String,
    hit_types: Vec<HitTypeOutcome>,
    /// A heartbeat came back after the test event was sent.
    verified: bool,
    /// True with --no-verify.
    verification_skipped: bool,
    heartbeat_at: Option<String>,
    /// The lab's own MTurk CustomerId, learned from this run's (or an
    /// earlier run's) test event; documents from any other are foreign.
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_id: Option<String>,
    /// Test events seen in the window that were not this run's.
    foreign_test_events: usize,
    /// Why the round trip failed, when it did.
    diagnosis: Option<Diagnosis>,
}

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let queue_url = ctx.queue_url()?.to_owned();
    let ledger = ctx.ledger()?;
    let sqs = ctx.sqs();

    // Before touching MTurk: a wrong table or queue would leave HIT types
    // pointed somewhere useless, or subscribed without a record.
    ledger.last_heartbeat().await?;
    match status::probe(&sqs, &queue_url).await {
        Probe::Found(_) => {}
        Probe::NotFound => {
            return Err(CliError::environment(
                format!("queue not found: {queue_url}"),
                format!("{}; nothing was subscribed", status::QUEUE_NOT_FOUND_HINT),
            ))
        }
        // The lab's role may not read queue attributes; MTurk does not need it to.
        Probe::Unreadable(why) => {
            eprintln!("warning: could not read queue {queue_url} ({why}); going on")
        }
    }

    let mut hit_types: Vec<HitTypeId> = Vec::new();
    let mut seen = HashSet::new();
    for t in &args.hit_types {
        if seen.insert(t.clone()) {
            hit_types.push(t.clone());
        }
    }
    if args.all_active {
        let live = ctx.mturk.hits().await?.into_iter().filter(|h| {
            matches!(
                h.status.as_str(),
                "Assignable" | "Unassignable" | "Reviewable"
            )
        });
        for h in live {
            if seen.insert(h.hit_type_id.clone()) {
                hit_types.push(h.hit_type_id);
            }
        }
    }
    if hit_types.is_empty() {
        return Err(CliError::Usage(if args.all_active {
            format!(
                "nothing to subscribe: the account has no live HIT in MTurk {} (name HIT type ids, or check --sandbox/--production)",
                ctx.environment_name()
            )
        } else {
            "nothing to subscribe: name one or more HIT type ids, or pass --all-active".into()
        }));
    }

    let mut outcomes = Vec::new();
    let mut subscribed = Vec::new();
    for t in &hit_types {
        match ctx.mturk.subscribe(t, &queue_url).await {
            Ok(()) => {
                ledger
                    .record_subscription(t, &queue_url, OffsetDateTime::now_utc())
                    .await?;
                // UpdateNotificationSettings replaced the whole setting: note
                // which event types it now holds, so `status` can name HIT
                // types subscribed before Returned/Abandoned were asked for.
                ledger
                    .record_subscription_events(t, mturk_exclusion::check::NOTIFIED_EVENT_TYPES)
                    .await?;
                if !ctx.global.json {
                    eprintln!("Subscribed HIT type {t} to {queue_url}");
                }
                subscribed.push(t.clone());
                outcomes.push(HitTypeOutcome {
                    hit_type_id: t.to_string(),
                    subscribed: true,
                    error: None,
                });
            }
            Err(e) => {
                eprintln!("error: HIT type {t} was not subscribed: {e}");
                outcomes.push(HitTypeOutcome {
                    hit_type_id: t.to_string(),
                    subscribed: false,
                    error: Some(e.to_string()),
                });
            }
        }
    }
    let refused = outcomes.len() - subscribed.len();

    let mut report = Report {
        queue_url: queue_url.clone(),
        table: ledger.table().to_owned(),
        hit_types: outcomes,
        verified: false,
        verification_skipped: false,
        heartbeat_at: None,
        customer_id: None,
        foreign_test_events: 0,
        diagnosis: None,
    };

    if subscribed.is_empty() {
        // Nothing points at the queue: a test event would prove nothing about these HIT types.
        finish(ctx, &report, None)?;
        return Err(CliError::Partial(format!(
            "no HIT type was subscribed ({refused} refused by MTurk, named above)"
        )));
    }
    if args.no_verify {
        report.verification_skipped = true;
        eprintln!(
            "warning: --no-verify: nothing was proven; until a test event comes through, submissions may not be excluded (run `mturk-exclusion subscribe {}` without --no-verify)",
            subscribed.first().map(ToString::to_string).unwrap_or_default()
        );
    } else {
        let trip = round_trip(ctx, &ledger, &sqs, &queue_url, args.timeout).await?;
        report.foreign_test_events = trip.foreign;
        match trip.outcome {
            Ok((hb, own)) => {
                for t in &subscribed {
                    ledger.record_verified(t, &hb.received_at).await?;
                }
                report.verified = true;
                report.heartbeat_at = Some(hb.received_at);
                report.customer_id = Some(own.customer_id);
            }
            Err(diagnosis) => report.diagnosis = Some(diagnosis),
        }
        if trip.foreign > 0 && !ctx.global.json {
            eprintln!(
                "warning: {} test event(s) from another requester reached the queue meanwhile and were not taken for this one: the queue URL is known outside the lab, or another requester's setting points at it",
                trip.foreign
            );
        }
    }

    finish(ctx, &report, Some(&subscribed))?;
    if let Some(d) = &report.diagnosis {
        return Err(CliError::CheckFailed(format!(
            "the test event did not come through within {}s: {}",
            args.timeout.as_secs(),
            d.message
        )));
    }
    if refused > 0 {
        return Err(CliError::Partial(format!(
            "{refused} of {} HIT type(s) were not subscribed (named above)",
            report.hit_types.len()
        )));
    }
    Ok(ExitCode::SUCCESS)
}

fn finish(
    ctx: &Context,
    report: &Report,
    subscribed: Option<&[HitTypeId]>,
) -> Result<(), CliError> {
    if ctx.global.json {
        return output::print_json(report);
    }
    let Some(subscribed) = subscribed else {
        return Ok(());
    };
    let list = subscribed
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if report.verified {
        println!(
            "Verified: MTurk delivered a test event to {}, the function consumed it and wrote a heartbeat to ledger {} at {}.",
            report.queue_url,
            report.table,
            report.heartbeat_at.as_deref().unwrap_or("?")
        );
        println!("Submissions of these HIT types now exclude their workers: {list}.");
        if let Some(c) = &report.customer_id {
            println!("The lab's MTurk CustomerId is {c}: documents from any other requester are acknowledged without calling MTurk.");
        }
        println!("(A test event proves the queue and the function; each HIT type's setting was accepted by MTurk just now.)");
    } else if report.verification_skipped {
        println!("Subscribed, not verified: {list}.");
    } else if let Some(d) = &report.diagnosis {
        println!("Subscribed ({list}), but the test event did not come through.");
        println!("\n{}\nWhat to do: {}", d.message, d.what_to_do);
        if let Some(q) = d.queue {
            println!(
                "Queue: {} waiting, {} in flight, {} delayed.",
                q.visible, q.in_flight, q.delayed
            );
        }
        if let Some(q) = d.dead_letter_queue {
            println!(
                "Dead-letter queue: {} waiting, {} in flight.",
                q.visible, q.in_flight
            );
        }
    }
    Ok(())
}

/// What the round trip came to.
struct Trip {
    /// This run's heartbeat and the lab's requester it proves, or why not.
    outcome: Result<(Heartbeat, OwnCustomer), Diagnosis>,
    /// Heartbeats in the window that were not this run's test event.
    foreign: usize,
}

/// The AWS account that owns a queue, from its URL
/// (`https://sqs.<region>.amazonaws.com/<account>/<name>`).
fn queue_account(queue_url: &str) -> Option<&str> {
    let path = queue_url.split_once("://")?.1.split_once('/')?.1;
    let account = path.split('/').next()?;
    (account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())).then_some(account)
}

/// Whether `hb` can be this run's own test event, sent at `sent_at`.
///
/// MTurk's test document holds nothing the caller chose except the event
/// type (its ids are placeholders, its EventDocId is MTurk's), so it is
/// recognised by who sent it and when: its `EventTimestamp` must fall
/// between the call and now (give or take the clocks' skew), and its sender
/// must be the lab itself: the CustomerId learned before, or, until one is
/// learned, a `SourceAccount` equal to the AWS account that owns the queue
/// (the stack runs in the account linked to the lab's requester). Another
/// requester's Ping carries their own CustomerId and account, so it passes
/// neither, whenever it arrives.
fn is_own(
    hb: &Heartbeat,
    own: Option<&OwnCustomer>,
    account: Option<&str>,
    sent_at: OffsetDateTime,
    now: OffsetDateTime,
) -> bool {
    let in_window = parse_stamp(&hb.event_at)
        .is_some_and(|at| at >= sent_at - CLOCK_SKEW && at <= now + CLOCK_SKEW);
    let from_lab = match own {
        Some(own) => hb.customer_id.as_deref() == Some(own.customer_id.as_str()),
        None => {
            hb.customer_id.is_some() && account.is_some() && hb.source_account.as_deref() == account
        }
    };
    in_window && from_lab
}

/// Sends one test event and waits for its heartbeat. The outer error is the
/// environment failing (ledger unreadable); the inner one is the diagnosis.
async fn round_trip(
    ctx: &Context,
    ledger: &Ledger,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    timeout: Duration,
) -> Result<Trip, CliError> {
    let dlq_url = status::resolve_dlq(sqs, ctx.dlq_url.as_deref(), ctx.queue_url.as_deref()).await;
    let dlq_before = match &dlq_url {
        Some(url) => match status::probe(sqs, url).await {
            Probe::Found(d) => Some(d),
            _ => None,
        },
        None => None,
    };
    let own = ledger.own_customer().await?;
    let account = queue_account(queue_url);
    let sent_at = OffsetDateTime::now_utc();
    let since = sent_at - CLOCK_SKEW;
    let key = |h: &Heartbeat| (h.received_at.clone(), h.event_doc_id.clone());
    let earlier: HashSet<(String, String)> = ledger
        .heartbeats_since(since)
        .await?
        .iter()
        .map(key)
        .collect();

    if let Err(e) = ctx.mturk.send_test_event(queue_url).await {
        return Ok(Trip {
            outcome: Err(Diagnosis {
                cause: Cause::TestEventRefused,
                message: format!("MTurk did not send the test event: {e}"),
                what_to_do: "check that --queue-url is a full SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>), then run subscribe again".into(),
                queue: None,
                dead_letter_queue: None,
            }),
            foreign: 0,
        });
    }
    if !ctx.global.json {
        eprintln!(
            "Sent a test event to {queue_url}; waiting up to {}s for the function's heartbeat...",
            timeout.as_secs()
        );
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut foreign: Vec<Heartbeat>;
    loop {
        let now = OffsetDateTime::now_utc();
        let new: Vec<Heartbeat> = ledger
            .heartbeats_since(since)
            .await?
            .into_iter()
            .filter(|h| !earlier.contains(&key(h)))
            .collect();
        let (mine, others): (Vec<_>, Vec<_>) = new
            .into_iter()
            .partition(|h| is_own(h, own.as_ref(), account, sent_at, now));
        foreign = others;
        if let Some(hb) = mine.into_iter().next() {
            let learned = match &own {
                Some(own) => own.clone(),
                None => {
                    let learned = ledger.learn_own_customer(&hb, now).await?;
                    if hb.customer_id.as_deref() != Some(learned.customer_id.as_str()) {
                        eprintln!(
                            "warning: the ledger already names CustomerId {} as the lab's, learned from test event {} at {}; this test event came from {}. Documents from any other CustomerId are acknowledged without calling MTurk",
                            shown(&learned.customer_id),
                            shown(&learned.event_doc_id),
                            learned.learned_at,
                            hb.customer_id.as_deref().map(shown).unwrap_or_default()
                        );
                    }
                    learned
                }
            };
            return Ok(Trip {
                outcome: Ok((hb, learned)),
                foreign: foreign.len(),
            });
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(POLL_EVERY.min(left)).await;
    }
    let mut diagnosis = if foreign.is_empty() {
        diagnose(sqs, queue_url, dlq_url.as_deref(), dlq_before).await
    } else {
        let senders: HashSet<String> = foreign
            .iter()
            .map(|h| {
                format!(
                    "CustomerId {} / account {}",
                    h.customer_id
                        .as_deref()
                        .map(shown)
                        .unwrap_or_else(|| "(none)".into()),
                    h.source_account
                        .as_deref()
                        .map(shown)
                        .unwrap_or_else(|| "(none)".into())
                )
            })
            .collect();
        let mut senders: Vec<_> = senders.into_iter().collect();
        senders.sort();
        Diagnosis {
            cause: Cause::OnlyForeignTestEvents,
            message: format!(
                "{} test event(s) came through, none of them this run's: they were sent by {} ({})",
                foreign.len(),
                match &own {
                    Some(o) => format!("another requester than the lab's CustomerId {}", shown(&o.customer_id)),
                    None => format!("another AWS account than the queue's ({})", account.unwrap_or("unknown")),
                },
                senders.join("; ")
            ),
            what_to_do: "run subscribe with the lab's own credentials (--profile) for the account that owns the queue; if another requester's HIT types point at this queue, they will be ignored once the lab's CustomerId is learned".into(),
            queue: None,
            dead_letter_queue: None,
        }
    };
    if diagnosis.cause == Cause::NotDelivered && ctx.require_source_account() == Some(true) {
        diagnosis.cause = Cause::SourceAccountCondition;
        diagnosis.message = "MTurk's test event did not arrive, and the stack's queue policy accepts MTurk's messages only with aws:SourceAccount (RequireSourceAccount=true). MTurk documents that condition for SNS, not for SQS: it most likely does not send it to queues, so the queue refuses every notification".into();
        diagnosis.what_to_do = "deploy the stack again with RequireSourceAccount=false (sam deploy --parameter-overrides RequireSourceAccount=false ...), then run subscribe again; until then no submission reaches the function".into();
    }
    Ok(Trip {
        outcome: Err(diagnosis),
        foreign: foreign.len(),
    })
}

async fn diagnose(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    dlq_url: Option<&str>,
    dlq_before: Option<Depth>,
) -> Diagnosis {
    let queue = match status::probe(sqs, queue_url).await {
        Probe::Found(d) => Some(d),
        Probe::NotFound => {
            return Diagnosis {
                cause: Cause::QueueNotFound,
                message: format!(
                    "queue not found: {queue_url} (it was there when subscribe started)"
                ),
                what_to_do: status::QUEUE_NOT_FOUND_HINT.into(),
                queue: None,
                dead_letter_queue: None,
            }
        }
        Probe::Unreadable(_) => None,
    };
    let dlq = match dlq_url {
        Some(url) => match status::probe(sqs, url).await {
            Probe::Found(d) => Some(d),
            _ => None,
        },
        None => None,
    };
    let dlq_grew = match (dlq_before, dlq) {
        (Some(before), Some(after)) => after.total() > before.total(),
        _ => false,
    };
    let diagnosis = |cause, message: String, what_to_do: &str| Diagnosis {
        cause,
        message,
        what_to_do: what_to_do.to_owned(),
        queue,
        dead_letter_queue: dlq,
    };
    let no_dlq_note = if dlq_url.is_none() {
        " (no dead-letter queue known: pass --dlq-url or --stack to check it too)"
    } else {
        ""
    };
    match queue {
        _ if dlq_grew => diagnosis(
            Cause::HandlerFailing,
            "the handler is failing: the test event reached the queue, the function received it, and it ended in the dead-letter queue".into(),
            "see the function's logs (CloudWatch Logs, /aws/lambda/<function>) for the failing record, fix the cause, then `mturk-exclusion redrive` and subscribe again",
        ),
        Some(q) if q.in_flight > 0 => diagnosis(
            Cause::HandlerFailing,
            format!("the handler is failing or too slow: {} message(s) were received from the queue and not deleted", q.in_flight),
            "see the function's logs (CloudWatch Logs, /aws/lambda/<function>): check its permissions on the table (--table must be the table the function writes) and on MTurk; failed messages return after the visibility timeout and go to the dead-letter queue after maxReceiveCount receives",
        ),
        Some(q) if q.visible + q.delayed > 0 => diagnosis(
            Cause::NotConsumed,
            format!("the test event reached the queue but nothing consumed it: {} message(s) are waiting", q.visible + q.delayed),
            "is the function deployed and its event source mapping enabled? (`aws lambda list-event-source-mappings --event-source-arn <queue ARN>` should say State: Enabled); also check that --queue-url is the stack's queue",
        ),
        _ => diagnosis(
            Cause::NotDelivered,
            format!("MTurk could not deliver to the queue: the test event is in neither the queue nor the dead-letter queue{no_dlq_note}"),
            "check that the queue policy allows the service principal mturk-requester.amazonaws.com to sqs:SendMessage, and that --queue-url is the stack's queue (the QueueUrl output); if the function did consume it, it writes to another table than --table",
        ),
    }
}

#[derive(Serialize)]
struct UnsubscribeOutcome {
    hit_type_id: String,
    unsubscribed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct UnsubscribeReport {
    hit_types: Vec<UnsubscribeOutcome>,
}

pub async fn run_unsubscribe(ctx: &Context, args: UnsubscribeArgs) -> Result<ExitCode, CliError> {
    let ledger = ctx.ledger()?;
    ledger.last_heartbeat().await?;
    let mut outcomes = Vec::new();
    let mut seen = HashSet::new();
    for t in args.hit_types.iter().filter(|t| seen.insert(*t)) {
        match ctx.mturk.unsubscribe(t).await {
            Ok(()) => {
                ledger.record_unsubscribed(t).await?;
                if !ctx.global.json {
                    println!(
                        "Unsubscribed HIT type {t}: its submissions no longer exclude workers."
                    );
                }
                outcomes.push(UnsubscribeOutcome {
                    hit_type_id: t.to_string(),
                    unsubscribed: true,
                    error: None,
                });
            }
            Err(e) => {
                eprintln!("error: HIT type {t} was not unsubscribed: {e}");
                outcomes.push(UnsubscribeOutcome {
                    hit_type_id: t.to_string(),
                    unsubscribed: false,
                    error: Some(e.to_string()),
                });
            }
        }
    }
    let failed = outcomes.iter().filter(|o| !o.unsubscribed).count();
    if ctx.global.json {
        output::print_json(&UnsubscribeReport {
            hit_types: outcomes,
        })?;
    }
    if failed > 0 {
        return Err(CliError::Partial(format!(
            "{failed} HIT type(s) were not unsubscribed (named above)"
        )));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_account_comes_from_its_url() {
        assert_eq!(
            queue_account("https://sqs.us-east-1.amazonaws.com/123456789012/q"),
            Some("123456789012")
        );
        assert_eq!(
            queue_account("http://127.0.0.1:5000/123456789012/q"),
            Some("123456789012")
        );
        assert_eq!(queue_account("https://example.com/q"), None);
        assert_eq!(queue_account("q"), None);
    }

    #[test]
    fn timeouts_read_as_seconds_or_minutes() {
        assert_eq!(parse_timeout("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_timeout("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("1h").is_err());
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("16m").is_err());
    }
}
