//! Every case of the check's contract, over the Runtime API with Function
//! URL payloads.

use std::time::Duration;

use mturk_exclusion::check::{emf_line, CheckRequest, Checker, Reason};
use mturk_exclusion::ids::{AssignmentId, HitId, WorkerId};
use serde_json::{json, Value};
use testkit::function_url::http;
use testkit::pipeline::{document, Pipeline};
use time::OffsetDateTime;

use super::*;

/// Records `hit` as a HIT of the lab, as the watch's listing would.
pub async fn verified(p: &Pipeline, hit: &HitId, duration_secs: Option<i64>) {
    p.ledger
        .record_verified_hit(
            hit,
            &mturk_exclusion::ids::HitTypeId::parse(&p.hit_type).unwrap(),
            duration_secs,
            mturk_exclusion::ledger::VerifiedBy::Watch,
            OffsetDateTime::now_utc(),
        )
        .await
        .expect("record a verified HIT");
}

async fn exclude(p: &Pipeline, worker: &str) {
    p.ledger
        .record_exclusion(
            &WorkerId::parse(worker).unwrap(),
            &p.qualification,
            "3PARTICIPATION0ASSIGNMENT0000",
            OffsetDateTime::now_utc(),
        )
        .await
        .expect("seed an exclusion");
}

#[tokio::test]
async fn new_then_reload_is_same_assignment_then_other_assignment_is_busy() {
    let (_p, d) = deployed(2).await;
    let worker = fresh("A");
    let (a1, a2) = (fresh("3ASG"), fresh("3ASG"));
    assert_eq!(verdict(&d.check(&worker, &a1).await), (true, "new".into()));
    assert_eq!(
        verdict(&d.check(&worker, &a1).await),
        (true, "same_assignment".into()),
        "a reload of the claimed assignment"
    );
    assert_eq!(
        verdict(&d.check(&worker, &a2).await),
        (false, "busy".into())
    );
    assert_eq!(
        verdict(&d.check(&worker, &a1).await),
        (true, "same_assignment".into()),
        "a busy answer does not move the claim"
    );
    let other = fresh("A");
    assert_eq!(
        verdict(&d.check(&other, &a2).await),
        (true, "new".into()),
        "claims are per worker"
    );
}

#[tokio::test]
async fn a_worker_who_took_part_is_told_so_and_nothing_is_written() {
    let (p, d) = deployed(1).await;
    let repeat = fresh("A");
    exclude(&p, &repeat).await;
    // The HIT already known as the lab's: its first check writes that
    // (once per HIT, nothing about any worker).
    verified(&p, &HitId::parse(HIT).unwrap(), Some(3600)).await;
    let before = items(&p).await;
    assert_eq!(
        verdict(&d.check(&repeat, &fresh("3ASG")).await),
        (false, "took_part".into())
    );
    assert_eq!(items(&p).await, before);
}

#[tokio::test]
async fn the_submission_ends_the_claim_because_took_part_wins() {
    let (p, d) = deployed(1).await;
    let worker = fresh("A");
    let a1 = fresh("3ASG");
    assert_eq!(verdict(&d.check(&worker, &a1).await), (true, "new".into()));
    exclude(&p, &worker).await; // what the handler records at submission
    assert_eq!(
        verdict(&d.check(&worker, &a1).await),
        (false, "took_part".into())
    );
    assert_eq!(
        verdict(&d.check(&worker, &fresh("3ASG")).await),
        (false, "took_part".into())
    );
}

#[tokio::test]
async fn previews_read_nothing_and_say_nothing_about_any_worker() {
    let (p, d) = deployed(1).await;
    let preview = "ASSIGNMENT_ID_NOT_AVAILABLE";
    let r = d.get(&format!("assignmentId={preview}&hitId={HIT}")).await;
    assert_eq!(verdict(&r), (true, "preview".into()));
    let r = d
        .get(&format!("assignmentId={}&hitId={HIT}", fresh("3ASG")))
        .await;
    assert_eq!(
        verdict(&r),
        (true, "preview".into()),
        "no workerId is a preview"
    );
    let repeat = fresh("A");
    exclude(&p, &repeat).await;
    let busy = fresh("A");
    assert_eq!(
        verdict(&d.check(&busy, &fresh("3ASG")).await),
        (true, "new".into())
    );
    let before = items(&p).await;
    // MTurk's previews carry no workerId; one that does gets the same
    // answer for a worker who took part, a busy one and a new one, on the
    // lab's HIT or any other, and costs no read.
    let worker = fresh("A");
    for w in [&repeat, &busy, &worker] {
        for hit in [HIT, "3MADEUPHIT0000000000000000000"] {
            let r = d
                .get(&format!("workerId={w}&assignmentId={preview}&hitId={hit}"))
                .await;
            assert_eq!(verdict(&r), (true, "preview".into()), "{w} on {hit}");
        }
    }
    assert_eq!(items(&p).await, before, "previews write nothing");
    assert_eq!(
        verdict(&d.check(&worker, &fresh("3ASG")).await),
        (true, "new".into()),
        "the preview claimed nothing"
    );
    // Nothing read: with the ledger unreachable, a preview with a workerId
    // is still answered.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let env = check_env(
        p.ledger.table(),
        p.qualification.as_str(),
        &dead,
        &p.double.endpoint(),
    );
    let offline = Deployed::start(1, &env).await;
    let r = offline
        .get(&format!(
            "workerId={repeat}&assignmentId={preview}&hitId={HIT}"
        ))
        .await;
    assert_eq!(verdict(&r), (true, "preview".into()));
    assert_eq!(offline.check(&repeat, &fresh("3ASG")).await.status, 503);
}

#[tokio::test]
async fn bad_or_missing_ids_are_400_naming_the_parameter_and_write_nothing() {
    let (p, d) = deployed(1).await;
    let before = items(&p).await;
    let (w, a) = (fresh("A"), fresh("3ASG"));
    let long = "A".repeat(256);
    let cases = [
        (format!("workerId={w}&hitId={HIT}"), "assignmentId"),
        (format!("workerId={w}&assignmentId={a}"), "hitId"),
        (
            format!("workerId=A1%3Cscript%3E&assignmentId={a}&hitId={HIT}"),
            "workerId",
        ),
        (
            format!("workerId=&assignmentId={a}&hitId={HIT}"),
            "workerId",
        ),
        (
            format!("workerId={long}&assignmentId={a}&hitId={HIT}"),
            "workerId",
        ),
        (
            format!("workerId={w}&assignmentId=3A-B&hitId={HIT}"),
            "assignmentId",
        ),
        (format!("workerId={w}&assignmentId={a}&hitId=%00"), "hitId"),
        (
            format!("workerId={w}&workerId={w}&assignmentId={a}&hitId={HIT}"),
            "workerId",
        ),
        (String::new(), "assignmentId"),
    ];
    for (query, names) in cases {
        let r = d.get(&query).await;
        assert_eq!(r.status, 400, "{query}: {r:?}");
        let error = r.json()["error"].as_str().expect("error").to_owned();
        assert!(error.contains(names), "{query}: {error}");
        assert!(
            !error.contains(&w),
            "the error does not echo the worker id: {error}"
        );
    }
    assert_eq!(items(&p).await, before);
}

#[tokio::test]
async fn oversized_requests_are_400() {
    let (p, d) = deployed(1).await;
    let before = items(&p).await;
    let padding = "9".repeat(3000);
    let r = d
        .get(&format!(
            "workerId={}&assignmentId={}&hitId={HIT}&x={padding}",
            fresh("A"),
            fresh("3ASG")
        ))
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.json()["error"].as_str().unwrap().contains("query string"));
    let body = vec![b'x'; 4096];
    let url = format!(
        "{}?workerId={}&assignmentId={}&hitId={HIT}",
        d.url.url(),
        fresh("A"),
        fresh("3ASG")
    );
    let r = http("GET", &url, &[], &body).await.unwrap();
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.json()["error"].as_str().unwrap().contains("body"));
    assert_eq!(items(&p).await, before);
}

#[tokio::test]
async fn any_method_but_get_is_405() {
    let (p, d) = deployed(1).await;
    let before = items(&p).await;
    let url = format!(
        "{}?workerId={}&assignmentId={}&hitId={HIT}",
        d.url.url(),
        fresh("A"),
        fresh("3ASG")
    );
    for method in ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
        let r = http(method, &url, &[], b"").await.unwrap();
        assert_eq!(r.status, 405, "{method}: {r:?}");
        assert_eq!(r.header_values("allow"), ["GET"]);
    }
    assert_eq!(items(&p).await, before);
}

#[tokio::test]
async fn an_unreachable_ledger_is_503() {
    let p = Pipeline::start().await;
    // A closed port on loopback: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let env = check_env(
        p.ledger.table(),
        p.qualification.as_str(),
        &dead,
        &p.double.endpoint(),
    );
    let d = Deployed::start(1, &env).await;
    let started = std::time::Instant::now();
    let r = d.check(&fresh("A"), &fresh("3ASG")).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.json()["error"].is_string());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "before the page gives up"
    );
    // A bad request is still a 400: it never reaches the ledger.
    assert_eq!(d.get("workerId=A1").await.status, 400);
}

#[tokio::test]
async fn cors_is_the_templates_and_the_function_sets_none() {
    let (_p, d) = deployed(1).await;
    // Preflight: answered by the URL from the Cors block, not the function.
    let r = http(
        "OPTIONS",
        &d.url.url(),
        &[
            ("Origin", "http://127.0.0.1:9"),
            ("Access-Control-Request-Method", "GET"),
        ],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header_values("access-control-allow-origin"), ["*"]);
    assert_eq!(r.header_values("access-control-allow-methods"), ["GET"]);
    assert_eq!(r.header_values("access-control-max-age"), ["300"]);
    assert!(r
        .header_values("access-control-allow-credentials")
        .is_empty());
    // A cross-origin GET: exactly one Allow-Origin (the function adds none).
    let url = format!(
        "{}?workerId={}&assignmentId={}&hitId={HIT}",
        d.url.url(),
        fresh("A"),
        fresh("3ASG")
    );
    let r = http(
        "GET",
        &url,
        &[("Origin", "https://workersandbox.mturk.com")],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(verdict(&r), (true, "new".into()));
    assert_eq!(r.header_values("access-control-allow-origin"), ["*"]);
    // Without an Origin, no CORS headers at all: none come from the function.
    let r = d.check(&fresh("A"), &fresh("3ASG")).await;
    assert!(
        r.headers
            .iter()
            .all(|(k, _)| !k.starts_with("access-control-")),
        "{:?}",
        r.headers
    );
    assert_eq!(r.header_values("content-type"), ["application/json"]);
}

fn ended(kind: &str, assignment: &str) -> Value {
    json!({
        "EventType": kind,
        "EventTimestamp": "2026-03-02T17:04:11Z",
        "HITTypeId": "3XJOUITW8URHJMX7F00H20LGRIAKAJ",
        "HITId": HIT,
        "AssignmentId": assignment,
    })
}

#[tokio::test]
async fn returned_and_abandoned_notifications_free_the_worker_without_mturk() {
    let (p, d) = deployed(1).await;
    for kind in ["AssignmentReturned", "AssignmentAbandoned"] {
        let worker = fresh("A");
        let (a1, a2, a3) = (fresh("3ASG"), fresh("3ASG"), fresh("3ASG"));
        assert_eq!(verdict(&d.check(&worker, &a1).await), (true, "new".into()));
        assert_eq!(
            verdict(&d.check(&worker, &a2).await),
            (false, "busy".into())
        );
        // A notification about another assignment changes nothing.
        p.send(&document(&fresh("DOC"), &[ended(kind, &a3)])).await;
        p.drain().await;
        assert_eq!(
            verdict(&d.check(&worker, &a2).await),
            (false, "busy".into())
        );
        let calls_before = p.double.calls_to("GetAssignment").len();
        p.send(&document(&fresh("DOC"), &[ended(kind, &a1)])).await;
        let totals = p.drain().await;
        assert_eq!(
            p.double.calls_to("GetAssignment").len(),
            calls_before,
            "{kind}: no MTurk call"
        );
        assert!(p.dead_letters().await.is_empty(), "{totals:?}");
        assert_eq!(
            verdict(&d.check(&worker, &a2).await),
            (true, "new".into()),
            "{kind} ended the claim"
        );
        assert_eq!(
            verdict(&d.check(&worker, &a3).await),
            (false, "busy".into())
        );
    }
}

#[tokio::test]
async fn a_released_worker_is_eligible_again() {
    let (p, d) = deployed(1).await;
    let worker = fresh("A");
    let w = WorkerId::parse(&worker).unwrap();
    let a1 = fresh("3ASG");
    assert_eq!(verdict(&d.check(&worker, &a1).await), (true, "new".into()));
    exclude(&p, &worker).await;
    assert_eq!(
        verdict(&d.check(&worker, &fresh("3ASG")).await),
        (false, "took_part".into())
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    p.ledger
        .record_release(&w, &p.qualification, None, OffsetDateTime::now_utc())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Neither the participation nor the claim from before the release counts.
    let a2 = fresh("3ASG");
    assert_eq!(verdict(&d.check(&worker, &a2).await), (true, "new".into()));
    assert_eq!(
        verdict(&d.check(&worker, &fresh("3ASG")).await),
        (false, "busy".into())
    );
    // A submission after the release excludes again.
    exclude(&p, &worker).await;
    assert_eq!(
        verdict(&d.check(&worker, &a2).await),
        (false, "took_part".into())
    );
}

#[tokio::test]
async fn an_expired_claim_frees_the_worker() {
    // In process, with a claim of one second (CLAIM_MINUTES is whole minutes).
    let p = Pipeline::start().await;
    let checker = Checker::new(
        p.ledger.clone(),
        p.qualification.clone(),
        time::Duration::seconds(1),
    );
    let worker = WorkerId::parse(&fresh("A")).unwrap();
    let hit = HitId::parse(HIT).unwrap();
    verified(&p, &hit, Some(3600)).await;
    let accepted = |a: &str| CheckRequest::Accepted {
        worker: worker.clone(),
        assignment: AssignmentId::parse(a).unwrap(),
        hit: hit.clone(),
    };
    let (a1, a2) = (fresh("3ASG"), fresh("3ASG"));
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        checker.check(&accepted(&a1), now).await.unwrap(),
        Reason::New
    );
    assert_eq!(
        checker.check(&accepted(&a2), now).await.unwrap(),
        Reason::Busy
    );
    let later = now + time::Duration::seconds(2);
    assert_eq!(
        checker.check(&accepted(&a2), later).await.unwrap(),
        Reason::New
    );
    assert_eq!(
        checker.check(&accepted(&a1), later).await.unwrap(),
        Reason::Busy
    );
}

#[tokio::test]
async fn one_valid_emf_line_per_request_and_no_worker_id_in_the_logs() {
    let (_p, d) = deployed(1).await;
    let worker = fresh("A");
    let a = fresh("3ASG");
    let answers = [
        d.check(&worker, &a).await,
        d.check(&worker, &a).await,
        d.check(&worker, &fresh("3ASG")).await,
        d.get(&format!("workerId={worker}&hitId={HIT}")).await,
    ];
    assert_eq!(
        answers.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 200, 400]
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = d.logs();
    assert!(!logs.contains(&worker), "a worker id in the logs:\n{logs}");
    let emf: Vec<Value> = testkit::emf::documents(&logs)
        .into_iter()
        .map(|(line, doc)| {
            testkit::emf::assert_valid(&line);
            doc
        })
        .collect();
    let reasons: Vec<&str> = emf.iter().map(|v| v["Reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        ["new", "same_assignment", "busy", "invalid"],
        "{logs}"
    );
    for doc in &emf {
        assert_eq!(doc["Pool"], "test-pool");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "MturkExclusion"
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Pool", "Reason"]])
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][1]["Dimensions"],
            json!([["Pool"]])
        );
        assert_eq!(doc["Checks"], 1);
        assert!(doc["CheckLatency"].as_f64().unwrap() >= 0.0);
    }
    // The library's own document, for every reason the metric may carry.
    for reason in [
        "preview",
        "new",
        "same_assignment",
        "busy",
        "took_part",
        "invalid",
        "unavailable",
    ] {
        let line = emf_line(
            "p",
            reason,
            Duration::from_millis(3),
            mturk_exclusion::metrics::now_ms(),
        );
        testkit::emf::assert_valid(&line);
    }
}
