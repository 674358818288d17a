//! What `--stack` decides besides the pool's names: the MTurk environment
//! (the stack's `MTurkEnvironment`; a flag that disagrees is refused) and
//! whether `status` can say that the alarms e-mail someone.

use crate::{CliExt, Deployed};
use testkit::pipeline::Pipeline;

#[tokio::test]
async fn the_stack_decides_the_environment_and_a_disagreeing_flag_is_refused() {
    let p = Pipeline::start().await;
    let production = Deployed::new(&p, &[("MTurkEnvironment", "production")]).await;
    let sandbox = Deployed::new(&p, &[("MTurkEnvironment", "sandbox")]).await;
    let env = production.env();

    // No flag: the stack's environment, production included.
    for (stack, expected) in [(&production.name, "production"), (&sandbox.name, "sandbox")] {
        let run = p
            .cli_with_env(&["status", "--stack", stack, "--json"], &env)
            .await;
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.json()["environment"], expected, "{stack}");
    }

    // A flag that agrees is fine.
    let agrees = p
        .cli_with_env(
            &[
                "status",
                "--stack",
                &production.name,
                "--production",
                "--json",
            ],
            &env,
        )
        .await;
    assert_eq!(agrees.code, 0, "{agrees:?}");
    assert_eq!(agrees.json()["environment"], "production");

    // One that disagrees stops before the ledger is read, naming both sides.
    for (stack, flag, of_stack) in [
        (&production.name, "--sandbox", "production"),
        (&sandbox.name, "--production", "sandbox"),
    ] {
        let run = p
            .cli_with_env(&["status", "--stack", stack, flag, "--json"], &env)
            .await;
        assert_eq!(run.code, 2, "{stack} {flag}: {run:?}");
        assert!(run.stdout.is_empty(), "{run:?}");
        assert!(
            run.stderr.contains(&format!("talks to MTurk {of_stack}")) && run.stderr.contains(flag),
            "{}",
            run.stderr
        );
    }
    // `try` posts for sandbox workers only: a production stack is refused
    // without any flag, since the stack is what decides.
    let run = p
        .cli_with_env(&["try", "--stack", &production.name], &env)
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(p.double.call_count("CreateHITWithHITType"), 0);
    // MTURK_EXCLUSION_PRODUCTION is --production by another name.
    let mut by_env = sandbox.env();
    by_env.push(("MTURK_EXCLUSION_PRODUCTION", Some("true")));
    let run = p
        .cli_with_env(&["status", "--stack", &sandbox.name], &by_env)
        .await;
    assert_eq!(run.code, 2, "{run:?}");

    production.delete().await;
    sandbox.delete().await;
}

#[tokio::test]
async fn status_says_when_the_alarms_reach_no_one() {
    let p = Pipeline::start().await;
    let silent = Deployed::new(&p, &[("AlarmEmail", "")]).await;
    let heard = Deployed::new(&p, &[("AlarmEmail", "lab@example.org")]).await;
    let env = silent.env();

    let run = p
        .cli_with_env(&["status", "--stack", &silent.name, "--json"], &env)
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    let report = run.json();
    assert_eq!(report["alarm_email"], false);
    let problems = report["problems"].to_string();
    assert!(problems.contains("AlarmEmail is empty"), "{problems}");
    let text = p
        .cli_with_env(&["status", "--stack", &silent.name], &env)
        .await;
    assert!(
        text.stdout.contains("Alarms: reach no one"),
        "{}",
        text.stdout
    );

    let run = p
        .cli_with_env(&["status", "--stack", &heard.name, "--json"], &env)
        .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.json()["alarm_email"], true);
    assert!(!run.json()["problems"].to_string().contains("AlarmEmail"));

    // Without a stack, status does not know, and does not guess.
    let run = p.cli(&["status", "--json"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.json()["alarm_email"].is_null());
    assert!(!run.json()["problems"].to_string().contains("AlarmEmail"));

    silent.delete().await;
    heard.delete().await;
}
