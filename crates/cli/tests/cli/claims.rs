//! `status` counts the accept-time check's claims; `clear-claim` frees a worker.

use crate::CliExt;
use mturk_exclusion::check::{CheckRequest, Checker, Reason};
use mturk_exclusion::ids::{AssignmentId, HitId, HitTypeId, WorkerId};
use mturk_exclusion::ledger::VerifiedBy;
use testkit::pipeline::Pipeline;
use time::OffsetDateTime;

#[tokio::test]
async fn status_counts_live_claims_and_clear_claim_frees_the_worker() {
    let p = Pipeline::start().await;
    let now = OffsetDateTime::now_utc();
    let hit = HitId::parse(&p.double.create_hit(&p.hit_type)).unwrap();
    p.ledger
        .record_verified_hit(
            &hit,
            &HitTypeId::parse(&p.hit_type).unwrap(),
            Some(3600),
            VerifiedBy::Watch,
            now,
        )
        .await
        .unwrap();
    let checker = Checker::new(
        p.ledger.clone(),
        p.qualification.clone(),
        time::Duration::minutes(60),
    );
    let worker = WorkerId::parse("A1CLAIMEDWORKER").unwrap();
    let accepted = |assignment: &str| CheckRequest::Accepted {
        worker: worker.clone(),
        assignment: AssignmentId::parse(assignment).unwrap(),
        hit: hit.clone(),
    };
    assert_eq!(
        checker.check(&accepted("3CLAIMASG1"), now).await.unwrap(),
        Reason::New
    );

    let run = p.cli(&["status", "--json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let s = run.json();
    assert_eq!(s["claims"]["live"], 1, "{s}");
    assert_eq!(s["claims"]["stored"], 1, "{s}");
    let text = p.cli(&["status"]).await;
    assert!(
        text.stdout
            .contains("Claims of the accept-time check: 1 live"),
        "{}",
        text.stdout
    );
    assert!(
        !text.stdout.contains("A1CLAIMEDWORKER"),
        "no worker id: {}",
        text.stdout
    );

    let cleared = p.cli(&["clear-claim", "--worker", "A1CLAIMEDWORKER"]).await;
    assert_eq!(cleared.code, 0, "{cleared:?}");
    assert!(cleared
        .stdout
        .contains("Cleared the claim on A1CLAIMEDWORKER"));
    assert_eq!(
        checker.check(&accepted("3CLAIMASG2"), now).await.unwrap(),
        Reason::New,
        "free again"
    );
    let again = p
        .cli(&["clear-claim", "--worker", "A1NEVERCLAIMED", "--json"])
        .await;
    assert_eq!(again.code, 1, "{again:?}");
    assert_eq!(again.json()["not_found"][0], "A1NEVERCLAIMED");
    let bad = p.cli(&["clear-claim", "--worker", "not an id"]).await;
    assert_eq!(bad.code, 2, "{bad:?}");
}
