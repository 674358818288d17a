//! CloudWatch's rules for an Embedded Metric Format document, checked the
//! way CloudWatch Logs would before extracting metrics, so that a test can
//! hold the functions' log lines to them (the specification: "Specification:
//! Embedded metric format" in the CloudWatch user guide).
//!
//! What is checked:
//! - the line is one JSON object, at most 256 KB;
//! - `_aws` is an object with `Timestamp` (an integer number of
//!   milliseconds since the epoch, within CloudWatch's window: 14 days back,
//!   2 hours ahead) and `CloudWatchMetrics`, a non-empty array of directives;
//! - each directive has `Namespace` (a non-empty string of at most 255
//!   characters, not starting with `AWS/`), `Dimensions` (an array of
//!   dimension sets, each an array of at most 30 strings) and `Metrics`
//!   (an array of 1 to 100 definitions);
//! - each definition has `Name` (a non-empty string of at most 255
//!   characters, once per directive), and optionally `Unit` (one of
//!   CloudWatch's units) and `StorageResolution` (1 or 60), nothing else;
//! - every dimension named is a top-level string of 1 to 1024 characters,
//!   and every metric named is a top-level number or an array of 1 to 100
//!   numbers.

use serde_json::Value;

/// CloudWatch's units.
pub const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

const MAX_EVENT_BYTES: usize = 256 * 1024;
const TWO_WEEKS_MS: u64 = 14 * 24 * 3600 * 1000;
const TWO_HOURS_MS: u64 = 2 * 3600 * 1000;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The lines of a log that are EMF documents (JSON objects with `_aws`),
/// parsed; every other line is left out.
pub fn documents(log: &str) -> Vec<(String, Value)> {
    log.lines()
        .filter_map(|l| {
            let v: Value = serde_json::from_str(l.trim()).ok()?;
            v.get("_aws")?;
            Some((l.trim().to_owned(), v))
        })
        .collect()
}

/// What is wrong with one log line as an EMF document (empty: nothing).
pub fn problems(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    if line.len() > MAX_EVENT_BYTES {
        out.push(format!("{} bytes: more than a log event holds", line.len()));
    }
    match serde_json::from_str::<Value>(line) {
        Ok(doc) => document_problems(&doc, now_ms(), &mut out),
        Err(e) => out.push(format!("not one JSON value: {e}")),
    }
    out
}

/// [`problems`] for a parsed document, with the clock's time `now_ms`.
pub fn document_problems(doc: &Value, now_ms: u64, out: &mut Vec<String>) {
    let Some(root) = doc.as_object() else {
        out.push("the root is not a JSON object".into());
        return;
    };
    let Some(aws) = root.get("_aws").and_then(Value::as_object) else {
        out.push("no _aws object".into());
        return;
    };
    match aws.get("Timestamp").and_then(Value::as_u64) {
        None => out.push("_aws.Timestamp is not an integer number of milliseconds".into()),
        Some(t) if t + TWO_WEEKS_MS < now_ms || t > now_ms + TWO_HOURS_MS => out.push(format!(
            "_aws.Timestamp {t} is outside CloudWatch's window (14 days back, 2 hours ahead; seconds instead of milliseconds?)"
        )),
        Some(_) => {}
    }
    let Some(directives) = aws.get("CloudWatchMetrics").and_then(Value::as_array) else {
        out.push("_aws.CloudWatchMetrics is not an array".into());
        return;
    };
    if directives.is_empty() {
        out.push("_aws.CloudWatchMetrics is empty".into());
    }
    for (i, d) in directives.iter().enumerate() {
        let at = format!("CloudWatchMetrics[{i}]");
        let Some(d) = d.as_object() else {
            out.push(format!("{at} is not an object"));
            continue;
        };
        match d.get("Namespace").and_then(Value::as_str) {
            Some(ns) if !ns.is_empty() && ns.chars().count() <= 255 && !ns.starts_with("AWS/") => {}
            other => out.push(format!(
                "{at}.Namespace {other:?} is not a usable namespace"
            )),
        }
        match d.get("Dimensions").and_then(Value::as_array) {
            None => out.push(format!("{at}.Dimensions is not an array")),
            Some(sets) => {
                for (j, set) in sets.iter().enumerate() {
                    let Some(set) = set.as_array() else {
                        out.push(format!("{at}.Dimensions[{j}] is not an array"));
                        continue;
                    };
                    if set.len() > 30 {
                        out.push(format!(
                            "{at}.Dimensions[{j}] has {} keys (at most 30)",
                            set.len()
                        ));
                    }
                    for key in set {
                        let Some(key) = key.as_str() else {
                            out.push(format!("{at}.Dimensions[{j}] holds {key}, not a string"));
                            continue;
                        };
                        match root.get(key) {
                            Some(Value::String(v))
                                if !v.is_empty() && v.chars().count() <= 1024 => {}
                            Some(Value::String(v)) => out.push(format!(
                                "dimension {key}: a value of {} characters (1 to 1024)",
                                v.chars().count()
                            )),
                            Some(other) => {
                                out.push(format!("dimension {key} is {other}, not a string"))
                            }
                            None => out.push(format!("dimension {key} is not a top-level member")),
                        }
                    }
                }
            }
        }
        let Some(metrics) = d.get("Metrics").and_then(Value::as_array) else {
            out.push(format!("{at}.Metrics is not an array"));
            continue;
        };
        if metrics.is_empty() || metrics.len() > 100 {
            out.push(format!(
                "{at}.Metrics has {} definitions (1 to 100)",
                metrics.len()
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for m in metrics {
            let Some(m) = m.as_object() else {
                out.push(format!("{at}.Metrics holds {m}, not an object"));
                continue;
            };
            for key in m.keys() {
                if !["Name", "Unit", "StorageResolution"].contains(&key.as_str()) {
                    out.push(format!("{at}: a metric definition with the member {key}"));
                }
            }
            let Some(name) = m.get("Name").and_then(Value::as_str) else {
                out.push(format!("{at}: a metric definition without a Name"));
                continue;
            };
            if name.is_empty() || name.chars().count() > 255 {
                out.push(format!("metric name {name:?} is not 1 to 255 characters"));
            }
            if !names.insert(name) {
                out.push(format!("{at}: metric {name} defined twice"));
            }
            if let Some(unit) = m.get("Unit") {
                if !unit.as_str().is_some_and(|u| UNITS.contains(&u)) {
                    out.push(format!("metric {name}: {unit} is not a CloudWatch unit"));
                }
            }
            if let Some(r) = m.get("StorageResolution") {
                if !matches!(r.as_u64(), Some(1 | 60)) {
                    out.push(format!("metric {name}: StorageResolution {r} (1 or 60)"));
                }
            }
            match root.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(values)) => {
                    if values.is_empty() || values.len() > 100 {
                        out.push(format!("metric {name}: {} values (1 to 100)", values.len()));
                    }
                    if !values.iter().all(Value::is_number) {
                        out.push(format!(
                            "metric {name}: an array with something not a number"
                        ));
                    }
                }
                Some(other) => out.push(format!("metric {name} is {other}, not a number")),
                None => out.push(format!("metric {name} is not a top-level member")),
            }
        }
    }
}

/// Panics, naming every problem, unless `line` is a valid EMF document.
pub fn assert_valid(line: &str) {
    let found = problems(line);
    assert!(
        found.is_empty(),
        "invalid EMF document {line}:\n  {}",
        found.join("\n  ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(doc: Value) -> Vec<String> {
        problems(&doc.to_string())
    }

    fn good() -> Value {
        json!({
            "_aws": {
                "Timestamp": now_ms(),
                "CloudWatchMetrics": [{
                    "Namespace": "MturkExclusion",
                    "Dimensions": [["Pool"]],
                    "Metrics": [{"Name": "Things", "Unit": "Count"}, {"Name": "Waits", "Unit": "Seconds"}]
                }]
            },
            "Pool": "lab",
            "Things": 2,
            "Waits": [0.5, 1.25]
        })
    }

    #[test]
    fn a_good_document_passes() {
        assert_eq!(check(good()), Vec::<String>::new());
    }

    #[test]
    fn each_rule_is_enforced() {
        type Break = fn(&mut Value);
        let cases: Vec<(Break, &str)> = vec![
            (|d| d["_aws"]["Timestamp"] = json!(1.5), "Timestamp"),
            (
                |d| d["_aws"]["Timestamp"] = json!(now_ms() / 1000),
                "window",
            ),
            (|d| d["_aws"]["CloudWatchMetrics"] = json!([]), "empty"),
            (
                |d| d["_aws"]["CloudWatchMetrics"][0]["Namespace"] = json!("AWS/Lambda"),
                "Namespace",
            ),
            (
                |d| d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!(["Pool"]),
                "not an array",
            ),
            (|d| d["Pool"] = json!(3), "not a string"),
            (|d| d["Pool"] = json!(""), "1 to 1024"),
            (
                |d| {
                    d.as_object_mut().unwrap().remove("Things");
                },
                "not a top-level member",
            ),
            (|d| d["Things"] = json!("2"), "not a number"),
            (
                |d| d["Waits"] = json!((0..101).collect::<Vec<_>>()),
                "1 to 100",
            ),
            (|d| d["Waits"] = json!([]), "1 to 100"),
            (
                |d| d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Widgets"),
                "unit",
            ),
            (
                |d| d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["StorageResolution"] = json!(5),
                "StorageResolution",
            ),
            (
                |d| d["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Name"] = json!("Things"),
                "twice",
            ),
            (
                |d| {
                    let keys: Vec<String> = (0..31).map(|i| format!("D{i}")).collect();
                    for k in &keys {
                        d[k.as_str()] = json!("x");
                    }
                    d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] = json!([keys]);
                },
                "at most 30",
            ),
        ];
        for (break_it, expected) in cases {
            let mut d = good();
            break_it(&mut d);
            let found = check(d.clone());
            assert!(
                found.iter().any(|p| p.contains(expected)),
                "{d}: expected a problem with {expected:?}, got {found:?}"
            );
        }
        assert!(!problems("{not json").is_empty());
    }
}
