//! Reading the worker ids a lab hands the CLI: ids on the command line, and
//! files that are either MTurk's batch-results CSV or a plain list. Shared by
//! `exclude` and `release`, so both accept the same files the same way.
//!
//! Files come from spreadsheets, web downloads and hand edits, so the reader
//! forgives what does not change meaning (a byte-order mark, CRLF, quotes,
//! whitespace around fields, blank lines, `#` comments) and reports
//! everything else by line number rather than guessing.

use std::collections::HashSet;
use std::io::Read;
use std::path::Path;

use mturk_exclusion::ids::{AssignmentId, HitId, HitTypeId, InvalidId, WorkerId};
use serde::Serialize;

use crate::context::CliError;

/// Parses the values of a repeatable id flag, dropping repeats and keeping
/// the order given. Each invalid value is added to `problems`, named with
/// its flag, so the caller can refuse them all at once.
pub fn parse_ids<T: Clone + Eq + std::hash::Hash>(
    flag: &str,
    raw: &[String],
    parse: impl Fn(&str) -> Result<T, InvalidId>,
    problems: &mut Vec<String>,
) -> Vec<T> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for value in raw {
        match parse(value.trim()) {
            Ok(id) => {
                if seen.insert(id.clone()) {
                    out.push(id);
                }
            }
            Err(e) => problems.push(format!("{flag}: {e}")),
        }
    }
    out
}

/// How a file was understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// A header naming `WorkerId`, `AssignmentId` and `HITId` (MTurk's batch results).
    BatchResults,
    /// A header naming `WorkerId` but not the assignment and HIT.
    WorkerColumn,
    /// One worker id per line, no header (or just `WorkerId`).
    PlainList,
}

/// One usable row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub line: u64,
    pub worker: WorkerId,
    /// Both present when the row names an assignment (batch results).
    pub assignment: Option<(AssignmentId, HitId)>,
    /// From a `HITTypeId` column, when the file has one.
    pub hit_type: Option<HitTypeId>,
}

/// A row that was skipped, and why (the library's, so reports carry it).
pub use mturk_exclusion::ops::backfill::BadRow;

#[derive(Debug)]
pub struct WorkerFile {
    pub name: String,
    pub format: Format,
    pub rows: Vec<Row>,
    pub bad: Vec<BadRow>,
}

/// Reads `path` (`-` for standard input). An unreadable file, or one whose
/// columns cannot be understood at all, is bad input (exit 2); bad rows are
/// not, they come back in [`WorkerFile::bad`].
pub fn read(path: &Path) -> Result<WorkerFile, CliError> {
    let (name, bytes) = if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes).map_err(|e| {
            CliError::Usage(format!("--from-csv -: could not read standard input: {e}"))
        })?;
        ("standard input".to_owned(), bytes)
    } else {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| {
            CliError::Usage(format!("--from-csv {name}: could not read the file: {e}"))
        })?;
        (name, bytes)
    };
    parse(&name, &bytes).map_err(|problem| CliError::Usage(format!("--from-csv {name}: {problem}")))
}

/// Column positions found in a header row.
struct Columns {
    worker: usize,
    assignment: Option<usize>,
    hit: Option<usize>,
    hit_type: Option<usize>,
    status: Option<usize>,
}

/// `WorkerId`, `worker_id`, `Worker ID` and `workerid` all name the same column.
fn normalised(header: &str) -> String {
    header
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl Columns {
    fn find(fields: &[String]) -> Option<Columns> {
        let names: Vec<String> = fields.iter().map(|f| normalised(f)).collect();
        let at = |name: &str| names.iter().position(|n| n == name);
        Some(Columns {
            worker: at("workerid")?,
            assignment: at("assignmentid"),
            hit: at("hitid"),
            hit_type: at("hittypeid"),
            status: at("assignmentstatus"),
        })
    }

    fn format(&self) -> Format {
        if self.assignment.is_some() && self.hit.is_some() {
            Format::BatchResults
        } else {
            Format::WorkerColumn
        }
    }
}

/// Parses a file's bytes. `Err` means the file as a whole cannot be used.
pub fn parse(name: &str, bytes: &[u8]) -> Result<WorkerFile, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let mut file = WorkerFile {
        name: name.to_owned(),
        format: Format::PlainList,
        rows: Vec::new(),
        bad: Vec::new(),
    };
    let mut columns: Option<Columns> = None;
    let mut first = true;
    let mut record = csv::ByteRecord::new();
    let mut lines = LineCounter::new(bytes);
    loop {
        let start = reader.position().byte();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let at = e.position().map_or(start, |p| p.byte());
                file.bad.push(BadRow {
                    file: name.to_owned(),
                    line: lines.line_of_record_at(at),
                    problem: format!("could not read the rest of the file: {e}"),
                });
                break;
            }
        }
        let at = record.position().map_or(start, |p| p.byte());
        let line = lines.line_of_record_at(at);
        let mut fields = Vec::with_capacity(record.len());
        let mut utf8 = true;
        for field in record.iter() {
            match std::str::from_utf8(field) {
                Ok(text) => fields.push(text.trim().to_owned()),
                Err(_) => utf8 = false,
            }
        }
        let bad = |problem: String| BadRow {
            file: name.to_owned(),
            line,
            problem,
        };
        if !utf8 {
            file.bad
                .push(bad("not UTF-8 text (save the file as UTF-8 CSV)".into()));
            continue;
        }
        // A comment indented with spaces escapes the reader's own comment rule.
        if fields.iter().all(String::is_empty) || fields[0].starts_with('#') {
            continue;
        }
        if first {
            first = false;
            if let Some(found) = Columns::find(&fields) {
                // A lone `WorkerId` heading a plain list.
                if fields.len() > 1 {
                    file.format = found.format();
                    columns = Some(found);
                }
                continue;
            }
            if fields.iter().filter(|f| !f.is_empty()).count() > 1 {
                return Err(format!(
                    "line {line} has several columns but none is named WorkerId; give MTurk's \
                     batch-results CSV with its header row, a CSV with a WorkerId column, or one \
                     worker id per line"
                ));
            }
        }
        let row = match &columns {
            Some(columns) => header_row(columns, &fields, line),
            None => list_row(&fields, line),
        };
        match row {
            Ok(row) => file.rows.push(row),
            Err(problem) => file.bad.push(bad(problem)),
        }
    }
    Ok(file)
}

/// Line numbers as an editor shows them. The csv reader's own count skips
/// comment lines and lags on CRLF; its byte offsets are exact, but point
/// at where it began reading, before any blank or comment lines it skipped.
struct LineCounter<'a> {
    bytes: &'a [u8],
    counted_to: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        LineCounter {
            bytes,
            counted_to: 0,
            line: 1,
        }
    }

    fn line_of_record_at(&mut self, offset: u64) -> u64 {
        let bytes = self.bytes;
        let mut at = usize::try_from(offset)
            .unwrap_or(bytes.len())
            .min(bytes.len());
        loop {
            match bytes.get(at) {
                Some(b'\r' | b'\n') => at += 1,
                Some(b'#') => {
                    at = bytes[at..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(bytes.len(), |nl| at + nl + 1);
                }
                _ => break,
            }
        }
        // Records come in order, so counting resumes where it stopped.
        if at > self.counted_to {
            self.line += bytes[self.counted_to..at]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            self.counted_to = at;
        }
        self.line
    }
}

fn list_row(fields: &[String], line: u64) -> Result<Row, String> {
    let filled: Vec<&String> = fields.iter().filter(|f| !f.is_empty()).collect();
    let [value] = filled.as_slice() else {
        return Err(format!(
            "expected one worker id on the line, found {} values",
            filled.len()
        ));
    };
    // A trailing comment after the id: `A1B2C3 # paid twice`.
    let value = value.split('#').next().unwrap_or_default().trim();
    Ok(Row {
        line,
        worker: WorkerId::parse(value).map_err(|e| e.to_string())?,
        assignment: None,
        hit_type: None,
    })
}

fn header_row(columns: &Columns, fields: &[String], line: u64) -> Result<Row, String> {
    let get = |at: Option<usize>| {
        at.and_then(|i| fields.get(i))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let worker = get(Some(columns.worker)).ok_or("the WorkerId field is empty")?;
    let worker = WorkerId::parse(worker).map_err(|e| e.to_string())?;
    if let Some(status) = get(columns.status) {
        if !matches!(status, "Submitted" | "Approved" | "Rejected") {
            return Err(format!(
                "AssignmentStatus is {}, not Submitted, Approved or Rejected: only submitted work counts",
                mturk_exclusion::ids::shown(status)
            ));
        }
    }
    let assignment = match (get(columns.assignment), get(columns.hit)) {
        (Some(a), Some(h)) => Some((
            AssignmentId::parse(a).map_err(|e| e.to_string())?,
            HitId::parse(h).map_err(|e| e.to_string())?,
        )),
        (None, None) => None,
        (Some(_), None) => return Err("an AssignmentId without a HITId".into()),
        (None, Some(_)) if columns.assignment.is_some() => {
            return Err("a HITId without an AssignmentId".into())
        }
        // A file with a HITId column but no assignments: only its workers count.
        (None, Some(_)) => None,
    };
    let hit_type = match get(columns.hit_type) {
        Some(t) if assignment.is_some() => Some(HitTypeId::parse(t).map_err(|e| e.to_string())?),
        _ => None,
    };
    Ok(Row {
        line,
        worker,
        assignment,
        hit_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers(f: &WorkerFile) -> Vec<&str> {
        f.rows.iter().map(|r| r.worker.as_str()).collect()
    }

    #[test]
    fn a_plain_list_with_comments_blanks_bom_and_crlf() {
        let text = "\u{FEFF}WorkerId\r\n# the pilot\r\nA1FIRST\r\n\r\n  A2SECOND  \r\n   # indented\r\nA3THIRD # paid twice\r\n\"A4QUOTED\"\r\n";
        let f = parse("list.txt", text.as_bytes()).unwrap();
        assert_eq!(f.format, Format::PlainList);
        assert_eq!(workers(&f), ["A1FIRST", "A2SECOND", "A3THIRD", "A4QUOTED"]);
        assert_eq!(
            f.rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            [3, 5, 7, 8]
        );
        assert!(f.bad.is_empty(), "{:?}", f.bad);
    }

    #[test]
    fn bad_rows_are_reported_by_line_and_the_rest_kept() {
        let text = b"A1GOOD\nA1 BAD\nA2GOOD,A3GOOD\nA4GOOD\n\xFF\xFE\nA5GOOD\n";
        let f = parse("list.txt", text).unwrap();
        assert_eq!(workers(&f), ["A1GOOD", "A4GOOD", "A5GOOD"]);
        let lines: Vec<u64> = f.bad.iter().map(|b| b.line).collect();
        assert_eq!(lines, [2, 3, 5]);
        assert!(f.bad[0].problem.contains("\"A1 BAD\""), "{:?}", f.bad);
        assert!(f.bad[1].problem.contains("one worker id"), "{:?}", f.bad);
        assert!(f.bad[2].problem.contains("UTF-8"), "{:?}", f.bad);
    }

    #[test]
    fn mturk_batch_results_name_assignments_and_hits() {
        let text = "\"HITId\",\"HITTypeId\",\"Title\",\"AssignmentId\",\"WorkerId\",\"AssignmentStatus\",\"Answer.text\"\r\n\
            \"3HIT1\",\"3TYPE1\",\"A study, with a comma\",\"3ASG1\",\"A1WORKER\",\"Approved\",\"line one\r\nline two\"\r\n\
            \"3HIT1\",\"3TYPE1\",\"A study\",\"3ASG2\",\"\",\"Submitted\",\"\"\r\n\
            \"3HIT1\",\"3TYPE1\",\"A study\",\"3ASG3\",\"A2WORKER\",\"Rejected\",\"\"\r\n\
            \"3HIT1\",\"3TYPE1\",\"A study\",\"3-ASG4\",\"A3WORKER\",\"Submitted\",\"\"\r\n";
        let f = parse("Batch_123_batch_results.csv", text.as_bytes()).unwrap();
        assert_eq!(f.format, Format::BatchResults);
        assert_eq!(workers(&f), ["A1WORKER", "A2WORKER"]);
        let (a, h) = f.rows[0].assignment.clone().unwrap();
        assert_eq!((a.as_str(), h.as_str()), ("3ASG1", "3HIT1"));
        assert_eq!(f.rows[0].hit_type.as_ref().unwrap().as_str(), "3TYPE1");
        // The answer spans two lines, so the next record starts on line 4.
        assert_eq!(f.rows[1].line, 5);
        let bad: Vec<(u64, &str)> = f.bad.iter().map(|b| (b.line, b.problem.as_str())).collect();
        assert_eq!(bad[0], (4, "the WorkerId field is empty"));
        assert_eq!(bad[1].0, 6);
        assert!(bad[1].1.contains("assignment id \"3-ASG4\""), "{bad:?}");
    }

    #[test]
    fn a_csv_with_a_worker_column_only_names_workers() {
        let f = parse("export.csv", b"ResponseId,worker_id\nR1,A1ONE\nR2,A2TWO\n").unwrap();
        assert_eq!(f.format, Format::WorkerColumn);
        assert_eq!(workers(&f), ["A1ONE", "A2TWO"]);
        assert!(f.rows.iter().all(|r| r.assignment.is_none()));
    }

    #[test]
    fn columns_without_a_worker_id_are_refused_whole() {
        let err = parse("odd.csv", b"name,email\nx,y\n").unwrap_err();
        assert!(err.contains("line 1") && err.contains("WorkerId"), "{err}");
    }

    #[test]
    fn ids_from_flags_are_deduplicated_and_each_bad_one_named() {
        let mut problems = Vec::new();
        let raw = ["A1X", " A2Y", "A1X", "bad id", ""].map(String::from);
        let ids = parse_ids("--worker", &raw, WorkerId::parse, &mut problems);
        assert_eq!(ids.len(), 2);
        assert_eq!(problems.len(), 2);
        assert!(problems[0].starts_with("--worker: worker id \"bad id\""));
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever bytes arrive, the reader answers rows, bad rows or a
            /// named error; it never panics, and every row it keeps is a
            /// valid worker id on a line that exists.
            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
                if let Ok(f) = parse("fuzz.csv", &bytes) {
                    let lines = bytes.iter().filter(|b| **b == b'\n').count() as u64 + 1;
                    for row in &f.rows {
                        prop_assert!(row.line >= 1 && row.line <= lines, "line {} of {}", row.line, lines);
                    }
                    for bad in &f.bad {
                        prop_assert!(bad.line >= 1 && bad.line <= lines);
                        prop_assert!(bad.problem.len() < 1000);
                    }
                }
            }

            /// CSV-shaped text: quotes, commas, CR/LF, comments and ids mixed.
            #[test]
            fn csv_shaped_text_never_panics(
                cells in prop::collection::vec(
                    prop::collection::vec(prop_oneof![
                        "A[A-Z0-9]{5,14}".prop_map(String::from),
                        Just("WorkerId".to_owned()),
                        Just("AssignmentId".to_owned()),
                        Just("HITId".to_owned()),
                        Just("\"".to_owned()),
                        Just("#".to_owned()),
                        ".{0,12}",
                    ], 1..6),
                    0..30,
                ),
                crlf in any::<bool>(),
            ) {
                let eol = if crlf { "\r\n" } else { "\n" };
                let text: String = cells.iter().map(|row| row.join(",") + eol).collect();
                let _ = parse("fuzz.csv", text.as_bytes());
            }

            /// A plain list of valid ids comes back whole, in order.
            #[test]
            fn a_plain_list_round_trips(ids in prop::collection::vec("A[A-Z0-9]{11,20}", 1..50)) {
                let text = ids.join("\n");
                let f = parse("list.txt", text.as_bytes()).unwrap();
                let got: Vec<_> = f.rows.iter().map(|r| r.worker.to_string()).collect();
                prop_assert_eq!(got, ids);
                prop_assert!(f.bad.is_empty());
            }
        }
    }
}
