//! `backfill`: the CLI's `exclude --hit` over one HIT with many assignments,
//! against the MTurk double and DynamoDB Local: the release `mturk-exclusion`
//! binary, as a lab runs it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use mturk_double::{AssignmentStatus, MturkDouble};
use serde_json::json;
use testkit::Stack;
use tokio::time::Instant;

use crate::common::{self, Args};

const OPERATIONS: [&str; 5] = [
    "GetQualificationType",
    "GetHIT",
    "ListAssignmentsForHIT",
    "GetAssignment",
    "AssociateQualificationWithWorker",
];

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let assignments: usize = args.number("assignments", 10_000)?;
    let rps: f64 = args.number("rps", 50.0)?;
    let concurrency: usize = args.number("concurrency", 4)?;
    let repo = common::repo(args)?;
    let cli = match args.get("cli") {
        Some(p) => PathBuf::from(p),
        None => common::target_dir(&repo).join("release/mturk-exclusion"),
    };
    if !cli.is_file() {
        bail!(
            "{} does not exist: build it with `cargo build --release --bin mturk-exclusion`",
            cli.display()
        );
    }
    let stack = Stack::from_env().await?;
    let double = MturkDouble::start(None).await?;
    double.set_record_bodies(false);
    let table = stack.ledger_table().await?;
    let qualification = double.create_qualification_type("Backfill benchmark");
    let hit_type = double.new_hit_type_id();
    let hit = double.create_hit(&hit_type);
    let statuses = [
        AssignmentStatus::Submitted,
        AssignmentStatus::Approved,
        AssignmentStatus::Rejected,
    ];
    for i in 0..assignments {
        double.add_assignment(&hit, &format!("A{:013}", 4_000_000 + i), statuses[i % 3]);
    }
    println!(
        "backfill: 1 HIT with {assignments} assignments (distinct workers), --max-rps {rps}, --concurrency {concurrency}"
    );

    let mut runs = Vec::new();
    for attempt in ["first run", "second run (nothing missing)"] {
        let before: Vec<usize> = OPERATIONS.iter().map(|op| double.call_count(op)).collect();
        let started = Instant::now();
        let out = tokio::process::Command::new(&cli)
            .args(["exclude", "--hit", &hit, "--json"])
            .args([
                "--max-rps",
                &rps.to_string(),
                "--concurrency",
                &concurrency.to_string(),
            ])
            .env("AWS_ENDPOINT_URL_MTURK", double.endpoint())
            .env("MTURK_EXCLUSION_TABLE", &table)
            .env("MTURK_EXCLUSION_QUALIFICATION", &qualification)
            .env_remove("MTURK_EXCLUSION_STACK")
            .env_remove("AWS_PROFILE")
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(3600), out)
            .await
            .context("the backfill took over an hour")??;
        let elapsed = started.elapsed();
        if !out.status.success() {
            bail!(
                "mturk-exclusion exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let report: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("the CLI's --json output")?;
        let calls: serde_json::Map<String, serde_json::Value> = OPERATIONS
            .iter()
            .zip(&before)
            .map(|(op, b)| (op.to_string(), json!(double.call_count(op) - b)))
            .collect();
        let total: u64 = calls.values().filter_map(|v| v.as_u64()).sum();
        println!(
            "  {attempt}: {:.1} s, {total} MTurk calls {}, summary {}",
            elapsed.as_secs_f64(),
            serde_json::Value::Object(calls.clone()),
            report["summary"]
        );
        runs.push(json!({
            "run": attempt,
            "seconds": elapsed.as_secs_f64(),
            "mturk_calls": total,
            "calls": calls,
            "summary": report["summary"],
        }));
    }
    let granted = double.workers_with(&qualification).len();
    println!("  workers holding the qualification afterwards: {granted}");
    if granted != assignments {
        bail!("{granted} of {assignments} workers were granted");
    }
    let first_calls = runs[0]["mturk_calls"].as_u64().unwrap_or(0) as f64;
    println!(
        "  floor at MTurk's rate: {:.0} s at 2/s, {:.0} s at 5/s ({first_calls} calls)",
        first_calls / 2.0,
        first_calls / 5.0
    );
    common::print_result(
        "backfill",
        json!({
            "assignments": assignments,
            "max_rps": rps,
            "concurrency": concurrency,
            "runs": runs,
            "machine": common::machine(),
        }),
    );
    double.shutdown();
    Ok(())
}
