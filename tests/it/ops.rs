//! The admin operations (`mturk_exclusion::ops`), the rules behind the
//! CLI's commands, against the local services and without the binary.

use std::sync::Arc;

use mturk_exclusion::exclusion::Releases;
use mturk_exclusion::ids::{HitId, WorkerId};
use mturk_exclusion::ledger::ExclusionState;
use mturk_exclusion::mturk::Mturk;
use mturk_exclusion::ops::backfill::{self, Options as Backfill, Request as Named};
use mturk_exclusion::ops::reconcile::{self, Fix, Kind};
use mturk_exclusion::ops::release::{self, Options as Releasing, Request};
use mturk_exclusion::ops::{Lab, Quiet};
use mturk_exclusion::rate::RateLimiter;
use testkit::mturk_double::{AssignmentStatus, Fault};
use testkit::pipeline::Pipeline;

const REVOKE: &str = "DisassociateQualificationFromWorker";
const GRANT: &str = "AssociateQualificationWithWorker";

fn lab(p: &Pipeline) -> Lab {
    Lab::new(
        Mturk::new(p.mturk.clone(), Arc::new(RateLimiter::per_second(100.0))),
        p.ledger.clone(),
        p.qualification.clone(),
    )
}

fn worker(id: &str) -> WorkerId {
    WorkerId::parse(id).unwrap()
}

fn hit(id: &str) -> HitId {
    HitId::parse(id).unwrap()
}

/// A new HIT of the pipeline's subscribed type on which `w` submits; the
/// pipeline excludes them.
async fn submits(p: &Pipeline, w: &str) -> String {
    let hit = p.double.create_hit(&p.hit_type);
    p.double.submit_assignment(&hit, w).await.unwrap();
    p.drain().await;
    hit
}

async fn standing(p: &Pipeline, w: &str) -> Option<ExclusionState> {
    p.ledger
        .exclusion(&worker(w), &p.qualification)
        .await
        .unwrap()
        .map(|x| x.state)
}

fn releasing() -> Releasing {
    Releasing {
        concurrency: 2,
        ..Releasing::default()
    }
}

fn backfilling(dry_run: bool, releases: Releases) -> Backfill {
    Backfill {
        dry_run,
        releases,
        concurrency: 2,
        deadline: None,
    }
}

async fn release(lab: &Lab, request: Request) -> release::Report {
    let plan = release::plan(lab, &request).await.unwrap();
    release::execute(lab, plan, &releasing(), &Quiet).await
}

async fn backfill(lab: &Lab, hits: &[&str], options: Backfill) -> backfill::Report {
    let request = Named {
        hits: hits.iter().map(|h| hit(h)).collect(),
        ..Named::default()
    };
    backfill::run(lab, request, Vec::new(), options, &Quiet)
        .await
        .unwrap()
}

#[tokio::test]
async fn exclusion_wins_releasing_a_hit_keeps_a_worker_of_another_study() {
    let p = Pipeline::start().await;
    let lab = lab(&p);
    let released_hit = submits(&p, "A1ONLYHERE").await;
    p.double
        .submit_assignment(&released_hit, "A1BOTHSTUDIES")
        .await
        .unwrap();
    p.drain().await;
    submits(&p, "A1BOTHSTUDIES").await;

    let report = release(
        &lab,
        Request {
            hits: vec![hit(&released_hit)],
            ..Request::default()
        },
    )
    .await;

    assert_eq!(report.released.len(), 1, "{report:?}");
    assert_eq!(report.released[0].worker_id, "A1ONLYHERE");
    assert_eq!(report.kept.len(), 1, "{report:?}");
    assert_eq!(report.kept[0].worker_id, "A1BOTHSTUDIES");
    assert!(report.kept[0].reason.contains("also took part in HIT"));
    assert!(!report.kept[0].changed_since_plan);
    assert!(!p.granted("A1ONLYHERE"));
    assert!(p.granted("A1BOTHSTUDIES"));
    assert_eq!(
        standing(&p, "A1BOTHSTUDIES").await,
        Some(ExclusionState::Excluded)
    );
}

#[tokio::test]
async fn release_acts_only_on_the_workers_it_planned_and_rechecks_each() {
    let p = Pipeline::start().await;
    let lab = lab(&p);
    let study = submits(&p, "A1PLANNED").await;
    p.double
        .submit_assignment(&study, "A1BUSYSINCE")
        .await
        .unwrap();
    p.drain().await;
    let plan = release::plan(
        &lab,
        &Request {
            hits: vec![hit(&study)],
            ..Request::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(plan.targets.len(), 2);

    // While the lab reads the plan: one planned worker takes part in
    // another study, and a new worker submits on the released HIT.
    submits(&p, "A1BUSYSINCE").await;
    p.double
        .submit_assignment(&study, "A1NOTSHOWN")
        .await
        .unwrap();
    p.drain().await;
    let report = release::execute(&lab, plan, &releasing(), &Quiet).await;

    let released: Vec<&str> = report
        .released
        .iter()
        .map(|r| r.worker_id.as_str())
        .collect();
    assert_eq!(released, ["A1PLANNED"], "{report:?}");
    assert_eq!(report.kept.len(), 1, "{report:?}");
    assert_eq!(report.kept[0].worker_id, "A1BUSYSINCE");
    assert!(report.kept[0].changed_since_plan);
    assert!(report.kept[0].reason.starts_with("changed since the plan"));
    assert_eq!(report.summary.changed_since_plan, 1);
    assert!(p.granted("A1BUSYSINCE") && p.granted("A1NOTSHOWN"));
    assert!(!p.granted("A1PLANNED"));
    // Only the planned worker was revoked.
    assert_eq!(p.double.call_count(REVOKE), 1);
}

#[tokio::test]
async fn ledger_first_a_failed_revoke_leaves_the_release_and_a_rerun_only_revokes() {
    let p = Pipeline::start().await;
    let lab = lab(&p);
    submits(&p, "A1HALFWAY").await;
    p.double.fail_next(
        Some(REVOKE),
        10,
        Fault::RequestError {
            code: "ServiceUnavailable".into(),
            message: "try later".into(),
        },
    );
    let named = || Request {
        workers: vec![worker("A1HALFWAY")],
        ..Request::default()
    };

    let first = release(&lab, named()).await;

    assert_eq!(first.failed.len(), 1, "{first:?}");
    assert_eq!(first.failed[0].step, "mturk");
    assert_eq!(
        standing(&p, "A1HALFWAY").await,
        Some(ExclusionState::Released)
    );
    assert!(p.granted("A1HALFWAY"), "MTurk still holds the grant");
    let released_at = p
        .ledger
        .exclusion(&worker("A1HALFWAY"), &p.qualification)
        .await
        .unwrap()
        .unwrap()
        .released_at;

    p.double.clear_faults();
    let again = release(&lab, named()).await;

    assert_eq!(again.released.len(), 1, "{again:?}");
    assert!(again.released[0].already_released);
    assert_eq!(again.released[0].mturk, Some("revoked"));
    assert!(!p.granted("A1HALFWAY"));
    let x = p
        .ledger
        .exclusion(&worker("A1HALFWAY"), &p.qualification)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        x.released_at, released_at,
        "the ledger was not written again"
    );
}

#[tokio::test]
async fn a_dry_run_predicts_what_the_real_run_does_for_a_released_assignment() {
    // A worker released from one study, then excluded again by a later one:
    // a backfill of the first study keeps that assignment released.
    let p = Pipeline::start().await;
    let lab = lab(&p);
    let first = submits(&p, "A1TWICE").await;
    release(
        &lab,
        Request {
            workers: vec![worker("A1TWICE")],
            ..Request::default()
        },
    )
    .await;
    submits(&p, "A1TWICE").await;
    assert_eq!(
        standing(&p, "A1TWICE").await,
        Some(ExclusionState::Excluded)
    );

    let dry = backfill(&lab, &[&first], backfilling(true, Releases::Respect)).await;
    let real = backfill(&lab, &[&first], backfilling(false, Releases::Respect)).await;

    let lot = |r: &backfill::Report| {
        (
            r.newly_excluded.clone(),
            r.already_excluded.clone(),
            r.kept_released
                .iter()
                .map(|k| (k.worker_id.clone(), k.assignment_ids.clone()))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(lot(&dry), lot(&real), "dry {dry:?}\nreal {real:?}");
    assert_eq!(real.kept_released.len(), 1, "{real:?}");
    assert_eq!(real.kept_released[0].worker_id, "A1TWICE");
}

#[tokio::test]
async fn a_backfill_past_its_time_starts_no_worker_and_a_rerun_finishes() {
    let p = Pipeline::start().await;
    let lab = lab(&p);
    let (hit_id, _) = p
        .double
        .post_hit(testkit::mturk_double::HitOptions::default());
    let workers: Vec<String> = (0..3).map(|i| format!("A1LATE{i}")).collect();
    for w in &workers {
        p.double.submit_assignment(&hit_id, w).await.unwrap();
    }
    let late = Backfill {
        deadline: Some(tokio::time::Instant::now()),
        ..backfilling(false, Releases::Respect)
    };

    let stopped = backfill(&lab, &[&hit_id], late).await;

    assert!(stopped.newly_excluded.is_empty(), "{stopped:?}");
    assert_eq!(stopped.failed.len(), 3, "{stopped:?}");
    assert!(stopped
        .failed
        .iter()
        .all(|f| f.reason.starts_with("not attempted: the run's time was up")));
    assert_eq!(
        p.double.call_count("AssociateQualificationWithWorker"),
        0,
        "nothing granted"
    );
    for w in &workers {
        assert_eq!(standing(&p, w).await, None, "{w} recorded");
    }

    let rerun = backfill(&lab, &[&hit_id], backfilling(false, Releases::Respect)).await;
    assert_eq!(rerun.newly_excluded.len(), 3, "{rerun:?}");
    assert!(rerun.failed.is_empty(), "{rerun:?}");
}

#[tokio::test]
async fn a_release_stands_against_older_participations_unless_overridden() {
    let p = Pipeline::start().await;
    let lab = lab(&p);
    // A study from before notifications: MTurk knows it, the ledger not yet.
    let old = p.double.create_hit(&p.hit_type);
    let a = p
        .double
        .add_assignment(&old, "A1FORGIVEN", AssignmentStatus::Approved);
    submits(&p, "A1FORGIVEN").await;
    release(
        &lab,
        Request {
            workers: vec![worker("A1FORGIVEN")],
            ..Request::default()
        },
    )
    .await;
    p.double.clear_calls();

    let dry = backfill(&lab, &[&old], backfilling(true, Releases::Respect)).await;
    let kept = backfill(&lab, &[&old], backfilling(false, Releases::Respect)).await;

    for r in [&dry, &kept] {
        assert!(r.newly_excluded.is_empty(), "{r:?}");
        assert_eq!(r.kept_released.len(), 1, "{r:?}");
        assert_eq!(r.kept_released[0].assignment_ids, std::slice::from_ref(&a));
    }
    assert!(!p.granted("A1FORGIVEN"));
    assert_eq!(p.double.call_count(GRANT), 0);

    let overridden = backfill(&lab, &[&old], backfilling(false, Releases::Override)).await;

    assert!(overridden.override_releases);
    assert_eq!(overridden.newly_excluded, ["A1FORGIVEN"], "{overridden:?}");
    assert!(p.granted("A1FORGIVEN"));
}

#[tokio::test]
async fn a_csv_row_naming_another_worker_for_a_known_assignment_is_not_recorded() {
    let p = Pipeline::start().await;
    let lab = lab(&p);
    let study = p.double.create_hit(&p.hit_type);
    let s = p
        .double
        .submit_assignment(&study, "A1REALWORKER")
        .await
        .unwrap();
    p.drain().await;
    let row = |w: &str, line| backfill::CsvParticipation {
        worker: worker(w),
        assignment: mturk_exclusion::ids::AssignmentId::parse(&s.assignment_id).unwrap(),
        hit: hit(&study),
        hit_type: None,
        file: "batch.csv".into(),
        line,
    };

    let report = backfill::run(
        &lab,
        Named {
            csv: vec![row("A1TYPO", 2)],
            ..Named::default()
        },
        Vec::new(),
        backfilling(false, Releases::Respect),
        &Quiet,
    )
    .await
    .unwrap();

    assert_eq!(report.mismatched.len(), 1, "{report:?}");
    let m = &report.mismatched[0];
    assert_eq!(
        (
            m.worker_id.as_str(),
            m.other_worker_id.as_str(),
            m.according_to,
            m.line
        ),
        ("A1TYPO", "A1REALWORKER", "ledger", 2)
    );
    assert_eq!(report.summary.mismatched, 1);
    assert!(!p.granted("A1TYPO"));
    assert!(p
        .ledger
        .participations_of(&worker("A1TYPO"))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_external_revoke_keeps_the_ledger_excluded_until_reconcile_grants_again() {
    let p = Pipeline::start().await;
    let lab = lab(&p);
    submits(&p, "A1REVOKEDONSITE").await;
    // Revoked on MTurk's website: the ledger is not told.
    p.mturk
        .disassociate_qualification_from_worker()
        .qualification_type_id(p.qualification.as_str())
        .worker_id("A1REVOKEDONSITE")
        .send()
        .await
        .unwrap();
    p.double.clear_calls();

    // A later submission counts as already excluded and grants nothing.
    submits(&p, "A1REVOKEDONSITE").await;
    assert_eq!(p.double.call_count(GRANT), 0);
    assert!(!p.granted("A1REVOKEDONSITE"));

    let compared = reconcile::compare(&lab, &Quiet).await.unwrap();
    assert_eq!(compared.differences.len(), 1, "{compared:?}");
    assert_eq!(compared.differences[0].kind, Kind::OnlyInLedger);
    assert_eq!(
        reconcile::fix(&lab, &compared.differences[0]).await,
        Fix::Granted
    );
    assert!(p.granted("A1REVOKEDONSITE"));
    p.assert_every_grant_silent();
}

/// `Ledger::snapshot`, `report`'s one scan, against DynamoDB Local: each
/// kind of item lands where it belongs, and the rest (leases, heartbeats,
/// subscriptions, another qualification's items) is left out.
#[tokio::test]
async fn report_snapshot_sorts_every_item_kind_and_skips_the_rest() {
    use mturk_exclusion::ids::{AssignmentId, QualificationTypeId};
    use mturk_exclusion::ledger::{ClaimEnd, Replaceable};
    use mturk_exclusion::ops::report::{self, html, Options, Source};
    use time::{Duration, OffsetDateTime};

    let p = Pipeline::start().await;
    submits(&p, "A1SNAPALPHA").await;
    submits(&p, "A1SNAPBRAVO").await;
    let now = OffsetDateTime::now_utc();
    p.ledger
        .record_release(
            &worker("A1SNAPBRAVO"),
            &p.qualification,
            Some("<i>pilot</i> A1SNAPBRAVO"),
            now,
        )
        .await
        .unwrap();
    let claimed = AssignmentId::parse("3SNAPCLAIMED").unwrap();
    p.ledger
        .try_claim(
            &worker("A1SNAPCLAIM"),
            &p.qualification,
            &claimed,
            &hit("3SNAPHIT"),
            now,
            Duration::hours(1),
            Replaceable::default(),
        )
        .await
        .unwrap();
    p.ledger
        .end_claim(&claimed, ClaimEnd::Returned, now)
        .await
        .unwrap();
    // Not a report's: a lease in flight, a heartbeat, a subscription, and
    // a worker under another qualification.
    p.ledger
        .lease_assignment(
            &AssignmentId::parse("3SNAPLEASE").unwrap(),
            "owner",
            now,
            Duration::seconds(15),
        )
        .await
        .unwrap();
    p.ledger
        .record_heartbeat("doc-snap", now, None, Default::default(), now)
        .await
        .unwrap();
    let other = QualificationTypeId::parse("3OTHERQUALIFICATION").unwrap();
    p.ledger
        .record_exclusion(&worker("A1SNAPOTHER"), &other, "manual", now)
        .await
        .unwrap();

    let s = p.ledger.snapshot(&p.qualification).await.unwrap();
    let mut who: Vec<&str> = s
        .participations
        .iter()
        .map(|x| x.worker_id.as_str())
        .collect();
    who.sort();
    assert_eq!(who, ["A1SNAPALPHA", "A1SNAPBRAVO"]);
    assert_eq!(s.excluded_now, 1);
    assert_eq!(s.releases.len(), 1);
    assert_eq!(s.releases[0].worker_id.as_str(), "A1SNAPBRAVO");
    assert_eq!(s.releases[0].state, ExclusionState::Released);
    assert_eq!(s.claims.len(), 1);
    assert_eq!(s.claims[0].hit_id, "3SNAPHIT");
    assert_eq!(s.claims[0].assignment_id, "3SNAPCLAIMED");
    assert_eq!(s.claim_ends.len(), 1);
    assert_eq!(s.claim_ends[0].ended_by, "returned");
    assert_eq!(s.claim_ends[0].assignment_id, "3SNAPCLAIMED");

    let source = Source {
        stack: None,
        table: p.ledger.table().to_owned(),
        qualification: p.qualification.to_string(),
        environment: "sandbox".into(),
    };
    let options = Options {
        since: None,
        with_worker_ids: false,
        now,
    };
    let r = report::gather(&p.ledger, &p.qualification, source, &options)
        .await
        .unwrap();
    assert_eq!((r.participations, r.releases.list.len()), (2, 1));
    assert_eq!(
        r.releases.list[0].reason.as_deref(),
        Some("<i>pilot</i> [worker id]")
    );
    let page = html::render(&r);
    assert!(page.contains("&lt;i&gt;pilot&lt;/i&gt; [worker id]"));
    for w in ["A1SNAPALPHA", "A1SNAPBRAVO", "A1SNAPCLAIM", "A1SNAPOTHER"] {
        assert!(!page.contains(w), "{w} on the page");
    }
}

/// `status`'s summary against the local services: the ledger's counts, the
/// dead-letter queue found from the queue's redrive policy, and what needs
/// attention concluded from both.
#[tokio::test]
async fn status_finds_the_dead_letter_queue_and_names_what_needs_attention() {
    use mturk_exclusion::ids::HitTypeId;
    use mturk_exclusion::mturk::MturkEnvironment;
    use mturk_exclusion::ops::status::{self, Request};
    use time::OffsetDateTime;

    let p = Pipeline::start().await;
    submits(&p, "A1STATUSSEEN").await;
    let hit_type = HitTypeId::parse(&p.hit_type).unwrap();
    p.ledger
        .record_subscription(&hit_type, &p.queues.url, None, OffsetDateTime::now_utc())
        .await
        .unwrap();
    p.stack
        .sqs
        .send_message()
        .queue_url(&p.queues.dlq_url)
        .message_body("a record the function gave up on")
        .send()
        .await
        .unwrap();

    let request = Request {
        environment: MturkEnvironment::Sandbox,
        qualification: Some(p.qualification.clone()),
        queue_url: Some(p.queues.url.clone()),
        dlq_url: None,
        failures: 10,
        alarm_email: None,
    };
    let report = status::summary(&p.ledger, &p.stack.sqs, &request)
        .await
        .unwrap();

    assert_eq!(report.excluded_workers, Some(1));
    assert_eq!(report.participations.total, 1);
    assert_eq!(report.participations.stuck, 0);
    assert_eq!(report.exposure_last_24h.participations, 1);
    let queue = report.queue.as_ref().unwrap();
    assert_eq!(queue.depth.map(|d| d.total()), Some(0), "{queue:?}");
    let dlq = report.dead_letter_queue.as_ref().unwrap();
    assert_eq!(dlq.url, p.queues.dlq_url, "from the redrive policy");
    assert_eq!(dlq.depth.map(|d| d.visible), Some(1), "{dlq:?}");
    assert_eq!(report.hit_types.len(), 1);
    let t = &report.hit_types[0];
    assert!(t.active && t.verified_at.is_none());
    assert!(t.last_recorded_at.is_some(), "{t:?}");
    // Recorded without its event types: as before they were noted.
    assert_eq!(
        t.lacks_event_types,
        ["AssignmentReturned", "AssignmentAbandoned"]
    );
    assert_eq!(report.problems.len(), 3, "{:#?}", report.problems);
    assert!(report.problems[0].contains("is not subscribed to AssignmentReturned"));
    assert!(report.problems[1].contains("was never verified"));
    assert!(report.problems[2].starts_with("1 message(s) in the dead-letter queue"));
}

/// `subscribe`'s round trip with the real handler consuming the queue: the
/// test event comes back as this run's heartbeat, and the lab's CustomerId
/// is learned from it.
#[tokio::test]
async fn a_consumed_test_event_proves_the_path_and_names_the_lab() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use mturk_exclusion::ops::subscribe;

    let p = Pipeline::start().await;
    let lab = lab(&p);
    let sent = subscribe::send_test_event(&lab.mturk, &p.ledger, &p.stack.sqs, &p.queues.url, None)
        .await
        .unwrap()
        .expect("MTurk sends the test event");
    let done = AtomicBool::new(false);
    let source = p.event_source();
    let (trip, ()) = tokio::join!(
        async {
            let trip = sent
                .wait(&p.ledger, &p.stack.sqs, Duration::from_secs(20), false)
                .await
                .unwrap();
            done.store(true, Ordering::SeqCst);
            trip
        },
        async {
            // The deployed function would be consuming while the lab waits.
            while !done.load(Ordering::SeqCst) {
                source
                    .drain(&p.stack, p.function(), Duration::from_secs(2))
                    .await;
            }
        }
    );

    assert_eq!(trip.foreign, 0);
    assert!(trip.warning.is_none(), "{trip:?}");
    let (heartbeat, own) = trip.outcome.expect("a heartbeat came back");
    assert_eq!(own.customer_id, testkit::mturk_double::CUSTOMER_ID);
    assert_eq!(
        heartbeat.customer_id.as_deref(),
        Some(own.customer_id.as_str())
    );
    assert_eq!(p.ledger.own_customer().await.unwrap(), Some(own));
}

/// Nobody consumes the queue: the wait ends in a diagnosis read from the
/// queues (the dead-letter queue found from the redrive policy).
#[tokio::test]
async fn a_test_event_nobody_consumes_is_diagnosed_as_waiting_in_the_queue() {
    use std::time::Duration;

    use mturk_exclusion::ops::subscribe::{self, Cause};

    let p = Pipeline::start().await;
    let lab = lab(&p);
    let sent = subscribe::send_test_event(&lab.mturk, &p.ledger, &p.stack.sqs, &p.queues.url, None)
        .await
        .unwrap()
        .expect("MTurk sends the test event");
    // RequireSourceAccount=true takes the blame only for a lost event.
    let trip = sent
        .wait(&p.ledger, &p.stack.sqs, Duration::from_secs(2), true)
        .await
        .unwrap();

    let diagnosis = trip.outcome.expect_err("no heartbeat without a consumer");
    assert_eq!(diagnosis.cause, Cause::NotConsumed, "{diagnosis:?}");
    assert_eq!(diagnosis.queue.map(|d| d.visible), Some(1));
    assert_eq!(diagnosis.dead_letter_queue.map(|d| d.total()), Some(0));
    assert_eq!(
        p.ledger.own_customer().await.unwrap(),
        None,
        "nothing learned"
    );
}
