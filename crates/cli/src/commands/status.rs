//! `status`: is the lab's exclusion pipeline healthy, at a glance. What it
//! reads and concludes is `ops::status`'s; this prints it.

use std::process::ExitCode;

use clap::Args as ClapArgs;
use mturk_exclusion::ops::status::{self, QueueReport, Report};

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

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let ledger = ctx.ledger()?;
    let qualification = match ctx.qualification.as_deref() {
        Some(_) => Some(ctx.qualification()?),
        None => None,
    };
    let request = status::Request {
        environment: ctx.environment,
        qualification,
        queue_url: ctx.queue_url.clone(),
        dlq_url: ctx.dlq_url.clone(),
        failures: args.failures,
        alarm_email: ctx.alarm_email(),
    };
    let report = status::summary(&ledger, &ctx.sqs(), &request).await?;
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
    if let Some(c) = &r.claims {
        println!(
            "Claims of the accept-time check: {} live ({} stored; `mturk-exclusion clear-claim --worker ID` frees a worker)",
            c.live, c.stored
        );
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
                "  {}  {}  subscribed {} by the {}  verified {}  last participation {}{}",
                t.hit_type_id,
                if t.active { "active" } else { "inactive" },
                t.subscribed_at.as_deref().unwrap_or("?"),
                t.subscribed_by,
                or_never(&t.verified_at),
                or_never(&t.last_recorded_at),
                if t.active && t.backfill_due {
                    "  (backfill due)"
                } else {
                    ""
                },
            );
            if t.active && !t.history_left_out.is_empty() {
                println!(
                    "    history left out: {} submission(s) to {} HIT(s) (`mturk-exclusion adopt --hit-type {}`)",
                    t.history_left_out.submissions, t.history_left_out.hits, t.hit_type_id
                );
            }
            if !t.lacks_event_types.is_empty() {
                println!(
                    "    lacks {} (run `mturk-exclusion subscribe {}` again)",
                    t.lacks_event_types.join(", "),
                    t.hit_type_id
                );
            }
        }
    }
    match &r.watch {
        None => {
            println!("Coverage: the watch has not run yet (the stack's exclusion-watch function)")
        }
        Some(w) => {
            println!(
                "Coverage (the watch's last run, {}): {} live HIT(s) unguarded; {} HIT type(s) subscribed by the watch; {} backfill(s) due",
                w.last_run_at.as_deref().unwrap_or("?"),
                w.live_unguarded_hits,
                w.hit_types_subscribed_by_watch,
                w.backfills_due
            );
            for h in &w.unguarded {
                println!(
                    "  unguarded: HIT {}  type {}  \"{}\"",
                    h.hit_id,
                    h.hit_type_id,
                    h.title.as_deref().unwrap_or("")
                );
            }
        }
    }
    let h = &r.history;
    if h.submissions > 0 {
        println!(
            "History left out: {} submission(s) to {} HIT(s) of {} HIT type(s), made before the pool's start ({}) to HITs its list did not guard; their workers are not excluded. `mturk-exclusion adopt --dry-run` shows them, `adopt` excludes them",
            h.submissions,
            h.hits,
            h.hit_types,
            h.pool_start.as_deref().unwrap_or("?")
        );
    } else if let Some(start) = &h.pool_start {
        println!("History left out: none (the pool started {start})");
    }
    match r.alarm_email {
        Some(true) => println!(
            "Alarms: e-mailed to the stack's AlarmEmail (once that address confirmed AWS's link)"
        ),
        Some(false) => println!("Alarms: reach no one (the stack's AlarmEmail is empty)"),
        None => println!("Alarms: unknown (pass --stack NAME to see whether they e-mail anyone)"),
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
