//! CloudWatch Embedded Metric Format (EMF): the functions' metrics, written
//! as JSON lines into their own logs, from which CloudWatch extracts them.
//! No `PutMetricData`, so no extra permission.
//!
//! Both functions build their lines here: the check one per request
//! ([`crate::check::emf_line`]), the handler one per invocation
//! ([`crate::handler::BatchMetrics::emf_lines`]). Every metric is in the
//! namespace [`NAMESPACE`] with the dimension `Pool` (`METRICS_POOL`, the
//! stack's name), as template.yaml's alarms and dashboard expect. No worker,
//! assignment or HIT id is ever a metric name, a dimension or a value.

use serde_json::{Map, Value};

/// The namespace of every metric the functions write.
pub const NAMESPACE: &str = "MturkExclusion";
/// The `Pool` dimension when `METRICS_POOL` is not set.
pub const DEFAULT_POOL: &str = "default";
/// EMF takes at most this many values for one metric in one document.
pub const MAX_VALUES: usize = 100;

/// The `Pool` dimension from `METRICS_POOL` as `lookup` gives it.
pub fn pool(lookup: impl Fn(&str) -> Option<String>) -> String {
    lookup("METRICS_POOL")
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| DEFAULT_POOL.to_owned())
}

/// [`pool`] from the process environment.
pub fn pool_from_env() -> String {
    pool(|name| std::env::var(name).ok())
}

/// Milliseconds since the epoch now: EMF's `_aws.Timestamp`.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The CloudWatch units the functions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    Milliseconds,
    CountPerSecond,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
            Unit::Milliseconds => "Milliseconds",
            Unit::CountPerSecond => "Count/Second",
        }
    }
}

#[derive(Debug, Clone)]
struct Metric {
    name: &'static str,
    unit: Unit,
    /// One value, or a distribution (several values in one document).
    values: Vec<f64>,
    many: bool,
}

#[derive(Debug, Clone)]
struct Group {
    dimensions: Vec<&'static str>,
    metrics: Vec<Metric>,
}

/// One EMF document under construction: dimension values, then groups of
/// metrics, each group with its dimension set.
#[derive(Debug, Clone)]
pub struct Document {
    timestamp_ms: u64,
    dimensions: Vec<(&'static str, String)>,
    groups: Vec<Group>,
}

impl Document {
    pub fn new(timestamp_ms: u64) -> Self {
        Document {
            timestamp_ms,
            dimensions: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// A dimension's value (a top-level string member).
    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self
    }

    /// Starts a group of metrics reported under `dimensions` (names given
    /// with [`Document::dimension`]).
    pub fn group(mut self, dimensions: &[&'static str]) -> Self {
        self.groups.push(Group {
            dimensions: dimensions.to_vec(),
            metrics: Vec::new(),
        });
        self
    }

    fn push(mut self, metric: Metric) -> Self {
        if self.groups.is_empty() {
            self = self.group(&[]);
        }
        if let Some(g) = self.groups.last_mut() {
            g.metrics.push(metric);
        }
        self
    }

    /// One value of a metric in the current group. A value that is not a
    /// finite number (JSON cannot carry it) is left out with its metric.
    pub fn value(self, name: &'static str, unit: Unit, value: f64) -> Self {
        self.push(Metric {
            name,
            unit,
            values: vec![value],
            many: false,
        })
    }

    /// Several values of one metric (a distribution: CloudWatch computes
    /// percentiles over them). No values: the metric is left out, so an
    /// empty distribution never reads as a zero.
    pub fn values(self, name: &'static str, unit: Unit, values: Vec<f64>) -> Self {
        self.push(Metric {
            name,
            unit,
            values,
            many: true,
        })
    }

    /// The document as JSON lines: one, unless a distribution holds more
    /// than [`MAX_VALUES`] values, whose rest then goes into further
    /// documents that carry only that metric.
    pub fn lines(&self) -> Vec<String> {
        let mut first = self.clone();
        let mut rest: Vec<Document> = Vec::new();
        for (gi, group) in first.groups.iter_mut().enumerate() {
            for metric in &mut group.metrics {
                metric.values.retain(|v| v.is_finite());
                if metric.values.len() > MAX_VALUES {
                    let tail = metric.values.split_off(MAX_VALUES);
                    for chunk in tail.chunks(MAX_VALUES) {
                        rest.push(Document {
                            timestamp_ms: self.timestamp_ms,
                            dimensions: self.dimensions.clone(),
                            groups: vec![Group {
                                dimensions: self.groups[gi].dimensions.clone(),
                                metrics: vec![Metric {
                                    values: chunk.to_vec(),
                                    ..metric.clone()
                                }],
                            }],
                        });
                    }
                }
            }
        }
        std::iter::once(first)
            .chain(rest)
            .filter_map(|d| d.json())
            .map(|v| v.to_string())
            .collect()
    }

    /// `None` when no metric is left to report.
    fn json(&self) -> Option<Value> {
        let mut top = Map::new();
        let mut directives = Vec::new();
        for group in &self.groups {
            let metrics: Vec<&Metric> = group
                .metrics
                .iter()
                .filter(|m| !m.values.is_empty() && m.values.iter().all(|v| v.is_finite()))
                .collect();
            if metrics.is_empty() {
                continue;
            }
            let mut definitions = Vec::new();
            for m in metrics {
                definitions.push(serde_json::json!({"Name": m.name, "Unit": m.unit.as_str()}));
                let value = if m.many {
                    Value::from(m.values.iter().map(|v| number(*v)).collect::<Vec<_>>())
                } else {
                    number(m.values[0])
                };
                top.insert(m.name.to_owned(), value);
            }
            directives.push(serde_json::json!({
                "Namespace": NAMESPACE,
                "Dimensions": [group.dimensions],
                "Metrics": definitions,
            }));
        }
        if directives.is_empty() {
            return None;
        }
        for (name, value) in &self.dimensions {
            top.insert((*name).to_owned(), Value::from(value.as_str()));
        }
        top.insert(
            "_aws".to_owned(),
            serde_json::json!({
                "Timestamp": self.timestamp_ms,
                "CloudWatchMetrics": directives,
            }),
        );
        Some(Value::Object(top))
    }
}

/// A whole number as a JSON integer (a count reads `3`, not `3.0`).
fn number(v: f64) -> Value {
    if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn one_document_with_its_directive_and_members() {
        let lines = Document::new(1_700_000_000_000)
            .dimension("Pool", "lab")
            .group(&["Pool"])
            .value("Things", Unit::Count, 3.0)
            .values("Waits", Unit::Seconds, vec![1.5, 2.0])
            .lines();
        assert_eq!(lines.len(), 1);
        let d = parse(&lines[0]);
        assert_eq!(d["_aws"]["Timestamp"], 1_700_000_000_000u64);
        let directive = &d["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], serde_json::json!([["Pool"]]));
        assert_eq!(
            directive["Metrics"],
            serde_json::json!([
                {"Name": "Things", "Unit": "Count"},
                {"Name": "Waits", "Unit": "Seconds"}
            ])
        );
        assert_eq!(d["Pool"], "lab");
        assert_eq!(d["Things"], 3);
        assert_eq!(d["Waits"], serde_json::json!([1.5, 2]));
    }

    #[test]
    fn an_empty_distribution_is_left_out_and_a_long_one_is_split() {
        let lines = Document::new(1)
            .dimension("Pool", "p")
            .group(&["Pool"])
            .value("Things", Unit::Count, 0.0)
            .values("Waits", Unit::Seconds, vec![])
            .lines();
        let d = parse(&lines[0]);
        assert!(d.get("Waits").is_none());
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "Things"
        );
        assert_eq!(
            d["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        let values: Vec<f64> = (0..250).map(f64::from).collect();
        let lines = Document::new(1)
            .dimension("Pool", "p")
            .group(&["Pool"])
            .value("Things", Unit::Count, 1.0)
            .values("Waits", Unit::Seconds, values)
            .lines();
        assert_eq!(lines.len(), 3);
        let docs: Vec<Value> = lines.iter().map(|l| parse(l)).collect();
        let counts: Vec<usize> = docs
            .iter()
            .map(|d| d["Waits"].as_array().unwrap().len())
            .collect();
        assert_eq!(counts, [100, 100, 50]);
        // Things only once, in the first document.
        assert_eq!(docs.iter().filter(|d| d.get("Things").is_some()).count(), 1);
        assert_eq!(docs[2]["Pool"], "p");
    }

    #[test]
    fn nothing_to_report_is_no_line_and_non_finite_values_are_dropped() {
        assert!(Document::new(1).dimension("Pool", "p").lines().is_empty());
        let lines = Document::new(1)
            .dimension("Pool", "p")
            .group(&["Pool"])
            .value("Rate", Unit::CountPerSecond, f64::NAN)
            .lines();
        assert!(lines.is_empty());
    }

    #[test]
    fn the_pool_defaults_like_the_check() {
        assert_eq!(pool(|_| None), DEFAULT_POOL);
        assert_eq!(pool(|_| Some("  ".into())), DEFAULT_POOL);
        assert_eq!(pool(|_| Some("lab-prod".into())), "lab-prod");
    }
}
