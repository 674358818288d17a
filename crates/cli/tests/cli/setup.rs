//! The CLI's setup commands: `init` against the double, `requirement` with no
//! local stack at all.

use crate::CliExt;
use testkit::pipeline::{CliRun, Pipeline};

#[tokio::test]
async fn init_creates_the_qualification_once_and_finds_it_only_with_reuse() {
    let p = Pipeline::start().await;
    let first = p
        .cli(&["init", "--json", "--name", "Smith Lab participant"])
        .await;
    assert_eq!(first.code, 0, "{first:?}");
    let created = first.json();
    assert_eq!(created["created"], true);
    let id = created["qualification_type_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The same name again is a second pool about to share the first's
    // list: refused, with the existing id and both ways on.
    let again = p
        .cli(&["init", "--json", "--name", "Smith Lab participant"])
        .await;
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stdout.is_empty(), "{again:?}");
    for needle in [id.as_str(), "--reuse", "--name"] {
        assert!(again.stderr.contains(needle), "{needle}: {}", again.stderr);
    }

    let reused = p
        .cli(&[
            "init",
            "--json",
            "--name",
            "Smith Lab participant",
            "--reuse",
        ])
        .await;
    assert_eq!(reused.code, 0, "{reused:?}");
    assert_eq!(reused.json()["created"], false);
    assert_eq!(reused.json()["qualification_type_id"], id.as_str());
    assert_eq!(p.double.call_count("CreateQualificationType"), 1);
    let call = &p.double.calls_to("CreateQualificationType")[0].request;
    assert_eq!(call["QualificationTypeStatus"], "Active");
    assert_eq!(call["AutoGranted"], false);
}

/// A second pool, as docs/several-pools.md makes it: `init` with the
/// default name finds the first pool's list and stops; `init --name` gives
/// the second pool a list of its own.
#[tokio::test]
async fn a_second_pool_gets_a_list_of_its_own() {
    let p = Pipeline::start().await;
    let first = p.cli(&["init", "--json"]).await;
    assert_eq!(first.code, 0, "{first:?}");
    let first_id = first.json()["qualification_type_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let shared = p.cli(&["init", "--json"]).await;
    assert_eq!(shared.code, 2, "{shared:?}");
    assert!(shared.stderr.contains(&first_id), "{}", shared.stderr);

    let second = p
        .cli(&[
            "init",
            "--json",
            "--name",
            "Took part in a pilot of this lab",
        ])
        .await;
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(second.json()["created"], true);
    assert_ne!(second.json()["qualification_type_id"], first_id.as_str());
    assert_eq!(p.double.call_count("CreateQualificationType"), 2);
}

/// Credentials AWS does not know: exit 3 (the environment) with a hint at
/// the profile and the requester account, decided by the error's kind.
#[tokio::test]
async fn refused_credentials_point_at_the_profile() {
    let p = Pipeline::start().await;
    p.double.fail_next(
        Some("CreateQualificationType"),
        5,
        testkit::mturk_double::Fault::Unrecognized,
    );
    let run = p.cli(&["init", "--name", "Smith Lab participant"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains("check the AWS credentials (--profile)"),
        "{}",
        run.stderr
    );
}

/// `requirement` is pure: run the binary with no local stack, no AWS
/// endpoints and no credentials at all.
fn requirement(args: &[&str]) -> CliRun {
    let out = std::process::Command::new(crate::BINARY)
        .arg("requirement")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .expect("run mturk-exclusion");
    CliRun {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn requirement_prints_does_not_exist_for_every_form() {
    let q = "3LB30G6JHY4JQUALIFICATION";
    let json = requirement(&["--qualification", q, "--json"]);
    assert_eq!(json.code, 0, "{json:?}");
    let r = json.json();
    assert_eq!(r["Comparator"], "DoesNotExist");
    assert_eq!(r["ActionsGuarded"], "DiscoverPreviewAndAccept");
    assert_eq!(r["QualificationTypeId"], q);
    let text = requirement(&["--qualification", q]);
    assert_eq!(text.code, 0, "{text:?}");
    assert!(
        text.stdout.contains("boto3") && text.stdout.contains(&format!("block_quals = {q}")),
        "{}",
        text.stdout
    );
}

#[test]
fn a_mistyped_qualification_id_names_the_id_and_the_expected_form() {
    let run = requirement(&["--qualification", "3LB30G6J-HY4J"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("\"3LB30G6J-HY4J\""), "{}", run.stderr);
    assert!(run.stderr.contains("letters and digits"), "{}", run.stderr);
}

/// `try` on an empty sandbox account: one HIT that carries the pool's
/// requirement, its HIT type subscribed before it is posted, so the first
/// submission is notified and its worker excluded.
#[tokio::test]
async fn try_posts_a_guarded_sandbox_hit_whose_submission_excludes_its_worker() {
    let p = Pipeline::start().await;
    let run = p.cli(&["try", "--json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let study = run.json();
    let hit = study["hit_id"].as_str().unwrap().to_owned();
    let hit_type = study["hit_type_id"].as_str().unwrap().to_owned();
    assert_eq!(study["subscribed"], true);
    assert_eq!(
        study["worker_link"],
        format!("https://workersandbox.mturk.com/projects/{hit_type}/tasks")
    );
    let requirements = p.double.requirements_of(&hit).unwrap();
    assert_eq!(requirements.len(), 1, "{requirements:?}");
    assert_eq!(
        requirements[0]["QualificationTypeId"],
        p.qualification.as_str()
    );
    assert_eq!(requirements[0]["Comparator"], "DoesNotExist");
    assert_eq!(
        requirements[0]["ActionsGuarded"],
        "DiscoverPreviewAndAccept"
    );
    let setting = p.double.notification_setting(&hit_type).unwrap();
    assert_eq!(setting.destination, p.queues.url);

    let submitted = p
        .double
        .submit_assignment(&hit, "A1TRYINGIT")
        .await
        .unwrap();
    assert!(submitted.notification.is_some(), "not notified");
    p.drain().await;
    assert!(p.granted("A1TRYINGIT"));
}

#[tokio::test]
async fn try_refuses_production_and_posts_nothing() {
    let p = Pipeline::start().await;
    let run = p.cli(&["try", "--production"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("sandbox workers only"),
        "{}",
        run.stderr
    );
    assert_eq!(p.double.call_count("CreateHITType"), 0);
    assert_eq!(p.double.call_count("CreateHITWithHITType"), 0);
}
