//! `export`: the ledger's participations as CSV or JSON, for IRB records
//! and analysis.
//!
//! The whole export is rendered in memory before anything is written, so a
//! ledger that cannot be read leaves no half-written file behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args as ClapArgs;
use mturk_exclusion::ids;
use mturk_exclusion::ledger::{self, ExclusionState, Participation};
use mturk_exclusion::ops::export::{spreadsheet_safe, standings};
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::context::{CliError, Context};
use crate::output;

/// The columns, in the order every export has them.
const COLUMNS: [&str; 11] = [
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
const STATUS_COLUMN: &str = "exclusion_state";

/// Export the ledger: one row per participation, oldest recorded first.
///
/// Columns, always in this order: worker_id, assignment_id, hit_id,
/// hit_type_id, submit_time, learned_by (notification, backfill, manual or
/// reconcile), event_doc_id, recorded_at, excluded_at, released_at,
/// release_reason; with --with-status also exclusion_state, the worker's
/// standing now (excluded, released or not_excluded). Times are RFC 3339
/// UTC. A worker excluded by hand or found by `reconcile` has one row with
/// no assignment or HIT.
///
/// CSV is RFC 4180 (a header row, CRLF line ends, quoted where needed; an
/// absent value is an empty field). A cell that begins with =, +, -, @, a
/// tab or a carriage return gets a leading ' so that a spreadsheet shows it
/// as text instead of running it as a formula (release notes and event ids
/// carry outside text). JSON is one object: {exported_at, since,
/// count, participations: [{the columns above}]}, an absent value being null.
/// --json implies --format json.
///
/// The export contains worker ids. They are personal data: a worker id
/// identifies a person elsewhere on Amazon. Store and share the file only as
/// the study's IRB protocol allows. Files written with --output are readable
/// by their owner only: --force writes a new file beside the old one and
/// renames it over, so an existing file's permissions (or a symlink) are
/// never reused.
///
/// Exit codes: 0 written; 2 bad input, nothing written (an invalid --since,
/// an existing --output file without --force); 3 the ledger cannot be read or
/// the file cannot be written.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// csv (the default) or json.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Only participations the ledger recorded at or after DATE: YYYY-MM-DD
    /// (midnight UTC) or an RFC 3339 time such as 2026-03-02T17:04:11Z. This
    /// is when the ledger learned of them (recorded_at), not their submit time.
    #[arg(long, value_name = "DATE", value_parser = parse_since)]
    pub since: Option<OffsetDateTime>,
    /// Write to FILE instead of stdout. An existing file is never overwritten
    /// without --force.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite the --output file if it exists.
    #[arg(long, requires = "output")]
    pub force: bool,
    /// Add the worker's current exclusion state (exclusion_state) to each row.
    #[arg(long)]
    pub with_status: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

pub(crate) fn parse_since(raw: &str) -> Result<OffsetDateTime, String> {
    let trimmed = raw.trim();
    if let Ok(day) = Date::parse(trimmed, format_description!("[year]-[month]-[day]")) {
        return Ok(day.midnight().assume_utc());
    }
    OffsetDateTime::parse(trimmed, &Rfc3339).map_err(|_| {
        format!(
            "{} is not a date: expected YYYY-MM-DD (midnight UTC), like 2026-03-02, \
             or an RFC 3339 time with its offset, like 2026-03-02T17:04:11Z",
            ids::shown(raw)
        )
    })
}

/// One participation as exported: ids and times as the ledger stores them.
#[derive(Serialize)]
struct Row<'a> {
    worker_id: &'a str,
    assignment_id: Option<&'a str>,
    hit_id: Option<&'a str>,
    hit_type_id: Option<&'a str>,
    submit_time: Option<String>,
    learned_by: &'static str,
    event_doc_id: Option<&'a str>,
    recorded_at: String,
    excluded_at: Option<String>,
    released_at: Option<String>,
    release_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exclusion_state: Option<&'static str>,
}

impl<'a> Row<'a> {
    fn new(p: &'a Participation, state: Option<&'static str>) -> Self {
        Row {
            worker_id: p.worker_id.as_str(),
            assignment_id: p.assignment_id.as_ref().map(|a| a.as_str()),
            hit_id: p.hit_id.as_ref().map(|h| h.as_str()),
            hit_type_id: p.hit_type_id.as_ref().map(|t| t.as_str()),
            submit_time: p.submit_time.map(ledger::stamp),
            learned_by: p.learned.as_str(),
            event_doc_id: p.event_doc_id.as_deref(),
            recorded_at: ledger::stamp(p.recorded_at),
            excluded_at: p.excluded_at.map(ledger::stamp),
            released_at: p.released_at.map(ledger::stamp),
            release_reason: p.release_reason.as_deref(),
            exclusion_state: state,
        }
    }

    /// The CSV fields, in the order of `COLUMNS` (then the state, if asked for).
    fn cells(&self) -> Vec<&str> {
        let mut cells = vec![
            self.worker_id,
            self.assignment_id.unwrap_or_default(),
            self.hit_id.unwrap_or_default(),
            self.hit_type_id.unwrap_or_default(),
            self.submit_time.as_deref().unwrap_or_default(),
            self.learned_by,
            self.event_doc_id.unwrap_or_default(),
            &self.recorded_at,
            self.excluded_at.as_deref().unwrap_or_default(),
            self.released_at.as_deref().unwrap_or_default(),
            self.release_reason.unwrap_or_default(),
        ];
        cells.extend(self.exclusion_state);
        cells
    }
}

#[derive(Serialize)]
struct Export<'a> {
    exported_at: String,
    since: Option<String>,
    count: usize,
    participations: Vec<Row<'a>>,
}

#[derive(Serialize)]
struct Written<'a> {
    output: &'a Path,
    format: &'static str,
    count: usize,
}

pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode, CliError> {
    let format = match (args.format, ctx.global.json) {
        (Some(Format::Csv), true) => {
            return Err(CliError::Usage(
                "--json asks for JSON but --format csv asks for CSV: give one of them".into(),
            ))
        }
        (Some(f), _) => f,
        (None, true) => Format::Json,
        (None, false) => Format::Csv,
    };
    // Refused before the scan, so the user is not kept waiting for nothing;
    // `create_new` below still guards against a file appearing meanwhile.
    if let Some(path) = &args.output {
        if !args.force && path.exists() {
            return Err(output::exists(path));
        }
    }
    let ledger = ctx.ledger()?;
    // Also before the scan: a mistyped id should not cost a full table read.
    let qualification = if args.with_status {
        Some(ctx.qualification()?)
    } else {
        None
    };
    let participations = ledger.all_participations(args.since).await?;
    let states = match &qualification {
        Some(q) => Some(standings(&ledger, q, &participations).await?),
        None => None,
    };
    let rows: Vec<Row> = participations
        .iter()
        .map(|p| {
            let state = states
                .as_ref()
                .map(|s| ExclusionState::name_of(s.get(&p.worker_id).copied().flatten()));
            Row::new(p, state)
        })
        .collect();
    let count = rows.len();
    let bytes = match format {
        Format::Csv => render_csv(&rows, args.with_status)?,
        Format::Json => render_json(Export {
            exported_at: ledger::stamp(OffsetDateTime::now_utc()),
            since: args.since.map(ledger::stamp),
            count,
            participations: rows,
        })?,
    };

    let Some(path) = &args.output else {
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)
            .and_then(|()| out.flush())
            .map_err(|e| CliError::Environment {
                message: format!("could not write the export to stdout: {e}"),
                hint: None,
                source: Some(Box::new(e)),
            })?;
        return Ok(ExitCode::SUCCESS);
    };
    output::write_private(path, &bytes, args.force)?;
    let format_name = match format {
        Format::Csv => "csv",
        Format::Json => "json",
    };
    if ctx.global.json {
        output::print_json(&Written {
            output: path,
            format: format_name,
            count,
        })?;
    } else {
        println!(
            "Wrote {count} participation{} to {} ({format_name}).",
            if count == 1 { "" } else { "s" },
            path.display()
        );
        println!(
            "It contains worker ids, which are personal data: store it as the IRB protocol says."
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn render_csv(rows: &[Row], with_status: bool) -> Result<Vec<u8>, CliError> {
    let failed = |e: String| CliError::Environment {
        message: format!("could not render the CSV: {e}"),
        hint: None,
        source: None,
    };
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let mut header: Vec<&str> = COLUMNS.to_vec();
    if with_status {
        header.push(STATUS_COLUMN);
    }
    w.write_record(&header).map_err(|e| failed(e.to_string()))?;
    for row in rows {
        w.write_record(
            row.cells()
                .into_iter()
                .map(|c| spreadsheet_safe(c).into_owned()),
        )
        .map_err(|e| failed(e.to_string()))?;
    }
    w.into_inner().map_err(|e| failed(e.to_string()))
}

fn render_json(export: Export) -> Result<Vec<u8>, CliError> {
    let mut bytes = serde_json::to_vec_pretty(&export).map_err(|e| CliError::Environment {
        message: format!("could not render the JSON: {e}"),
        hint: None,
        source: Some(Box::new(e)),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}
