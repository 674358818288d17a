//! `subscribe` / `unsubscribe`: point HIT types' notifications at the
//! stack's queue, and prove the path works before the study launches. The
//! proof and its diagnosis are `ops::subscribe`'s; this says and prints.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args as ClapArgs;
use mturk_exclusion::ids::HitTypeId;
use mturk_exclusion::ledger::Ledger;
use mturk_exclusion::ops::queues::{self, Probe};
use mturk_exclusion::ops::subscribe::{self, Report, Trip, UnsubscribeReport};

use crate::context::{CliError, Context};
use crate::output;

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
    /// Also subscribe every HIT type that has a HIT in the account that may
    /// still have submissions (Assignable, Unassignable, Reviewable or
    /// Reviewing: any but Disposed), for HITs made with other tools.
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

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let queue_url = ctx.queue_url()?.to_owned();
    let ledger = ctx.ledger()?;
    let sqs = ctx.sqs();

    // Before touching MTurk: a wrong table or queue would leave HIT types
    // pointed somewhere useless, or subscribed without a record.
    ledger.last_heartbeat().await?;
    match queues::probe(&sqs, &queue_url).await {
        Probe::Found(_) => {}
        Probe::NotFound => {
            return Err(CliError::environment(
                format!("queue not found: {queue_url}"),
                format!("{}; nothing was subscribed", queues::QUEUE_NOT_FOUND_HINT),
            ))
        }
        // The lab's role may not read queue attributes; MTurk does not need it to.
        Probe::Unreadable(why) => {
            eprintln!("warning: could not read queue {queue_url} ({why}); going on")
        }
    }

    let hit_types = subscribe::hit_types(&ctx.mturk, &args.hit_types, args.all_active).await?;
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
        let outcome = subscribe::subscribe(&ctx.mturk, &ledger, t, &queue_url).await?;
        match &outcome.error {
            None if ctx.global.json => {}
            None => eprintln!("Subscribed HIT type {t} to {queue_url}"),
            Some(e) => eprintln!("error: HIT type {t} was not subscribed: {e}"),
        }
        if outcome.subscribed {
            subscribed.push(t.clone());
        }
        outcomes.push(outcome);
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
        if let Some(w) = &trip.warning {
            eprintln!("warning: {w}");
        }
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

/// Sends one test event and waits for its heartbeat, saying so meanwhile.
async fn round_trip(
    ctx: &Context,
    ledger: &Ledger,
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    timeout: Duration,
) -> Result<Trip, CliError> {
    let sent =
        subscribe::send_test_event(&ctx.mturk, ledger, sqs, queue_url, ctx.dlq_url.as_deref())
            .await?;
    let sent = match sent {
        Ok(sent) => sent,
        Err(refused) => return Ok(Trip::failed(refused, 0)),
    };
    if !ctx.global.json {
        eprintln!(
            "Sent a test event to {queue_url}; waiting up to {}s for the function's heartbeat...",
            timeout.as_secs()
        );
    }
    let requires_source_account = ctx.require_source_account() == Some(true);
    Ok(sent
        .wait(ledger, sqs, timeout, requires_source_account)
        .await?)
}

pub async fn run_unsubscribe(ctx: &Context, args: UnsubscribeArgs) -> Result<ExitCode, CliError> {
    let ledger = ctx.ledger()?;
    ledger.last_heartbeat().await?;
    let mut outcomes = Vec::new();
    let mut seen = HashSet::new();
    for t in args.hit_types.iter().filter(|t| seen.insert(*t)) {
        let outcome = subscribe::unsubscribe(&ctx.mturk, &ledger, t).await?;
        match &outcome.error {
            None if ctx.global.json => {}
            None => {
                println!("Unsubscribed HIT type {t}: its submissions no longer exclude workers.")
            }
            Some(e) => eprintln!(
                "error: HIT type {t} is recorded as unsubscribed (the watch leaves it alone), \
                 but MTurk did not turn its notifications off: {e}. Run the command again."
            ),
        }
        outcomes.push(outcome);
    }
    let failed = outcomes.iter().filter(|o| !o.unsubscribed).count();
    if ctx.global.json {
        output::print_json(&UnsubscribeReport {
            hit_types: outcomes,
        })?;
    }
    if failed > 0 {
        return Err(CliError::Partial(format!(
            "{failed} HIT type(s) still notified by MTurk (named above)"
        )));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

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
