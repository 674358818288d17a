//! `mturk-exclusion exclude` (backfill), the real binary against DynamoDB
//! Local, the SQS stand-in and the MTurk double.

use std::path::PathBuf;

use crate::CliExt;
use mturk_exclusion::ids::{HitId, WorkerId};
use mturk_exclusion::ledger::{ExclusionState, Learned};
use testkit::mturk_double::AssignmentStatus;
use testkit::pipeline::Pipeline;

/// A file in a directory of this test process, named by the test.
fn temp_file(name: &str, content: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cli-exclude-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn worker(id: &str) -> WorkerId {
    WorkerId::parse(id).unwrap()
}

#[tokio::test]
async fn a_hit_of_150_assignments_is_excluded_across_pages_and_a_rerun_grants_nothing() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    let statuses = [
        AssignmentStatus::Submitted,
        AssignmentStatus::Approved,
        AssignmentStatus::Rejected,
    ];
    let workers: Vec<String> = (0..150).map(|i| format!("A1PAGED{i:04}")).collect();
    for (i, w) in workers.iter().enumerate() {
        p.double.add_assignment(&hit, w, statuses[i % 3]);
    }
    // Still working on it: not a participation yet.
    p.double
        .add_assignment(&hit, "A9INPROGRESS", AssignmentStatus::Accepted);
    p.double.clear_calls();

    let run = p.cli(&["exclude", "--hit", &hit, "--json"]).await;

    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["summary"]["newly_excluded"], 150, "{report}");
    assert_eq!(report["summary"]["failed"], 0);
    assert_eq!(report["hits"][0]["assignments"], 150);
    for w in &workers {
        assert!(p.granted(w), "{w} not excluded");
    }
    assert!(!p.granted("A9INPROGRESS"));
    p.assert_every_grant_silent();
    // ListAssignmentsForHIT names the worker: no GetAssignment, one GetHIT, two pages.
    assert_eq!(p.double.call_count("GetAssignment"), 0);
    assert_eq!(p.double.call_count("GetHIT"), 1);
    assert_eq!(p.double.call_count("ListAssignmentsForHIT"), 2);
    assert_eq!(p.double.call_count("AssociateQualificationWithWorker"), 150);
    assert_eq!(p.double.call_count("CreateWorkerBlock"), 0);
    let recorded = p
        .ledger
        .participations_in_hit(&HitId::parse(&hit).unwrap())
        .await
        .unwrap();
    assert_eq!(recorded.len(), 150);
    for r in &recorded {
        assert_eq!(r.learned, Learned::Backfill);
        assert_eq!(
            r.hit_type_id.as_ref().map(|t| t.as_str()),
            Some(p.hit_type.as_str())
        );
        assert!(r.submit_time.is_some() && r.excluded_at.is_some(), "{r:?}");
    }

    p.double.clear_calls();
    let again = p.cli(&["exclude", "--hit", &hit, "--json"]).await;

    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json()["summary"]["newly_excluded"], 0);
    assert_eq!(again.json()["summary"]["already_excluded"], 150);
    assert_eq!(p.double.call_count("AssociateQualificationWithWorker"), 0);
}

#[tokio::test]
async fn a_disposed_hit_is_reported_by_id_and_the_good_ones_go_on() {
    let p = Pipeline::start().await;
    let good1 = p.double.create_hit(&p.hit_type);
    let good2 = p.double.create_hit(&p.hit_type);
    let gone = p.double.create_hit(&p.hit_type);
    p.double
        .add_assignment(&good1, "A1GOODONE", AssignmentStatus::Approved);
    p.double
        .add_assignment(&good2, "A2GOODTWO", AssignmentStatus::Submitted);
    p.double
        .add_assignment(&gone, "A3FORGOTTEN", AssignmentStatus::Approved);
    p.double.dispose_hit(&gone);

    let hits = format!("{good1},{gone}");
    let run = p.cli(&["exclude", "--hit", &hits, "--hit", &good2]).await;

    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains(&format!("HIT {gone}: MTurk no longer knows this HIT")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("batch CSV"), "{}", run.stdout);
    assert!(
        run.stdout.contains("Newly excluded: 2 workers"),
        "{}",
        run.stdout
    );
    assert!(p.granted("A1GOODONE") && p.granted("A2GOODTWO"));
    assert!(!p.granted("A3FORGOTTEN"));

    let json = p.cli(&["exclude", "--hit", &hits, "--json"]).await;
    assert_eq!(json.code, 1, "{json:?}");
    let report = json.json();
    assert_eq!(report["not_found"][0]["kind"], "hit");
    assert_eq!(report["not_found"][0]["id"], gone.as_str());
    assert_eq!(report["already_excluded"][0], "A1GOODONE");
}

#[tokio::test]
async fn workers_named_by_hand_are_recorded_as_manual_and_granted_silently() {
    let p = Pipeline::start().await;

    let run = p
        .cli(&[
            "exclude",
            "--worker",
            "A1HANDONE,A2HANDTWO",
            "--worker",
            "A1HANDONE",
            "--json",
        ])
        .await;

    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(
        report["newly_excluded"],
        serde_json::json!(["A1HANDONE", "A2HANDTWO"])
    );
    p.assert_every_grant_silent();
    for w in ["A1HANDONE", "A2HANDTWO"] {
        assert!(p.granted(w));
        let recorded = p.ledger.participations_of(&worker(w)).await.unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].learned, Learned::Manual);
        let x = p
            .ledger
            .exclusion(&worker(w), &p.qualification)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(x.state, ExclusionState::Excluded);
    }
}

#[tokio::test]
async fn an_invalid_worker_id_is_refused_by_name_before_anything_is_done() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    p.double
        .add_assignment(&hit, "A1UNTOUCHED", AssignmentStatus::Submitted);
    p.double.clear_calls();

    let run = p
        .cli(&[
            "exclude", "--worker", "A1VALID", "--worker", "A1 TYPO", "--hit", &hit,
        ])
        .await;

    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("--worker: worker id \"A1 TYPO\""),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("letters and digits"), "{}", run.stderr);
    assert_eq!(p.double.total_calls(), 0);
    assert!(!p.granted("A1VALID") && !p.granted("A1UNTOUCHED"));
    assert!(p
        .ledger
        .participations_of(&worker("A1VALID"))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_batch_csv_and_a_plain_list_with_bad_rows_report_lines_and_do_the_rest() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    let a1 = p
        .double
        .add_assignment(&hit, "A1BATCHONE", AssignmentStatus::Approved);
    let a2 = p
        .double
        .add_assignment(&hit, "A2BATCHTWO", AssignmentStatus::Rejected);
    let a3 = p
        .double
        .add_assignment(&hit, "A3BATCHTHREE", AssignmentStatus::Submitted);
    // As MTurk's requester site writes it: BOM, CRLF, every field quoted, a
    // multi-line answer; no HITTypeId column, so the HIT type comes from GetHIT.
    let batch = format!(
        "\u{FEFF}\"HITId\",\"Title\",\"AssignmentId\",\"WorkerId\",\"AssignmentStatus\",\"Answer.feedback\"\r\n\
         \"{hit}\",\"Choices, quickly\",\"{a1}\",\"A1BATCHONE\",\"Approved\",\"fine\r\nthanks\"\r\n\
         \"{hit}\",\"Choices, quickly\",\"{a2}\",\" A2BATCHTWO \",\"Rejected\",\"\"\r\n\
         \"{hit}\",\"Choices, quickly\",\"{a3}\",\"\",\"Submitted\",\"\"\r\n\
         \"{hit}\",\"Choices, quickly\",\"3NOT-AN-ID\",\"A4BATCHFOUR\",\"Submitted\",\"\"\r\n"
    );
    let batch = temp_file("batch_results.csv", batch.as_bytes());
    let list = temp_file(
        "workers.txt",
        b"WorkerId\n# from the pilot\nA1LISTONE\n\nA1 LISTBAD\nA2LISTTWO  # paid twice\n",
    );
    p.double.clear_calls();

    let run = p
        .cli(&[
            "exclude",
            "--from-csv",
            batch.to_str().unwrap(),
            "--from-csv",
            list.to_str().unwrap(),
        ])
        .await;

    assert_eq!(run.code, 1, "{run:?}");
    let out = &run.stdout;
    assert!(
        out.contains("batch_results.csv line 5: the WorkerId field is empty"),
        "{out}"
    );
    assert!(
        out.contains("batch_results.csv line 6: assignment id \"3NOT-AN-ID\""),
        "{out}"
    );
    assert!(
        out.contains("workers.txt line 5: worker id \"A1 LISTBAD\""),
        "{out}"
    );
    assert!(out.contains("Newly excluded: 4 workers"), "{out}");
    for w in ["A1BATCHONE", "A2BATCHTWO", "A1LISTONE", "A2LISTTWO"] {
        assert!(p.granted(w), "{w} not excluded");
    }
    assert!(!p.granted("A3BATCHTHREE") && !p.granted("A4BATCHFOUR"));
    p.assert_every_grant_silent();
    // The CSV rows are real participations, learned by backfill, with the
    // HIT type from one GetHIT.
    assert_eq!(p.double.call_count("GetHIT"), 1);
    let recorded = p
        .ledger
        .participations_of(&worker("A1BATCHONE"))
        .await
        .unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].assignment_id.as_ref().unwrap().as_str(), a1);
    assert_eq!(recorded[0].learned, Learned::Backfill);
    assert_eq!(
        recorded[0].hit_type_id.as_ref().map(|t| t.as_str()),
        Some(p.hit_type.as_str())
    );
    let listed = p
        .ledger
        .participations_of(&worker("A2LISTTWO"))
        .await
        .unwrap();
    assert_eq!(listed[0].learned, Learned::Manual);
}

#[tokio::test]
async fn a_file_with_no_usable_row_is_bad_input() {
    let p = Pipeline::start().await;
    let list = temp_file("only_bad.txt", b"A1 BAD\nnot-an-id\n");
    let run = p
        .cli(&["exclude", "--from-csv", list.to_str().unwrap()])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("only_bad.txt line 2"), "{}", run.stderr);
}

#[tokio::test]
async fn a_dry_run_changes_nothing_and_says_what_would_happen() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    for w in ["A1DRYONE", "A2DRYTWO", "A3DRYTHREE"] {
        p.double.add_assignment(&hit, w, AssignmentStatus::Approved);
    }
    p.double.clear_calls();

    let run = p
        .cli(&[
            "exclude",
            "--hit",
            &hit,
            "--worker",
            "A4DRYHAND",
            "--dry-run",
            "--json",
        ])
        .await;

    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["summary"]["newly_excluded"], 4, "{report}");
    assert_eq!(p.double.call_count("AssociateQualificationWithWorker"), 0);
    assert!(p
        .double
        .qualification(p.qualification.as_str(), "A1DRYONE")
        .is_none());
    assert!(p
        .ledger
        .participations_in_hit(&HitId::parse(&hit).unwrap())
        .await
        .unwrap()
        .is_empty());
    assert!(p
        .ledger
        .participations_of(&worker("A4DRYHAND"))
        .await
        .unwrap()
        .is_empty());
    assert!(p
        .ledger
        .exclusion(&worker("A4DRYHAND"), &p.qualification)
        .await
        .unwrap()
        .is_none());

    // After the real run, a released worker would stay released: the ledger
    // already knows their assignment.
    assert_eq!(p.cli(&["exclude", "--hit", &hit]).await.code, 0);
    let release = p.cli(&["release", "--worker", "A2DRYTWO"]).await;
    assert_eq!(release.code, 0, "{release:?}");
    let text = p.cli(&["exclude", "--hit", &hit, "--dry-run"]).await;
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout.contains("Dry run: nothing was changed."),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("Kept released: 1 worker"),
        "{}",
        text.stdout
    );
    let real = p.cli(&["exclude", "--hit", &hit, "--json"]).await;
    assert_eq!(real.json()["kept_released"][0]["worker_id"], "A2DRYTWO");
    assert!(!p.granted("A2DRYTWO"));
}

#[tokio::test]
async fn a_hit_type_covers_every_live_hit_of_that_type_only() {
    let p = Pipeline::start().await;
    let study = p.double.new_hit_type_id();
    let other = p.double.new_hit_type_id();
    let h1 = p.double.create_hit(&study);
    let h2 = p.double.create_hit(&study);
    let h3 = p.double.create_hit(&other);
    p.double
        .add_assignment(&h1, "A1TYPEONE", AssignmentStatus::Approved);
    p.double
        .add_assignment(&h2, "A2TYPETWO", AssignmentStatus::Submitted);
    p.double
        .add_assignment(&h3, "A3OTHERTYPE", AssignmentStatus::Approved);
    p.double.clear_calls();

    let run = p.cli(&["exclude", "--hit-type", &study, "--json"]).await;

    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["summary"]["newly_excluded"], 2);
    assert!(p.granted("A1TYPEONE") && p.granted("A2TYPETWO"));
    assert!(!p.granted("A3OTHERTYPE"));
    // The listing gives each HIT's type: no GetHIT.
    assert_eq!(p.double.call_count("GetHIT"), 0);
}

#[tokio::test]
async fn a_csv_row_whose_worker_disagrees_with_the_ledger_is_reported_not_recorded() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    let s = p
        .double
        .submit_assignment(&hit, "A1WHODIDIT")
        .await
        .unwrap();
    p.drain().await;
    let a = &s.assignment_id;
    // A hand-edited file: the right assignment, the wrong worker.
    let batch = format!("HITId,AssignmentId,WorkerId\r\n{hit},{a},A9NOTTHEM\r\n");
    let batch = temp_file("mismatch.csv", batch.as_bytes());
    p.double.clear_calls();

    let run = p
        .cli(&["exclude", "--from-csv", batch.to_str().unwrap(), "--json"])
        .await;

    assert_eq!(run.code, 1, "{run:?}");
    let r = run.json();
    assert_eq!(r["mismatched"][0]["worker_id"], "A9NOTTHEM", "{r}");
    assert_eq!(r["mismatched"][0]["other_worker_id"], "A1WHODIDIT");
    assert_eq!(r["mismatched"][0]["according_to"], "ledger");
    assert_eq!(r["mismatched"][0]["line"], 2);
    assert!(!p.granted("A9NOTTHEM"));
    assert_eq!(p.double.call_count("AssociateQualificationWithWorker"), 0);
    assert!(p
        .ledger
        .participations_of(&worker("A9NOTTHEM"))
        .await
        .unwrap()
        .is_empty());
}
