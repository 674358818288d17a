//! The `exclusion-check` binary as Lambda runs it behind a Function URL:
//! child processes polling local Runtime APIs (testkit::runtime_api), fed by
//! testkit's local Function URL (payload 2.0, the template's CORS), on a
//! fresh ledger table in DynamoDB Local.

mod bench;
mod browser;
mod contract;
mod race;
mod stranger;

use std::time::Duration;

use testkit::function_url::{self, Cors, FunctionUrl, HttpReply};
use testkit::pipeline::Pipeline;
use testkit::runtime_api::{FunctionProcess, RuntimeApi};

pub const BINARY: &str = env!("CARGO_BIN_EXE_exclusion-check");
/// Names another build of the check to run instead of [`BINARY`]: the
/// `bootstrap` unpacked from a release's exclusion-check.zip
/// (scripts/check-dist.sh runs it under qemu-aarch64, through
/// testkit's BOOTSTRAP_RUNNER).
pub const BINARY_VAR: &str = "EXCLUSION_CHECK_BOOTSTRAP";
pub const FUNCTION: &str = "exclusion-check";
pub const HIT: &str = "3ZC62PVYDIVS0QE7NFAMN5S6YNQXXN";

/// The binary the tests run: [`BINARY_VAR`]'s, else this build's.
pub fn binary() -> std::path::PathBuf {
    testkit::runtime_api::binary_under_test(BINARY_VAR, BINARY)
}

/// The check's environment as the template sets it, on this table, with
/// MTurk at `mturk` (the pipeline's double).
pub fn check_env(
    table: &str,
    qualification: &str,
    dynamodb: &str,
    mturk: &str,
) -> Vec<(String, String)> {
    [
        ("TABLE_NAME", table),
        ("QUALIFICATION_TYPE_ID", qualification),
        ("CLAIM_MINUTES", "60"),
        ("METRICS_POOL", "test-pool"),
        ("MTURK_ENVIRONMENT", "sandbox"),
        ("HIT_LOOKUPS_PER_MINUTE", "20"),
        ("AWS_ENDPOINT_URL_MTURK", mturk),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

pub fn local_dynamodb() -> String {
    std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("AWS_ENDPOINT_URL_DYNAMODB is set")
}

/// `n` instances of the real binary, each on its own Runtime API, behind one
/// local Function URL (taken in turn, as Lambda spreads requests).
pub struct Deployed {
    pub url: FunctionUrl,
    pub apis: Vec<RuntimeApi>,
    pub processes: Vec<FunctionProcess>,
}

impl Deployed {
    pub async fn start(n: usize, env: &[(String, String)]) -> Deployed {
        let cors = Cors::from_template("ExclusionCheckFunction").expect("the template's Cors");
        Self::start_with_cors(n, env, cors).await
    }

    pub async fn start_with_cors(n: usize, env: &[(String, String)], cors: Cors) -> Deployed {
        let mut apis = Vec::new();
        let mut processes = Vec::new();
        for _ in 0..n {
            let api = RuntimeApi::start_named(FUNCTION)
                .await
                .expect("runtime api");
            processes.push(FunctionProcess::spawn(&binary(), &api, env).expect("spawn"));
            apis.push(api);
        }
        let url = FunctionUrl::start(
            FUNCTION,
            cors,
            function_url::over_runtime_apis(apis.clone(), Duration::from_secs(10)),
        )
        .await
        .expect("function url");
        Deployed {
            url,
            apis,
            processes,
        }
    }

    /// GET the check with a raw query string.
    pub async fn get(&self, query: &str) -> HttpReply {
        function_url::http("GET", &format!("{}?{query}", self.url.url()), &[], b"")
            .await
            .expect("request")
    }

    pub async fn check(&self, worker: &str, assignment: &str) -> HttpReply {
        self.get(&format!(
            "workerId={worker}&assignmentId={assignment}&hitId={HIT}"
        ))
        .await
    }

    /// Every log line of every instance.
    pub fn logs(&self) -> String {
        self.processes
            .iter()
            .map(FunctionProcess::log_text)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A pipeline (ledger table, queue, handler, MTurk double) with the check
/// deployed on its table, and [`HIT`] posted on the double (a HIT of the
/// lab, one hour per assignment).
pub async fn deployed(n: usize) -> (Pipeline, Deployed) {
    let p = Pipeline::start().await;
    p.double.create_hit_with_id(HIT, &p.hit_type);
    let env = env_of(&p);
    let d = Deployed::start(n, &env).await;
    (p, d)
}

/// [`check_env`] for this pipeline.
pub fn env_of(p: &Pipeline) -> Vec<(String, String)> {
    check_env(
        p.ledger.table(),
        p.qualification.as_str(),
        &local_dynamodb(),
        &p.double.endpoint(),
    )
}

static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A fresh id of MTurk's shape with a prefix (`A` for workers).
/// How many items the ledger holds (a check that writes nothing leaves it).
pub async fn items(p: &Pipeline) -> i32 {
    p.stack
        .dynamodb
        .scan()
        .table_name(p.ledger.table())
        .consistent_read(true)
        .send()
        .await
        .expect("scan")
        .count
}

pub fn fresh(prefix: &str) -> String {
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{:X}{n:X}", nanos % 0xFFFF_FFFF_FFFF).to_uppercase()
}

/// `(eligible, reason)` of a 200 answer, which must hold exactly those two.
pub fn verdict(r: &HttpReply) -> (bool, String) {
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    let o = v.as_object().expect("an object");
    assert_eq!(o.len(), 2, "nothing else in the answer: {v}");
    (
        o["eligible"].as_bool().expect("eligible"),
        o["reason"].as_str().expect("reason").to_owned(),
    )
}
