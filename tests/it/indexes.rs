//! Which items each index holds, and that every query still finds the
//! participations an older version recorded next to the ones this version
//! records (a deployed table keeps both).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use mturk_exclusion::ids::{AssignmentId, HitId, HitTypeId, WorkerId};
use mturk_exclusion::ledger::stamp;
use testkit::pipeline::Pipeline;
use time::{Duration, OffsetDateTime};

fn worker(id: &str) -> WorkerId {
    WorkerId::parse(id).unwrap()
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// A participation exactly as commit a6f96a6 wrote it (the handler's
/// settled Put): its HIT type under `hit_type_id`, the `ByHitType` key.
async fn put_old_participation(
    p: &Pipeline,
    w: &str,
    assignment: &str,
    hit: &str,
    hit_type: &str,
    at: OffsetDateTime,
) {
    let item: HashMap<String, AttributeValue> = [
        ("pk", s(&format!("A#{assignment}"))),
        ("sk", s("P")),
        ("worker_id", s(w)),
        ("assignment_id", s(assignment)),
        ("hit_id", s(hit)),
        ("hit_type_id", s(hit_type)),
        ("learned_by", s("notification")),
        ("event_doc_id", s("doc-old")),
        ("recorded_at", s(&stamp(at))),
        ("submit_time", s(&stamp(at))),
        ("excluded_at", s(&stamp(at))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    p.stack
        .dynamodb
        .put_item()
        .table_name(p.ledger.table())
        .set_item(Some(item))
        .send()
        .await
        .unwrap();
}

/// The `pk`s an index holds under one key value.
async fn in_index(p: &Pipeline, index: &str, key: &str, value: &str) -> Vec<String> {
    let out = p
        .stack
        .dynamodb
        .query()
        .table_name(p.ledger.table())
        .index_name(index)
        .key_condition_expression("#k = :v")
        .expression_attribute_names("#k", key)
        .expression_attribute_values(":v", s(value))
        .send()
        .await
        .unwrap();
    let mut pks: Vec<String> = out
        .items
        .unwrap_or_default()
        .iter()
        .filter_map(|i| i.get("pk").and_then(|v| v.as_s().ok()).cloned())
        .collect();
    pks.sort();
    pks
}

#[tokio::test]
async fn old_and_new_participations_are_found_by_every_query() {
    let p = Pipeline::start().await;
    let earlier = OffsetDateTime::now_utc() - Duration::days(200);
    let old_hit = p.double.create_hit(&p.hit_type);
    put_old_participation(
        &p,
        "A1IDXOLD",
        "3IDXOLDASSIGNMENT",
        &old_hit,
        &p.hit_type,
        earlier,
    )
    .await;
    // A new one, through the real pipeline.
    let new_hit = p.double.create_hit(&p.hit_type);
    let submitted = p
        .double
        .submit_assignment(&new_hit, "A1IDXNEW")
        .await
        .unwrap();
    p.drain().await;
    assert!(p.granted("A1IDXNEW"));
    let hit_type = HitTypeId::parse(&p.hit_type).unwrap();

    // By worker (release, reconcile): each finds its own, with its HIT type.
    for (w, assignment) in [
        ("A1IDXOLD", "3IDXOLDASSIGNMENT"),
        ("A1IDXNEW", submitted.assignment_id.as_str()),
    ] {
        let found = p.ledger.participations_of(&worker(w)).await.unwrap();
        assert_eq!(found.len(), 1, "{w}: {found:?}");
        assert_eq!(
            found[0].assignment_id,
            Some(AssignmentId::parse(assignment).unwrap())
        );
        assert_eq!(found[0].hit_type_id.as_ref(), Some(&hit_type), "{w}");
    }
    // By HIT (release --hit, exclude --hit on a disposed HIT).
    for (hit, w) in [(&old_hit, "A1IDXOLD"), (&new_hit, "A1IDXNEW")] {
        let found = p
            .ledger
            .participations_in_hit(&HitId::parse(hit).unwrap())
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "{hit}: {found:?}");
        assert_eq!(found[0].worker_id.as_str(), w);
    }
    // Export, status and report read every participation, with its HIT type.
    let all = p.ledger.all_participations(None).await.unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all
        .iter()
        .all(|x| x.hit_type_id.as_ref() == Some(&hit_type)));
    let snapshot = p.ledger.snapshot(&p.qualification).await.unwrap();
    assert_eq!(snapshot.participations.len(), 2);
    assert!(snapshot
        .participations
        .iter()
        .all(|x| x.hit_type_id.as_ref() == Some(&hit_type)));
    // The excluded listing (export, reconcile, status) has the new worker.
    let excluded = p.ledger.excluded_workers(&p.qualification).await.unwrap();
    assert_eq!(excluded.len(), 1);
    assert_eq!(excluded[0].worker_id.as_str(), "A1IDXNEW");

    // What the table's indexes hold: the new participation is not in
    // ByHitType (no query reads it), only the old one still is.
    assert_eq!(
        in_index(&p, "ByHitType", "hit_type_id", &p.hit_type).await,
        ["A#3IDXOLDASSIGNMENT"]
    );
    let new_pk = format!("A#{}", submitted.assignment_id);
    assert_eq!(
        in_index(&p, "ByHit", "hit_id", &new_hit).await,
        std::slice::from_ref(&new_pk)
    );
    // ByWorker: the participation, and the exclusion item (there because
    // Excluded sorts on worker_id).
    assert_eq!(
        in_index(&p, "ByWorker", "worker_id", "A1IDXNEW").await,
        [new_pk, "W#A1IDXNEW".to_owned()]
    );
}

#[tokio::test]
async fn a_lease_in_flight_does_not_break_reading_every_participation() {
    let p = Pipeline::start().await;
    let now = OffsetDateTime::now_utc();
    put_old_participation(
        &p,
        "A1LEASEOLD",
        "3LEASEOLD",
        "3LEASEHIT",
        "3LEASETYPE",
        now,
    )
    .await;
    // A handler holding an assignment it has not looked up yet.
    p.ledger
        .lease_assignment(
            &AssignmentId::parse("3LEASEINFLIGHT").unwrap(),
            "owner",
            now,
            Duration::seconds(15),
        )
        .await
        .unwrap();
    let all = p.ledger.all_participations(None).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].worker_id.as_str(), "A1LEASEOLD");
}
