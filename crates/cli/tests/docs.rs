//! Docs that cannot drift. Three checks over README.md, CHANGELOG.md,
//! BENCHMARKS.md and docs/, none of which needs the local services:
//!
//! - every relative link, and every `#anchor`, resolves (anchors as a code
//!   host makes them from headings);
//! - every block between `<!-- help: mturk-exclusion ARGS -->` and
//!   `<!-- /help -->` is what this crate's binary prints for `ARGS`;
//!   `UPDATE_DOCS=1` (`scripts/docs.sh update`) rewrites the blocks instead;
//! - every parameter and output of template.yaml has a row in the tables of
//!   docs/deploy.md, and every row there names one the template declares.
//! - docs/cost.md counts the custom metrics, alarms and dashboards that
//!   template.yaml and the functions' metric code make.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_mturk-exclusion");
/// clap wraps help at the terminal's width; the docs show it at this one.
const HELP_COLUMNS: &str = "100";
const HELP_OPEN: &str = "<!-- help: ";
const HELP_CLOSE: &str = "<!-- /help -->";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// The Markdown files the checks cover, relative to the repository root.
fn doc_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["README.md", "CHANGELOG.md", "BENCHMARKS.md"]
        .iter()
        .map(PathBuf::from)
        .filter(|p| root.join(p).is_file())
        .collect();
    let mut stack = vec![PathBuf::from("docs")];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(root.join(&dir))
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.expect("a directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path
                .strip_prefix(root)
                .expect("under the root")
                .to_path_buf();
            if path.is_dir() {
                stack.push(rel);
            } else if rel.extension().is_some_and(|e| e == "md") {
                files.push(rel);
            }
        }
    }
    files
}

fn read(root: &Path, rel: &Path) -> String {
    std::fs::read_to_string(root.join(rel))
        .unwrap_or_else(|e| panic!("reading {}: {e}", rel.display()))
}

// ---------------------------------------------------------------- links

/// The lines of a Markdown text outside fenced code blocks, with their
/// 1-based line numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = if trimmed.starts_with("```") {
            Some("```")
        } else if trimmed.starts_with("~~~") {
            Some("~~~")
        } else {
            None
        };
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m => fence = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// A line with its inline code spans blanked out, so `[x](y)` inside
/// backticks is not taken for a link.
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(' ');
        } else {
            out.push(if in_code { ' ' } else { c });
        }
    }
    out
}

/// The targets of inline links and images, `[text](target)` and
/// `![alt](target "title")`, and of reference definitions `[label]: target`.
fn link_targets(line: &str) -> Vec<String> {
    let line = without_code_spans(line);
    let mut targets = Vec::new();
    let trimmed = line.trim_start();
    if trimmed.starts_with('[') {
        if let Some(end) = trimmed.find("]:") {
            if let Some(target) = trimmed[end + 2..].split_whitespace().next() {
                targets.push(target.trim_matches(|c| c == '<' || c == '>').to_owned());
            }
        }
    }
    let bytes = line.as_bytes();
    let mut i = 0;
    while let Some(pos) = line[i..].find("](") {
        let start = i + pos + 2;
        let mut depth = 1;
        let mut end = start;
        while end < bytes.len() {
            match bytes[end] {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            end += 1;
        }
        let inner = line[start..end].trim();
        if let Some(target) = inner.split_whitespace().next() {
            targets.push(target.trim_matches(|c| c == '<' || c == '>').to_owned());
        }
        i = end.min(line.len());
    }
    targets
}

/// A heading's anchor as GitHub makes it: the text as rendered, lower case,
/// every character but letters, digits, spaces, hyphens and underscores
/// dropped, spaces made hyphens.
fn slug(heading: &str) -> String {
    // Links render as their text: [text](target) -> text.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        match rest[open..].find("](") {
            Some(mid) => {
                let close = rest[open + mid..].find(')').map(|c| open + mid + c);
                match close {
                    Some(close) => {
                        text.push_str(&rest[..open]);
                        text.push_str(&rest[open + 1..open + mid]);
                        rest = &rest[close + 1..];
                    }
                    None => break,
                }
            }
            None => break,
        }
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor a Markdown file offers: its headings' slugs (a repeated
/// slug gets -1, -2, …) and explicit `id="…"` / `name="…"` attributes.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let t = line.trim_start();
        let hashes = t.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && t[hashes..].starts_with(' ') {
            let base = slug(t[hashes..].trim().trim_end_matches('#'));
            let n = seen.entry(base.clone()).or_insert(0);
            out.insert(if *n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            });
            *n += 1;
        }
        for attr in ["id=\"", "name=\""] {
            let mut rest = line;
            while let Some(p) = rest.find(attr) {
                let after = &rest[p + attr.len()..];
                if let Some(end) = after.find('"') {
                    out.insert(after[..end].to_owned());
                }
                rest = after;
            }
        }
    }
    out
}

/// Every broken relative link or anchor in the docs, as "file:line: why".
fn broken_links(root: &Path) -> Vec<String> {
    let mut broken = Vec::new();
    let mut anchor_cache: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    for file in doc_files(root) {
        let text = read(root, &file);
        let dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
        for (n, line) in prose_lines(&text) {
            for target in link_targets(line) {
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let (path_part, anchor) = match target.split_once('#') {
                    Some((p, a)) => (p, Some(a)),
                    None => (target.as_str(), None),
                };
                let resolved = if path_part.is_empty() {
                    file.clone()
                } else {
                    normalise(&dir.join(path_part))
                };
                let where_ = format!("{}:{n}: {target}", file.display());
                if resolved.starts_with("..") {
                    broken.push(format!("{where_}: leaves the repository"));
                    continue;
                }
                if !root.join(&resolved).exists() {
                    broken.push(format!("{where_}: no file {}", resolved.display()));
                    continue;
                }
                let Some(anchor) = anchor else { continue };
                if resolved.extension().is_none_or(|e| e != "md") {
                    broken.push(format!(
                        "{where_}: an anchor into a file that is not Markdown"
                    ));
                    continue;
                }
                let offered = anchor_cache
                    .entry(resolved.clone())
                    .or_insert_with(|| anchors(&read(root, &resolved)));
                if !offered.contains(anchor) {
                    broken.push(format!(
                        "{where_}: {} has no heading with anchor #{anchor}",
                        resolved.display()
                    ));
                }
            }
        }
    }
    broken
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out: Vec<std::ffi::OsString> = Vec::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                if out.last().is_some_and(|p| p != "..") {
                    out.pop();
                } else {
                    out.push("..".into());
                }
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str().to_owned()),
        }
    }
    out.iter().collect()
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let broken = broken_links(&repo_root());
    assert!(
        broken.is_empty(),
        "{} broken link(s) in the docs:\n  {}",
        broken.len(),
        broken.join("\n  ")
    );
}

#[test]
fn the_link_checker_knows_github_anchors() {
    assert_eq!(
        slug("How `subscribe` knows the test event is its own"),
        "how-subscribe-knows-the-test-event-is-its-own"
    );
    assert_eq!(
        slug("The check's privacy statement"),
        "the-checks-privacy-statement"
    );
    assert_eq!(slug("[0.1.0] - 2026-11-30"), "010---2026-11-30");
    assert_eq!(
        slug("1. Once per environment: the qualification"),
        "1-once-per-environment-the-qualification"
    );
    let text = "# A\n## A\n```\n# not a heading\n```\n<a id=\"x\"></a>\n";
    let got: Vec<String> = anchors(text).into_iter().collect();
    assert_eq!(got, ["a", "a-1", "x"]);
    assert_eq!(
        link_targets("see [a](b.md#c) and `[not](a link)` and ![i](p.png \"t\")"),
        ["b.md#c", "p.png"]
    );
}

// ------------------------------------------------------------ help text

/// What the binary prints for `args`, in a bare environment (so no
/// `[env: NAME=value]` of the caller's shows up) at the docs' width.
fn help_output(args: &[&str]) -> String {
    let out = Command::new(BINARY)
        .args(args)
        .env_clear()
        .env("COLUMNS", HELP_COLUMNS)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {BINARY}: {e}"));
    assert!(
        out.status.success(),
        "mturk-exclusion {} exited with {}: {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("help is UTF-8");
    // Trailing blanks are not something a reader can see or a doc keep.
    let mut lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

/// The docs' text with every help block filled from the binary, and the
/// commands found (file, line, arguments).
fn with_help_blocks(text: &str, file: &Path) -> (String, Vec<String>) {
    let mut out = String::with_capacity(text.len());
    let mut found = Vec::new();
    let mut lines = text.split_inclusive('\n').enumerate();
    while let Some((i, line)) = lines.next() {
        out.push_str(line);
        let Some(rest) = line.trim().strip_prefix(HELP_OPEN) else {
            continue;
        };
        let command = rest.trim_end_matches("-->").trim();
        let args: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(
            args.first(),
            Some(&"mturk-exclusion"),
            "{}:{}: a help block names the command it quotes, starting with mturk-exclusion",
            file.display(),
            i + 1
        );
        // Skip the block's old content, up to its closing marker.
        let mut closed = false;
        for (_, old) in lines.by_ref() {
            if old.trim() == HELP_CLOSE {
                out.push_str(&format!("```text\n{}\n```\n", help_output(&args[1..])));
                out.push_str(old);
                closed = true;
                break;
            }
        }
        assert!(
            closed,
            "{}:{}: help block without {HELP_CLOSE}",
            file.display(),
            i + 1
        );
        found.push(format!("{}:{}: {command}", file.display(), i + 1));
    }
    (out, found)
}

#[test]
fn every_quoted_help_text_matches_the_binary() {
    let root = repo_root();
    let update = std::env::var_os("UPDATE_DOCS").is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    let mut quoted = 0;
    for file in doc_files(&root) {
        let text = read(&root, &file);
        let (expected, found) = with_help_blocks(&text, &file);
        quoted += found.len();
        if expected != text {
            if update {
                std::fs::write(root.join(&file), &expected).expect("writing the updated doc");
                eprintln!("updated the help blocks of {}", file.display());
            } else {
                stale.push(first_difference(&file, &text, &expected));
            }
        }
    }
    assert!(
        quoted > 0,
        "no help block found in the docs: is the marker still {HELP_OPEN}…?"
    );
    assert!(
        stale.is_empty(),
        "help text in the docs differs from the binary's (run scripts/docs.sh update):\n  {}",
        stale.join("\n  ")
    );
}

fn first_difference(file: &Path, have: &str, want: &str) -> String {
    let (h, w): (Vec<&str>, Vec<&str>) = (have.lines().collect(), want.lines().collect());
    let n = h.iter().zip(&w).take_while(|(a, b)| a == b).count();
    format!(
        "{}:{}: the doc has {:?}, the binary prints {:?}",
        file.display(),
        n + 1,
        h.get(n).copied().unwrap_or("<end of file>"),
        w.get(n).copied().unwrap_or("<end of file>")
    )
}

// ------------------------------------------------- template and deploy.md

/// The names declared under a top-level section of template.yaml
/// (`Parameters:`, `Outputs:`): its keys indented by exactly two spaces.
fn template_section(template: &str, section: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut inside = false;
    for line in template.lines() {
        if !line.starts_with(' ') && !line.starts_with('#') && !line.trim().is_empty() {
            inside = line.trim_end() == format!("{section}:");
            continue;
        }
        if inside {
            if let Some(key) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
                if !key.starts_with([' ', '#']) {
                    names.push(key.to_owned());
                }
            }
        }
    }
    names
}

/// The first cells (`` `Name` ``) of the table rows under a `## heading` of
/// a Markdown page, up to the next `## ` heading.
fn table_names(page: &str, heading: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut inside = false;
    for (_, line) in prose_lines(page) {
        if let Some(h) = line.strip_prefix("## ") {
            inside = h.trim() == heading;
            continue;
        }
        if inside && line.starts_with("| `") {
            if let Some(cell) = line[3..].split('`').next() {
                names.insert(cell.to_owned());
            }
        }
    }
    names
}

fn undocumented(root: &Path) -> Vec<String> {
    let template = read(root, Path::new("template.yaml"));
    let page = read(root, Path::new("docs/deploy.md"));
    let mut missing = Vec::new();
    for (section, heading) in [("Parameters", "Parameters"), ("Outputs", "Outputs")] {
        let declared = template_section(&template, section);
        assert!(
            !declared.is_empty(),
            "template.yaml declares no {section}: has the file changed shape?"
        );
        let documented = table_names(&page, heading);
        for name in declared {
            if !documented.contains(&name) {
                missing.push(format!(
                    "{section}: {name} has no row under \"## {heading}\" in docs/deploy.md"
                ));
            }
        }
    }
    missing
}

#[test]
fn every_template_parameter_and_output_is_documented_on_the_deploy_page() {
    let missing = undocumented(&repo_root());
    assert!(
        missing.is_empty(),
        "template.yaml and docs/deploy.md disagree:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_template_reader_finds_two_space_keys_only() {
    let t = "Parameters:\n  A:\n    Type: String\n    Description: >-\n      B: not a key\n  C:\n    Type: Number\nConditions:\n  D: !Equals [1, 1]\nOutputs:\n  E:\n    Value: x\n";
    assert_eq!(template_section(t, "Parameters"), ["A", "C"]);
    assert_eq!(template_section(t, "Outputs"), ["E"]);
}

/// The other direction: a row on docs/deploy.md for a parameter or output
/// the template no longer declares is stale.
#[test]
fn every_row_of_the_deploy_page_names_something_the_template_declares() {
    let root = repo_root();
    let template = read(&root, Path::new("template.yaml"));
    let page = read(&root, Path::new("docs/deploy.md"));
    let mut stale = Vec::new();
    for section in ["Parameters", "Outputs"] {
        let declared: BTreeSet<String> = template_section(&template, section).into_iter().collect();
        for name in table_names(&page, section) {
            if !declared.contains(&name) {
                stale.push(format!("{section}: docs/deploy.md documents {name}, which template.yaml does not declare"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "docs/deploy.md and template.yaml disagree:\n  {}",
        stale.join("\n  ")
    );
}

// ------------------------------------------------------------ cost page

/// How many resources of a type template.yaml declares.
fn resources_of_type(template: &str, kind: &str) -> usize {
    template
        .lines()
        .filter(|l| l.trim() == format!("Type: {kind}"))
        .count()
}

/// The quoted strings of a line, in order.
fn quoted(line: &str) -> Vec<&str> {
    line.split('"').skip(1).step_by(2).collect()
}

/// The custom metrics the template reads (its dashboard and alarms), each
/// as its name plus any dimension besides `Pool`: `Checks/Reason=busy`.
fn template_metrics(template: &str) -> BTreeSet<String> {
    let mut metrics = BTreeSet::new();
    let lines: Vec<&str> = template.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        // The dashboard: ["MturkExclusion", "Name", "Pool", "...", "Reason", "busy", {...}]
        if line.contains("\"MturkExclusion\", \"") {
            let before_options = line.split(", {").next().unwrap_or(line);
            let q = quoted(before_options);
            let start = q.iter().position(|s| *s == "MturkExclusion").unwrap();
            let name = q[start + 1];
            let extra: Vec<String> = q[start + 2..]
                .chunks(2)
                .filter(|pair| pair.len() == 2 && pair[0] != "Pool")
                .map(|pair| format!("/{}={}", pair[0], pair[1]))
                .collect();
            metrics.insert(format!("{name}{}", extra.concat()));
        }
        // An alarm: Namespace: MturkExclusion, then MetricName.
        if line.trim() == "Namespace: MturkExclusion" {
            if let Some(name) = lines[i + 1..]
                .iter()
                .take(3)
                .find_map(|l| l.trim().strip_prefix("MetricName: "))
            {
                metrics.insert(name.trim().to_owned());
            }
        }
    }
    metrics
}

/// The metric names the functions write (`.value("Name"` and
/// `.values("Name"` in their EMF code, tests left out).
fn code_metric_names(root: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for file in ["src/handler.rs", "src/check.rs", "src/ops/watch.rs"] {
        let text = read(root, Path::new(file));
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        for call in [".value(", ".values("] {
            for (at, _) in code.match_indices(call) {
                let rest = code[at + call.len()..].trim_start();
                if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next()) {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names
}

/// The number in a table row of docs/cost.md whose first cell is `label`.
fn cost_row(page: &str, label: &str) -> Option<usize> {
    page.lines().find_map(|line| {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let at = cells.iter().position(|c| c.trim_matches('*') == label)?;
        cells.get(at + 1)?.trim_matches('*').parse().ok()
    })
}

#[test]
fn the_cost_page_counts_what_the_template_and_the_functions_make() {
    let root = repo_root();
    let template = read(&root, Path::new("template.yaml"));
    let page = read(&root, Path::new("docs/cost.md"));

    let mut metrics = template_metrics(&template);
    assert!(
        metrics.len() > 10 && metrics.iter().any(|m| m.contains("/Reason=")),
        "the template's dashboard no longer reads as expected: {metrics:?}"
    );
    let code = code_metric_names(&root);
    assert!(code.contains("SubmissionsSeen"), "{code:?}");
    // A metric the code writes but no alarm or widget shows is billed too.
    for name in &code {
        let base = |m: &String| m.split('/').next() == Some(name.as_str());
        if !metrics.iter().any(base) {
            metrics.insert(name.clone());
        }
    }
    let alarms = resources_of_type(&template, "AWS::CloudWatch::Alarm");
    let dashboards = resources_of_type(&template, "AWS::CloudWatch::Dashboard");

    let mut wrong = Vec::new();
    for (label, counted) in [
        ("CloudWatch custom metrics", metrics.len()),
        ("custom metrics", metrics.len()),
        ("CloudWatch alarms", alarms),
        ("CloudWatch dashboard", dashboards),
    ] {
        if cost_row(&page, label) != Some(counted) {
            wrong.push(format!(
                "the row \"{label}\" says {:?}; template.yaml and the functions make {counted}",
                cost_row(&page, label)
            ));
        }
    }
    for metric in &metrics {
        for part in metric.split(['/', '=']) {
            if part != "Reason" && !page.contains(&format!("`{part}`")) {
                wrong.push(format!("{metric}: `{part}` is not on the page"));
            }
        }
    }
    let stated = format!("The {alarms} alarms");
    if !page.contains(&stated) {
        wrong.push(format!("the page does not say \"{stated}\""));
    }
    assert!(
        wrong.is_empty(),
        "docs/cost.md no longer matches template.yaml ({} metrics: {metrics:?}):\n  {}",
        metrics.len(),
        wrong.join("\n  ")
    );
}

#[test]
fn the_cost_counter_reads_the_dashboard_and_alarm_forms() {
    let t = "  Dash:\n    Type: AWS::CloudWatch::Dashboard\n        [\"MturkExclusion\", \"Checks\", \"Pool\", \"${AWS::StackName}\", \"Reason\", \"busy\", { \"stat\": \"Sum\" }],\n        [\"MturkExclusion\", \"CheckLatency\", \"Pool\", \"${AWS::StackName}\", { \"stat\": \"p50\", \"label\": \"a, b\" }],\n  A:\n    Type: AWS::CloudWatch::Alarm\n    Properties:\n      Namespace: MturkExclusion\n      MetricName: WatchErrors\n  B:\n    Type: AWS::CloudWatch::Alarm\n      Namespace: AWS/SQS\n      MetricName: ApproximateAgeOfOldestMessage\n";
    let got: Vec<String> = template_metrics(t).into_iter().collect();
    assert_eq!(got, ["CheckLatency", "Checks/Reason=busy", "WatchErrors"]);
    assert_eq!(resources_of_type(t, "AWS::CloudWatch::Alarm"), 2);
    assert_eq!(
        cost_row("| CloudWatch alarms | 8 | $0.10 |", "CloudWatch alarms"),
        Some(8)
    );
    assert_eq!(
        cost_row("| | **custom metrics** | **21** |", "custom metrics"),
        Some(21)
    );
}
