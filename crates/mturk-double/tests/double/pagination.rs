//! Pagination over more than 100 items with the SDK's paginators, and the
//! limits on MaxResults and NextToken.

use std::collections::HashSet;

use crate::common::{error_code, mturk, turk_code};
use mturk_double::{AssignmentStatus, MturkDouble};

async fn double() -> MturkDouble {
    MturkDouble::start(None).await.expect("start the double")
}

#[tokio::test]
async fn workers_with_qualification_type_over_several_pages() {
    let double = double().await;
    let client = mturk(&double);
    let qual = double.create_qualification_type("took-part");
    for n in 0..250 {
        double.grant(&qual, &format!("A{n:012}"), 1);
    }
    // aws-sdk-mturk's paginators have no `items()` (the model names no item
    // member), so pages are flattened here.
    let pages: Vec<_> = client
        .list_workers_with_qualification_type()
        .qualification_type_id(&qual)
        .max_results(100)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("all pages");
    assert_eq!(pages.len(), 3);
    let sizes: Vec<_> = pages.iter().map(|p| p.num_results()).collect();
    assert_eq!(sizes, [Some(100), Some(100), Some(50)]);
    assert!(pages[2].next_token().is_none());
    let workers: Vec<String> = pages
        .iter()
        .flat_map(|p| p.qualifications())
        .filter_map(|q| q.worker_id().map(str::to_owned))
        .collect();
    assert_eq!(workers.len(), 250);
    assert_eq!(workers.iter().collect::<HashSet<_>>().len(), 250);
    assert_eq!(workers[0], "A000000000000");
    assert_eq!(workers[249], "A000000000249");
    assert_eq!(double.call_count("ListWorkersWithQualificationType"), 3);
}

#[tokio::test]
async fn default_page_size_is_ten() {
    let double = double().await;
    let client = mturk(&double);
    let qual = double.create_qualification_type("took-part");
    for n in 0..25 {
        double.grant(&qual, &format!("A{n:04}"), 1);
    }
    let first = client
        .list_workers_with_qualification_type()
        .qualification_type_id(&qual)
        .send()
        .await
        .expect("page");
    assert_eq!(first.num_results(), Some(10));
    assert!(first.next_token().is_some());
    let count = client
        .list_workers_with_qualification_type()
        .qualification_type_id(&qual)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await
        .len();
    assert_eq!(count, 3);
}

#[tokio::test]
async fn assignments_hits_and_types_over_several_pages() {
    let double = double().await;
    let client = mturk(&double);
    let hit_type = double.new_hit_type_id();
    let hit = double.create_hit(&hit_type);
    for n in 0..205 {
        double.add_assignment(&hit, &format!("A{n:05}"), AssignmentStatus::Submitted);
    }
    double.add_assignment(&hit, "A99999", AssignmentStatus::Accepted);
    let assignments: usize = client
        .list_assignments_for_hit()
        .hit_id(&hit)
        .max_results(100)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|page| page.expect("page").assignments().len())
        .sum();
    assert_eq!(assignments, 205);

    for _ in 0..120 {
        double.create_hit(&hit_type);
    }
    double.dispose_hit(&hit);
    let hits: Vec<String> = client
        .list_hits()
        .max_results(50)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flat_map(|page| {
            page.expect("page")
                .hits()
                .iter()
                .filter_map(|h| h.hit_id().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(hits.len(), 120);
    assert!(!hits.contains(&hit));

    for n in 0..130 {
        double.create_qualification_type(&format!("Study {n}"));
    }
    let types: usize = client
        .list_qualification_types()
        .query("study")
        .must_be_requestable(false)
        .max_results(100)
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|page| page.expect("page").qualification_types().len())
        .sum();
    assert_eq!(types, 130);
}

#[tokio::test]
async fn pages_stay_stable_when_items_are_added_between_calls() {
    let double = double().await;
    let client = mturk(&double);
    let qual = double.create_qualification_type("took-part");
    for n in 0..15 {
        double.grant(&qual, &format!("A{n:04}"), 1);
    }
    let first = client
        .list_workers_with_qualification_type()
        .qualification_type_id(&qual)
        .send()
        .await
        .expect("page");
    double.grant(&qual, "A9999", 1);
    let second = client
        .list_workers_with_qualification_type()
        .qualification_type_id(&qual)
        .next_token(first.next_token().expect("token"))
        .send()
        .await
        .expect("page");
    assert_eq!(second.num_results(), Some(6));
    assert_eq!(second.qualifications()[0].worker_id(), Some("A0010"));
    assert_eq!(second.qualifications()[5].worker_id(), Some("A9999"));
}

#[tokio::test]
async fn max_results_out_of_range_and_bad_tokens_are_refused() {
    let double = double().await;
    let client = mturk(&double);
    let qual = double.create_qualification_type("took-part");
    for max in [0, 101, -1] {
        let err = client
            .list_workers_with_qualification_type()
            .qualification_type_id(&qual)
            .max_results(max)
            .send()
            .await
            .expect_err("out of range");
        assert_eq!(
            error_code(err).as_deref(),
            Some("ParameterValidationError"),
            "{max}"
        );
        let err = client
            .list_hits()
            .max_results(max)
            .send()
            .await
            .expect_err("out of range");
        assert_eq!(
            error_code(err).as_deref(),
            Some("ParameterValidationError"),
            "{max}"
        );
    }
    client
        .list_hits()
        .max_results(100)
        .send()
        .await
        .expect("100 is allowed");

    let err = client
        .list_hits()
        .next_token("not-a-token")
        .send()
        .await
        .expect_err("bad token");
    assert_eq!(
        turk_code(err).as_deref(),
        Some("AWS.MechanicalTurk.InvalidParameterValue")
    );

    // A token from one listing is no good for another.
    for n in 0..15 {
        double.grant(&qual, &format!("A{n:04}"), 1);
    }
    let token = client
        .list_workers_with_qualification_type()
        .qualification_type_id(&qual)
        .send()
        .await
        .expect("page")
        .next_token()
        .expect("token")
        .to_owned();
    let err = client
        .list_hits()
        .next_token(&token)
        .send()
        .await
        .expect_err("foreign token");
    assert_eq!(error_code(err).as_deref(), Some("RequestError"));
}
