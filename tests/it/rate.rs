//! The rate limit on the wire: every MTurk call through `Mturk` waits for
//! the limiter, a throttled call is retried in-process (not by the SDK)
//! until the deadline, and the limiter hears every throttle.

use std::sync::Arc;
use std::time::Duration;

use mturk_exclusion::aws::{self, Limits};
use mturk_exclusion::ids::AssignmentId;
use mturk_exclusion::mturk::{retrying_throttles_until, Mturk, MturkEnvironment, MturkErrorKind};
use mturk_exclusion::rate::RateLimiter;
use testkit::mturk_double::{Fault, MturkDouble};
use tokio::time::Instant;

async fn setup(limiter: RateLimiter) -> (MturkDouble, Mturk, AssignmentId) {
    let double = MturkDouble::start(None).await.expect("double");
    let sdk = aws::load(
        None,
        Limits {
            initial_backoff: Duration::from_millis(10),
            ..Limits::default()
        },
    )
    .await;
    let client = aws::mturk_client(&sdk, MturkEnvironment::Sandbox, Some(&double.endpoint()));
    let hit_type = double.new_hit_type_id();
    let hit = double.create_hit(&hit_type);
    let submitted = double
        .submit_assignment(&hit, "A1RATEWORKER")
        .await
        .expect("submit");
    let id = AssignmentId::parse(&submitted.assignment_id).unwrap();
    double.clear_calls();
    (double, Mturk::new(client, Arc::new(limiter)), id)
}

#[tokio::test]
async fn a_throttled_call_waits_for_its_next_slot_and_succeeds() {
    let (double, mturk, id) = setup(RateLimiter::per_second(50.0)).await;
    double.fail_next(Some("GetAssignment"), 3, Fault::Throttle);
    let a = mturk
        .assignment(&id)
        .await
        .expect("retried past the throttles");
    assert_eq!(a.worker_id.as_str(), "A1RATEWORKER");
    // Three throttled attempts and the one that worked: the SDK retried none
    // of them on its own (it would have made more, unspaced).
    assert_eq!(double.call_count("GetAssignment"), 4);
    let seen = mturk.limiter().snapshot();
    assert_eq!(seen.throttles, 3);
    assert!(seen.cuts >= 1 && !seen.slow_start, "{seen:?}");
}

#[tokio::test]
async fn throttles_past_the_deadline_fail_as_throttled() {
    let (double, mturk, id) = setup(RateLimiter::per_second(4.0)).await;
    double.fail_next(Some("GetAssignment"), 1000, Fault::Throttle);
    let started = Instant::now();
    let err = retrying_throttles_until(started + Duration::from_secs(5), mturk.assignment(&id))
        .await
        .expect_err("throttled throughout");
    assert_eq!(err.kind, MturkErrorKind::Throttled);
    let calls = double.call_count("GetAssignment");
    assert!((2..50).contains(&calls), "{calls} attempts in 5 s");
    // It gave up when its next slot came too late, not after the deadline.
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// AWS refusing the caller (here its credentials) is told apart where the
/// error is read, so the CLI can point at the setup; it is not retried.
#[tokio::test]
async fn a_refused_caller_is_denied_and_not_retried() {
    let (double, mturk, id) = setup(RateLimiter::per_second(50.0)).await;
    double.fail_next(Some("GetAssignment"), 5, Fault::Unrecognized);
    let err = mturk.assignment(&id).await.expect_err("refused");
    assert_eq!(err.kind, MturkErrorKind::Denied, "{err}");
    assert_eq!(double.call_count("GetAssignment"), 1);
}

#[tokio::test]
async fn pages_wait_for_the_limiter_and_survive_throttling() {
    let (double, mturk, _) = setup(RateLimiter::per_second(50.0)).await;
    let qualification = double.create_qualification_type("Rate test");
    let q = mturk_exclusion::ids::QualificationTypeId::parse(&qualification).unwrap();
    for n in 0..250 {
        let w = mturk_exclusion::ids::WorkerId::parse(&format!("A{n:05}PAGES")).unwrap();
        mturk.exclude(&w, &q).await.unwrap();
    }
    double.clear_calls();
    double.fail_next(Some("ListWorkersWithQualificationType"), 2, Fault::Throttle);
    let (workers, odd) = mturk.workers_with(&q).await.expect("all pages");
    assert_eq!((workers.len(), odd.len()), (250, 0));
    // Three pages of at most 100, two throttled attempts retried.
    assert_eq!(double.call_count("ListWorkersWithQualificationType"), 5);
    assert_eq!(mturk.limiter().snapshot().throttles, 2);
}

/// The pool's rate through the ledger: one instance, held back by its
/// limit, notes its rate in the ledger after its batch; a new instance,
/// as deployed (no start rate, MaximumConcurrency 2), starts at half of
/// it, not in slow start; and with no history at all, at INITIAL_RATE.
#[tokio::test]
async fn a_cold_instance_starts_at_its_share_of_the_pools_rate() {
    use mturk_exclusion::rate::INITIAL_RATE;
    use testkit::pipeline::{Options, Pipeline};
    let p = Pipeline::with(Options {
        // Starting at the ceiling, so that the calls wait for their slots
        // there: the rate then says something about MTurk, and is reported
        // (a slow start below the ceiling says only "at least").
        configure: |c| {
            c.mturk_max_rps = 6.0;
            c.mturk_start_rps = Some(6.0);
        },
        ..Options::default()
    })
    .await;
    for n in 0..8 {
        let hit = p.double.create_hit(&p.hit_type);
        p.double
            .submit_assignment(&hit, &format!("A{n:04}POOLRATE"))
            .await
            .expect("submit");
    }
    p.drain().await;
    let pool = p
        .ledger
        .pool_rate(time::OffsetDateTime::now_utc())
        .await
        .expect("read")
        .expect("the instance noted its rate after its batch");
    assert_eq!(pool.instances, 1, "{pool:?}");
    assert_eq!(pool.rate, 6.0, "{pool:?}");

    let cold = p.handler_with(|c| {
        c.mturk_start_rps = None;
        c.max_concurrency = Some(2);
    });
    let (result, metrics) = cold
        .process_measured(Vec::new(), Instant::now() + Duration::from_secs(10))
        .await;
    assert!(result.is_ok());
    assert!(
        (metrics.mturk_rate - pool.rate / 2.0).abs() < 0.01,
        "started at {} for a pool rate of {}",
        metrics.mturk_rate,
        pool.rate
    );

    // Another pool's table has no history: slow start from INITIAL_RATE.
    let other = p.another_pool().await;
    let fresh = other.handler_with(|c| {
        c.mturk_start_rps = None;
        c.max_concurrency = Some(2);
    });
    let (_, metrics) = fresh
        .process_measured(Vec::new(), Instant::now() + Duration::from_secs(10))
        .await;
    assert_eq!(metrics.mturk_rate, INITIAL_RATE);
}

/// A record that waits for MTurk's rate is never dead-lettered while MTurk
/// accepts calls: the real handler, a moto queue whose redrive policy
/// dead-letters after 2 receives, MTurk allowing 1 call/s for 6 submissions
/// (about 12 s of calls) and invocations of 6 s. Records run out of time
/// again and again; at their last receive each is sent back as a new
/// message, and every worker ends granted with nothing in the DLQ.
#[tokio::test]
async fn a_starved_record_is_deferred_and_not_dead_lettered() {
    use aws_lambda_events::event::sqs::SqsEvent;
    use testkit::event_source::Invocation;
    use testkit::pipeline::{Options, Pipeline};
    let p = Pipeline::with(Options {
        max_receive_count: 2,
        // Above the invocation's 6 s, as the template keeps it above the
        // function's timeout: a record is never handled twice at once.
        visibility_secs: 10,
        configure: |c| {
            c.mturk_start_rps = Some(1.0);
            c.deadline_margin = Duration::from_millis(500);
            c.record_concurrency = 2;
        },
        ..Options::default()
    })
    .await;
    let workers: Vec<String> = (0..6).map(|n| format!("A{n:04}STARVED")).collect();
    for w in &workers {
        let hit = p.double.create_hit(&p.hit_type);
        p.double.submit_assignment(&hit, w).await.expect("submit");
    }
    p.double.throttle_above(Some(1.0));
    let handler = p.handler.clone();
    let short = move |event: SqsEvent| -> Invocation {
        let handler = handler.clone();
        Box::pin(async move {
            handler
                .process(event.records, Instant::now() + Duration::from_secs(6))
                .await
                .map(|r| r.response())
                .map_err(|e| e.to_string())
        })
    };
    let (totals, drained) = p
        .event_source()
        .drain(&p.stack, short, Duration::from_secs(120))
        .await;
    assert!(drained, "did not drain: {totals:?}");
    assert_eq!(p.dead_letters().await, Vec::<String>::new());
    for w in &workers {
        assert!(p.granted(w), "{w} not granted: {totals:?}");
    }
    // Records came back (the test starved them), and with 2 receives
    // allowed only sending them back as new messages kept them out of the DLQ.
    assert!(totals.records > workers.len() as u64, "{totals:?}");
    let throttled = p
        .double
        .calls()
        .iter()
        .filter(|c| c.outcome == testkit::mturk_double::Outcome::Fault("Throttle".into()))
        .count();
    assert!(
        throttled > 0,
        "MTurk never throttled: the test proves nothing"
    );
}

/// Two instances report their rate to the pool's one item at the same
/// moment: each writes only its own entry, so neither report is lost, and
/// the pool's rate is their sum. Reports older than that spell of work
/// (minutes, or days) do not count.
#[tokio::test]
async fn instances_reporting_at_once_both_count_in_the_pools_rate() {
    use time::{Duration as Span, OffsetDateTime};
    let p = testkit::pipeline::Pipeline::start().await;
    let now = OffsetDateTime::now_utc();
    p.ledger
        .record_pool_rate("instance-gone", 9.0, now - Span::days(2))
        .await
        .unwrap();
    p.ledger
        .record_pool_rate("instance-earlier", 7.0, now - Span::minutes(3))
        .await
        .unwrap();

    let (a, b) = tokio::join!(
        p.ledger.record_pool_rate("instance-a", 4.0, now),
        p.ledger.record_pool_rate("instance-b", 6.0, now),
    );
    a.unwrap();
    b.unwrap();

    let pool = p.ledger.pool_rate(now).await.unwrap().expect("a pool rate");
    assert_eq!(pool.instances, 2, "{pool:?}");
    assert!((pool.rate - 10.0).abs() < 1e-9, "{pool:?}");
    // Once the two are a day old, nothing is left to start from.
    assert_eq!(
        p.ledger
            .pool_rate(now + Span::days(1) + Span::minutes(1))
            .await
            .unwrap(),
        None
    );
}
