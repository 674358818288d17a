//! `status`'s summary: what the ledger and the queues say right now, and
//! what of it needs attention, each item with what to do. Read-only.

use std::collections::HashMap;

use serde::Serialize;
use time::OffsetDateTime;

use crate::check::NOTIFIED_EVENT_TYPES;
use crate::ids::{HitTypeId, QualificationTypeId};
use crate::ledger::{self, Ledger, LedgerError, Participation};
use crate::mturk::MturkEnvironment;
use crate::ops::queues::{probe, resolve_dlq, Depth, Probe};
use crate::ops::report::percentile;

/// What status looks at besides the ledger.
#[derive(Debug, Clone)]
pub struct Request {
    pub environment: MturkEnvironment,
    /// Without it, the excluded workers are not counted.
    pub qualification: Option<QualificationTypeId>,
    pub queue_url: Option<String>,
    /// Without it, the queue's redrive policy names it.
    pub dlq_url: Option<String>,
    /// How many stuck participations to list, newest first.
    pub failures: usize,
    /// Whether the deployed stack's `AlarmEmail` names an address; `None`
    /// when no stack was read.
    pub alarm_email: Option<bool>,
}

#[derive(Serialize, Debug)]
pub struct QueueReport {
    pub url: String,
    /// False when SQS says there is no such queue.
    pub found: bool,
    #[serde(flatten)]
    pub depth: Option<Depth>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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

#[derive(Serialize, Debug)]
pub struct HitTypeReport {
    pub hit_type_id: String,
    pub queue_url: Option<String>,
    pub active: bool,
    pub subscribed_at: Option<String>,
    pub verified_at: Option<String>,
    /// When the ledger last recorded a participation of this HIT type
    /// (from a notification or a backfill).
    pub last_recorded_at: Option<String>,
    /// The event types `subscribe` asked MTurk for (None: recorded before
    /// they were noted, so AssignmentSubmitted only).
    pub event_types: Option<Vec<String>>,
    /// What the HIT type still lacks for the accept-time check's claims to
    /// end on return or abandon (run `subscribe` on it again).
    pub lacks_event_types: Vec<String>,
    /// The lab (`subscribe`, `coverage --fix`) or the watch.
    pub subscribed_by: ledger::SubscribedBy,
    /// Its submissions from before the subscription are not all excluded yet
    /// (the watch's next run goes on).
    pub backfill_due: bool,
    pub backfilled_at: Option<String>,
    /// What its last backfill left out as the lab's history, not adopted yet.
    pub history_left_out: ledger::HistoryLeftOut,
}

/// The lab's history the watch left out, over every HIT type.
#[derive(Serialize, Debug, Default)]
pub struct HistoryReport {
    /// When the pool started (its ledger table was made): submissions from
    /// before it to HITs its lists did not guard are the lab's history.
    /// `null` if the table could not be described.
    pub pool_start: Option<String>,
    pub hit_types: usize,
    pub hits: u64,
    pub submissions: u64,
}

/// What the watch's last run found (`null` if it never ran).
#[derive(Serialize, Debug)]
pub struct WatchReport {
    pub last_run_at: Option<String>,
    /// Live HITs with no DoesNotExist requirement: workers the lab excluded can take them.
    pub live_unguarded_hits: u64,
    /// Up to [`ledger::WATCH_RUN_LISTED`] of them.
    pub unguarded: Vec<ledger::UnguardedHit>,
    pub hit_types_subscribed_by_watch: usize,
    pub backfills_due: usize,
    /// Errors of the last run (details in the watch's log).
    pub errors: u64,
}

#[derive(Serialize, Debug)]
pub struct StuckReport {
    pub worker_id: String,
    pub assignment_id: Option<String>,
    pub hit_id: Option<String>,
    pub hit_type_id: Option<String>,
    pub learned_by: String,
    pub recorded_at: String,
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

#[derive(Serialize, Debug)]
pub struct Participations {
    pub total: usize,
    /// Recorded but neither excluded nor released.
    pub stuck: usize,
}

/// Submission to exclusion, for participations learned from notifications
/// and excluded in the last 24 hours (`null` percentiles without any).
#[derive(Serialize, Debug, PartialEq)]
pub struct Exposure {
    pub participations: usize,
    pub p50_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
    pub max_seconds: Option<f64>,
}

fn exposure(all: &[Participation], now: OffsetDateTime) -> Exposure {
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

#[derive(Serialize, Debug)]
pub struct Report {
    pub environment: &'static str,
    pub table: String,
    pub qualification_type_id: Option<String>,
    /// `null` without a qualification id (pass --qualification or --stack).
    pub excluded_workers: Option<usize>,
    /// The accept-time check's claims, counted (no worker ids); `null`
    /// without a qualification id.
    pub claims: Option<crate::ops::claims::Summary>,
    pub participations: Participations,
    pub last_heartbeat_at: Option<String>,
    /// The exposure window over the last 24 hours, from the ledger.
    pub exposure_last_24h: Exposure,
    /// `null` when no queue URL is known.
    pub queue: Option<QueueReport>,
    pub dead_letter_queue: Option<QueueReport>,
    pub hit_types: Vec<HitTypeReport>,
    /// The history left out, for `adopt`.
    pub history: HistoryReport,
    /// Coverage, as the watch last saw it.
    pub watch: Option<WatchReport>,
    /// Stuck participations, newest first (at most [`Request::failures`]).
    pub recent_failures: Vec<StuckReport>,
    /// Whether the stack's alarms e-mail anyone (its `AlarmEmail` is set);
    /// `null` when no stack was read.
    pub alarm_email: Option<bool>,
    /// What needs attention, each with what to do; empty when all is well.
    pub problems: Vec<String>,
}

/// The event types a HIT type's subscription lacks for the accept-time
/// check's claims to end on return or abandon. A record from before the
/// event types were noted asked for AssignmentSubmitted only, so that one
/// is not named as lacking.
fn lacking_event_types(noted: Option<&[String]>) -> Vec<String> {
    NOTIFIED_EVENT_TYPES
        .iter()
        .filter(|e| !noted.is_some_and(|have| have.iter().any(|h| h == *e)))
        .filter(|e| **e != "AssignmentSubmitted" || noted.is_some())
        .map(|e| (*e).to_owned())
        .collect()
}

/// Each HIT type's last participation, from one scan: no index lists
/// participations by HIT type any more (fewer index writes per submission).
fn last_recorded(all: &[Participation]) -> HashMap<&HitTypeId, OffsetDateTime> {
    let mut last: HashMap<&HitTypeId, OffsetDateTime> = HashMap::new();
    for p in all {
        if let Some(t) = &p.hit_type_id {
            let at = last.entry(t).or_insert(p.recorded_at);
            *at = (*at).max(p.recorded_at);
        }
    }
    last
}

/// The counts that need the pool's qualification (`None` without it): the
/// excluded workers, and the accept-time check's claims.
async fn qualified_counts(
    ledger: &Ledger,
    qualification: Option<&QualificationTypeId>,
) -> Result<(Option<usize>, Option<crate::ops::claims::Summary>), LedgerError> {
    let Some(q) = qualification else {
        return Ok((None, None));
    };
    let excluded = ledger.excluded_workers(q).await?.len();
    let claims = crate::ops::claims::summary(ledger, q, OffsetDateTime::now_utc()).await?;
    Ok((Some(excluded), Some(claims)))
}

/// The queue and the dead-letter queue, each `None` when its URL is not
/// known (without one given, the queue's redrive policy names the
/// dead-letter queue).
async fn queue_reports(
    sqs: &aws_sdk_sqs::Client,
    request: &Request,
) -> (Option<QueueReport>, Option<QueueReport>) {
    let queue_url = request.queue_url.as_deref().filter(|u| !u.is_empty());
    let queue = match queue_url {
        Some(url) => Some(queue_report(sqs, url).await),
        None => None,
    };
    let dlq = match resolve_dlq(sqs, request.dlq_url.as_deref(), queue_url).await {
        Some(url) => Some(queue_report(sqs, &url).await),
        None => None,
    };
    (queue, dlq)
}

/// The pool's start and the history its HIT types left out.
async fn history_left_out(ledger: &Ledger, hit_types: &[HitTypeReport]) -> HistoryReport {
    let mut history = HistoryReport {
        // Described for the record only: a role without DescribeTable
        // still gets the rest of the status.
        pool_start: ledger.pool_start().await.ok().map(ledger::stamp),
        ..HistoryReport::default()
    };
    // An unsubscribed HIT type's history is not the pool's to adopt.
    for t in hit_types
        .iter()
        .filter(|t| t.active && !t.history_left_out.is_empty())
    {
        history.hit_types += 1;
        history.hits += t.history_left_out.hits;
        history.submissions += t.history_left_out.submissions;
    }
    history
}

/// Reads the ledger (one full scan of its participations: fine for a lab's
/// ledger, and nothing is read per worker) and the queues, and concludes
/// what needs attention. A queue that cannot be read is one of the
/// problems; only the ledger failing is an error.
pub async fn summary(
    ledger: &Ledger,
    sqs: &aws_sdk_sqs::Client,
    request: &Request,
) -> Result<Report, LedgerError> {
    let (excluded_workers, claims) =
        qualified_counts(ledger, request.qualification.as_ref()).await?;
    let all = ledger.all_participations(None).await?;
    let mut stuck: Vec<&Participation> = all.iter().filter(|p| p.is_pending()).collect();
    stuck.sort_by_key(|p| std::cmp::Reverse(p.recorded_at));
    let last_heartbeat_at = ledger.last_heartbeat().await?;
    let last_recorded = last_recorded(&all);

    let mut hit_types = Vec::new();
    for sub in ledger.subscriptions().await? {
        let event_types = sub.event_types;
        let (subscribed_by, backfill_due) = (sub.subscribed_by, sub.backfill_due);
        let backfilled_at = sub.backfilled_at.map(ledger::stamp);
        hit_types.push(HitTypeReport {
            hit_type_id: sub.hit_type_id.to_string(),
            queue_url: (!sub.queue_url.is_empty()).then_some(sub.queue_url),
            active: sub.active,
            subscribed_at: sub.subscribed_at.map(ledger::stamp),
            verified_at: sub.verified_at.map(ledger::stamp),
            last_recorded_at: last_recorded
                .get(&sub.hit_type_id)
                .copied()
                .map(ledger::stamp),
            lacks_event_types: lacking_event_types(event_types.as_deref()),
            event_types,
            subscribed_by,
            backfill_due,
            backfilled_at,
            history_left_out: sub.history_left_out,
        });
    }
    let history = history_left_out(ledger, &hit_types).await;
    let watch = ledger.last_watch_run().await?.map(|run| WatchReport {
        last_run_at: run.ran_at.map(ledger::stamp),
        live_unguarded_hits: run.counts.live_unguarded,
        errors: run.counts.errors,
        unguarded: run.unguarded,
        hit_types_subscribed_by_watch: hit_types
            .iter()
            .filter(|t| t.subscribed_by == ledger::SubscribedBy::Watch)
            .count(),
        backfills_due: hit_types
            .iter()
            .filter(|t| t.active && t.backfill_due)
            .count(),
    });

    let (queue, dlq) = queue_reports(sqs, request).await;

    let mut report = Report {
        environment: request.environment.name(),
        table: ledger.table().to_owned(),
        qualification_type_id: request.qualification.as_ref().map(ToString::to_string),
        excluded_workers,
        claims,
        participations: Participations {
            total: all.len(),
            stuck: stuck.len(),
        },
        last_heartbeat_at,
        exposure_last_24h: exposure(&all, OffsetDateTime::now_utc()),
        queue,
        dead_letter_queue: dlq,
        hit_types,
        history,
        watch,
        recent_failures: stuck
            .iter()
            .take(request.failures)
            .map(|p| StuckReport::from(*p))
            .collect(),
        alarm_email: request.alarm_email,
        problems: Vec::new(),
    };
    report.problems = needs_attention(&report);
    Ok(report)
}

/// What in a report needs the lab's attention, each with what to do.
fn needs_attention(r: &Report) -> Vec<String> {
    let mut problems = Vec::new();
    if r.participations.stuck > 0 {
        problems.push(format!(
            "{} participation(s) recorded but neither excluded nor released (a grant failed, or is in progress): a notification's retry or `mturk-exclusion redrive` finishes it; for a backfill or a manual exclusion, run that command again",
            r.participations.stuck
        ));
    }
    for t in r.hit_types.iter().filter(|t| t.active) {
        if !t.lacks_event_types.is_empty() {
            problems.push(format!(
                "HIT type {} is not subscribed to {}: claims of the accept-time check on it \
                 only end by time; run `mturk-exclusion subscribe {}`",
                t.hit_type_id,
                t.lacks_event_types.join(", "),
                t.hit_type_id
            ));
        }
        // The watch's subscriptions share the queue `subscribe` proved;
        // a test event cannot prove a HIT type (DESIGN.md).
        if t.verified_at.is_none() && t.subscribed_by == ledger::SubscribedBy::Lab {
            problems.push(format!(
                "HIT type {} was never verified: run `mturk-exclusion subscribe {}`",
                t.hit_type_id, t.hit_type_id
            ));
        }
    }
    if let Some(w) = &r.watch {
        if w.live_unguarded_hits > 0 {
            problems.push(format!(
                "{} live HIT(s) have no DoesNotExist requirement (the watch's last run): workers this pool excluded can take them; run `mturk-exclusion coverage`, then `coverage --fix` or add the requirement where the HIT was made",
                w.live_unguarded_hits
            ));
        }
        if w.errors > 0 {
            problems.push(format!(
                "the watch's last run had {} error(s): read its log (WatchFunctionLogGroup); the next run retries what is left",
                w.errors
            ));
        }
    }
    for (what, q, flag) in [
        ("queue", &r.queue, "--queue-url"),
        ("dead-letter queue", &r.dead_letter_queue, "--dlq-url"),
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
    // An empty AlarmEmail is the guided deploy's easy default; the alarms
    // then exist and go off with nobody told. Only the stack's parameter is
    // read: something else subscribed to AlarmTopicArn is not seen.
    if r.alarm_email == Some(false) {
        problems.push(
            "the stack's AlarmEmail is empty, so its alarms e-mail no one: run `sam deploy --guided` \
             again, enter an address at AlarmEmail and click the link AWS e-mails (or subscribe something else \
             to the stack's AlarmTopicArn output)"
                .to_owned(),
        );
    }
    if let Some(d) = r.dead_letter_queue.as_ref().and_then(|q| q.depth) {
        if d.total() > 0 {
            problems.push(format!(
                "{} message(s) in the dead-letter queue: fix the cause (the function's logs say it), then `mturk-exclusion redrive`",
                d.total()
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use time::Duration;

    use super::*;
    use crate::ids::{AssignmentId, WorkerId};
    use crate::ledger::Learned;

    const NOW: OffsetDateTime = datetime!(2026-03-10 12:00 UTC);
    const STUDY: &str = "3TYPEAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn took_part(
        assignment: &str,
        learned: Learned,
        submitted: OffsetDateTime,
        exposure: Duration,
    ) -> Participation {
        Participation {
            worker_id: WorkerId::parse("A1WORKER").unwrap(),
            assignment_id: Some(AssignmentId::parse(assignment).unwrap()),
            hit_id: None,
            hit_type_id: Some(HitTypeId::parse(STUDY).unwrap()),
            submit_time: Some(submitted),
            learned,
            event_doc_id: None,
            recorded_at: submitted,
            excluded_at: Some(submitted + exposure),
            released_at: None,
            release_reason: None,
        }
    }

    fn notified() -> Learned {
        Learned::Notification {
            event_doc_id: "doc".into(),
        }
    }

    #[test]
    fn exposure_counts_notified_exclusions_of_the_last_day_only() {
        let all = [
            took_part(
                "3ASSIGN01",
                notified(),
                NOW - Duration::hours(1),
                Duration::milliseconds(1500),
            ),
            took_part(
                "3ASSIGN02",
                notified(),
                NOW - Duration::hours(2),
                Duration::milliseconds(40_004),
            ),
            // Excluded two days ago: outside the window.
            took_part(
                "3ASSIGN03",
                notified(),
                NOW - Duration::hours(48),
                Duration::seconds(600),
            ),
            // A backfill's exclusion did not follow a submission.
            took_part(
                "3ASSIGN04",
                Learned::Backfill,
                NOW - Duration::hours(1),
                Duration::seconds(900),
            ),
        ];
        assert_eq!(
            exposure(&all, NOW),
            Exposure {
                participations: 2,
                p50_seconds: Some(1.5),
                p99_seconds: Some(40.004),
                max_seconds: Some(40.004),
            }
        );
        assert_eq!(
            exposure(&[], NOW),
            Exposure {
                participations: 0,
                p50_seconds: None,
                p99_seconds: None,
                max_seconds: None,
            }
        );
    }

    #[test]
    fn a_subscription_lacks_the_event_types_that_end_claims() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // Recorded before event types were noted: AssignmentSubmitted only.
        assert_eq!(
            lacking_event_types(None),
            names(&["AssignmentReturned", "AssignmentAbandoned"])
        );
        assert_eq!(
            lacking_event_types(Some(&names(&["AssignmentSubmitted"]))),
            names(&["AssignmentReturned", "AssignmentAbandoned"])
        );
        assert_eq!(
            lacking_event_types(Some(&names(&["AssignmentReturned"]))),
            names(&["AssignmentSubmitted", "AssignmentAbandoned"])
        );
        assert!(lacking_event_types(Some(&names(NOTIFIED_EVENT_TYPES))).is_empty());
    }

    fn healthy() -> Report {
        Report {
            environment: "sandbox",
            table: "ledger".into(),
            qualification_type_id: None,
            excluded_workers: None,
            claims: None,
            participations: Participations { total: 3, stuck: 0 },
            last_heartbeat_at: None,
            exposure_last_24h: exposure(&[], NOW),
            queue: None,
            dead_letter_queue: None,
            hit_types: Vec::new(),
            history: HistoryReport::default(),
            watch: None,
            recent_failures: Vec::new(),
            alarm_email: None,
            problems: Vec::new(),
        }
    }

    #[test]
    fn alarms_that_e_mail_no_one_need_attention_only_when_the_stack_says_so() {
        let mut r = healthy();
        assert!(needs_attention(&r).is_empty(), "no stack read: not known");
        r.alarm_email = Some(true);
        assert!(needs_attention(&r).is_empty());
        r.alarm_email = Some(false);
        let problems = needs_attention(&r);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(problems[0].contains("AlarmEmail is empty"), "{problems:#?}");
    }

    fn subscribed(id: &str, active: bool, verified: bool, lacks: &[&str]) -> HitTypeReport {
        HitTypeReport {
            hit_type_id: id.into(),
            queue_url: None,
            active,
            subscribed_at: None,
            verified_at: verified.then(|| "2026-03-10T11:00:00Z".into()),
            last_recorded_at: None,
            event_types: None,
            lacks_event_types: lacks.iter().map(|s| (*s).to_owned()).collect(),
            subscribed_by: ledger::SubscribedBy::Lab,
            backfill_due: false,
            backfilled_at: None,
            history_left_out: ledger::HistoryLeftOut::default(),
        }
    }

    #[test]
    fn the_watch_s_findings_need_attention_and_its_subscriptions_need_no_test_event() {
        let mut r = healthy();
        let mut by_watch = subscribed("3TYPEWATCH", true, false, &[]);
        by_watch.subscribed_by = ledger::SubscribedBy::Watch;
        r.hit_types = vec![by_watch];
        r.watch = Some(WatchReport {
            last_run_at: None,
            live_unguarded_hits: 2,
            unguarded: Vec::new(),
            hit_types_subscribed_by_watch: 1,
            backfills_due: 0,
            errors: 1,
        });
        let problems = needs_attention(&r);
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(problems[0].starts_with("2 live HIT(s) have no DoesNotExist requirement"));
        assert!(problems[0].contains("mturk-exclusion coverage"));
        assert!(problems[1].starts_with("the watch's last run had 1 error(s)"));
    }

    fn queue(url: &str, depth: Option<Depth>, error: Option<&str>) -> Option<QueueReport> {
        Some(QueueReport {
            url: url.into(),
            found: true,
            depth,
            error: error.map(Into::into),
        })
    }

    #[test]
    fn nothing_needs_attention_when_all_is_well() {
        let mut r = healthy();
        r.hit_types = vec![subscribed("3TYPEOK", true, true, &[])];
        r.queue = queue("q", Some(Depth::default()), None);
        r.dead_letter_queue = queue("dlq", Some(Depth::default()), None);
        assert!(needs_attention(&r).is_empty(), "{:?}", needs_attention(&r));
    }

    #[test]
    fn attention_goes_to_stuck_work_active_hit_types_and_the_queues_in_that_order() {
        let mut r = healthy();
        r.participations.stuck = 2;
        r.hit_types = vec![
            subscribed("3TYPEOLD", true, false, &["AssignmentReturned"]),
            // Unsubscribed on purpose: nothing to do about it.
            subscribed("3TYPEOFF", false, false, &["AssignmentReturned"]),
        ];
        r.queue = queue("q", None, Some("AccessDenied"));
        r.dead_letter_queue = queue(
            "dlq",
            Some(Depth {
                visible: 2,
                in_flight: 1,
                delayed: 0,
            }),
            None,
        );
        let problems = needs_attention(&r);
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems[0].starts_with("2 participation(s) recorded but neither"));
        assert!(
            problems[1].starts_with("HIT type 3TYPEOLD is not subscribed to AssignmentReturned")
        );
        assert_eq!(
            problems[2],
            "HIT type 3TYPEOLD was never verified: run `mturk-exclusion subscribe 3TYPEOLD`"
        );
        assert_eq!(
            problems[3],
            "queue q: AccessDenied; check --queue-url (or --stack) and the region"
        );
        assert!(problems[4].starts_with("3 message(s) in the dead-letter queue"));
    }

    #[test]
    fn each_hit_types_last_participation_is_its_newest() {
        let old = took_part(
            "3ASSIGN01",
            notified(),
            NOW - Duration::days(30),
            Duration::ZERO,
        );
        let new = took_part("3ASSIGN02", notified(), NOW, Duration::ZERO);
        let mut by_hand = new.clone();
        by_hand.hit_type_id = None;
        by_hand.recorded_at = NOW + Duration::hours(1);
        let all = [new, old, by_hand];
        let last = last_recorded(&all);
        assert_eq!(last.len(), 1);
        assert_eq!(last[&HitTypeId::parse(STUDY).unwrap()], NOW);
    }
}
