//! The CLI's setup commands: `init` and `requirement`, against the double.

use crate::CliExt;
use testkit::pipeline::Pipeline;

#[tokio::test]
async fn init_creates_the_qualification_once_then_finds_it() {
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

    let again = p
        .cli(&["init", "--json", "--name", "Smith Lab participant"])
        .await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json()["created"], false);
    assert_eq!(again.json()["qualification_type_id"], id.as_str());
    assert_eq!(p.double.call_count("CreateQualificationType"), 1);
    let call = &p.double.calls_to("CreateQualificationType")[0].request;
    assert_eq!(call["QualificationTypeStatus"], "Active");
    assert_eq!(call["AutoGranted"], false);
}

#[tokio::test]
async fn requirement_prints_does_not_exist_for_every_form() {
    let p = Pipeline::start().await;
    let json = p.cli(&["requirement", "--json"]).await;
    assert_eq!(json.code, 0, "{json:?}");
    let r = json.json();
    assert_eq!(r["Comparator"], "DoesNotExist");
    assert_eq!(r["ActionsGuarded"], "DiscoverPreviewAndAccept");
    assert_eq!(r["QualificationTypeId"], p.qualification.as_str());
    let text = p.cli(&["requirement"]).await;
    assert!(
        text.stdout.contains("boto3")
            && text
                .stdout
                .contains(&format!("block_quals = {}", p.qualification))
    );
}

#[tokio::test]
async fn a_mistyped_qualification_id_names_the_id_and_the_expected_form() {
    let p = Pipeline::start().await;
    let run = p
        .cli(&["requirement", "--qualification", "3LB30G6J-HY4J"])
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("\"3LB30G6J-HY4J\""), "{}", run.stderr);
    assert!(run.stderr.contains("letters and digits"), "{}", run.stderr);
}
