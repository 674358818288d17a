//! The check read as a stranger would use it: only the lab's own HITs get
//! an answer about a worker, a flood of made-up HIT ids costs at most the
//! GetHIT budget, a claim never outlives its assignment, the lab clears a
//! claim, and no log level puts a worker id in the logs.

use std::time::Duration;

use mturk_exclusion::check::{CheckRequest, Checker, HitCheck, Reason};
use mturk_exclusion::ids::{AssignmentId, HitId, WorkerId};
use mturk_exclusion::mturk::{Mturk, MturkEnvironment};
use mturk_exclusion::rate::RateLimiter;
use testkit::function_url::{http, Cors};
use testkit::mturk_double::HitOptions;
use testkit::pipeline::Pipeline;
use time::OffsetDateTime;

use super::*;

fn mturk_on(p: &Pipeline) -> Mturk {
    Mturk::new(
        mturk_exclusion::aws::mturk_client(
            &p.stack.sdk,
            MturkEnvironment::Sandbox,
            Some(&p.double.endpoint()),
        ),
        std::sync::Arc::new(RateLimiter::per_second(1000.0)),
    )
}

fn accepted(worker: &str, assignment: &str, hit: &str) -> CheckRequest {
    CheckRequest::Accepted {
        worker: WorkerId::parse(worker).unwrap(),
        assignment: AssignmentId::parse(assignment).unwrap(),
        hit: HitId::parse(hit).unwrap(),
    }
}

#[tokio::test]
async fn a_strangers_hit_id_gets_no_answer_about_the_worker_and_writes_nothing() {
    let (p, d) = deployed(1).await;
    let repeat = fresh("A");
    p.ledger
        .record_exclusion(
            &WorkerId::parse(&repeat).unwrap(),
            &p.qualification,
            "3PARTICIPATION0ASSIGNMENT0000",
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let busy = fresh("A");
    assert_eq!(
        verdict(&d.check(&busy, &fresh("3ASG")).await),
        (true, "new".into())
    );
    // Another requester's HIT: GetHIT refuses it, as MTurk does.
    let stranger = fresh("3STRANGERHIT");
    let before = items(&p).await;
    for worker in [&repeat, &busy, &fresh("A")] {
        let r = d
            .get(&format!(
                "workerId={worker}&assignmentId={}&hitId={stranger}",
                fresh("3ASG")
            ))
            .await;
        assert_eq!(
            verdict(&r),
            (true, "unknown_hit".into()),
            "the same answer for every worker"
        );
    }
    assert_eq!(items(&p).await, before, "nothing written");
    assert!(p.double.call_count("GetHIT") >= 1, "GetHIT was asked");
    // The lab's HIT, verified once and then remembered in the ledger.
    assert_eq!(
        verdict(&d.check(&repeat, &fresh("3ASG")).await),
        (false, "took_part".into())
    );
    let hit = HitId::parse(HIT).unwrap();
    let known = p
        .ledger
        .verified_hit(&hit)
        .await
        .unwrap()
        .expect("remembered");
    assert_eq!(known.hit_type_id, p.hit_type);
    assert_eq!(known.assignment_duration_secs, Some(3600));
    let calls = p.double.call_count("GetHIT");
    for _ in 0..3 {
        d.check(&fresh("A"), &fresh("3ASG")).await;
    }
    assert_eq!(p.double.call_count("GetHIT"), calls, "no GetHIT once known");
}

#[tokio::test]
async fn a_thousand_made_up_hit_ids_cost_at_most_the_budget_and_write_nothing() {
    const BUDGET: u32 = 7;
    let p = Pipeline::start().await;
    let checker = Checker::new(
        p.ledger.clone(),
        p.qualification.clone(),
        time::Duration::minutes(60),
    )
    .with_hit_lookups(mturk_on(&p), BUDGET);
    let before = items(&p).await;
    let worker = fresh("A");
    let now = OffsetDateTime::now_utc();
    let mut answers = std::collections::BTreeMap::new();
    for n in 0..1000 {
        let request = accepted(&worker, &fresh("3ASG"), &format!("3MADEUP{n:05}"));
        let reason = checker.check(&request, now).await.expect("answered");
        *answers.entry(reason.metric()).or_insert(0) += 1;
        assert_eq!(reason.as_str(), "unknown_hit");
    }
    assert_eq!(
        p.double.call_count("GetHIT"),
        BUDGET as usize,
        "{answers:?}"
    );
    assert_eq!(answers.get("unknown_hit"), Some(&(BUDGET as i32)));
    assert_eq!(answers.get("hit_unverified"), Some(&(1000 - BUDGET as i32)));
    assert_eq!(items(&p).await, before, "nothing written");
    // Over the budget, even the lab's own new HIT waits for the next minute
    // (or for the watch's listing): no answer about the worker meanwhile.
    let lab_hit = p.double.create_hit(&p.hit_type);
    assert_eq!(
        checker
            .verify_hit(&HitId::parse(&lab_hit).unwrap(), now)
            .await
            .unwrap(),
        HitCheck::Unverified
    );
    // Budget 0: never a GetHIT.
    let none = Checker::new(
        p.ledger.clone(),
        p.qualification.clone(),
        time::Duration::minutes(60),
    )
    .with_hit_lookups(mturk_on(&p), 0);
    let calls = p.double.call_count("GetHIT");
    assert_eq!(
        none.check(&accepted(&worker, &fresh("3ASG"), &lab_hit), now)
            .await
            .unwrap(),
        Reason::UnknownHit
    );
    assert_eq!(p.double.call_count("GetHIT"), calls);
}

#[tokio::test]
async fn a_claim_on_a_made_up_assignment_ends_with_its_hits_duration_and_is_never_extended() {
    let p = Pipeline::start().await;
    // MTurk's shortest assignment: 30 s, against ClaimMinutes 60.
    let hit = p.double.create_hit_with(
        &p.hit_type,
        HitOptions {
            assignment_duration: Duration::from_secs(30),
            ..HitOptions::default()
        },
    );
    let checker = Checker::new(
        p.ledger.clone(),
        p.qualification.clone(),
        time::Duration::minutes(60),
    )
    .with_hit_lookups(mturk_on(&p), 20);
    let worker = fresh("A");
    let (made_up, other) = (fresh("3MADEUPASG"), fresh("3ASG"));
    let now = OffsetDateTime::now_utc();
    let at = |s: i64| now + time::Duration::seconds(s);
    assert_eq!(
        checker
            .check(&accepted(&worker, &made_up, &hit), now)
            .await
            .unwrap(),
        Reason::New
    );
    let standing = p
        .ledger
        .standing(&WorkerId::parse(&worker).unwrap(), &p.qualification)
        .await
        .unwrap();
    assert_eq!(
        standing.claim.expect("claimed").expires_at,
        now.unix_timestamp() + 30,
        "the HIT's 30 s, not ClaimMinutes"
    );
    assert_eq!(
        checker
            .check(&accepted(&worker, &other, &hit), at(29))
            .await
            .unwrap(),
        Reason::Busy
    );
    // The same (made-up) assignment again, within and after its time:
    // eligible, and the claim is not extended.
    assert_eq!(
        checker
            .check(&accepted(&worker, &made_up, &hit), at(20))
            .await
            .unwrap(),
        Reason::SameAssignment
    );
    assert_eq!(
        checker
            .check(&accepted(&worker, &made_up, &hit), at(31))
            .await
            .unwrap(),
        Reason::SameAssignment
    );
    assert_eq!(
        checker
            .check(&accepted(&worker, &other, &hit), at(31))
            .await
            .unwrap(),
        Reason::New,
        "the worker is free once the assignment's time is up"
    );
}

#[tokio::test]
async fn the_lab_clears_a_claim() {
    let (p, d) = deployed(1).await;
    let worker = fresh("A");
    let w = WorkerId::parse(&worker).unwrap();
    assert_eq!(
        verdict(&d.check(&worker, &fresh("3ASG")).await),
        (true, "new".into())
    );
    assert_eq!(
        verdict(&d.check(&worker, &fresh("3ASG")).await),
        (false, "busy".into())
    );
    let lab =
        mturk_exclusion::ops::Lab::new(mturk_on(&p), p.ledger.clone(), p.qualification.clone());
    let summary = mturk_exclusion::ops::claims::summary(
        &p.ledger,
        &p.qualification,
        OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    assert_eq!((summary.live, summary.stored), (1, 1));
    let cleared = mturk_exclusion::ops::claims::clear(&lab, std::slice::from_ref(&w))
        .await
        .unwrap();
    assert_eq!(cleared.cleared, std::slice::from_ref(&w));
    assert!(cleared.not_found.is_empty());
    assert_eq!(
        verdict(&d.check(&worker, &fresh("3ASG")).await),
        (true, "new".into()),
        "free again"
    );
    let again = mturk_exclusion::ops::claims::clear(&lab, &[WorkerId::parse(&fresh("A")).unwrap()])
        .await
        .unwrap();
    assert_eq!(again.not_found.len(), 1);
}

#[tokio::test]
async fn trace_logging_names_no_worker() {
    let p = Pipeline::start().await;
    p.double.create_hit_with_id(HIT, &p.hit_type);
    let mut env = env_of(&p);
    for (k, v) in env.iter_mut() {
        if k == "AWS_LAMBDA_LOG_LEVEL" {
            *v = "TRACE".into();
        }
    }
    let d = Deployed::start(1, &env).await;
    let worker = fresh("A");
    let a = fresh("3ASG");
    let answers = [
        d.check(&worker, &a).await,
        d.check(&worker, &fresh("3ASG")).await,
        d.get(&format!(
            "workerId={worker}&assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId={HIT}"
        ))
        .await,
        d.get(&format!(
            "workerId={worker}&assignmentId={a}&hitId={}",
            fresh("3STRANGERHIT")
        ))
        .await,
        d.get(&format!("workerId={worker}&hitId={HIT}")).await,
    ];
    assert_eq!(
        answers.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 200, 200, 400]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = d.logs();
    assert!(
        logs.contains(r#""level":"DEBUG""#),
        "TRACE reached the check's own events:\n{logs}"
    );
    assert!(!logs.contains(&worker), "a worker id in the logs:\n{logs}");
}

#[tokio::test]
async fn allowed_origins_follow_the_parameter() {
    let p = Pipeline::start().await;
    p.double.create_hit_with_id(HIT, &p.hit_type);
    let cors = Cors::from_template_with(
        "ExclusionCheckFunction",
        &[("CheckAllowedOrigins", "https://lab.example.org")],
    )
    .unwrap();
    let d = Deployed::start_with_cors(1, &env_of(&p), cors).await;
    let preflight = |origin: &'static str| {
        let url = d.url.url();
        async move {
            http(
                "OPTIONS",
                &url,
                &[("Origin", origin), ("Access-Control-Request-Method", "GET")],
                b"",
            )
            .await
            .unwrap()
        }
    };
    let ours = preflight("https://lab.example.org").await;
    assert_eq!(
        ours.header_values("access-control-allow-origin"),
        ["https://lab.example.org"]
    );
    let theirs = preflight("https://elsewhere.example").await;
    assert!(theirs
        .header_values("access-control-allow-origin")
        .is_empty());
}

#[tokio::test]
async fn a_claim_of_the_old_layout_holds_until_it_ends_and_is_never_written_again() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let p = Pipeline::start().await;
    let hit = HitId::parse(HIT).unwrap();
    super::contract::verified(&p, &hit, Some(3600)).await;
    let checker = Checker::new(
        p.ledger.clone(),
        p.qualification.clone(),
        time::Duration::minutes(60),
    );
    let worker = fresh("A");
    let old = fresh("3OLDASG");
    let now = OffsetDateTime::now_utc();
    // A claim as releases up to 0.2.0 wrote it: next to the exclusion.
    let s = |v: &str| AttributeValue::S(v.to_owned());
    p.stack
        .dynamodb
        .put_item()
        .table_name(p.ledger.table())
        .item("pk", s(&format!("W#{worker}")))
        .item("sk", s(&format!("C#{}", p.qualification)))
        .item("claim_assignment", s(&old))
        .item("claim_hit", s(HIT))
        .item("claimed_at", s(&mturk_exclusion::ledger::stamp(now)))
        .item(
            "expires_at",
            AttributeValue::N((now.unix_timestamp() + 600).to_string()),
        )
        .send()
        .await
        .unwrap();
    let other = fresh("3ASG");
    let ask = |a: &str, at| {
        let request = accepted(&worker, a, HIT);
        let checker = checker.clone();
        async move { checker.check(&request, at).await.unwrap() }
    };
    assert_eq!(ask(&old, now).await, Reason::SameAssignment);
    assert_eq!(ask(&other, now).await, Reason::Busy);
    let summary = mturk_exclusion::ops::claims::summary(&p.ledger, &p.qualification, now)
        .await
        .unwrap();
    assert_eq!(summary.live, 1, "status counts it");
    // Once it ended, a new claim is made in the new layout.
    let later = now + time::Duration::seconds(601);
    assert_eq!(ask(&other, later).await, Reason::New);
    assert_eq!(ask(&fresh("3ASG"), later).await, Reason::Busy);
    // clear-claim removes both.
    let w = WorkerId::parse(&worker).unwrap();
    let cleared = p.ledger.clear_claim(&w, &p.qualification).await.unwrap();
    assert_eq!(cleared.len(), 2);
    assert_eq!(ask(&fresh("3ASG"), later).await, Reason::New);
}

#[tokio::test]
async fn a_hit_the_watch_listed_is_known_without_a_get_hit() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit_with(
        &p.hit_type,
        HitOptions {
            assignment_duration: Duration::from_secs(600),
            ..HitOptions::default()
        },
    );
    let expired = p.double.create_hit(&p.hit_type);
    p.double.expire_hit(&expired);
    let listed = mturk_on(&p).hits().await.unwrap();
    let now = OffsetDateTime::now_utc();
    assert_eq!(p.ledger.record_listed_hits(&listed, now).await.unwrap(), 1);
    assert_eq!(
        p.ledger.record_listed_hits(&listed, now).await.unwrap(),
        0,
        "known HITs are not written again"
    );
    // A check that may not call GetHIT at all.
    let checker = Checker::new(
        p.ledger.clone(),
        p.qualification.clone(),
        time::Duration::minutes(60),
    );
    let calls = p.double.call_count("GetHIT");
    assert_eq!(
        checker
            .check(&accepted(&fresh("A"), &fresh("3ASG"), &hit), now)
            .await
            .unwrap(),
        Reason::New
    );
    assert_eq!(
        checker
            .check(&accepted(&fresh("A"), &fresh("3ASG"), &expired), now)
            .await
            .unwrap(),
        Reason::UnknownHit,
        "only HITs a worker may hold are recorded"
    );
    assert_eq!(p.double.call_count("GetHIT"), calls);
    let known = p
        .ledger
        .verified_hit(&HitId::parse(&hit).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(known.assignment_duration_secs, Some(600));
}
