//! The handler's settings, read once at cold start.
//!
//! A missing or invalid value stops start-up with a message naming the
//! variable: a misconfigured function should fail its first invocation
//! loudly, not process a batch half-right.

use std::time::Duration;

use crate::ids::QualificationTypeId;
use crate::mturk::MturkEnvironment;

#[derive(Debug, Clone)]
pub struct Config {
    /// `TABLE_NAME`: the ledger table.
    pub table_name: String,
    /// `QUALIFICATION_TYPE_ID`: the lab's exclusion qualification.
    pub qualification_type_id: QualificationTypeId,
    /// `MTURK_ENVIRONMENT`: `sandbox` or `production`.
    pub mturk_environment: MturkEnvironment,
    /// `AWS_ENDPOINT_URL_MTURK`: overrides the environment's endpoint (local runs, tests).
    pub mturk_endpoint: Option<String>,
    /// `MTURK_MAX_RPS`: the most MTurk calls per second one instance ever
    /// sends. A ceiling, not a guess: below it the instance finds MTurk's
    /// rate by itself (`rate.rs`).
    pub mturk_max_rps: f64,
    /// `MTURK_START_RPS`: where an instance's adaptive rate starts (at most
    /// the ceiling), in slow start. Unset (as deployed): at its share of the
    /// pool's recent rate from the ledger, or with no history at
    /// `rate::initial_rate(max_concurrency)`.
    pub mturk_start_rps: Option<f64>,
    /// `MAX_CONCURRENCY`: the event source's MaximumConcurrency, if known
    /// (template.yaml passes it): a cold instance's share of the pool's
    /// rate is that rate ÷ at least this many instances, and with no
    /// history its share of `rate::initial_rate`.
    pub max_concurrency: Option<usize>,
    /// `QUEUE_URL`: the source queue, for spacing out redeliveries. Optional.
    pub queue_url: Option<String>,
    /// `REJECT_UNKNOWN_SENDERS`: fail records whose SenderId is not MTurk's.
    pub reject_unknown_senders: bool,
    /// `RECORD_CONCURRENCY`: records of one batch processed at once.
    pub record_concurrency: usize,
    /// `DEADLINE_MARGIN_MS`: stop starting records when less than this remains.
    pub deadline_margin: Duration,
    /// `RETRY_BACKOFF_BASE_SECS` / `RETRY_BACKOFF_MAX_SECS`: how a failed
    /// record's redelivery is delayed, doubling with each receive.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// `ASSIGNMENT_LEASE_SECS`: how long a copy of a notification holds its
    /// assignment before another copy may take over. Only saves MTurk calls:
    /// correctness never rests on it.
    pub assignment_lease: Duration,
    /// `GRANT_WINDOW_SECS`: how long after the ledger says "excluded" a
    /// grant may still be sent; a release waits this out before revoking.
    pub grant_window: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("environment variable {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |variable: &'static str| -> Option<String> {
            lookup(variable).filter(|v| !v.trim().is_empty())
        };
        let required = |variable: &'static str| {
            get(variable).ok_or(ConfigError {
                variable,
                problem: "is not set".into(),
            })
        };
        let invalid = |variable: &'static str, problem: String| ConfigError { variable, problem };

        let table_name = required("TABLE_NAME")?;
        let qualification_type_id = QualificationTypeId::parse(&required("QUALIFICATION_TYPE_ID")?)
            .map_err(|e| invalid("QUALIFICATION_TYPE_ID", e.to_string()))?;
        let mturk_environment = match required("MTURK_ENVIRONMENT")?.as_str() {
            "sandbox" => MturkEnvironment::Sandbox,
            "production" => MturkEnvironment::Production,
            other => {
                return Err(invalid(
                    "MTURK_ENVIRONMENT",
                    format!("{other:?} is neither \"sandbox\" nor \"production\""),
                ))
            }
        };
        let mturk_max_rps = match get("MTURK_MAX_RPS") {
            None => crate::rate::DEFAULT_CEILING,
            Some(v) => match v.parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 && r <= 1000.0 => r,
                _ => {
                    return Err(invalid(
                        "MTURK_MAX_RPS",
                        format!("{v:?} is not a number of requests per second between 0 and 1000"),
                    ))
                }
            },
        };
        let mturk_start_rps = match get("MTURK_START_RPS") {
            None => None,
            Some(v) => match v.parse::<f64>() {
                Ok(r) if r.is_finite() && r > 0.0 && r <= 1000.0 => Some(r),
                _ => {
                    return Err(invalid(
                        "MTURK_START_RPS",
                        format!("{v:?} is not a number of requests per second between 0 and 1000"),
                    ))
                }
            },
        };
        let max_concurrency = match get("MAX_CONCURRENCY") {
            None => None,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=1000).contains(&n) => Some(n),
                _ => {
                    return Err(invalid(
                        "MAX_CONCURRENCY",
                        format!("{v:?} is not a whole number from 1 to 1000"),
                    ))
                }
            },
        };
        let reject_unknown_senders = match get("REJECT_UNKNOWN_SENDERS").as_deref() {
            None | Some("false") | Some("0") => false,
            Some("true") | Some("1") => true,
            Some(other) => {
                return Err(invalid(
                    "REJECT_UNKNOWN_SENDERS",
                    format!("{other:?} is neither \"true\" nor \"false\""),
                ))
            }
        };
        let record_concurrency = match get("RECORD_CONCURRENCY") {
            None => 4,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=10).contains(&n) => n,
                _ => {
                    return Err(invalid(
                        "RECORD_CONCURRENCY",
                        format!("{v:?} is not a whole number from 1 to 10"),
                    ))
                }
            },
        };
        let deadline_margin = match get("DEADLINE_MARGIN_MS") {
            None => Duration::from_secs(12),
            Some(v) => match v.parse::<u64>() {
                Ok(ms) => Duration::from_millis(ms),
                Err(_) => {
                    return Err(invalid(
                        "DEADLINE_MARGIN_MS",
                        format!("{v:?} is not a whole number of milliseconds"),
                    ))
                }
            },
        };
        let seconds = |variable: &'static str, default: u64| match get(variable) {
            None => Ok(Duration::from_secs(default)),
            Some(v) => match v.parse::<u64>() {
                // SQS's visibility timeout is at most 12 hours.
                Ok(n) if n <= 43_200 => Ok(Duration::from_secs(n)),
                _ => Err(invalid(
                    variable,
                    format!("{v:?} is not a whole number of seconds up to 43200"),
                )),
            },
        };
        let backoff_base = seconds("RETRY_BACKOFF_BASE_SECS", 30)?;
        let backoff_max = seconds("RETRY_BACKOFF_MAX_SECS", 900)?;
        let bounded =
            |variable: &'static str, default: u64, range: std::ops::RangeInclusive<u64>| {
                let d = seconds(variable, default)?;
                if range.contains(&d.as_secs()) {
                    Ok(d)
                } else {
                    Err(invalid(
                        variable,
                        format!(
                            "{} s is outside {} to {} seconds",
                            d.as_secs(),
                            range.start(),
                            range.end()
                        ),
                    ))
                }
            };
        let assignment_lease = bounded("ASSIGNMENT_LEASE_SECS", 15, 1..=900)?;
        // At least twice the SDK's 10 s bound on one operation, so a grant
        // that starts inside the window always ends inside it.
        let grant_window = bounded("GRANT_WINDOW_SECS", 30, 5..=300)?;
        Ok(Config {
            backoff_base,
            backoff_max,
            assignment_lease,
            grant_window,
            table_name,
            qualification_type_id,
            mturk_environment,
            mturk_endpoint: get("AWS_ENDPOINT_URL_MTURK"),
            mturk_max_rps,
            mturk_start_rps,
            max_concurrency,
            queue_url: get("QUEUE_URL"),
            reject_unknown_senders,
            record_concurrency,
            deadline_margin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    const BASE: &[(&str, &str)] = &[
        ("TABLE_NAME", "ledger"),
        ("QUALIFICATION_TYPE_ID", "3LB30G6JHY4JQ4T5QRCEBZ6B9YDKQD"),
        ("MTURK_ENVIRONMENT", "sandbox"),
    ];

    #[test]
    fn defaults_are_safe() {
        let c = config(BASE).unwrap();
        // A ceiling that lets two instances reach 50 calls/s together; the
        // limiter starts far below it and adapts.
        assert_eq!(c.mturk_max_rps, 25.0);
        assert_eq!(c.mturk_max_rps, crate::rate::DEFAULT_CEILING);
        assert!(!c.reject_unknown_senders);
        assert_eq!(c.queue_url, None);
        // Unset: the pool's share from the ledger, or rate::initial_rate.
        assert_eq!(c.mturk_start_rps, None);
        assert_eq!(c.max_concurrency, None);
    }

    #[test]
    fn a_ceiling_can_still_be_set() {
        let mut pairs = BASE.to_vec();
        pairs.push(("MTURK_MAX_RPS", "2"));
        assert_eq!(config(&pairs).unwrap().mturk_max_rps, 2.0);
        pairs.pop();
        pairs.push(("MTURK_MAX_RPS", "0.5"));
        assert_eq!(config(&pairs).unwrap().mturk_max_rps, 0.5);
    }

    #[test]
    fn errors_name_the_variable() {
        let err = config(&BASE[..2]).unwrap_err();
        assert_eq!(err.variable, "MTURK_ENVIRONMENT");
        let mut bad = BASE.to_vec();
        bad.push(("MTURK_MAX_RPS", "fast"));
        assert_eq!(config(&bad).unwrap_err().variable, "MTURK_MAX_RPS");
        for bad_rate in ["0", "-2", "1001", "inf", "NaN"] {
            let mut bad = BASE.to_vec();
            bad.push(("MTURK_MAX_RPS", bad_rate));
            assert_eq!(
                config(&bad).unwrap_err().variable,
                "MTURK_MAX_RPS",
                "{bad_rate}"
            );
        }
        let mut bad = BASE.to_vec();
        bad[1] = ("QUALIFICATION_TYPE_ID", "not an id");
        let err = config(&bad).unwrap_err();
        assert_eq!(err.variable, "QUALIFICATION_TYPE_ID");
        assert!(err.to_string().contains("qualification type id"), "{err}");
        let mut bad = BASE.to_vec();
        bad[2] = ("MTURK_ENVIRONMENT", "prod");
        assert!(config(&bad).unwrap_err().to_string().contains("\"prod\""));
    }
}
