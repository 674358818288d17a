//! `mturk-exclusion coverage [--fix]`, the real binary against the local
//! services and the MTurk double.

use crate::CliExt;
use serde_json::Value;
use testkit::mturk_double::HitOptions;
use testkit::pipeline::{does_not_exist, Pipeline};

const CREATE: &str = "CreateHITType";
const MOVE: &str = "UpdateHITTypeOfHIT";

fn post(p: &Pipeline, title: &str, requirements: Vec<Value>) -> (String, String) {
    p.double.post_hit(HitOptions {
        title: title.into(),
        qualification_requirements: requirements,
        ..HitOptions::default()
    })
}

fn line<'a>(report: &'a Value, hit: &str) -> &'a Value {
    report["live"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["hit_id"] == hit)
        .unwrap_or_else(|| panic!("HIT {hit} not listed: {report}"))
}

#[tokio::test]
async fn coverage_lists_each_live_hit_by_class_and_subscription() {
    let p = Pipeline::start().await;
    let (ours, ours_type) = post(&p, "Ours", vec![does_not_exist(p.qualification.as_str())]);
    let other = p.double.create_qualification_type("Another list");
    let (theirs, _) = post(&p, "Theirs", vec![does_not_exist(&other)]);
    let (open, _) = post(&p, "Open to all", vec![]);
    let (done, _) = post(&p, "Finished", vec![]);
    p.double.expire_hit(&done);
    p.cli(&["subscribe", "--no-verify", &ours_type]).await;

    let run = p.cli(&["coverage", "--json"]).await;

    assert_eq!(run.code, 1, "an unguarded live HIT is a finding: {run:?}");
    let report = run.json();
    assert_eq!(report["counts"]["live_unguarded"], 1);
    assert_eq!(report["counts"]["unguarded"], 2);
    assert_eq!(report["live"].as_array().unwrap().len(), 3, "{report}");
    assert_eq!(line(&report, &open)["class"], "unguarded");
    assert_eq!(report["live"][0]["hit_id"], open, "unguarded first");
    assert_eq!(line(&report, &theirs)["class"], "other_list");
    let o = line(&report, &ours);
    assert_eq!(o["class"], "ours");
    assert_eq!(o["subscription"]["by"], "lab");
    assert_eq!(o["subscription"]["active"], true);
    assert!(line(&report, &open)["subscription"].is_null());

    let text = p.cli(&["coverage"]).await;
    assert!(text.stdout.contains("unguarded"), "{}", text.stdout);
    assert!(text.stdout.contains("Open to all"), "{}", text.stdout);
    assert!(
        text.stdout.contains("unsubscribe HIT_TYPE_ID"),
        "{}",
        text.stdout
    );
    assert_eq!(p.double.call_count(CREATE), 0, "listing changes nothing");
}

#[tokio::test]
async fn coverage_fix_shows_the_plan_asks_and_guards_only_when_confirmed() {
    let p = Pipeline::start().await;
    let (open, open_type) = post(&p, "Open to all", vec![]);
    let (second, _) = post(&p, "Open to all", vec![]);

    // Without a terminal the question is a no: nothing changes.
    let declined = p.cli(&["coverage", "--fix"]).await;
    assert_eq!(declined.code, 5, "{declined:?}");
    assert!(
        declined.stdout.contains("Plan: HIT type"),
        "{}",
        declined.stdout
    );
    assert_eq!(p.double.call_count(CREATE) + p.double.call_count(MOVE), 0);

    let dry = p.cli(&["coverage", "--fix", "--dry-run"]).await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stdout.contains("Dry run: nothing was changed."));
    assert_eq!(p.double.call_count(CREATE) + p.double.call_count(MOVE), 0);

    let fixed = p.cli(&["coverage", "--fix", "--yes", "--json"]).await;
    assert_eq!(fixed.code, 0, "{fixed:?}");
    let report = fixed.json();
    assert_eq!(report["fixed"]["hits"].as_array().unwrap().len(), 2);
    assert_eq!(
        p.double.call_count(CREATE),
        1,
        "one new HIT type for both HITs"
    );
    assert_eq!(p.double.call_count(MOVE), 2);
    let new_type = p.double.hit_type_of(&open).unwrap();
    assert_ne!(new_type, open_type);
    assert_eq!(p.double.hit_type_of(&second).unwrap(), new_type);
    let reqs = p.double.requirements_of(&open).unwrap();
    assert_eq!(reqs, [does_not_exist(p.qualification.as_str())]);
    let setting = p
        .double
        .notification_setting(&new_type)
        .expect("subscribed");
    assert_eq!(setting.destination, p.queues.url);

    let after = p.cli(&["coverage", "--json"]).await;
    assert_eq!(after.code, 0, "{after:?}");
    assert_eq!(after.json()["counts"]["live_unguarded"], 0);
    assert_eq!(line(&after.json(), &open)["class"], "ours");
}
