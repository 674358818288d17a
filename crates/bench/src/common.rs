//! What the benchmarks share: arguments, paths, the handler's environment,
//! summaries.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context as _};

/// `--key value` options, each used at most once.
pub struct Args {
    values: HashMap<String, String>,
    used: Mutex<HashSet<String>>,
}

impl Args {
    pub fn parse(argv: &[String]) -> anyhow::Result<Args> {
        let mut values = HashMap::new();
        let mut it = argv.iter();
        while let Some(a) = it.next() {
            let Some(key) = a.strip_prefix("--") else {
                bail!("unexpected argument {a:?}");
            };
            let (key, value) = match key.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => {
                    let v = it
                        .next()
                        .with_context(|| format!("--{key} needs a value"))?;
                    (key.to_owned(), v.clone())
                }
            };
            if values.insert(key.clone(), value).is_some() {
                bail!("--{key} given twice");
            }
        }
        Ok(Args {
            values,
            used: Mutex::new(HashSet::new()),
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.used.lock().expect("unpoisoned").insert(key.to_owned());
        self.values.get(key).map(String::as_str)
    }

    pub fn number<T: std::str::FromStr>(&self, key: &str, default: T) -> anyhow::Result<T> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| anyhow::anyhow!("--{key} {v:?} is not a valid number")),
        }
    }

    pub fn required<T: std::str::FromStr>(&self, key: &str) -> anyhow::Result<T> {
        let v = self
            .get(key)
            .with_context(|| format!("--{key} is required"))?;
        v.parse()
            .map_err(|_| anyhow::anyhow!("--{key} {v:?} is not a valid number"))
    }

    /// Fails on options no subcommand asked for (typos).
    pub fn check_all_used(&self) -> anyhow::Result<()> {
        let used = self.used.lock().expect("unpoisoned");
        let mut unknown: Vec<_> = self.values.keys().filter(|k| !used.contains(*k)).collect();
        unknown.sort();
        if !unknown.is_empty() {
            bail!("unknown option(s): {unknown:?}");
        }
        Ok(())
    }
}

pub fn repo(args: &Args) -> anyhow::Result<PathBuf> {
    let path = match args.get("repo") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
    };
    path.canonicalize()
        .with_context(|| format!("repository root {}", path.display()))
}

pub fn target_dir(repo: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => repo.join("target"),
    }
}

/// The release handler binary (or `--binary`), which must exist.
pub fn binary(args: &Args, repo: &Path) -> anyhow::Result<PathBuf> {
    let path = match args.get("binary") {
        Some(p) => PathBuf::from(p),
        None => target_dir(repo).join("release/exclusion-handler"),
    };
    if !path.is_file() {
        bail!(
            "{} does not exist: build it with `cargo build --release --bin exclusion-handler`",
            path.display()
        );
    }
    Ok(path)
}

/// The handler's environment as template.yaml sets it, with local endpoints.
pub struct HandlerEnv<'a> {
    pub table: &'a str,
    pub qualification: &'a str,
    pub mturk_endpoint: &'a str,
    /// `MTURK_MAX_RPS`; `None` leaves it unset, as the template's default does.
    pub mturk_max_rps: Option<f64>,
    pub queue_url: Option<&'a str>,
    pub extra: Vec<(String, String)>,
}

impl HandlerEnv<'_> {
    pub fn build(&self) -> anyhow::Result<Vec<(String, String)>> {
        let local = |var: &str| -> anyhow::Result<String> {
            let v = std::env::var(var).unwrap_or_default();
            if !v.starts_with("http://127.") && !v.starts_with("http://localhost") {
                bail!("{var} must point at the local stack on 127.0.0.1 (eval \"$(scripts/local-stack.sh env)\")");
            }
            Ok(v)
        };
        let mut env: Vec<(String, String)> = vec![
            ("TABLE_NAME".into(), self.table.into()),
            ("QUALIFICATION_TYPE_ID".into(), self.qualification.into()),
            ("MTURK_ENVIRONMENT".into(), "sandbox".into()),
            ("AWS_ENDPOINT_URL_MTURK".into(), self.mturk_endpoint.into()),
            (
                "AWS_ENDPOINT_URL_DYNAMODB".into(),
                local("AWS_ENDPOINT_URL_DYNAMODB")?,
            ),
            (
                "AWS_ENDPOINT_URL_SQS".into(),
                local("AWS_ENDPOINT_URL_SQS")?,
            ),
            // template.yaml: LoggingConfig JSON, ApplicationLogLevel INFO.
            ("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()),
            ("AWS_LAMBDA_LOG_LEVEL".into(), "INFO".into()),
        ];
        if let Some(rps) = self.mturk_max_rps {
            env.push(("MTURK_MAX_RPS".into(), rps.to_string()));
        }
        if let Some(q) = self.queue_url {
            env.push(("QUEUE_URL".into(), q.into()));
        }
        env.extend(self.extra.iter().cloned());
        Ok(env)
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// min / median / p90 / max of durations, in ms.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub n: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Summary {
    pub fn of(values: &[Duration]) -> Option<Summary> {
        let mut v = values.to_vec();
        v.sort();
        let n = v.len();
        if n == 0 {
            return None;
        }
        Some(Summary {
            n,
            min_ms: ms(v[0]),
            median_ms: ms(percentile(&v, 50.0)?),
            p90_ms: ms(percentile(&v, 90.0)?),
            max_ms: ms(v[n - 1]),
            mean_ms: ms(v.iter().sum::<Duration>() / n as u32),
        })
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {:.1} ms, p90 {:.1} ms, min {:.1} ms, max {:.1} ms (n={})",
            self.median_ms, self.p90_ms, self.min_ms, self.max_ms, self.n
        )
    }
}

/// One SQS record as Lambda's event source builds it.
pub fn sqs_record(message_id: &str, body: &str, queue_arn: &str) -> serde_json::Value {
    serde_json::json!({
        "messageId": message_id,
        "receiptHandle": format!("rh-{message_id}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SenderId": "AIDAIXO4EZE6RHVSXIN4E",
            "SentTimestamp": "1772471051000",
            "ApproximateFirstReceiveTimestamp": "1772471051500",
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1",
    })
}

/// An AssignmentSubmitted notification document.
pub fn submitted_document(doc_id: &str, hit_type: &str, hit: &str, assignment: &str) -> String {
    serde_json::json!({
        "EventDocVersion": "2014-08-15",
        "EventDocId": doc_id,
        "CustomerId": "A1LABREQUESTER",
        "SourceAccount": "123456789012",
        "Events": [{
            "EventType": "AssignmentSubmitted",
            "EventTimestamp": "2026-11-22T12:00:00Z",
            "HITTypeId": hit_type,
            "HITId": hit,
            "AssignmentId": assignment,
        }],
    })
    .to_string()
}

/// What this machine is, for the report.
pub fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_default();
    serde_json::json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "arch": std::env::consts::ARCH,
        "cpu": cpu,
        "clk_tck": testkit::runtime_api::clock_ticks_per_second(),
    })
}

pub fn print_result(kind: &str, value: serde_json::Value) {
    let mut v = value;
    v["bench"] = kind.into();
    v["machine"] = machine();
    println!("RESULT {v}");
}
