//! Several exclusion pools in one lab: one stack per pool, side by side on
//! one requester account. `--stack` picks the pool, and a submission to one
//! pool's study never excludes anyone from the other.

use crate::{CliExt, Deployed};
use mturk_exclusion::ids::WorkerId;
use testkit::pipeline::Pipeline;

async fn took_part(p: &Pipeline, worker: &str) {
    let hit = p.double.create_hit(&p.hit_type);
    p.double.submit_assignment(&hit, worker).await.unwrap();
}

async fn participants(p: &Pipeline, worker: &str) -> usize {
    p.ledger
        .participations_of(&WorkerId::parse(worker).unwrap())
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn each_stack_is_a_pool_of_its_own() {
    let deception = Pipeline::start().await;
    let pilots = deception.another_pool().await;
    assert_ne!(deception.qualification, pilots.qualification);
    let deception_stack = Deployed::new(&deception, &[]).await;
    let pilots_stack = Deployed::new(&pilots, &[]).await;
    let env = deception_stack.env();

    took_part(&deception, "A1DECEIVED").await;
    took_part(&pilots, "A2PILOTED").await;
    took_part(&deception, "A3BOTHPOOLS").await;
    took_part(&pilots, "A3BOTHPOOLS").await;
    deception.drain().await;
    pilots.drain().await;

    // Each pool excluded exactly the workers of its own studies.
    assert!(deception.granted("A1DECEIVED"));
    assert!(!pilots.granted("A1DECEIVED"));
    assert!(pilots.granted("A2PILOTED"));
    assert!(!deception.granted("A2PILOTED"));
    assert!(deception.granted("A3BOTHPOOLS") && pilots.granted("A3BOTHPOOLS"));
    assert_eq!(participants(&deception, "A2PILOTED").await, 0);
    assert_eq!(participants(&pilots, "A1DECEIVED").await, 0);

    // --stack picks the pool: its ledger and its qualification.
    for (stack, pool, ours, theirs) in [
        (&deception_stack.name, &deception, "A1DECEIVED", "A2PILOTED"),
        (&pilots_stack.name, &pilots, "A2PILOTED", "A1DECEIVED"),
    ] {
        let export = pool
            .cli_with_env(&["export", "--stack", stack, "--format", "json"], &env)
            .await;
        assert_eq!(export.code, 0, "{export:?}");
        assert!(export.stdout.contains(ours), "{}", export.stdout);
        assert!(export.stdout.contains("A3BOTHPOOLS"), "{}", export.stdout);
        assert!(!export.stdout.contains(theirs), "{}", export.stdout);

        let requirement = pool
            .cli_with_env(&["requirement", "--stack", stack, "--format", "json"], &env)
            .await;
        assert_eq!(requirement.code, 0, "{requirement:?}");
        assert_eq!(
            requirement.json()["QualificationTypeId"],
            pool.qualification.as_str()
        );
    }

    // Releasing from one pool leaves the other pool's exclusion standing.
    let release = deception
        .cli_with_env(
            &[
                "release",
                "--stack",
                &deception_stack.name,
                "--worker",
                "A3BOTHPOOLS",
                "--yes",
                "--json",
            ],
            &env,
        )
        .await;
    assert_eq!(release.code, 0, "{release:?}");
    assert!(!deception.granted("A3BOTHPOOLS"));
    assert!(pilots.granted("A3BOTHPOOLS"));
    deception_stack.delete().await;
    pilots_stack.delete().await;
}
