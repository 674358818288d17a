//! What the ledger's reads find among the items a deployed table holds:
//! participations an older version recorded, and leases in flight.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use mturk_exclusion::ids::AssignmentId;
use mturk_exclusion::ledger::stamp;
use testkit::pipeline::Pipeline;
use time::{Duration, OffsetDateTime};

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
