//! HIT types as MTurk makes them: `CreateHITType` derives the id from the
//! properties, `UpdateHITTypeOfHIT` moves a HIT, and `ListHITs` shows each
//! HIT's status and requirements (what a coverage check reads).

use crate::common::{mturk, turk_code};
use aws_sdk_mturk::types::{
    Comparator, HitAccessActions, HitStatus, Locale, QualificationRequirement,
};
use mturk_double::{HitOptions, MturkDouble};
use serde_json::json;

async fn double() -> MturkDouble {
    MturkDouble::start(None).await.expect("start the double")
}

fn does_not_exist(qual: &str) -> QualificationRequirement {
    QualificationRequirement::builder()
        .qualification_type_id(qual)
        .comparator(Comparator::DoesNotExist)
        .actions_guarded(HitAccessActions::DiscoverPreviewAndAccept)
        .build()
        .expect("complete requirement")
}

fn create_hit_type(
    client: &aws_sdk_mturk::Client,
    title: &str,
    requirements: Vec<QualificationRequirement>,
) -> aws_sdk_mturk::operation::create_hit_type::builders::CreateHITTypeFluentBuilder {
    client
        .create_hit_type()
        .title(title)
        .description("A short study")
        .reward("0.50")
        .assignment_duration_in_seconds(3600)
        .auto_approval_delay_in_seconds(259_200)
        .keywords("survey")
        .set_qualification_requirements(Some(requirements))
}

#[tokio::test]
async fn the_same_properties_give_the_same_hit_type_and_any_change_another() {
    let double = double().await;
    let client = mturk(&double);
    let qual = double.create_qualification_type("Took part");
    let a = create_hit_type(&client, "Study A", vec![does_not_exist(&qual)])
        .send()
        .await
        .expect("create");
    let again = create_hit_type(&client, "Study A", vec![does_not_exist(&qual)])
        .send()
        .await
        .expect("create again");
    let other_title = create_hit_type(&client, "Study B", vec![does_not_exist(&qual)])
        .send()
        .await
        .expect("other title");
    let unguarded = create_hit_type(&client, "Study A", vec![])
        .send()
        .await
        .expect("no requirement");
    let a = a.hit_type_id().expect("id");
    assert_eq!(a.len(), 30);
    assert_eq!(Some(a), again.hit_type_id());
    assert_ne!(Some(a), other_title.hit_type_id());
    assert_ne!(Some(a), unguarded.hit_type_id());
    assert_ne!(other_title.hit_type_id(), unguarded.hit_type_id());
}

#[tokio::test]
async fn create_hit_type_checks_its_input_as_mturk_does() {
    let double = double().await;
    let client = mturk(&double);
    let qual = double.create_qualification_type("Took part");

    let missing_title = client
        .create_hit_type()
        .description("d")
        .reward("0.50")
        .assignment_duration_in_seconds(3600)
        .send()
        .await
        .expect_err("no title");
    assert_eq!(
        aws_sdk_mturk::error::ProvideErrorMetadata::code(&missing_title.into_service_error()),
        Some("ParameterValidationError")
    );

    let bad_reward = create_hit_type(&client, "t", vec![])
        .reward("0.505")
        .send()
        .await
        .expect_err("three decimals");
    assert_eq!(
        turk_code(bad_reward).as_deref(),
        Some("AWS.MechanicalTurk.InvalidParameterValue")
    );

    let short = create_hit_type(&client, "t", vec![])
        .assignment_duration_in_seconds(10)
        .send()
        .await
        .expect_err("under 30 s");
    assert_eq!(
        turk_code(short).as_deref(),
        Some("AWS.MechanicalTurk.InvalidParameterValue")
    );

    let unknown_qual = create_hit_type(&client, "t", vec![does_not_exist("3QNOSUCHQUALTYPE")])
        .send()
        .await
        .expect_err("unknown qualification type");
    assert_eq!(
        turk_code(unknown_qual).as_deref(),
        Some("AWS.MechanicalTurk.QualificationTypeDoesNotExist")
    );

    let in_without_values = QualificationRequirement::builder()
        .qualification_type_id(&qual)
        .comparator(Comparator::In)
        .build()
        .unwrap();
    let err = create_hit_type(&client, "t", vec![in_without_values])
        .send()
        .await
        .expect_err("In needs values");
    assert_eq!(
        turk_code(err).as_deref(),
        Some("AWS.MechanicalTurk.InvalidParameterValue")
    );

    let odd_comparator = QualificationRequirement::builder()
        .qualification_type_id(&qual)
        .comparator(Comparator::from("Resembles"))
        .build()
        .unwrap();
    let err = create_hit_type(&client, "t", vec![odd_comparator])
        .send()
        .await
        .expect_err("unknown comparator");
    assert_eq!(
        aws_sdk_mturk::error::ProvideErrorMetadata::code(&err.into_service_error()),
        Some("ParameterValidationError")
    );

    let eleven = (0..11).map(|_| does_not_exist(&qual)).collect();
    let err = create_hit_type(&client, "t", eleven)
        .send()
        .await
        .expect_err("more than ten requirements");
    assert_eq!(
        turk_code(err).as_deref(),
        Some("AWS.MechanicalTurk.InvalidParameterValue")
    );

    // A locale requirement on the system Locale type is fine.
    let us = QualificationRequirement::builder()
        .qualification_type_id("00000000000000000071")
        .comparator(Comparator::EqualTo)
        .locale_values(Locale::builder().country("US").build().unwrap())
        .build()
        .unwrap();
    create_hit_type(&client, "t", vec![us, does_not_exist(&qual)])
        .send()
        .await
        .expect("locale and exclusion");

    // A set holds up to 30 locales, but up to 15 integers.
    let countries = |n: usize| -> Vec<Locale> {
        (0..n)
            .map(|i| {
                let code: String = [b'A' + (i / 26) as u8, b'A' + (i % 26) as u8]
                    .iter()
                    .map(|&b| b as char)
                    .collect();
                Locale::builder().country(code).build().unwrap()
            })
            .collect()
    };
    let locales_in = |n: usize| {
        QualificationRequirement::builder()
            .qualification_type_id("00000000000000000071")
            .comparator(Comparator::In)
            .set_locale_values(Some(countries(n)))
            .build()
            .unwrap()
    };
    create_hit_type(&client, "t", vec![locales_in(30)])
        .send()
        .await
        .expect("30 locales");
    let err = create_hit_type(&client, "t", vec![locales_in(31)])
        .send()
        .await
        .expect_err("31 locales");
    assert_eq!(
        turk_code(err).as_deref(),
        Some("AWS.MechanicalTurk.InvalidParameterValue")
    );
    let integers_in = |n: i32| {
        QualificationRequirement::builder()
            .qualification_type_id(&qual)
            .comparator(Comparator::In)
            .set_integer_values(Some((0..n).collect()))
            .build()
            .unwrap()
    };
    create_hit_type(&client, "t", vec![integers_in(15)])
        .send()
        .await
        .expect("15 integers");
    let err = create_hit_type(&client, "t", vec![integers_in(16)])
        .send()
        .await
        .expect_err("16 integers");
    assert_eq!(
        turk_code(err).as_deref(),
        Some("AWS.MechanicalTurk.InvalidParameterValue")
    );
}

#[tokio::test]
async fn list_hits_shows_status_and_requirements_as_posted() {
    let double = double().await;
    let client = mturk(&double);
    let qual = double.create_qualification_type("Took part");
    let requirement = json!({
        "QualificationTypeId": qual,
        "Comparator": "DoesNotExist",
        "ActionsGuarded": "DiscoverPreviewAndAccept"
    });
    let (guarded, guarded_type) = double.post_hit(HitOptions {
        title: "Guarded".into(),
        qualification_requirements: vec![requirement],
        ..HitOptions::default()
    });
    // What another tool might leave: an odd comparator and an empty list.
    let odd =
        json!({"QualificationTypeId": "3SOMEQUAL", "Comparator": "Resembles", "IntegerValues": []});
    let (odd_hit, _) = double.post_hit(HitOptions {
        title: "Odd".into(),
        qualification_requirements: vec![odd],
        ..HitOptions::default()
    });
    let (done, _) = double.post_hit(HitOptions::default());
    double.expire_hit(&done);

    let out = client
        .list_hits()
        .max_results(100)
        .send()
        .await
        .expect("list");
    let by_id = |id: &str| {
        out.hits()
            .iter()
            .find(|h| h.hit_id() == Some(id))
            .expect("listed")
            .clone()
    };
    let g = by_id(&guarded);
    assert_eq!(g.hit_type_id(), Some(guarded_type.as_str()));
    assert_eq!(g.hit_status(), Some(&HitStatus::Assignable));
    let reqs = g.qualification_requirements();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].qualification_type_id(), qual);
    assert_eq!(reqs[0].comparator(), &Comparator::DoesNotExist);
    assert_eq!(
        reqs[0].actions_guarded(),
        Some(&HitAccessActions::DiscoverPreviewAndAccept)
    );
    let o = by_id(&odd_hit);
    assert_eq!(
        o.qualification_requirements()[0].comparator().as_str(),
        "Resembles"
    );
    assert_eq!(by_id(&done).hit_status(), Some(&HitStatus::Reviewable));
}

#[tokio::test]
async fn a_posted_hit_has_the_hit_type_create_hit_type_gives_its_properties() {
    let double = double().await;
    let client = mturk(&double);
    let (_, posted_type) = double.post_hit(HitOptions::default());
    let o = HitOptions::default();
    let created = client
        .create_hit_type()
        .title(&o.title)
        .description(&o.description)
        .reward(&o.reward)
        .assignment_duration_in_seconds(o.assignment_duration.as_secs() as i64)
        .auto_approval_delay_in_seconds(o.auto_approval_delay.as_secs() as i64)
        .keywords(&o.keywords)
        .send()
        .await
        .expect("create");
    assert_eq!(created.hit_type_id(), Some(posted_type.as_str()));
}

#[tokio::test]
async fn update_hit_type_of_hit_moves_the_hit_and_its_requirements() {
    let double = double().await;
    let client = mturk(&double);
    let qual = double.create_qualification_type("Took part");
    let (hit, old_type) = double.post_hit(HitOptions {
        title: "Unguarded".into(),
        ..HitOptions::default()
    });
    let new_type = create_hit_type(&client, "Unguarded", vec![does_not_exist(&qual)])
        .send()
        .await
        .expect("create")
        .hit_type_id
        .expect("id");
    client
        .update_hit_type_of_hit()
        .hit_id(&hit)
        .hit_type_id(&new_type)
        .send()
        .await
        .expect("update");
    assert_ne!(old_type, new_type);
    assert_eq!(double.hit_type_of(&hit).as_deref(), Some(new_type.as_str()));
    let got = client.get_hit().hit_id(&hit).send().await.expect("get");
    let got = got.hit().expect("HIT");
    assert_eq!(got.hit_type_id(), Some(new_type.as_str()));
    assert_eq!(got.qualification_requirements().len(), 1);
    assert_eq!(
        got.qualification_requirements()[0].qualification_type_id(),
        qual
    );
    assert_eq!(got.keywords(), Some("survey"));

    let unknown_type = client
        .update_hit_type_of_hit()
        .hit_id(&hit)
        .hit_type_id("3TNOSUCHHITTYPE")
        .send()
        .await
        .expect_err("unknown HIT type");
    assert_eq!(
        turk_code(unknown_type).as_deref(),
        Some("AWS.MechanicalTurk.HITTypeDoesNotExist")
    );
    double.dispose_hit(&hit);
    let gone = client
        .update_hit_type_of_hit()
        .hit_id(&hit)
        .hit_type_id(&new_type)
        .send()
        .await
        .expect_err("disposed HIT");
    assert_eq!(
        turk_code(gone).as_deref(),
        Some("AWS.MechanicalTurk.HITDoesNotExist")
    );
}
