//! The HIT page's guard (web/guard.js) in a real Chromium against the real
//! check: scripts/browser/guard-scenarios.mjs, driven against the local
//! Function URL. With CI=true a missing browser fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mturk_exclusion::ids::WorkerId;
use time::OffsetDateTime;

use super::*;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What is missing for the browser test, if anything.
fn missing() -> Option<String> {
    let root = repo_root();
    let playwright = root.join(".local/npm/node_modules/playwright-core");
    if !Path::new("/usr/bin/chromium").exists() {
        return Some("/usr/bin/chromium (run scripts/setup.sh)".into());
    }
    if !playwright.exists() {
        return Some(format!("{} (run scripts/setup.sh)", playwright.display()));
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node".into());
    }
    None
}

#[tokio::test]
async fn guard_scenarios_pass_in_chromium_against_the_real_check() {
    if let Some(what) = missing() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("the browser test needs {what}, and CI=true");
        }
        eprintln!("SKIPPED: the browser test needs {what}");
        return;
    }
    let (p, d) = deployed(2).await;
    let repeat = fresh("A");
    p.ledger
        .record_exclusion(
            &WorkerId::parse(&repeat).unwrap(),
            &p.qualification,
            "3PARTICIPATION0ASSIGNMENT0000",
            OffsetDateTime::now_utc(),
        )
        .await
        .expect("seed the repeat worker");
    let new = fresh("A");
    let url = d.url.url();
    let root = repo_root();
    let mut child = tokio::process::Command::new("node")
        .current_dir(&root)
        .arg("scripts/browser/guard-scenarios.mjs")
        .args([
            "--check-url",
            &url,
            "--new-worker",
            &new,
            "--repeat-worker",
            &repeat,
        ])
        .args(["--busy-worker", &new, "--hit-id", HIT, "--timeout-s", "90"])
        .env("NODE_PATH", root.join(".local/npm/node_modules"))
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start node");
    let pid = child.id();
    let out = tokio::time::timeout(Duration::from_secs(120), async {
        let mut stdout = String::new();
        let mut stderr = String::new();
        use tokio::io::AsyncReadExt;
        let (mut o, mut e) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
        let _ = tokio::join!(o.read_to_string(&mut stdout), e.read_to_string(&mut stderr));
        (child.wait().await, stdout, stderr)
    })
    .await;
    let Ok((status, stdout, stderr)) = out else {
        panic!("guard-scenarios (pid {pid:?}) did not finish within 120 s");
    };
    println!("{stdout}");
    eprintln!("{stderr}");
    let status = status.expect("wait for node");
    assert!(
        status.success(),
        "guard-scenarios failed ({status}):\n{stdout}\n{stderr}"
    );
}
