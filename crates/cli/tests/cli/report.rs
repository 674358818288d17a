//! `report` against a ledger filled through the whole pipeline: the file,
//! its charts, and no worker id on it unless asked for.

use crate::CliExt;
use mturk_exclusion::ids::WorkerId;
use testkit::pipeline::Pipeline;
use time::OffsetDateTime;

const WORKERS: [&str; 3] = ["A1REPORTALPHA", "A1REPORTBRAVO", "A1REPORTCHARLIE"];
const NOTE: &str = "<script>alert(1)</script> consent withdrawn by A1REPORTBRAVO & co";

/// Two studies (HIT types), four submissions through the queue and the
/// handler (one worker in both studies), then one release with a note.
pub(crate) async fn two_studies_and_a_release(p: &Pipeline) -> String {
    let other_type = p.double.new_hit_type_id();
    p.subscribe(&other_type).await;
    let first = p.double.create_hit(&p.hit_type);
    let second = p.double.create_hit(&other_type);
    p.double
        .submit_assignment(&first, WORKERS[0])
        .await
        .unwrap();
    p.double
        .submit_assignment(&first, WORKERS[1])
        .await
        .unwrap();
    p.double
        .submit_assignment(&second, WORKERS[2])
        .await
        .unwrap();
    // A repeat the check did not stop (this page has no check).
    p.double
        .submit_assignment(&second, WORKERS[0])
        .await
        .unwrap();
    p.drain().await;
    p.ledger
        .record_release(
            &WorkerId::parse(WORKERS[1]).unwrap(),
            &p.qualification,
            Some(NOTE),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    other_type
}

#[tokio::test]
async fn writes_one_page_with_every_chart_and_no_worker_id() {
    let p = Pipeline::start().await;
    let other_type = two_studies_and_a_release(&p).await;
    let dir = std::env::temp_dir().join(testkit::unique_name("report"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("report.html");
    std::fs::write(&path, "an older report").unwrap();

    let out = path.to_str().unwrap();
    let run = p.cli(&["report", "-o", out]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(out),
        "says where it went: {}",
        run.stdout
    );
    assert!(run
        .stdout
        .contains("4 participations in 2 studies, 1 release"));
    let page = std::fs::read_to_string(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Replaced whole, and no temporary file left beside it.
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    for chart in [
        "chart-participations",
        "chart-exposure",
        "chart-check",
        "chart-releases",
    ] {
        assert!(page.contains(&format!(r#"<svg id="{chart}""#)), "{chart}");
    }
    assert!(page.contains(&p.hit_type) && page.contains(&other_type));
    assert!(page.contains(p.ledger.table()) && page.contains(p.qualification.as_str()));
    assert!(page.contains("measured: <b>4</b>"), "exposure of all four");
    assert!(page.contains("repeats not stopped: <b>1</b> by <b>1 worker</b>"));
    assert!(page.contains("consent withdrawn by [worker id] &amp; co"));
    assert!(!page.contains("<script"));
    for w in WORKERS {
        assert!(!page.contains(w), "{w} on a page without --with-worker-ids");
    }

    // Asked for: the ids are there; `-o -` writes to stdout.
    let run = p.cli(&["report", "--with-worker-ids", "-o", "-"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("<!DOCTYPE html>"));
    assert!(run.stdout.contains(WORKERS[0]) && run.stdout.contains(WORKERS[1]));
    assert!(run
        .stdout
        .contains("consent withdrawn by A1REPORTBRAVO &amp; co"));

    // --since after everything: a page that says so.
    let run = p.cli(&["report", "--since", "2999-01-01", "-o", "-"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("No participation in this range."));
    let run = p.cli(&["report", "--since", "yesterday", "-o", "-"]).await;
    assert_eq!(run.code, 2, "{run:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A deterministic stream of numbers (no rand crate, same ledger every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn id(&mut self, prefix: &str, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut id = prefix.to_owned();
        while id.len() < len {
            id.push(ALPHABET[self.below(ALPHABET.len() as u64) as usize] as char);
        }
        id
    }
}

/// Two weeks of three studies written into the ledger through its own API
/// (the handler's calls, with past times: the pipeline itself can only
/// submit now): participations with submit and exclusion times, some
/// repeat workers, a few releases with notes, claims and returns. Returns
/// every worker id it wrote.
pub(crate) async fn two_weeks_of_studies(p: &Pipeline) -> Vec<String> {
    use mturk_exclusion::ids::{AssignmentId, HitId, HitTypeId};
    use mturk_exclusion::ledger::{ClaimEnd, Learned, NewParticipation, Replaceable};
    use time::Duration;

    let mut rng = Lcg(12);
    let now = OffsetDateTime::now_utc();
    let today = now.date().midnight().assume_utc();
    // (first day back, last day back, most per day)
    let studies = [(14, 5, 14), (10, 1, 18), (5, 0, 9)];
    let mut workers: Vec<String> = Vec::new();
    let mut assignments: Vec<String> = Vec::new();
    for (first, last, most) in studies {
        let hit_type = HitTypeId::parse(&rng.id("3", 30)).unwrap();
        let hit = HitId::parse(&rng.id("3", 30)).unwrap();
        for back in (last..=first).rev() {
            let day = today - Duration::days(back);
            for _ in 0..(2 + rng.below(most)) {
                let submitted = day + Duration::seconds(8 * 3600 + rng.below(14 * 3600) as i64);
                if submitted > now {
                    continue;
                }
                // Mostly seconds; now and then minutes (MTurk throttling).
                let exposure = match rng.below(100) {
                    0..=69 => Duration::milliseconds(900 + rng.below(3000) as i64),
                    70..=89 => Duration::milliseconds(4000 + rng.below(11_000) as i64),
                    90..=97 => Duration::seconds(15 + rng.below(75) as i64),
                    _ => Duration::seconds(120 + rng.below(360) as i64),
                };
                let worker = if !workers.is_empty() && rng.below(100) < 4 {
                    workers[rng.below(workers.len() as u64) as usize].clone()
                } else {
                    let w = rng.id("A", 14);
                    workers.push(w.clone());
                    w
                };
                let assignment = rng.id("3", 30);
                let new = NewParticipation {
                    worker_id: WorkerId::parse(&worker).unwrap(),
                    assignment_id: AssignmentId::parse(&assignment).unwrap(),
                    hit_id: hit.clone(),
                    hit_type_id: Some(hit_type.clone()),
                    submit_time: Some(submitted),
                    learned: Learned::Notification {
                        event_doc_id: rng.id("doc-", 20),
                    },
                };
                let recorded = p
                    .ledger
                    .record_participation(&new, submitted + exposure / 2)
                    .await
                    .unwrap();
                p.ledger
                    .record_exclusion(&new.worker_id, &p.qualification, &assignment, submitted)
                    .await
                    .unwrap();
                p.ledger
                    .mark_excluded(&recorded, submitted + exposure)
                    .await
                    .unwrap();
                assignments.push(assignment);
            }
        }
    }
    let notes = [
        "pilot tester from the lab",
        "asked to withdraw; data deleted",
        "excluded by mistake (wrong HIT)",
    ];
    for (i, note) in notes.iter().enumerate() {
        let worker = WorkerId::parse(&workers[i * 7 + 3]).unwrap();
        let at = today - Duration::days(9 - 3 * i as i64) + Duration::hours(15);
        p.ledger
            .record_release(&worker, &p.qualification, Some(note), at)
            .await
            .unwrap();
    }
    for i in 0..6 {
        let worker = WorkerId::parse(&rng.id("A", 14)).unwrap();
        workers.push(worker.to_string());
        let assignment = AssignmentId::parse(&rng.id("3", 30)).unwrap();
        let hit = HitId::parse(&rng.id("3", 30)).unwrap();
        let at = now - Duration::hours(1 + 9 * i);
        p.ledger
            .try_claim(
                &worker,
                &p.qualification,
                &assignment,
                &hit,
                at,
                Duration::hours(2),
                Replaceable::default(),
            )
            .await
            .unwrap();
        if i % 2 == 1 {
            let end = if i == 5 {
                ClaimEnd::Abandoned
            } else {
                ClaimEnd::Returned
            };
            p.ledger
                .end_claim(&assignment, end, at + Duration::minutes(5))
                .await
                .unwrap();
        }
    }
    workers
}

/// What is missing for the browser test, if anything (as the guard's).
fn browser_missing(root: &std::path::Path) -> Option<String> {
    let playwright = root.join(".local/npm/node_modules/playwright-core");
    if !std::path::Path::new("/usr/bin/chromium").exists() {
        return Some("/usr/bin/chromium (run scripts/setup.sh)".into());
    }
    if !playwright.exists() {
        return Some(format!("{} (run scripts/setup.sh)", playwright.display()));
    }
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some("node".into());
    }
    None
}

/// A study another tool posted (nobody subscribed its HIT type) with one
/// submission, and a HIT without the requirement; one run of the watch, as
/// the exclusion-watch Lambda runs it, covers the first and reports the
/// second, so the page has its Coverage section. Returns the worker id.
async fn a_watch_run(p: &Pipeline) -> Vec<String> {
    use mturk_exclusion::ops::{watch, Lab};
    use testkit::mturk_double::HitOptions;
    const WORKER: &str = "A1REPORTWATCHED";
    let (hit, _) = p.double.post_hit(HitOptions {
        title: "Posted by another tool".into(),
        qualification_requirements: vec![testkit::pipeline::does_not_exist(
            p.qualification.as_str(),
        )],
        ..HitOptions::default()
    });
    p.double.submit_assignment(&hit, WORKER).await.unwrap();
    p.double.post_hit(HitOptions {
        title: "Pilot without the requirement".into(),
        ..HitOptions::default()
    });
    let lab = Lab::from_config(&p.config, &p.clients);
    let settings = watch::Settings {
        queue_url: p.queues.url.clone(),
        cover_unguarded: false,
        guard_unguarded: false,
        concurrency: 2,
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let run = watch::run(&lab, &settings, deadline).await;
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert_eq!(run.counts.live_unguarded, 1, "{run:?}");
    assert!(p.granted(WORKER));
    vec![WORKER.to_owned()]
}

/// The page in a real Chromium (scripts/browser/report-page.mjs): it
/// renders, its charts have data, and the browser asks for nothing but the
/// file itself. With REPORT_SCREENSHOT=PATH it also saves the screenshot
/// (scripts/report-screenshot.sh makes docs/report.png this way). With
/// CI=true a missing browser fails the test.
#[tokio::test]
async fn report_page_renders_in_chromium_and_loads_nothing() {
    use std::time::Duration;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if let Some(what) = browser_missing(&root) {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the browser test needs {what}, and CI=true");
        }
        eprintln!("SKIPPED: the browser test needs {what}");
        return;
    }
    let p = Pipeline::start().await;
    let mut workers = two_weeks_of_studies(&p).await;
    workers.extend(a_watch_run(&p).await);

    let dir = std::env::temp_dir().join(testkit::unique_name("report-browser"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("report.html");
    let run = p.cli(&["report", "-o", file.to_str().unwrap()]).await;
    assert_eq!(run.code, 0, "{run:?}");

    let mut cmd = tokio::process::Command::new("node");
    cmd.current_dir(&root)
        .arg("scripts/browser/report-page.mjs")
        .args(["--file", file.to_str().unwrap(), "--timeout-s", "90"])
        .args([
            "--sections",
            "participations,exposure,check,releases,coverage",
        ]);
    for w in &workers {
        cmd.args(["--forbid", w]);
    }
    if let Ok(shot) = std::env::var("REPORT_SCREENSHOT") {
        cmd.args(["--screenshot", &shot]);
    }
    let child = cmd
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start node");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("report-page.mjs finished within 120 s")
        .expect("node's output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "report-page.mjs failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains(r#""check":"no-network","ok":true"#));
    assert!(stdout.contains(r#""check":"forbidden","ok":true"#));
    std::fs::remove_dir_all(&dir).unwrap();
}
