//! The handler's settings, read once at cold start, and the one reader of
//! a function's environment ([`Env`]) that the check and the watch share.
//!
//! A missing or invalid value stops start-up with a message naming the
//! variable: a misconfigured function should fail its first invocation
//! loudly, not process a batch half-right.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;
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

/// One reader of a function's environment, shared by the handler, the
/// check and the watch, so that every variable is read the same way: a
/// blank value counts as unset, and every error names its variable.
pub struct Env<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    pub fn new(lookup: F) -> Self {
        Env { lookup }
    }

    /// The value, if set and not blank.
    pub fn get(&self, variable: &str) -> Option<String> {
        (self.lookup)(variable).filter(|v| !v.trim().is_empty())
    }

    pub fn required(&self, variable: &'static str) -> Result<String, ConfigError> {
        self.get(variable).ok_or(ConfigError {
            variable,
            problem: "is not set".into(),
        })
    }

    /// `QUALIFICATION_TYPE_ID`: the pool's exclusion qualification, which
    /// every function needs.
    pub fn qualification(&self) -> Result<QualificationTypeId, ConfigError> {
        const VARIABLE: &str = "QUALIFICATION_TYPE_ID";
        QualificationTypeId::parse(&self.required(VARIABLE)?).map_err(|e| ConfigError {
            variable: VARIABLE,
            problem: e.to_string(),
        })
    }

    /// `true`/`1` or `false`/`0`; unset is `default`.
    pub fn flag(&self, variable: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(variable).as_deref().map(str::trim) {
            None => Ok(default),
            Some("true") | Some("1") => Ok(true),
            Some("false") | Some("0") => Ok(false),
            Some(other) => Err(ConfigError {
                variable,
                problem: format!("{other:?} is neither \"true\" nor \"false\""),
            }),
        }
    }

    /// The value parsed as `T` and accepted by `ok`; `what` says what was
    /// expected ("{value:?} is not {what}"). Unset is `None`.
    pub fn parsed<T: FromStr>(
        &self,
        variable: &'static str,
        what: &str,
        ok: impl Fn(&T) -> bool,
    ) -> Result<Option<T>, ConfigError> {
        let Some(v) = self.get(variable) else {
            return Ok(None);
        };
        match v.trim().parse::<T>() {
            Ok(x) if ok(&x) => Ok(Some(x)),
            _ => Err(ConfigError {
                variable,
                problem: format!("{v:?} is not {what}"),
            }),
        }
    }

    /// A number within `range` ("{what} from {start} to {end}"); unset is `None`.
    pub fn in_range<T: FromStr + PartialOrd + Display>(
        &self,
        variable: &'static str,
        what: &str,
        range: RangeInclusive<T>,
    ) -> Result<Option<T>, ConfigError> {
        let what = format!("{what} from {} to {}", range.start(), range.end());
        self.parsed(variable, &what, |x| range.contains(x))
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(lookup);
        let table_name = env.required("TABLE_NAME")?;
        let qualification_type_id = env.qualification()?;
        let mturk_environment = match env.required("MTURK_ENVIRONMENT")?.as_str() {
            "sandbox" => MturkEnvironment::Sandbox,
            "production" => MturkEnvironment::Production,
            other => {
                return Err(ConfigError {
                    variable: "MTURK_ENVIRONMENT",
                    problem: format!("{other:?} is neither \"sandbox\" nor \"production\""),
                })
            }
        };
        let rate = |variable| {
            env.parsed(
                variable,
                "a number of requests per second between 0 and 1000",
                |r: &f64| r.is_finite() && *r > 0.0 && *r <= 1000.0,
            )
        };
        // SQS's visibility timeout is at most 12 hours.
        let seconds = |variable, default, range| {
            env.in_range(variable, "a whole number of seconds", range)
                .map(|s| Duration::from_secs(s.unwrap_or(default)))
        };
        Ok(Config {
            table_name,
            qualification_type_id,
            mturk_environment,
            mturk_endpoint: env.get("AWS_ENDPOINT_URL_MTURK"),
            mturk_max_rps: rate("MTURK_MAX_RPS")?.unwrap_or(crate::rate::DEFAULT_CEILING),
            mturk_start_rps: rate("MTURK_START_RPS")?,
            max_concurrency: env.in_range("MAX_CONCURRENCY", "a whole number", 1..=1000)?,
            queue_url: env.get("QUEUE_URL"),
            reject_unknown_senders: env.flag("REJECT_UNKNOWN_SENDERS", false)?,
            record_concurrency: env
                .in_range("RECORD_CONCURRENCY", "a whole number", 1..=10)?
                .unwrap_or(4),
            deadline_margin: Duration::from_millis(
                env.parsed(
                    "DEADLINE_MARGIN_MS",
                    "a whole number of milliseconds",
                    |_: &u64| true,
                )?
                .unwrap_or(12_000),
            ),
            backoff_base: seconds("RETRY_BACKOFF_BASE_SECS", 30, 0..=43_200)?,
            backoff_max: seconds("RETRY_BACKOFF_MAX_SECS", 900, 0..=43_200)?,
            assignment_lease: seconds("ASSIGNMENT_LEASE_SECS", 15, 1..=900)?,
            // At least twice the SDK's 10 s bound on one operation, so a grant
            // that starts inside the window always ends inside it.
            grant_window: seconds("GRANT_WINDOW_SECS", 30, 5..=300)?,
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
    fn the_shared_reader_names_the_variable_and_takes_blank_as_unset() {
        let env = Env::new(|name: &str| match name {
            "BLANK" => Some("  ".to_owned()),
            "YES" => Some(" true ".to_owned()),
            "MAYBE" => Some("yes".to_owned()),
            "SEVEN" => Some("7".to_owned()),
            _ => None,
        });
        assert_eq!(env.get("BLANK"), None);
        assert_eq!(env.required("BLANK").unwrap_err().variable, "BLANK");
        assert!(env.flag("YES", false).unwrap());
        assert!(env.flag("UNSET", true).unwrap());
        let err = env.flag("MAYBE", false).unwrap_err();
        assert_eq!(err.variable, "MAYBE");
        assert!(err.to_string().contains("\"yes\""), "{err}");
        assert_eq!(
            env.in_range("SEVEN", "a whole number", 1..=10).unwrap(),
            Some(7)
        );
        assert_eq!(
            env.in_range::<u32>("UNSET", "a whole number", 1..=10)
                .unwrap(),
            None
        );
        let err = env.in_range("SEVEN", "a whole number", 1..=5).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable SEVEN: \"7\" is not a whole number from 1 to 5"
        );
    }

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
