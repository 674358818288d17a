//! `--version`, and the CLI of a release archive run as a lab runs it: from
//! an empty directory, with nothing but a bare environment (no Rust, no
//! cargo, no project files), against the local stack.

use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::pipeline::Pipeline;

/// The unpacked `mturk-exclusion` of a release archive
/// (scripts/check-dist.sh sets it); without it the release test is skipped.
const DIST_CLI_VAR: &str = "MTURK_EXCLUSION_DIST_CLI";
/// The 12-character commit the release was built from (check-dist.sh sets it).
const DIST_COMMIT_VAR: &str = "MTURK_EXCLUSION_DIST_COMMIT";

/// `mturk-exclusion <version> (<12 hex digits, or "unknown">)`, the commit's part.
fn commit_of_version_line(line: &str) -> &str {
    let rest = line
        .strip_prefix(&format!("mturk-exclusion {} (", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("not this release's --version line: {line:?}"));
    let commit = rest
        .strip_suffix(')')
        .unwrap_or_else(|| panic!("no closing parenthesis: {line:?}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12
                && commit
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))),
        "not a 12-character commit: {line:?}"
    );
    commit
}

#[test]
fn version_names_the_release_and_the_commit() {
    let out = Command::new(crate::BINARY)
        .arg("--version")
        .output()
        .expect("run --version");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let commit = commit_of_version_line(text.trim_end_matches('\n'));
    // Built inside this checkout: the commit is HEAD's, unless the build
    // was told another one.
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    if let Ok(head) = head {
        if head.status.success() && std::env::var_os("MTURK_EXCLUSION_COMMIT").is_none() {
            assert_eq!(commit, String::from_utf8(head.stdout).unwrap().trim());
        }
    }
}

/// A bare environment: PATH without any toolchain, a fresh HOME, the dummy
/// credentials and the local endpoints; nothing inherited.
/// (tokio's Command: the MTurk double answers on this test's runtime.)
fn bare(
    binary: &Path,
    home: &Path,
    args: &[&str],
    env: &[(&str, String)],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(binary);
    cmd.args(args)
        .current_dir(home)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd
}

async fn run(mut cmd: tokio::process::Command) -> (i32, String, String) {
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
        .await
        .expect("the released CLI finished within 120 s")
        .expect("run the released CLI");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_released_cli_runs_in_a_bare_environment() {
    let Some(binary) = std::env::var_os(DIST_CLI_VAR).map(PathBuf::from) else {
        eprintln!("SKIPPED: set {DIST_CLI_VAR} to a release's mturk-exclusion (scripts/check-dist.sh does)");
        return;
    };
    let home = std::env::temp_dir().join(testkit::unique_name("dist-cli-home"));
    std::fs::create_dir_all(&home).unwrap();

    let (code, out, err) = run(bare(&binary, &home, &["--version"], &[])).await;
    assert_eq!(code, 0, "{out}{err}");
    let commit = commit_of_version_line(out.trim_end_matches('\n'));
    if let Ok(want) = std::env::var(DIST_COMMIT_VAR) {
        assert_eq!(commit, want, "the release names another commit");
    }

    let p = Pipeline::start().await;
    let endpoint = |var: &str| std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set"));
    let env = [
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        (
            "AWS_ENDPOINT_URL_DYNAMODB",
            endpoint("AWS_ENDPOINT_URL_DYNAMODB"),
        ),
        ("AWS_ENDPOINT_URL_SQS", endpoint("AWS_ENDPOINT_URL_SQS")),
        ("AWS_ENDPOINT_URL_MTURK", p.double.endpoint()),
        ("MTURK_EXCLUSION_TABLE", p.ledger.table().to_owned()),
        (
            "MTURK_EXCLUSION_QUALIFICATION",
            p.qualification.as_str().to_owned(),
        ),
        ("MTURK_EXCLUSION_QUEUE_URL", p.queues.url.clone()),
        ("MTURK_EXCLUSION_DLQ_URL", p.queues.dlq_url.clone()),
    ];

    // A write through MTurk and the ledger, then a read of both.
    let (code, out, err) = run(bare(
        &binary,
        &home,
        &["exclude", "--worker", "A1RELEASEDCLI", "--json"],
        &env,
    ))
    .await;
    assert_eq!(code, 0, "exclude:\n{out}\n{err}");
    assert!(p.granted("A1RELEASEDCLI"), "{out}\n{err}");
    let (code, out, err) = run(bare(&binary, &home, &["status", "--json"], &env)).await;
    assert_eq!(code, 0, "status:\n{out}\n{err}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("status --json");
    assert_eq!(status["table"], p.ledger.table(), "{status}");
    assert_eq!(status["excluded_workers"], 1, "{status}");
    let _ = std::fs::remove_dir_all(&home);
}
