//! `reconcile` against the ledger (DynamoDB Local) and the MTurk double, in
//! both directions, with and without --apply.

use crate::CliExt;
use mturk_exclusion::ids::WorkerId;
use mturk_exclusion::ledger::ExclusionState;
use testkit::mturk_double::GrantStatus;
use testkit::pipeline::Pipeline;
use time::OffsetDateTime;

fn worker(id: &str) -> WorkerId {
    WorkerId::parse(id).unwrap()
}

fn ids(v: &serde_json::Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array in {v}"))
        .iter()
        .map(|e| match e {
            serde_json::Value::String(s) => s.clone(),
            other => other["worker_id"].as_str().unwrap().to_owned(),
        })
        .collect()
}

/// Two workers excluded through the pipeline.
async fn two_excluded(p: &Pipeline) {
    let hit = p.double.create_hit(&p.hit_type);
    for w in ["A1AGREES", "A1REVOKEDELSEWHERE"] {
        p.double.submit_assignment(&hit, w).await.unwrap();
    }
    p.drain().await;
    assert!(p.granted("A1AGREES") && p.granted("A1REVOKEDELSEWHERE"));
}

#[tokio::test]
async fn reconcile_reports_both_directions_then_apply_fixes_them() {
    let p = Pipeline::start().await;
    two_excluded(&p).await;
    // Revoked on MTurk's side only, as the requester website would.
    p.mturk
        .disassociate_qualification_from_worker()
        .qualification_type_id(p.qualification.as_str())
        .worker_id("A1REVOKEDELSEWHERE")
        .send()
        .await
        .unwrap();
    // Granted by the old batch script: the ledger never heard of this worker.
    p.double.grant(p.qualification.as_str(), "A1OLDSCRIPT", 1);
    p.double.clear_calls();

    let check = p.cli(&["reconcile", "--json"]).await;
    assert_eq!(check.code, 4, "{check:?}");
    let r = check.json();
    assert_eq!(r["agree"], 1);
    assert_eq!(r["ledger_excluded"], 2);
    assert_eq!(r["mturk_granted"], 2);
    assert_eq!(ids(&r, "only_in_ledger"), ["A1REVOKEDELSEWHERE"]);
    assert_eq!(ids(&r, "only_on_mturk"), ["A1OLDSCRIPT"]);
    assert_eq!(r["only_on_mturk"][0]["ledger_participations"], 0);
    assert!(ids(&r, "released_but_held").is_empty());
    assert!(ids(&r, "odd_ids").is_empty());
    assert!(r.get("applied").is_none(), "{r}");
    assert!(check.stderr.contains("--apply"), "{}", check.stderr);
    // A report changes nothing, on either side.
    assert_eq!(p.double.call_count("AssociateQualificationWithWorker"), 0);
    assert_eq!(
        p.double.call_count("DisassociateQualificationFromWorker"),
        0
    );
    assert!(p
        .ledger
        .exclusion(&worker("A1OLDSCRIPT"), &p.qualification)
        .await
        .unwrap()
        .is_none());

    // The text report names both directions and both explanations; --dry-run is the same.
    let text = p.cli(&["reconcile", "--dry-run"]).await;
    assert_eq!(text.code, 4, "{text:?}");
    assert!(
        text.stdout.contains("A1REVOKEDELSEWHERE") && text.stdout.contains("A1OLDSCRIPT"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("revoked outside this tool"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("unknown to the ledger"),
        "{}",
        text.stdout
    );
    assert_eq!(p.double.call_count("AssociateQualificationWithWorker"), 0);

    let fix = p.cli(&["reconcile", "--apply", "--yes", "--json"]).await;
    assert_eq!(fix.code, 0, "{fix:?}");
    let applied = &fix.json()["applied"];
    assert_eq!(ids(applied, "granted"), ["A1REVOKEDELSEWHERE"]);
    assert_eq!(ids(applied, "recorded"), ["A1OLDSCRIPT"]);
    assert!(ids(applied, "revoked").is_empty());
    assert!(ids(applied, "failed").is_empty());
    // Only the lost grant went to MTurk, silently; the old script's worker
    // already held the qualification.
    let grants = p.double.calls_to("AssociateQualificationWithWorker");
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].request["WorkerId"], "A1REVOKEDELSEWHERE");
    p.assert_every_grant_silent();
    assert!(p.granted("A1REVOKEDELSEWHERE"));
    assert_eq!(
        p.double.call_count("DisassociateQualificationFromWorker"),
        0
    );

    let recorded = p
        .ledger
        .exclusion(&worker("A1OLDSCRIPT"), &p.qualification)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recorded.state, ExclusionState::Excluded);
    assert_eq!(recorded.excluded_because.as_deref(), Some("reconcile"));
    let ps = p
        .ledger
        .participations_of(&worker("A1OLDSCRIPT"))
        .await
        .unwrap();
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert_eq!(ps[0].learned, mturk_exclusion::ledger::Learned::Reconcile);
    assert!(ps[0].assignment_id.is_none() && ps[0].excluded_at.is_some());

    let again = p.cli(&["reconcile", "--json"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    let r = again.json();
    assert_eq!(r["agree"], 3);
    for key in ["only_in_ledger", "only_on_mturk", "released_but_held"] {
        assert!(ids(&r, key).is_empty(), "{key}: {r}");
    }
    let text = p.cli(&["reconcile"]).await;
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout.contains("agree on 3 workers"),
        "{}",
        text.stdout
    );
}

#[tokio::test]
async fn released_but_still_held_is_revoked_without_a_reason() {
    let p = Pipeline::start().await;
    two_excluded(&p).await;
    // The lab released the worker, but the revoke never reached MTurk.
    p.ledger
        .record_release(
            &worker("A1REVOKEDELSEWHERE"),
            &p.qualification,
            Some("withdrew consent"),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    p.double.clear_calls();

    let check = p.cli(&["reconcile", "--json"]).await;
    assert_eq!(check.code, 4, "{check:?}");
    let r = check.json();
    assert_eq!(ids(&r, "released_but_held"), ["A1REVOKEDELSEWHERE"]);
    assert!(r["released_but_held"][0]["released_at"].is_string(), "{r}");
    // Recording them would undo the release: they are not "only on MTurk".
    assert!(ids(&r, "only_on_mturk").is_empty(), "{r}");
    assert!(ids(&r, "only_in_ledger").is_empty(), "{r}");
    assert_eq!(r["agree"], 1);

    let fix = p.cli(&["reconcile", "--apply", "--yes"]).await;
    assert_eq!(fix.code, 0, "{fix:?}");
    assert!(
        fix.stdout.contains("revoked   A1REVOKEDELSEWHERE"),
        "{}",
        fix.stdout
    );
    let revokes = p.double.calls_to("DisassociateQualificationFromWorker");
    assert_eq!(revokes.len(), 1, "{revokes:?}");
    assert_eq!(revokes[0].request["WorkerId"], "A1REVOKEDELSEWHERE");
    // No Reason, so MTurk sends no email.
    assert!(revokes[0].request.get("Reason").is_none(), "{revokes:?}");
    assert_eq!(p.double.call_count("AssociateQualificationWithWorker"), 0);
    let grant = p
        .double
        .qualification(p.qualification.as_str(), "A1REVOKEDELSEWHERE")
        .unwrap();
    assert_eq!(grant.status, GrantStatus::Revoked);
    let x = p
        .ledger
        .exclusion(&worker("A1REVOKEDELSEWHERE"), &p.qualification)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(x.state, ExclusionState::Released);

    let again = p.cli(&["reconcile", "--json"]).await;
    assert_eq!(again.code, 0, "{again:?}");
}

#[tokio::test]
async fn a_fix_mturk_refuses_is_named_and_exits_1_and_odd_ids_are_reported() {
    let p = Pipeline::start().await;
    two_excluded(&p).await;
    p.mturk
        .disassociate_qualification_from_worker()
        .qualification_type_id(p.qualification.as_str())
        .worker_id("A1REVOKEDELSEWHERE")
        .send()
        .await
        .unwrap();
    // As MTurk answers for a production worker id used in the sandbox.
    p.double.treat_as_foreign_worker("A1REVOKEDELSEWHERE");
    p.double
        .grant(p.qualification.as_str(), "not a worker-id", 1);

    let check = p.cli(&["reconcile", "--json"]).await;
    assert_eq!(check.code, 4, "{check:?}");
    assert_eq!(ids(&check.json(), "odd_ids"), ["not a worker-id"]);

    let fix = p.cli(&["reconcile", "--apply", "--yes", "--json"]).await;
    assert_eq!(fix.code, 1, "{fix:?}");
    let r = fix.json();
    let failed = &r["applied"]["failed"];
    assert_eq!(failed[0]["worker_id"], "A1REVOKEDELSEWHERE", "{r}");
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("AssociateQualificationWithWorker"),
        "{r}"
    );
    assert_eq!(ids(&r, "odd_ids"), ["not a worker-id"]);
    assert!(fix.stderr.contains("not fixed"), "{}", fix.stderr);
    let text = p.cli(&["reconcile"]).await;
    assert!(
        text.stdout.contains("\"not a worker-id\""),
        "{}",
        text.stdout
    );
}

#[tokio::test]
async fn help_says_reporting_is_the_default() {
    let p = Pipeline::start().await;
    let help = p.cli(&["reconcile", "--help"]).await;
    assert_eq!(help.code, 0, "{help:?}");
    for needle in [
        "--dry-run",
        "--apply",
        "--yes",
        "SendNotification=false",
        "no email",
        "Exit codes",
    ] {
        assert!(help.stdout.contains(needle), "{needle}: {}", help.stdout);
    }
    let both = p.cli(&["reconcile", "--apply", "--yes", "--dry-run"]).await;
    assert_eq!(both.code, 2, "{both:?}");
}

#[tokio::test]
async fn a_grant_the_ledger_never_recorded_is_finished_for_its_assignment() {
    use mturk_exclusion::ids::{AssignmentId, HitId};
    use mturk_exclusion::ledger::{Learned, NewParticipation};
    let p = Pipeline::start().await;
    // As if the handler crashed between the grant and the ledger's update,
    // and the message then went to the dead-letter queue.
    let assignment = AssignmentId::parse("3ACRASHEDAFTERGRANT").unwrap();
    p.ledger
        .record_participation(
            &NewParticipation {
                worker_id: worker("A1HALFDONE"),
                assignment_id: assignment.clone(),
                hit_id: HitId::parse("3HSOMEHIT").unwrap(),
                hit_type_id: None,
                submit_time: None,
                learned: Learned::Notification {
                    event_doc_id: "doc-1".into(),
                },
            },
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    p.double.grant(p.qualification.as_str(), "A1HALFDONE", 1);

    let check = p.cli(&["reconcile", "--json"]).await;
    assert_eq!(check.code, 4, "{check:?}");
    let r = check.json();
    assert_eq!(ids(&r, "only_on_mturk"), ["A1HALFDONE"]);
    assert_eq!(r["only_on_mturk"][0]["ledger_participations"], 1);
    assert_eq!(r["only_on_mturk"][0]["waiting_participations"], 1);

    let fix = p.cli(&["reconcile", "--apply", "--yes", "--json"]).await;
    assert_eq!(fix.code, 0, "{fix:?}");
    assert_eq!(ids(&fix.json()["applied"], "recorded"), ["A1HALFDONE"]);
    assert_eq!(p.double.call_count("AssociateQualificationWithWorker"), 0);
    let x = p
        .ledger
        .exclusion(&worker("A1HALFDONE"), &p.qualification)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(x.state, ExclusionState::Excluded);
    assert_eq!(x.excluded_because.as_deref(), Some(assignment.as_str()));
    let ps = p
        .ledger
        .participations_of(&worker("A1HALFDONE"))
        .await
        .unwrap();
    assert_eq!(ps.len(), 1, "no extra reconcile participation: {ps:?}");
    assert!(ps[0].excluded_at.is_some());
    assert_eq!(p.cli(&["reconcile"]).await.code, 0);
}

#[tokio::test]
async fn apply_shows_the_plan_and_changes_nothing_unless_confirmed() {
    let p = Pipeline::start().await;
    p.double.grant(p.qualification.as_str(), "A1OLDSCRIPT", 1);

    let unconfirmed = p.cli(&["reconcile", "--apply"]).await;

    assert_eq!(unconfirmed.code, 5, "{unconfirmed:?}");
    assert!(
        unconfirmed.stderr.contains("A1OLDSCRIPT") && unconfirmed.stderr.contains("--yes"),
        "{}",
        unconfirmed.stderr
    );
    assert!(p
        .ledger
        .exclusion(&worker("A1OLDSCRIPT"), &p.qualification)
        .await
        .unwrap()
        .is_none());

    let confirmed = p.cli(&["reconcile", "--apply", "--yes"]).await;
    assert_eq!(confirmed.code, 0, "{confirmed:?}");
    assert!(p
        .ledger
        .exclusion(&worker("A1OLDSCRIPT"), &p.qualification)
        .await
        .unwrap()
        .is_some());
}
