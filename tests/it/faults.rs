//! Bursts under faults, then the invariants that must hold whatever
//! happened. Short by default (CI); `FAULT_SOAK=1` runs each burst at
//! twenty times the size, for a soak on a developer's machine.
//!
//! The invariants, checked after every run:
//! - every submitted assignment is in the ledger with its worker excluded,
//!   or its notification waits in the dead-letter queue;
//! - no worker is excluded who did not submit;
//! - every grant carried `SendNotification=false`;
//! - the handler never revoked, rejected, blocked or approved;
//! - a participation counts once however often it was delivered;
//! - MTurk and the ledger agree, both ways: every worker the ledger holds
//!   excluded holds the qualification on MTurk, and every holder on MTurk
//!   is excluded in the ledger;
//! - no worker the lab released is excluded again by an event older than
//!   the release (a fault run releases a worker, then redelivers all of
//!   their notifications under the same faults).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use mturk_exclusion::handler::Handler;
use testkit::event_source::Invocation;
use tokio::time::Instant;

use mturk_exclusion::aws::Limits;
use mturk_exclusion::ids::{AssignmentId, WorkerId};
use mturk_exclusion::ledger::ExclusionState;
use mturk_exclusion::notification::{Event, Notification};
use testkit::mturk_double::{Fault, GrantStatus};
use testkit::pipeline::{Options, Pipeline};

fn soak() -> bool {
    std::env::var("FAULT_SOAK").is_ok_and(|v| v == "1")
}

/// Options for faulty runs: short timeouts, quick redeliveries, and enough
/// receives that transient faults alone never reach the DLQ.
fn faulty_options() -> Options {
    let defaults = Options::default();
    Options {
        visibility_secs: 2,
        max_receive_count: 12,
        limits: Limits {
            connect: Duration::from_millis(500),
            attempt: Duration::from_millis(1500),
            operation: Duration::from_secs(4),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            ..defaults.limits
        },
        ..defaults
    }
}

/// A skewed burst: a few workers do many HITs, most do one or two.
/// Returns (assignment, worker) for every submission.
async fn burst(p: &Pipeline, submissions: usize) -> Vec<(String, String)> {
    let hits: Vec<String> = (0..submissions.div_ceil(4).max(4))
        .map(|_| p.double.create_hit(&p.hit_type))
        .collect();
    let mut done = Vec::new();
    let mut per_hit = vec![0usize; hits.len()];
    for n in 0..submissions {
        // Workers 0..3 take every fourth submission between them; the rest are fresh-ish.
        let worker = if n % 4 == 0 {
            format!("A0HEAVY{}", n % 3)
        } else {
            format!("A1LIGHT{}", n / 2)
        };
        // A worker may submit once per HIT: find a HIT this worker has not done.
        let mut h = n % hits.len();
        while done
            .iter()
            .any(|(_, w, hit): &(String, String, usize)| w == &worker && *hit == h)
        {
            h = (h + 1) % hits.len();
        }
        per_hit[h] += 1;
        let s = p
            .double
            .submit_assignment(&hits[h], &worker)
            .await
            .expect("submit");
        done.push((s.assignment_id, worker, h));
    }
    done.into_iter().map(|(a, w, _)| (a, w)).collect()
}

/// Drains and checks every invariant. Returns how many notifications ended
/// in the DLQ, and the event source's counts.
async fn drain_and_check(
    p: &Pipeline,
    submitted: &[(String, String)],
    limit: Duration,
) -> (usize, testkit::event_source::Totals) {
    let (totals, drained) = p.event_source().drain(&p.stack, p.function(), limit).await;
    assert!(drained, "did not drain within {limit:?}: {totals:?}");
    (check(p, submitted).await, totals)
}

/// Every invariant, after a drain. Returns how many notifications ended in the DLQ.
async fn check(p: &Pipeline, submitted: &[(String, String)]) -> usize {
    check_with_releases(p, submitted, &[]).await
}

/// [`check`] after the lab released `released` workers (each with the
/// ledger's release time): their participations from before the release
/// must not exclude them again.
async fn check_with_releases(
    p: &Pipeline,
    submitted: &[(String, String)],
    released: &[(String, time::OffsetDateTime)],
) -> usize {
    let is_released = |w: &str| released.iter().any(|(r, _)| r == w);
    // Which assignments wait in the DLQ.
    let mut dead = BTreeSet::new();
    for body in p.dead_letters().await {
        let n = Notification::parse(&body).expect("DLQ holds MTurk documents");
        for e in n.events {
            if let Event::AssignmentSubmitted { assignment_id, .. } = e {
                dead.insert(assignment_id.to_string());
            }
        }
    }

    let submitters: BTreeSet<&str> = submitted.iter().map(|(_, w)| w.as_str()).collect();
    let mut per_worker: BTreeMap<&str, usize> = BTreeMap::new();
    for (assignment, worker) in submitted {
        if dead.contains(assignment) {
            continue;
        }
        let id = AssignmentId::parse(assignment).unwrap();
        let Some(p_) = p.ledger.participation(&id).await.unwrap() else {
            // Say enough to tell a lost acknowledged write from a message
            // acknowledged too early, should this ever fail again.
            let depth = p.stack.queue_depth(&p.queues.url).await;
            panic!(
                "assignment {assignment} neither in the ledger (no item, or only a lease) nor in \
                 the DLQ; its worker {worker} {} the qualification on MTurk; the queue now holds \
                 {depth:?} message(s)",
                if p.granted(worker) {
                    "holds"
                } else {
                    "does not hold"
                },
            );
        };
        assert_eq!(p_.worker_id.as_str(), worker);
        if is_released(worker) {
            continue;
        }
        assert!(
            p_.excluded_at.is_some(),
            "assignment {assignment} recorded but not excluded"
        );
        *per_worker.entry(worker).or_default() += 1;
    }
    for (worker, expected) in &per_worker {
        let w = WorkerId::parse(worker).unwrap();
        let x = p
            .ledger
            .exclusion(&w, &p.qualification)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(x.state, ExclusionState::Excluded, "{worker}");
        assert!(
            p.granted(worker),
            "{worker} excluded in the ledger but not on MTurk"
        );
        // Each participation counts once: one per assignment, every one of
        // them this worker's. One whose message ended in the DLQ may be
        // recorded too (its worker was looked up before the retries ran out).
        let recorded: Vec<String> = p
            .ledger
            .participations_of(&w)
            .await
            .unwrap()
            .iter()
            .filter_map(|x| x.assignment_id.as_ref().map(|a| a.to_string()))
            .collect();
        let theirs: BTreeSet<&str> = submitted
            .iter()
            .filter(|(_, w)| w == worker)
            .map(|(a, _)| a.as_str())
            .collect();
        let distinct: BTreeSet<&str> = recorded.iter().map(String::as_str).collect();
        assert_eq!(distinct.len(), recorded.len(), "{worker}: {recorded:?}");
        assert!(distinct.is_subset(&theirs), "{worker}: {recorded:?}");
        assert!(
            recorded.len() >= *expected,
            "{worker}: {} recorded, {expected} expected",
            recorded.len()
        );
    }
    for (worker, grant) in p.double.workers_with(p.qualification.as_str()) {
        assert!(
            submitters.contains(worker.as_str()),
            "{worker} excluded without submitting"
        );
        if !is_released(&worker) {
            assert_eq!(grant.status, GrantStatus::Granted, "{worker}");
        }
    }

    // MTurk and the ledger agree, in both directions.
    let in_ledger: BTreeSet<String> = p
        .ledger
        .excluded_workers(&p.qualification)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.worker_id.to_string())
        .collect();
    let on_mturk: BTreeSet<String> = p
        .double
        .workers_with(p.qualification.as_str())
        .into_iter()
        .filter(|(_, g)| g.status == GrantStatus::Granted)
        .map(|(w, _)| w)
        .collect();
    let not_on_mturk: Vec<_> = in_ledger.difference(&on_mturk).collect();
    assert!(
        not_on_mturk.is_empty(),
        "excluded in the ledger but not holding the qualification on MTurk: {not_on_mturk:?}"
    );
    let not_in_ledger: Vec<_> = on_mturk.difference(&in_ledger).collect();
    assert!(
        not_in_ledger.is_empty(),
        "holding the qualification on MTurk but not excluded in the ledger: {not_in_ledger:?}"
    );

    // A release stands against everything older than it.
    for (worker, at) in released {
        let w = WorkerId::parse(worker).unwrap();
        let participations = p.ledger.participations_of(&w).await.unwrap();
        let later = participations
            .iter()
            .any(|x| mturk_exclusion::exclusion::submitted_after_release(x.submit_time, Some(*at)));
        if later {
            continue; // a submission after the release may exclude again
        }
        let x = p
            .ledger
            .exclusion(&w, &p.qualification)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            x.state,
            ExclusionState::Released,
            "{worker} was excluded again by an event older than the release"
        );
        assert!(
            !p.granted(worker),
            "{worker} holds the qualification again after the release"
        );
        for x in &participations {
            assert!(
                x.released_at.is_some(),
                "{worker}: participation {} from before the release is not recorded as released: {x:?}",
                x.cause()
            );
        }
    }

    p.assert_every_grant_silent();
    let allowed = [
        "UpdateNotificationSettings",
        "GetAssignment",
        "AssociateQualificationWithWorker",
    ];
    let revokes = p.double.call_count("DisassociateQualificationFromWorker");
    assert!(
        revokes <= released.len(),
        "{revokes} revokes for {} releases: the handler revoked",
        released.len()
    );
    for call in p.double.calls() {
        assert!(
            allowed.contains(&call.operation.as_str())
                || (call.operation == "DisassociateQualificationFromWorker"
                    && !released.is_empty()),
            "unexpected MTurk call {}",
            call.operation
        );
    }
    dead.len()
}

/// How many MTurk calls were answered by an injected fault of this kind.
fn faulted(p: &Pipeline, kind: &str) -> usize {
    p.double
        .calls()
        .iter()
        .filter(|c| match &c.outcome {
            testkit::mturk_double::Outcome::Fault(k) => k == kind,
            testkit::mturk_double::Outcome::Dropped => kind == "Drop",
            _ => false,
        })
        .count()
}

fn size(short: usize) -> usize {
    if soak() {
        short * 20
    } else {
        short
    }
}

fn limit() -> Duration {
    Duration::from_secs(if soak() { 900 } else { 120 })
}

#[tokio::test]
async fn a_throttling_storm_loses_nothing() {
    let mut options = faulty_options();
    options.mturk_rps = 50.0; // far above what the account allows
    let p = Pipeline::with(options).await;
    p.double.throttle_above(Some(8.0));
    let submitted = burst(&p, size(40)).await;
    let (dead, _) = drain_and_check(&p, &submitted, limit()).await;
    assert_eq!(dead, 0, "throttling alone must never reach the DLQ");
    assert!(
        faulted(&p, "Throttle") > 0,
        "the storm never throttled: the test proves nothing"
    );
}

/// MaximumConcurrency instances, each a handler of its own (its own rate
/// limiter), as Lambda runs them: each invocation takes an idle one.
fn instances(p: &Pipeline, count: usize) -> impl Fn(SqsEvent) -> Invocation + Send + Sync + Clone {
    let pool: Arc<Vec<(AtomicBool, Arc<Handler>)>> = Arc::new(
        (0..count)
            // As the template sets MAX_CONCURRENCY for them.
            .map(|_| {
                (
                    AtomicBool::new(false),
                    p.handler_with(|c| c.max_concurrency = Some(count)),
                )
            })
            .collect(),
    );
    move |event: SqsEvent| {
        let pool = pool.clone();
        Box::pin(async move {
            // At most `count` pollers invoke at once, so one is always idle.
            let i = (0..pool.len())
                .find(|i| !pool[*i].0.swap(true, Ordering::AcqRel))
                .expect("an idle instance");
            let handler = pool[i].1.clone();
            let result = handler
                .process(event.records, Instant::now() + Duration::from_secs(60))
                .await;
            pool[i].0.store(false, Ordering::Release);
            result.map(|r| r.response()).map_err(|e| e.to_string())
        }) as Invocation
    }
}

/// The handler is not told MTurk's rate (MTURK_MAX_RPS keeps its default
/// ceiling); MTurk allows R calls/s for the whole account, shared by
/// independent instances. Every burst drains with nothing in the DLQ, and
/// only a small share of the calls is throttled.
#[tokio::test]
async fn instances_not_told_the_rate_find_it_together() {
    for (rate, concurrency) in [(5.0, 2), (5.0, 5)] {
        let mut options = faulty_options();
        options.mturk_rps = mturk_exclusion::rate::DEFAULT_CEILING;
        // As deployed: each instance starts low and finds the rate.
        options.configure = |c| c.mturk_start_rps = None;
        let p = Pipeline::with(options).await;
        p.double.throttle_above(Some(rate));
        let submitted = burst(&p, size(120)).await;
        let mut source = p.event_source();
        source.max_concurrency = concurrency;
        let (totals, drained) = source
            .drain(&p.stack, instances(&p, concurrency), limit())
            .await;
        assert!(drained, "did not drain: {totals:?}");
        assert_eq!(
            check(&p, &submitted).await,
            0,
            "throttling alone must never reach the DLQ"
        );
        let calls = p.double.calls().len();
        let throttled = faulted(&p, "Throttle");
        println!(
            "R = {rate}, {concurrency} instances: {throttled} of {calls} calls throttled, {} of {} records failed",
            totals.failed_records, totals.records
        );
        // Two instances (the template's default) stay well under 10 % even
        // in a burst this short, where slow start's overshoot weighs most
        // (6.6-7.3 % with the small controller). Five cold instances each
        // probe MTurk on their own and, climbing back after slow start,
        // spend 9-15 % of these calls throttled (7-11 % with the
        // controller before): five is not a target (the docs keep 2), the
        // bound only says they do not thrash.
        let bound = if concurrency <= 2 { 0.1 } else { 0.2 };
        assert!(
            (throttled as f64) < bound * calls as f64,
            "{throttled} of {calls} calls throttled with {concurrency} instances"
        );
    }
}

#[tokio::test]
async fn service_faults_and_5xx_bursts_lose_nothing() {
    let p = Pipeline::with(faulty_options()).await;
    p.double
        .fail_fraction(Some("GetAssignment"), 0.3, Fault::ServiceFault, 11);
    p.double.fail_fraction(
        Some("AssociateQualificationWithWorker"),
        0.3,
        Fault::Http500,
        12,
    );
    let submitted = burst(&p, size(40)).await;
    assert_eq!(drain_and_check(&p, &submitted, limit()).await.0, 0);
    assert!(faulted(&p, "ServiceFault") > 0 && faulted(&p, "Http500") > 0);

    // The lab releases the busiest worker; then every one of their
    // notifications is delivered again (a redrive, a late duplicate),
    // under the same faults.
    let w = "A0HEAVY0";
    let lab = mturk_exclusion::exclusion::Excluder::new(
        mturk_exclusion::mturk::Mturk::new(
            p.clients.mturk.clone(),
            Arc::new(mturk_exclusion::rate::RateLimiter::per_second(100.0)),
        ),
        p.ledger.clone(),
        p.qualification.clone(),
    );
    lab.release_worker(&WorkerId::parse(w).unwrap(), None, None)
        .await
        .expect("the release");
    let at = p
        .ledger
        .exclusion(&WorkerId::parse(w).unwrap(), &p.qualification)
        .await
        .unwrap()
        .and_then(|x| x.released_at)
        .expect("the ledger records the release");
    let theirs: Vec<_> = submitted.iter().filter(|(_, x)| x == w).collect();
    assert!(!theirs.is_empty());
    for (i, (assignment, _)) in theirs.iter().enumerate() {
        p.send(&testkit::pipeline::document(
            &format!("doc-again-{i}"),
            &[testkit::pipeline::submitted(
                &p.hit_type,
                "3HITOFTHEBURST",
                assignment,
            )],
        ))
        .await;
    }
    let (totals, drained) = p
        .event_source()
        .drain(&p.stack, p.function(), limit())
        .await;
    assert!(drained, "did not drain: {totals:?}");
    assert_eq!(
        check_with_releases(&p, &submitted, &[(w.to_owned(), at)]).await,
        0
    );
}

#[tokio::test]
async fn answers_slower_than_the_timeouts_lose_nothing() {
    let p = Pipeline::with(faulty_options()).await;
    // Longer than an attempt's timeout: the SDK gives up on the attempt.
    p.double
        .fail_fraction(None, 0.2, Fault::Delay(Duration::from_millis(1800)), 13);
    let submitted = burst(&p, size(24)).await;
    assert_eq!(drain_and_check(&p, &submitted, limit()).await.0, 0);
    assert!(faulted(&p, "Delay") > 0);
}

#[tokio::test]
async fn dropped_connections_lose_nothing() {
    let p = Pipeline::with(faulty_options()).await;
    p.double.fail_fraction(None, 0.25, Fault::Drop, 14);
    let submitted = burst(&p, size(40)).await;
    assert_eq!(drain_and_check(&p, &submitted, limit()).await.0, 0);
    assert!(faulted(&p, "Drop") > 0);
}

#[tokio::test]
async fn dynamodb_unreachable_mid_burst_loses_nothing() {
    let dir = std::env::temp_dir().join(testkit::unique_name("ddb"));
    std::fs::create_dir_all(&dir).unwrap();
    let db = testkit::dynamodb_local::DynamoDbLocal::start(&dir)
        .await
        .unwrap();
    let mut options = faulty_options();
    options.dynamodb_endpoint = Some(db.endpoint());
    let p = Pipeline::with(options).await;
    p.double.set_latency(Duration::from_millis(40));
    let submitted = burst(&p, size(40)).await;
    // The outage starts while the first grant is held at MTurk's door, so it
    // lands in the middle of the work however fast this machine drains: that
    // record's ledger write after the grant meets the frozen table.
    let first_grant = p.double.hold_next("AssociateQualificationWithWorker", 1);

    // Longer than an operation's whole budget (4 s), so requests fail, and
    // those DynamoDB had already taken are carried out after the thaw.
    let outage = async {
        first_grant.arrived().await;
        db.freeze();
        first_grant.open();
        tokio::time::sleep(Duration::from_secs(6)).await;
        db.thaw();
    };
    let ((dead, totals), ()) = tokio::join!(drain_and_check(&p, &submitted, limit()), outage);
    assert_eq!(dead, 0);
    assert!(
        totals.failed_records + totals.failed_invocations > 0,
        "the outage hit no record, so it proves nothing: {totals:?}"
    );
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}
