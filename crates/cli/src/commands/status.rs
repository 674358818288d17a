//! `status`: is the lab's exclusion pipeline healthy, at a glance.
//!
//! Also home to the queue probing that `subscribe` and `redrive` share.

use std::collections::HashMap;
use std::process::ExitCode;

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::QueueAttributeName;
use clap::Args as ClapArgs;
use mturk_exclusion::ids::HitTypeId;
use mturk_exclusion::ledger::{self, Participation};
use mturk_exclusion::ops::report::percentile;
use serde::Serialize;

use crate::context::{CliError, Context};
use crate::output;

/// Show what the ledger, the queues and the subscriptions say right now.
///
/// Read-only: it changes nothing anywhere.
///
/// Shown: how many workers are excluded; how many participations the ledger
/// holds and how many are "stuck" (recorded but neither excluded nor
/// released: a failure not yet repaired, whose message is waiting for a
/// retry or sits in the dead-letter queue); each HIT type `subscribe`
/// recorded, when it was subscribed and verified, and when the ledger last
/// recorded a participation in it; the last heartbeat (the last test event
/// that came through MTurk, the queue and the function); how many
/// messages wait in the queue and the dead-letter queue; and the exposure
/// window over the last 24 hours: for each participation learned from a
/// notification and excluded in that time, how long from the worker's
/// submission to the ledger's "excluded" (p50, p99, max). It comes from the
/// same scan of the ledger's participations as the counts above (a full
/// scan: fine for a lab's ledger, and status reads nothing per worker).
///
/// The queues come from --stack or --queue-url / --dlq-url. Without a
/// dead-letter queue URL, the queue's redrive policy is used to find it.
///
/// Exit code 0 whenever the ledger could be read, even if something needs
/// attention (listed under "Needs attention", or "problems" in --json, with
/// what to do; a queue that cannot be read is one of them); 2 bad input;
/// 3 the ledger cannot be read (credentials, table, region).
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// How many stuck participations to list, newest first.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub failures: usize,
}

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

/// SQS's "no such queue", whichever protocol (JSON or the older query
/// protocol's code) the endpoint answered with.
pub fn is_queue_missing<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    matches!(
        err.code(),
        Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue")
    )
}

pub use mturk_exclusion::aws::describe_sdk_error as describe_sqs;

/// The hint that goes with "queue not found".
pub fn queue_not_found_hint() -> String {
    "check --queue-url / --dlq-url (or --stack) and the region (AWS_REGION or the profile's): a queue URL names its region and account".into()
}

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
pub async fn dead_letter_queue_of(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Option<String> {
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

/// The DLQ to use: the one given (flag or stack), else the queue's redrive target.
pub async fn resolve_dlq(ctx: &Context, sqs: &aws_sdk_sqs::Client) -> Option<String> {
    if let Some(url) = ctx.dlq_url.as_deref().filter(|u| !u.is_empty()) {
        return Some(url.to_owned());
    }
    let queue = ctx.queue_url.as_deref().filter(|u| !u.is_empty())?;
    dead_letter_queue_of(sqs, queue).await
}

#[derive(Serialize)]
struct QueueReport {
    url: String,
    /// False when SQS says there is no such queue.
    found: bool,
    #[serde(flatten)]
    depth: Option<Depth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

async fn queue_report(sqs: &aws_sdk_sqs::Client, url: &str) -> QueueReport {
    let (found, depth, error) = match probe(sqs, url).await {
        Probe::Found(d) => (true, Some(d), None),
        Probe::NotFound => (false, None, Some("queue not found".to_owned())),
        Probe::Unreadable(why) => (true, None, Some(why)),
    };
    QueueReport {
        url: url.to_owned(),
        found,
        depth,
        error,
    }
}

#[derive(Serialize)]
struct HitTypeReport {
    hit_type_id: String,
    queue_url: Option<String>,
    active: bool,
    subscribed_at: Option<String>,
    verified_at: Option<String>,
    /// When the ledger last recorded a participation of this HIT type
    /// (from a notification or a backfill).
    last_recorded_at: Option<String>,
    /// The event types `subscribe` asked MTurk for (None: recorded before
    /// they were noted, so AssignmentSubmitted only).
    event_types: Option<Vec<String>>,
    /// What the HIT type still lacks for the accept-time check's claims to
    /// end on return or abandon (run `subscribe` on it again).
    lacks_event_types: Vec<String>,
}

#[derive(Serialize)]
struct StuckReport {
    worker_id: String,
    assignment_id: Option<String>,
    hit_id: Option<String>,
    hit_type_id: Option<String>,
    learned_by: String,
    recorded_at: String,
}

impl From<&Participation> for StuckReport {
    fn from(p: &Participation) -> Self {
        StuckReport {
            worker_id: p.worker_id.to_string(),
            assignment_id: p.assignment_id.as_ref().map(ToString::to_string),
            hit_id: p.hit_id.as_ref().map(ToString::to_string),
            hit_type_id: p.hit_type_id.as_ref().map(ToString::to_string),
            learned_by: p.learned.as_str().to_owned(),
            recorded_at: ledger::stamp(p.recorded_at),
        }
    }
}

#[derive(Serialize)]
struct Participations {
    total: usize,
    /// Recorded but neither excluded nor released.
    stuck: usize,
}

/// Submission to exclusion, for participations learned from notifications
/// and excluded in the last 24 hours (`null` percentiles without any).
#[derive(Serialize, Debug, PartialEq)]
struct Exposure {
    participations: usize,
    p50_seconds: Option<f64>,
    p99_seconds: Option<f64>,
    max_seconds: Option<f64>,
}

fn exposure(all: &[Participation], now: time::OffsetDateTime) -> Exposure {
    let since = now - time::Duration::hours(24);
    let mut waits: Vec<time::Duration> = all
        .iter()
        .filter(|p| p.excluded_at.is_some_and(|excluded| excluded >= since))
        .filter_map(Participation::exposure)
        .collect();
    waits.sort();
    let seconds =
        |v: Option<time::Duration>| v.map(|d| (d.as_seconds_f64() * 1000.0).round() / 1000.0);
    Exposure {
        participations: waits.len(),
        p50_seconds: seconds(percentile(&waits, 50.0)),
        p99_seconds: seconds(percentile(&waits, 99.0)),
        max_seconds: seconds(waits.last().copied()),
    }
}

#[derive(Serialize)]
struct Report {
    environment: &'static str,
    table: String,
    qualification_type_id: Option<String>,
    /// `null` without a qualification id (pass --qualification or --stack).
    excluded_workers: Option<usize>,
    participations: Participations,
    last_heartbeat_at: Option<String>,
    /// The exposure window over the last 24 hours, from the ledger.
    exposure_last_24h: Exposure,
    /// `null` when no queue URL is known.
    queue: Option<QueueReport>,
    dead_letter_queue: Option<QueueReport>,
    hit_types: Vec<HitTypeReport>,
    /// Stuck participations, newest first (at most --failures).
    recent_failures: Vec<StuckReport>,
    /// What needs attention, each with what to do; empty when all is well.
    problems: Vec<String>,
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let ledger = ctx.ledger()?;
    let qualification = match ctx.qualification.as_deref() {
        Some(_) => Some(ctx.qualification()?),
        None => None,
    };
    let sqs = ctx.sqs();
    let mut problems = Vec::new();

    let excluded_workers = match &qualification {
        Some(q) => Some(ledger.excluded_workers(q).await?.len()),
        None => None,
    };
    let all = ledger.all_participations(None).await?;
    let mut stuck: Vec<&Participation> = all
        .iter()
        .filter(|p| p.excluded_at.is_none() && p.released_at.is_none())
        .collect();
    stuck.sort_by_key(|p| std::cmp::Reverse(p.recorded_at));
    if !stuck.is_empty() {
        problems.push(format!(
            "{} participation(s) recorded but neither excluded nor released (a grant failed, or is in progress): a notification's retry or `mturk-exclusion redrive` finishes it; for a backfill or a manual exclusion, run that command again",
            stuck.len()
        ));
    }
    let last_heartbeat_at = ledger.last_heartbeat().await?;
    // Each HIT type's last participation, from the scan above in one pass:
    // no index lists participations by HIT type any more (fewer index
    // writes per submission).
    let mut last_recorded: HashMap<&HitTypeId, time::OffsetDateTime> = HashMap::new();
    for p in &all {
        if let Some(t) = &p.hit_type_id {
            let last = last_recorded.entry(t).or_insert(p.recorded_at);
            *last = (*last).max(p.recorded_at);
        }
    }

    let mut hit_types = Vec::new();
    let events = ledger.subscription_events().await?;
    for sub in ledger.subscriptions().await? {
        let event_types = events.get(sub.hit_type_id.as_str()).cloned().flatten();
        let lacks_claim_events: Vec<String> = mturk_exclusion::check::NOTIFIED_EVENT_TYPES
            .iter()
            .filter(|e| {
                !event_types
                    .as_ref()
                    .is_some_and(|have| have.iter().any(|h| h == *e))
            })
            .filter(|e| **e != "AssignmentSubmitted" || event_types.is_some())
            .map(|e| (*e).to_owned())
            .collect();
        if sub.active && !lacks_claim_events.is_empty() {
            problems.push(format!(
                "HIT type {} is not subscribed to {}: claims of the accept-time check on it \
                 only end by time; run `mturk-exclusion subscribe {}`",
                sub.hit_type_id,
                lacks_claim_events.join(", "),
                sub.hit_type_id
            ));
        }
        let last_recorded_at = last_recorded
            .get(&sub.hit_type_id)
            .copied()
            .map(ledger::stamp);
        if sub.active && sub.verified_at.is_none() {
            problems.push(format!(
                "HIT type {} was never verified: run `mturk-exclusion subscribe {}`",
                sub.hit_type_id, sub.hit_type_id
            ));
        }
        hit_types.push(HitTypeReport {
            hit_type_id: sub.hit_type_id.to_string(),
            queue_url: non_empty(sub.queue_url),
            active: sub.active,
            subscribed_at: sub.subscribed_at.map(ledger::stamp),
            verified_at: sub.verified_at.map(ledger::stamp),
            last_recorded_at,
            event_types,
            lacks_event_types: lacks_claim_events,
        });
    }

    let queue = match ctx.queue_url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) => Some(queue_report(&sqs, url).await),
        None => None,
    };
    let dlq = match resolve_dlq(ctx, &sqs).await {
        Some(url) => Some(queue_report(&sqs, &url).await),
        None => None,
    };
    for (what, q, flag) in [
        ("queue", &queue, "--queue-url"),
        ("dead-letter queue", &dlq, "--dlq-url"),
    ] {
        if let Some(QueueReport {
            url,
            error: Some(e),
            ..
        }) = q
        {
            problems.push(format!(
                "{what} {url}: {e}; check {flag} (or --stack) and the region"
            ));
        }
    }
    if let Some(d) = dlq.as_ref().and_then(|q| q.depth) {
        if d.total() > 0 {
            problems.push(format!(
                "{} message(s) in the dead-letter queue: fix the cause (the function's logs say it), then `mturk-exclusion redrive`",
                d.total()
            ));
        }
    }

    let report = Report {
        environment: ctx.environment_name(),
        table: ledger.table().to_owned(),
        qualification_type_id: qualification.as_ref().map(ToString::to_string),
        excluded_workers,
        participations: Participations {
            total: all.len(),
            stuck: stuck.len(),
        },
        last_heartbeat_at,
        exposure_last_24h: exposure(&all, time::OffsetDateTime::now_utc()),
        queue,
        dead_letter_queue: dlq,
        hit_types,
        recent_failures: stuck
            .iter()
            .take(args.failures)
            .map(|p| StuckReport::from(*p))
            .collect(),
        problems,
    };
    if ctx.global.json {
        output::print_json(&report)?;
    } else {
        print_text(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_queue(label: &str, q: &Option<QueueReport>, missing_hint: &str) {
    match q {
        None => println!("{label}: unknown ({missing_hint})"),
        Some(QueueReport {
            url,
            depth: Some(d),
            ..
        }) => println!(
            "{label}: {} waiting, {} in flight, {} delayed  ({url})",
            d.visible, d.in_flight, d.delayed
        ),
        Some(QueueReport { url, error, .. }) => println!(
            "{label}: {}  ({url})",
            error.as_deref().unwrap_or("could not be read")
        ),
    }
}

fn print_text(r: &Report) {
    println!("Ledger table: {} (MTurk {})", r.table, r.environment);
    match (&r.excluded_workers, &r.qualification_type_id) {
        (Some(n), Some(q)) => println!("Excluded workers: {n} (qualification {q})"),
        _ => println!(
            "Excluded workers: unknown (pass --qualification ID or --stack NAME to count them)"
        ),
    }
    println!(
        "Participations: {} ({} stuck: recorded but neither excluded nor released)",
        r.participations.total, r.participations.stuck
    );
    println!(
        "Last heartbeat: {}",
        r.last_heartbeat_at
            .as_deref()
            .unwrap_or("never (run `mturk-exclusion subscribe` to send a test event)")
    );
    let x = &r.exposure_last_24h;
    match (x.p50_seconds, x.p99_seconds, x.max_seconds) {
        (Some(p50), Some(p99), Some(max)) => println!(
            "Exposure window, last 24 h (submission to excluded, {} participation(s) from notifications): p50 {p50:.1} s, p99 {p99:.1} s, max {max:.1} s",
            x.participations
        ),
        _ => println!("Exposure window, last 24 h: no participation from a notification was excluded"),
    }
    print_queue(
        "Queue",
        &r.queue,
        "pass --queue-url URL or --stack NAME to see it",
    );
    print_queue(
        "Dead-letter queue",
        &r.dead_letter_queue,
        "pass --dlq-url URL or --stack NAME to see it",
    );
    if r.hit_types.is_empty() {
        println!("HIT types: none subscribed with `mturk-exclusion subscribe`");
    } else {
        println!("HIT types:");
        for t in &r.hit_types {
            let or_never = |v: &Option<String>| v.clone().unwrap_or_else(|| "never".into());
            println!(
                "  {}  {}  subscribed {}  verified {}  last participation {}",
                t.hit_type_id,
                if t.active { "active" } else { "inactive" },
                t.subscribed_at.as_deref().unwrap_or("?"),
                or_never(&t.verified_at),
                or_never(&t.last_recorded_at),
            );
            if !t.lacks_event_types.is_empty() {
                println!(
                    "    lacks {} (run `mturk-exclusion subscribe {}` again)",
                    t.lacks_event_types.join(", "),
                    t.hit_type_id
                );
            }
        }
    }
    if !r.recent_failures.is_empty() {
        println!("Recent failures (stuck participations, newest first):");
        for f in &r.recent_failures {
            println!(
                "  {}  worker {}  assignment {}  HIT {}  ({})",
                f.recorded_at,
                f.worker_id,
                f.assignment_id.as_deref().unwrap_or("-"),
                f.hit_id.as_deref().unwrap_or("-"),
                f.learned_by
            );
        }
    }
    if r.problems.is_empty() {
        println!("\nNothing needs attention.");
    } else {
        println!("\nNeeds attention:");
        for p in &r.problems {
            println!("  - {p}");
        }
    }
}
