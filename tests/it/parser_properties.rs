//! Properties of the parsers that face the outside: the notification
//! document and MTurk ids. Whatever arrives, they answer Ok or a named
//! error, never a panic, and never refuse a real id.

use mturk_exclusion::ids::{AssignmentId, WorkerId, MAX_ID_LEN};
use mturk_exclusion::notification::{Event, Notification};
use proptest::prelude::*;

fn id_strategy() -> impl Strategy<Value = String> {
    "[A-Z0-9]{1,40}"
}

fn document(doc_id: &str, events: &[(String, String, String)]) -> String {
    let events: Vec<_> = events
        .iter()
        .map(|(t, h, a)| {
            serde_json::json!({
                "EventType": "AssignmentSubmitted",
                "EventTimestamp": "2026-03-02T17:04:11Z",
                "HITTypeId": t, "HITId": h, "AssignmentId": a,
            })
        })
        .collect();
    serde_json::json!({
        "EventDocVersion": "2014-08-15", "EventDocId": doc_id,
        "CustomerId": "A1LAB", "Events": events,
    })
    .to_string()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(body in ".{0,2000}") {
        let _ = Notification::parse(&body);
    }

    #[test]
    fn arbitrary_json_never_panics(value in arbitrary_json()) {
        let _ = Notification::parse(&value.to_string());
    }

    #[test]
    fn valid_documents_parse_with_every_event(
        doc_id in "[a-z0-9-]{1,60}",
        events in prop::collection::vec((id_strategy(), id_strategy(), id_strategy()), 1..20),
    ) {
        let n = Notification::parse(&document(&doc_id, &events)).unwrap();
        prop_assert_eq!(n.doc_id, doc_id);
        prop_assert_eq!(n.events.len(), events.len());
        for (event, (_, _, a)) in n.events.iter().zip(&events) {
            match event {
                Event::AssignmentSubmitted { assignment_id, .. } => prop_assert_eq!(assignment_id.as_str(), a.as_str()),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }

    #[test]
    fn a_corrupted_id_fails_the_document_naming_the_field(
        good in id_strategy(),
        bad_char in "[^A-Za-z0-9]",
        at in 0usize..40,
    ) {
        let mut bad = good.clone();
        let at = at.min(bad.len());
        bad.insert_str(at, &bad_char);
        let body = document("d", &[("T".into(), "H".into(), bad)]);
        // The document is read; the submission it cannot act on fails the record.
        let n = Notification::parse(&body).unwrap();
        let err = n.blocking_problem().expect("a blocking problem").problem.to_string();
        prop_assert!(err.contains("AssignmentId"), "{}", err);
    }

    #[test]
    fn ids_are_accepted_exactly_when_plausible(raw in ".{0,300}") {
        let plausible = !raw.is_empty()
            && raw.len() <= MAX_ID_LEN
            && raw.bytes().all(|b| b.is_ascii_alphanumeric());
        prop_assert_eq!(WorkerId::parse(&raw).is_ok(), plausible);
        prop_assert_eq!(AssignmentId::parse(&raw).is_ok(), plausible);
    }

    #[test]
    fn every_real_looking_worker_id_is_accepted(raw in "A[A-Z0-9]{11,20}") {
        prop_assert!(WorkerId::parse(&raw).is_ok());
    }

    #[test]
    fn error_messages_stay_short_whatever_the_input(raw in ".{0,5000}") {
        if let Err(e) = WorkerId::parse(&raw) {
            prop_assert!(e.to_string().len() < 400);
        }
    }
}

fn arbitrary_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,20}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("2014-08-15")),
        Just(serde_json::Value::from("AssignmentSubmitted")),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        let keys = prop_oneof![
            Just("EventDocVersion".to_owned()),
            Just("EventDocId".to_owned()),
            Just("CustomerId".to_owned()),
            Just("Events".to_owned()),
            Just("EventType".to_owned()),
            Just("EventTimestamp".to_owned()),
            Just("AssignmentId".to_owned()),
            "[A-Za-z]{1,8}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
