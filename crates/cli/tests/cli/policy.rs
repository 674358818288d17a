//! The operator's IAM policy (docs/operator-policy.json) against what the
//! CLI really asks AWS for. Every command of a lab's time with a stack runs
//! once, its AWS clients pointed at recorders in front of DynamoDB Local,
//! moto (SQS and CloudFormation) and the MTurk double, which note the IAM
//! action each request needs. The policy must allow exactly those: an
//! action the CLI needs and the policy lacks fails here rather than with
//! AccessDenied in a lab's account, and an action no command asks for is
//! more than operators need.

use std::collections::BTreeSet;
use std::path::Path;

use crate::subscribe::while_consuming;
use crate::{CliExt, Deployed};
use mturk_exclusion::ids::WorkerId;
use serde_json::Value;
use testkit::pipeline::{document, does_not_exist, submitted, Pipeline};
use testkit::recorder::Recorder;
use time::OffsetDateTime;

/// The actions a policy document allows, `service:Action`.
fn allowed(policy: &Value) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for statement in policy["Statement"].as_array().expect("a Statement list") {
        assert_eq!(statement["Effect"], "Allow", "{statement}");
        match &statement["Action"] {
            Value::String(a) => {
                actions.insert(a.clone());
            }
            Value::Array(list) => {
                actions.extend(list.iter().map(|a| a.as_str().unwrap().to_owned()));
            }
            other => panic!("an Action that is neither a string nor a list: {other}"),
        }
    }
    actions
}

#[tokio::test]
async fn the_operator_policy_allows_exactly_what_the_cli_asks_for() {
    let p = Pipeline::start().await;
    let local = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let dynamodb = Recorder::start(&local("AWS_ENDPOINT_URL_DYNAMODB"), "dynamodb")
        .await
        .unwrap();
    let sqs = Recorder::start(&local("AWS_ENDPOINT_URL_SQS"), "sqs")
        .await
        .unwrap();
    let cloudformation = Recorder::start(&local("AWS_ENDPOINT_URL_SQS"), "cloudformation")
        .await
        .unwrap();
    let mturk = Recorder::start(&p.double.endpoint(), "mechanicalturk")
        .await
        .unwrap();
    let stack = Deployed::new(
        &p,
        &[
            ("MTurkEnvironment", "sandbox"),
            ("AlarmEmail", "lab@example.org"),
        ],
    )
    .await;
    let mut env: Vec<(&str, Option<&str>)> = stack
        .env()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("AWS_ENDPOINT_URL_"))
        .collect();
    env.extend([
        ("MTURK_EXCLUSION_STACK", Some(stack.name.as_str())),
        ("AWS_ENDPOINT_URL_DYNAMODB", Some(dynamodb.endpoint())),
        ("AWS_ENDPOINT_URL_SQS", Some(sqs.endpoint())),
        (
            "AWS_ENDPOINT_URL_CLOUDFORMATION",
            Some(cloudformation.endpoint()),
        ),
        ("AWS_ENDPOINT_URL_MTURK", Some(mturk.endpoint())),
    ]);
    let files = std::env::temp_dir().join(testkit::unique_name("operator-policy"));
    std::fs::create_dir_all(&files).unwrap();
    let file = |name: &str| files.join(name).to_str().unwrap().to_owned();

    // Each command, with the path through it that reaches the most of AWS.
    let mut ran = Vec::new();
    macro_rules! cli {
        ($($arg:expr),+ $(,)?) => {{
            let args: Vec<&str> = vec![$($arg),+];
            let run = p.cli_with_env(&args, &env).await;
            ran.push(args.join(" "));
            run
        }};
    }
    assert_eq!(
        cli!("init", "--name", "Took part (policy test)", "--json").code,
        0
    );
    assert_eq!(cli!("requirement", "--json").code, 0);

    let hit_type = p.hit_type.to_string();
    let subscribe = while_consuming(
        &p,
        p.cli_with_env(
            &["subscribe", &hit_type, "--json", "--timeout", "20s"],
            &env,
        ),
        p.function(),
    )
    .await;
    ran.push("subscribe".into());
    assert_eq!(subscribe.code, 0, "{subscribe:?}");

    let run = cli!("try", "--json");
    assert_eq!(run.code, 0, "{run:?}");

    let hit = p.double.create_hit(&p.hit_type);
    for worker in ["A1POLICYONE", "A1POLICYTWO"] {
        p.double.submit_assignment(&hit, worker).await.unwrap();
    }
    let earlier = p.double.create_hit(&p.hit_type);
    p.double
        .submit_assignment(&earlier, "A1POLICYEARLIER")
        .await
        .unwrap();
    let run = cli!("exclude", "--hit-type", &hit_type, "--json");
    assert_eq!(run.code, 0, "{run:?}");
    let run = cli!("exclude", "--hit", &earlier, "--json");
    assert_eq!(run.code, 0, "{run:?}");
    let run = cli!("exclude", "--worker", "A1POLICYMANUAL", "--json");
    assert_eq!(run.code, 0, "{run:?}");
    p.drain().await;

    assert_eq!(cli!("status", "--json").code, 0);
    p.double.post_hit(testkit::mturk_double::HitOptions {
        title: "Posted without the requirement".into(),
        qualification_requirements: vec![],
        ..Default::default()
    });
    let other = p.double.create_qualification_type("Another list");
    p.double.post_hit(testkit::mturk_double::HitOptions {
        title: "Another pool's".into(),
        qualification_requirements: vec![does_not_exist(&other)],
        ..Default::default()
    });
    let run = cli!("coverage", "--fix", "--yes", "--json");
    assert_eq!(run.code, 0, "{run:?}");
    // Before a deploy there is no stack: the qualification alone.
    let no_stack: Vec<(&str, Option<&str>)> = env
        .iter()
        .copied()
        .filter(|(name, _)| *name != "MTURK_EXCLUSION_STACK")
        .chain([("MTURK_EXCLUSION_STACK", None)])
        .collect();
    let run = p
        .cli_with_env(
            &[
                "--qualification",
                p.qualification.as_str(),
                "coverage",
                "--first-run",
                "--json",
            ],
            &no_stack,
        )
        .await;
    ran.push("coverage --first-run".into());
    assert_eq!(run.code, 0, "{run:?}");
    let run = cli!("adopt", "--hit-type", &hit_type, "--yes", "--json");
    assert_eq!(run.code, 0, "{run:?}");
    p.double.grant(&other, "A1OTHERLIST", 1);
    let run = cli!("adopt", "--from-qualification", &other, "--yes", "--json");
    assert_eq!(run.code, 0, "{run:?}");

    let (csv, html) = (file("participations.csv"), file("report.html"));
    assert_eq!(cli!("export", "--format", "csv", "-o", &csv).code, 0);
    assert_eq!(cli!("report", "-o", &html).code, 0);

    // reconcile --apply with all three kinds of difference: granted by an
    // older script, revoked on MTurk's side, released but still held.
    p.double.grant(p.qualification.as_str(), "A1OLDSCRIPT", 1);
    p.mturk
        .disassociate_qualification_from_worker()
        .qualification_type_id(p.qualification.as_str())
        .worker_id("A1POLICYONE")
        .send()
        .await
        .unwrap();
    p.ledger
        .record_release(
            &WorkerId::parse("A1POLICYTWO").unwrap(),
            &p.qualification,
            None,
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let run = cli!("reconcile", "--json");
    assert_eq!(run.code, 4, "the differences are reported: {run:?}");
    let run = cli!("reconcile", "--apply", "--yes", "--json");
    assert_eq!(run.code, 0, "{run:?}");

    let run = cli!("release", "--worker", "A1POLICYEARLIER", "--yes", "--json");
    assert_eq!(run.code, 0, "{run:?}");

    p.stack
        .sqs
        .send_message()
        .queue_url(&p.queues.dlq_url)
        .message_body(document(
            "doc-policy",
            &[submitted(
                &hit_type,
                hit.as_str(),
                "3ASSIGNMENTPOLICY000000000000",
            )],
        ))
        .send()
        .await
        .unwrap();
    let run = cli!("redrive", "--dry-run", "--json");
    assert_eq!(run.code, 0, "{run:?}");
    let run = cli!("redrive", "--yes", "--json");
    assert_eq!(run.code, 0, "{run:?}");

    let run = cli!("unsubscribe", &hit_type, "--json");
    assert_eq!(run.code, 0, "{run:?}");

    let recorded: BTreeSet<String> = [&dynamodb, &sqs, &cloudformation, &mturk]
        .iter()
        .flat_map(|r| r.actions())
        .collect();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/operator-policy.json");
    let policy: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("docs/operator-policy.json"))
            .expect("docs/operator-policy.json is JSON");
    let policy = allowed(&policy);

    let unknown: Vec<&String> = recorded
        .iter()
        .filter(|a| a.starts_with("unknown:"))
        .collect();
    let missing: Vec<&String> = recorded.difference(&policy).collect();
    let unused: Vec<&String> = policy.difference(&recorded).collect();
    assert!(
        unknown.is_empty() && missing.is_empty() && unused.is_empty(),
        "docs/operator-policy.json and the CLI disagree.\n\
         Asked for by the CLI, not in the policy: {missing:?}\n\
         In the policy, asked for by no command: {unused:?}\n\
         Requests the recorder could not name: {unknown:?}\n\
         Commands run: {ran:#?}"
    );
    // The tour reached every service the policy names.
    for service in ["dynamodb:", "sqs:", "cloudformation:", "mechanicalturk:"] {
        assert!(
            recorded.iter().any(|a| a.starts_with(service)),
            "{service} {recorded:?}"
        );
    }
    stack.delete().await;
    let _ = std::fs::remove_dir_all(&files);
}
