//! `mturk-exclusion adopt` and `coverage --first-run`, the real binary
//! against the local services and the MTurk double.

use std::time::{Duration, SystemTime};

use mturk_exclusion::ops::{watch, Lab};
use testkit::mturk_double::{AssignmentStatus, HitOptions};
use testkit::pipeline::Pipeline;

use crate::CliExt;

/// An unguarded pilot with `n` workers from ten days before the pool.
fn pilot_with_history(p: &Pipeline, n: usize) -> (String, String, Vec<String>) {
    let (hit, hit_type) = p.double.post_hit(HitOptions {
        title: "Pilot from before the pool".into(),
        ..HitOptions::default()
    });
    let before = SystemTime::now() - Duration::from_secs(10 * 24 * 3600);
    let workers: Vec<String> = (0..n).map(|i| format!("A1HISTORY{i:04}")).collect();
    for w in &workers {
        p.double
            .add_assignment_submitted_at(&hit, w, AssignmentStatus::Approved, before);
    }
    (hit, hit_type, workers)
}

async fn run_the_watch(p: &Pipeline) -> watch::Report {
    let lab = Lab::from_config(&p.config, &p.clients);
    let settings = watch::Settings {
        queue_url: p.queues.url.clone(),
        cover_unguarded: true,
        guard_unguarded: false,
        concurrency: 4,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    watch::run(&lab, &settings, deadline).await
}

#[tokio::test]
async fn the_first_run_is_predicted_then_history_is_adopted_only_once_confirmed() {
    let p = Pipeline::start().await;
    let (_, hit_type, workers) = pilot_with_history(&p, 101);

    // Before the deploy: the prediction names the history it leaves out.
    let predicted = p.cli(&["coverage", "--first-run", "--json"]).await;
    assert_eq!(predicted.code, 0, "{predicted:?}");
    let json = predicted.json();
    assert_eq!(json["subscribed"], 1, "{json}");
    assert_eq!(json["left_out"]["submissions"], 101, "{json}");
    assert_eq!(json["workers"], 0, "{json}");
    let text = p.cli(&["coverage", "--first-run"]).await;
    assert!(
        text.stdout
            .contains("leaves out 101 submission(s) to 1 HIT(s)"),
        "{}",
        text.stdout
    );

    // The deploy settings mean nothing without --first-run: refused.
    let stray = p.cli(&["coverage", "--cover-unguarded", "false"]).await;
    assert_eq!(stray.code, 2, "{stray:?}");

    let report = run_the_watch(&p).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(
        workers.iter().all(|w| !p.granted(w)),
        "history was excluded"
    );
    let status = p.cli(&["status"]).await;
    assert!(
        status
            .stdout
            .contains("History left out: 101 submission(s)"),
        "{}",
        status.stdout
    );

    // A HIT type this pool does not cover: bad input, nothing done.
    let stranger = p
        .cli(&["adopt", "--hit-type", "3TYPENEVERSUBSCRIBED0000000000"])
        .await;
    assert_eq!(stranger.code, 2, "{stranger:?}");

    let dry = p.cli(&["adopt", "--dry-run", "--json"]).await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert_eq!(dry.json()["workers"], 101);
    assert_eq!(dry.json()["adopted"]["tally"]["excluded"], 101);
    // Over 100 workers and no terminal to confirm on: a no.
    let unconfirmed = p.cli(&["adopt"]).await;
    assert_eq!(unconfirmed.code, 5, "{unconfirmed:?}");
    assert!(
        workers.iter().all(|w| !p.granted(w)),
        "changed without a yes"
    );

    let adopted = p.cli(&["adopt", "--yes", "--json"]).await;

    assert_eq!(adopted.code, 0, "{adopted:?}");
    assert_eq!(adopted.json()["adopted"]["tally"]["excluded"], 101);
    assert_eq!(adopted.json()["hit_types"][0]["hit_type_id"], hit_type);
    assert!(workers.iter().all(|w| p.granted(w)), "not all adopted");
    p.assert_every_grant_silent();
    let again = p.cli(&["adopt", "--json"]).await;
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.json()["workers"], 0, "nothing is left to adopt");
}
