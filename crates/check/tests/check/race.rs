//! Exactly one claim per worker: N checks at once for one worker on N
//! different assignments, spread over several function instances.

use std::collections::BTreeMap;

use futures::future::join_all;
use mturk_exclusion::check::{CheckRequest, Checker, Reason};
use mturk_exclusion::ids::{AssignmentId, HitId, WorkerId};
use time::OffsetDateTime;

use super::*;

const INSTANCES: usize = 12;
const ROUNDS: usize = 3;

#[tokio::test]
async fn twelve_checks_at_once_on_twelve_instances_make_one_claim() {
    let (_p, d) = deployed(INSTANCES).await;
    // Warm every instance (round-robin: one preview each), so the race is
    // between running processes, not cold starts.
    for _ in 0..INSTANCES {
        let r = d
            .get(&format!(
                "assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId={HIT}"
            ))
            .await;
        assert_eq!(r.status, 200);
    }
    for round in 0..ROUNDS {
        let worker = fresh("A");
        let answers = join_all((0..INSTANCES).map(|_| {
            let assignment = fresh("3ASG");
            let worker = worker.clone();
            let d = &d;
            async move { verdict(&d.check(&worker, &assignment).await) }
        }))
        .await;
        let mut tally = BTreeMap::new();
        for (_, reason) in &answers {
            *tally.entry(reason.clone()).or_insert(0) += 1;
        }
        let eligible = answers.iter().filter(|(e, _)| *e).count();
        println!("round {round}: {INSTANCES} checks on {INSTANCES} instances → {tally:?}");
        assert_eq!(eligible, 1, "round {round}: {tally:?}");
        assert_eq!(tally.get("new"), Some(&1));
        assert_eq!(tally.get("busy"), Some(&(INSTANCES - 1)));
    }
    // The same assignment from every instance at once (a page opened
    // twice): one claim, every answer eligible.
    let worker = fresh("A");
    let assignment = fresh("3ASG");
    let answers = join_all((0..INSTANCES).map(|_| d.check(&worker, &assignment))).await;
    let reasons: Vec<_> = answers.iter().map(verdict).collect();
    assert!(reasons.iter().all(|(e, _)| *e), "{reasons:?}");
    assert_eq!(
        reasons.iter().filter(|(_, r)| r == "new").count(),
        1,
        "{reasons:?}"
    );
}

#[tokio::test]
async fn thirty_two_independent_handlers_make_one_claim() {
    let p = testkit::pipeline::Pipeline::start().await;
    // Each with its own DynamoDB client (its own connections), as separate
    // function instances would have.
    let checkers: Vec<Checker> = (0..32)
        .map(|_| {
            let client = aws_sdk_dynamodb::Client::new(&p.stack.sdk);
            Checker::new(
                mturk_exclusion::ledger::Ledger::new(client, p.ledger.table()),
                p.qualification.clone(),
                time::Duration::minutes(60),
            )
        })
        .collect();
    let worker = WorkerId::parse(&fresh("A")).unwrap();
    let hit = HitId::parse(HIT).unwrap();
    super::contract::verified(&p, &hit, None).await;
    let now = OffsetDateTime::now_utc();
    let answers = join_all(checkers.iter().map(|c| {
        let request = CheckRequest::Accepted {
            worker: worker.clone(),
            assignment: AssignmentId::parse(&fresh("3ASG")).unwrap(),
            hit: hit.clone(),
        };
        async move { c.check(&request, now).await.expect("checked") }
    }))
    .await;
    assert_eq!(
        answers.iter().filter(|r| **r == Reason::New).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|r| **r == Reason::Busy).count(),
        31,
        "{answers:?}"
    );
}
