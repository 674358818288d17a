//! `mturk-exclusion release` (un-exclude), the real binary against DynamoDB
//! Local, the SQS stand-in, the MTurk double and the in-process handler.

use std::path::PathBuf;

use crate::CliExt;
use mturk_exclusion::ids::WorkerId;
use mturk_exclusion::ledger::ExclusionState;
use testkit::mturk_double::{AssignmentStatus, GrantStatus, Submission};
use testkit::pipeline::Pipeline;

const REVOKE: &str = "DisassociateQualificationFromWorker";
const GRANT: &str = "AssociateQualificationWithWorker";

fn temp_file(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cli-release-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn worker(id: &str) -> WorkerId {
    WorkerId::parse(id).unwrap()
}

/// A worker who submitted on a new HIT, excluded by the pipeline.
async fn excluded_by_submission(p: &Pipeline, w: &str) -> (String, Submission) {
    let hit = p.double.create_hit(&p.hit_type);
    let s = p.double.submit_assignment(&hit, w).await.unwrap();
    p.drain().await;
    assert!(p.granted(w), "{w} was not excluded by the pipeline");
    (hit, s)
}

async fn standing(p: &Pipeline, w: &str) -> ExclusionState {
    p.ledger
        .exclusion(&worker(w), &p.qualification)
        .await
        .unwrap()
        .unwrap()
        .state
}

#[tokio::test]
async fn a_worker_is_revoked_without_a_reason_and_the_ledger_keeps_when() {
    let p = Pipeline::start().await;
    excluded_by_submission(&p, "A1FORGIVEN").await;

    let run = p
        .cli(&["release", "--worker", "A1FORGIVEN", "--json"])
        .await;

    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["released"][0]["worker_id"], "A1FORGIVEN");
    assert_eq!(report["released"][0]["mturk"], "revoked");
    assert_eq!(report["reason_emailed"], false);
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    // No Reason, so MTurk sends no email.
    let revokes = p.double.calls_to(REVOKE);
    assert_eq!(revokes.len(), 1);
    assert!(
        revokes[0].request.get("Reason").is_none(),
        "{:?}",
        revokes[0].request
    );
    let grant = p
        .double
        .qualification(p.qualification.as_str(), "A1FORGIVEN")
        .unwrap();
    assert_eq!(grant.status, GrantStatus::Revoked);
    let x = p
        .ledger
        .exclusion(&worker("A1FORGIVEN"), &p.qualification)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(x.state, ExclusionState::Released);
    assert!(x.released_at.is_some());
    let recorded = p
        .ledger
        .participations_of(&worker("A1FORGIVEN"))
        .await
        .unwrap();
    assert!(recorded[0].released_at.is_some());
    assert_eq!(recorded[0].release_reason, None);
    assert_eq!(p.double.call_count("CreateWorkerBlock"), 0);
}

#[tokio::test]
async fn a_reason_is_sent_to_mturk_and_warned_about_first() {
    let p = Pipeline::start().await;
    assert_eq!(p.cli(&["exclude", "--worker", "A1TOLD"]).await.code, 0);
    let reason = "You were excluded by mistake; you are welcome in our next studies.";

    let run = p
        .cli(&["release", "--worker", "A1TOLD", "--reason", reason])
        .await;

    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("warning") && run.stderr.contains("MTurk emails this text"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("reason emailed"), "{}", run.stdout);
    let revokes = p.double.calls_to(REVOKE);
    assert_eq!(revokes[0].request["Reason"], reason);
    let recorded = p.ledger.participations_of(&worker("A1TOLD")).await.unwrap();
    assert_eq!(recorded[0].release_reason.as_deref(), Some(reason));
}

#[tokio::test]
async fn a_hit_is_released_through_the_ledger_after_mturk_disposed_of_it() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    p.double
        .add_assignment(&hit, "A1OLDSTUDY", AssignmentStatus::Approved);
    p.double
        .add_assignment(&hit, "A2OLDSTUDY", AssignmentStatus::Rejected);
    assert_eq!(p.cli(&["exclude", "--hit", &hit]).await.code, 0);
    p.double.dispose_hit(&hit);

    let run = p.cli(&["release", "--hit", &hit, "--json"]).await;

    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["summary"]["released"], 2, "{report}");
    assert_eq!(report["released"][0]["named_by"], "hit");
    assert_eq!(report["released"][0]["hit_ids"][0], hit.as_str());
    for w in ["A1OLDSTUDY", "A2OLDSTUDY"] {
        assert!(!p.granted(w), "{w} still excluded");
        assert_eq!(standing(&p, w).await, ExclusionState::Released);
        let recorded = p.ledger.participations_of(&worker(w)).await.unwrap();
        assert_eq!(
            recorded[0].release_reason.as_deref(),
            Some(format!("released with HIT {hit}").as_str())
        );
    }
}

#[tokio::test]
async fn releasing_a_hit_keeps_workers_excluded_for_another_reason_and_says_why() {
    let p = Pipeline::start().await;
    let first = p.double.create_hit(&p.hit_type);
    let second = p.double.create_hit(&p.hit_type);
    p.double
        .add_assignment(&first, "A1BOTHSTUDIES", AssignmentStatus::Approved);
    let other = p
        .double
        .add_assignment(&second, "A1BOTHSTUDIES", AssignmentStatus::Approved);
    p.double
        .add_assignment(&first, "A2FIRSTONLY", AssignmentStatus::Approved);
    p.double
        .add_assignment(&first, "A3ALSOBYHAND", AssignmentStatus::Submitted);
    let setup = p
        .cli(&[
            "exclude",
            "--hit",
            &first,
            "--hit",
            &second,
            "--worker",
            "A3ALSOBYHAND",
        ])
        .await;
    assert_eq!(setup.code, 0, "{setup:?}");

    let run = p.cli(&["release", "--hit", &first]).await;

    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(&format!(
            "Kept A1BOTHSTUDIES excluded: also took part in HIT {second} (assignment {other})"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Kept A3ALSOBYHAND excluded: excluded by hand"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("Released A2FIRSTONLY"),
        "{}",
        run.stdout
    );
    assert!(p.granted("A1BOTHSTUDIES") && p.granted("A3ALSOBYHAND"));
    assert!(!p.granted("A2FIRSTONLY"));
    assert_eq!(
        standing(&p, "A1BOTHSTUDIES").await,
        ExclusionState::Excluded
    );

    // Both HITs at once: only the worker excluded by hand is still kept.
    let both = format!("{first},{second}");
    let run = p.cli(&["release", "--hit", &both, "--json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    let released: Vec<&str> = report["released"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["worker_id"].as_str().unwrap())
        .collect();
    assert_eq!(released, ["A1BOTHSTUDIES", "A2FIRSTONLY"], "{report}");
    assert_eq!(report["released"][1]["already_released"], true);
    assert_eq!(report["released"][1]["mturk"], "not_held");
    assert_eq!(report["kept"][0]["worker_id"], "A3ALSOBYHAND");
    assert_eq!(
        report["kept"][0]["still_excluded_by"][0]["learned_by"],
        "manual"
    );
    assert!(!p.granted("A1BOTHSTUDIES") && p.granted("A3ALSOBYHAND"));
}

#[tokio::test]
async fn a_stale_redelivery_keeps_the_release_and_a_new_submission_excludes_again() {
    let p = Pipeline::start().await;
    let (_, first) = excluded_by_submission(&p, "A1RETURNING").await;
    let run = p.cli(&["release", "--worker", "A1RETURNING"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!p.granted("A1RETURNING"));
    let grants = p.double.call_count(GRANT);

    // MTurk delivers the old notification again.
    p.send(first.notification.as_deref().unwrap()).await;
    let totals = p.drain().await;

    assert_eq!((totals.records, totals.failed_records), (1, 0));
    assert!(!p.granted("A1RETURNING"));
    assert_eq!(p.double.call_count(GRANT), grants);
    assert_eq!(standing(&p, "A1RETURNING").await, ExclusionState::Released);

    // A new study, a new submission: excluded again.
    excluded_by_submission(&p, "A1RETURNING").await;
    assert_eq!(standing(&p, "A1RETURNING").await, ExclusionState::Excluded);
    p.assert_every_grant_silent();
}

#[tokio::test]
async fn a_dry_run_changes_nothing() {
    let p = Pipeline::start().await;
    let (hit, _) = excluded_by_submission(&p, "A1STAYSOUT").await;

    let run = p
        .cli(&["release", "--worker", "A1STAYSOUT", "--dry-run", "--json"])
        .await;
    let text = p.cli(&["release", "--hit", &hit, "--dry-run"]).await;

    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["released"][0]["worker_id"], "A1STAYSOUT");
    assert_eq!(report["released"][0]["mturk"], serde_json::Value::Null);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout.contains("Would release A1STAYSOUT"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("Dry run: nothing was changed."),
        "{}",
        text.stdout
    );
    assert!(p.granted("A1STAYSOUT"));
    assert_eq!(p.double.call_count(REVOKE), 0);
    assert_eq!(standing(&p, "A1STAYSOUT").await, ExclusionState::Excluded);
    let recorded = p
        .ledger
        .participations_of(&worker("A1STAYSOUT"))
        .await
        .unwrap();
    assert!(recorded[0].released_at.is_none());
}

#[tokio::test]
async fn many_workers_need_a_confirmation_which_a_script_gives_with_yes() {
    let p = Pipeline::start().await;
    let workers: Vec<String> = (0..12).map(|i| format!("A1MANY{i:02}")).collect();
    let setup = p.cli(&["exclude", "--worker", &workers.join(",")]).await;
    assert_eq!(setup.code, 0, "{setup:?}");
    let list = temp_file("release.txt", &workers.join("\n"));

    // No terminal: the question is answered no.
    let run = p
        .cli(&["release", "--from-csv", list.to_str().unwrap()])
        .await;

    assert_eq!(run.code, 5, "{run:?}");
    assert!(run.stderr.contains("--yes"), "{}", run.stderr);
    assert_eq!(p.double.call_count(REVOKE), 0);
    for w in &workers {
        assert!(p.granted(w));
        assert_eq!(standing(&p, w).await, ExclusionState::Excluded);
    }

    let stdin = format!("WorkerId\r\n{}\r\n", workers.join("\r\n"));
    let run = p
        .cli_with_stdin(
            &["release", "--from-csv", "-", "--yes", "--json"],
            Some(&stdin),
        )
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["summary"]["released"], 12);
    assert!(workers.iter().all(|w| !p.granted(w)));
}

#[tokio::test]
async fn unknown_and_invalid_ids_are_named() {
    let p = Pipeline::start().await;
    excluded_by_submission(&p, "A1KNOWN").await;

    let invalid = p
        .cli(&["release", "--worker", "A1KNOWN", "--worker", "A1 TYPO"])
        .await;
    assert_eq!(invalid.code, 2, "{invalid:?}");
    assert!(invalid.stderr.contains("\"A1 TYPO\""), "{}", invalid.stderr);
    assert!(p.granted("A1KNOWN"));

    let run = p
        .cli(&["release", "--worker", "A1NEVERSEEN", "--worker", "A1KNOWN"])
        .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("Not found: worker A1NEVERSEEN: the ledger has no record"),
        "{}",
        run.stdout
    );
    assert!(!p.granted("A1KNOWN"));
    assert_eq!(p.double.call_count(REVOKE), 1);
}
