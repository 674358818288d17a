//! `export` against a ledger filled through the whole pipeline.

use std::time::Duration;

use crate::CliExt;
use mturk_exclusion::ids::WorkerId;
use mturk_exclusion::ledger::{stamp, Participation};
use testkit::pipeline::Pipeline;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const HEADER: [&str; 11] = [
    "worker_id",
    "assignment_id",
    "hit_id",
    "hit_type_id",
    "submit_time",
    "learned_by",
    "event_doc_id",
    "recorded_at",
    "excluded_at",
    "released_at",
    "release_reason",
];

fn csv_rows(text: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

fn expected_row(p: &Participation) -> Vec<String> {
    let o = |v: Option<&str>| v.unwrap_or_default().to_owned();
    vec![
        p.worker_id.to_string(),
        o(p.assignment_id.as_ref().map(|a| a.as_str())),
        o(p.hit_id.as_ref().map(|h| h.as_str())),
        o(p.hit_type_id.as_ref().map(|t| t.as_str())),
        o(p.submit_time.map(stamp).as_deref()),
        p.learned.as_str().to_owned(),
        o(p.event_doc_id.as_deref()),
        stamp(p.recorded_at),
        o(p.excluded_at.map(stamp).as_deref()),
        o(p.released_at.map(stamp).as_deref()),
        o(p.release_reason.as_deref()),
    ]
}

/// Three submissions on two HITs, through the queue and the handler.
async fn three_submissions(p: &Pipeline) {
    let first = p.double.create_hit(&p.hit_type);
    let second = p.double.create_hit(&p.hit_type);
    p.double.submit_assignment(&first, "A1ALPHA").await.unwrap();
    p.double.submit_assignment(&first, "A1BRAVO").await.unwrap();
    p.double
        .submit_assignment(&second, "A1ALPHA")
        .await
        .unwrap();
    p.drain().await;
}

#[tokio::test]
async fn csv_has_one_row_per_participation_as_the_ledger_has_it() {
    let p = Pipeline::start().await;
    three_submissions(&p).await;
    let ledger = p.ledger.all_participations(None).await.unwrap();
    assert_eq!(ledger.len(), 3);

    let run = p.cli(&["export"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("\r\n"), "RFC 4180 line ends");
    let (header, rows) = csv_rows(&run.stdout);
    assert_eq!(header, HEADER);
    let expected: Vec<Vec<String>> = ledger.iter().map(expected_row).collect();
    assert_eq!(rows, expected);
    assert!(rows
        .iter()
        .all(|r| r[5] == "notification" && !r[8].is_empty() && !r[6].is_empty()));

    // With the worker's standing now: one released, the other still excluded.
    p.ledger
        .record_release(
            &WorkerId::parse("A1BRAVO").unwrap(),
            &p.qualification,
            Some("withdrew, consent revoked"),
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let run = p.cli(&["export", "--with-status"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let (header, rows) = csv_rows(&run.stdout);
    assert_eq!(header.last().map(String::as_str), Some("exclusion_state"));
    for row in &rows {
        match row[0].as_str() {
            "A1BRAVO" => {
                assert_eq!(row[11], "released");
                // A reason with a comma survives the quoting.
                assert_eq!(row[10], "withdrew, consent revoked");
            }
            _ => assert_eq!(row[11], "excluded"),
        }
    }
}

#[tokio::test]
async fn since_filters_on_when_the_ledger_recorded() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    p.double.submit_assignment(&hit, "A1EARLY").await.unwrap();
    p.drain().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cut = OffsetDateTime::now_utc().format(&Rfc3339).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    p.double.submit_assignment(&hit, "A1LATE").await.unwrap();
    p.drain().await;

    let run = p.cli(&["export", "--since", &cut]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let (_, rows) = csv_rows(&run.stdout);
    let workers: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(workers, ["A1LATE"]);

    let (_, all) = csv_rows(&p.cli(&["export", "--since", "2000-01-01"]).await.stdout);
    assert_eq!(all.len(), 2);
    let future = p.cli(&["export", "--since", "2999-01-01"]).await;
    assert_eq!(future.code, 0, "{future:?}");
    let (header, none) = csv_rows(&future.stdout);
    assert_eq!(header, HEADER, "an empty export still has its header");
    assert!(none.is_empty());
}

#[tokio::test]
async fn json_parses_and_json_flag_implies_it() {
    let p = Pipeline::start().await;
    three_submissions(&p).await;
    let ledger = p.ledger.all_participations(None).await.unwrap();

    for args in [
        &["export", "--format", "json"][..],
        &["export", "--json"][..],
    ] {
        let run = p.cli(args).await;
        assert_eq!(run.code, 0, "{run:?}");
        let v = run.json();
        assert_eq!(v["count"], 3);
        assert!(v["exported_at"].is_string() && v["since"].is_null(), "{v}");
        let rows = v["participations"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        for (row, p) in rows.iter().zip(&ledger) {
            let keys: Vec<&str> = row
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys.len(), HEADER.len(), "{row}");
            assert_eq!(row["worker_id"], p.worker_id.as_str());
            assert_eq!(row["recorded_at"], stamp(p.recorded_at));
            assert_eq!(row["excluded_at"], stamp(p.excluded_at.unwrap()));
            assert!(row["released_at"].is_null());
        }
    }
    let conflict = p.cli(&["export", "--json", "--format", "csv"]).await;
    assert_eq!(conflict.code, 2, "{conflict:?}");
}

#[tokio::test]
async fn an_invalid_date_names_the_value_and_the_expected_forms() {
    let p = Pipeline::start().await;
    for bad in ["2026-13-01", "yesterday", "2026-03-02 17:04"] {
        let run = p.cli(&["export", "--since", bad]).await;
        assert_eq!(run.code, 2, "{bad}: {run:?}");
        assert!(run.stderr.contains(bad), "{bad}: {}", run.stderr);
        assert!(
            run.stderr.contains("YYYY-MM-DD") && run.stderr.contains("RFC 3339"),
            "{}",
            run.stderr
        );
        assert!(run.stdout.is_empty());
    }
}

#[tokio::test]
async fn output_refuses_to_overwrite_without_force() {
    let p = Pipeline::start().await;
    three_submissions(&p).await;
    let path = std::env::temp_dir().join(format!("{}.csv", testkit::unique_name("export")));
    let file = path.to_str().unwrap();

    let first = p.cli(&["export", "--output", file]).await;
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stdout.contains("personal data"), "{}", first.stdout);
    let written = std::fs::read_to_string(&path).unwrap();
    assert_eq!(csv_rows(&written).1.len(), 3);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by others: {mode:o}");
    }

    std::fs::write(&path, "keep me").unwrap();
    let refused = p
        .cli(&["export", "--output", file, "--format", "json"])
        .await;
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains(file) && refused.stderr.contains("--force"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");

    let forced = p
        .cli(&["export", "--output", file, "--force", "--json"])
        .await;
    assert_eq!(forced.code, 0, "{forced:?}");
    assert_eq!(forced.json()["count"], 3);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["participations"].as_array().unwrap().len(), 3);
    let _ = std::fs::remove_file(&path);
}

#[cfg(unix)]
#[tokio::test]
async fn force_writes_a_new_private_file_and_never_follows_a_symlink() {
    use std::os::unix::fs::PermissionsExt;
    let p = Pipeline::start().await;
    three_submissions(&p).await;
    let dir = std::env::temp_dir().join(testkit::unique_name("export-force"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ledger.csv");
    std::fs::write(&path, "old").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let elsewhere = dir.join("not-the-export.txt");
    std::fs::write(&elsewhere, "someone else's file").unwrap();
    let link = dir.join("link.csv");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();

    let forced = p
        .cli(&["export", "--output", path.to_str().unwrap(), "--force"])
        .await;
    let through_link = p
        .cli(&["export", "--output", link.to_str().unwrap(), "--force"])
        .await;

    assert_eq!(
        (forced.code, through_link.code),
        (0, 0),
        "{forced:?} {through_link:?}"
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "kept the old file's mode: {mode:o}");
    assert_eq!(
        csv_rows(&std::fs::read_to_string(&path).unwrap()).1.len(),
        3
    );
    assert_eq!(
        std::fs::read_to_string(&elsewhere).unwrap(),
        "someone else's file"
    );
    let link_meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(link_meta.file_type().is_file(), "{link_meta:?}");
    assert_eq!(link_meta.permissions().mode() & 0o777, 0o600);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn cells_a_spreadsheet_would_run_are_exported_as_text() {
    let p = Pipeline::start().await;
    three_submissions(&p).await;
    let note = "=HYPERLINK(\"http://evil.example\",\"click\")";
    let released = p
        .cli(&["release", "--worker", "A1BRAVO", "--note", note])
        .await;
    assert_eq!(released.code, 0, "{released:?}");

    let csv = p.cli(&["export"]).await;
    let json = p.cli(&["export", "--json"]).await;

    assert_eq!(csv.code, 0, "{csv:?}");
    let (header, rows) = csv_rows(&csv.stdout);
    let reason = header.iter().position(|h| h == "release_reason").unwrap();
    let bravo = rows.iter().find(|r| r[0] == "A1BRAVO").unwrap();
    assert_eq!(bravo[reason], format!("'{note}"));
    // JSON is data, not a spreadsheet: left as it is.
    let v = json.json();
    let row = v["participations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["worker_id"] == "A1BRAVO")
        .unwrap()
        .clone();
    assert_eq!(row["release_reason"], note);
}

#[tokio::test]
async fn a_bad_qualification_is_refused_before_the_table_is_read() {
    let p = Pipeline::start().await;
    // With a table that does not exist, reading first would end in exit 3.
    let run = p
        .cli_with_env(
            &["export", "--with-status", "--table", "no-such-ledger-table"],
            &[(
                "MTURK_EXCLUSION_QUALIFICATION",
                Some("not a qualification!"),
            )],
        )
        .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("--qualification"), "{}", run.stderr);
}

#[tokio::test]
async fn an_error_prints_its_headline_once() {
    let p = Pipeline::start().await;
    let run = p.cli(&["export", "--table", "no-such-ledger-table"]).await;
    assert_eq!(run.code, 3, "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().map(str::trim).collect();
    let headline = lines[0].strip_prefix("error: ").unwrap();
    assert!(
        !lines.contains(&format!("caused by: {headline}").as_str()),
        "{}",
        run.stderr
    );
}
