//! Cold start: a fresh handler process, spawn → the first response.
//!
//! Per run: a fresh Runtime API holding one Ping event (events/ping.json),
//! then the process is spawned; measured from spawn to the response, split
//! at the process's first `GET …/invocation/next` (the end of its init, what
//! Lambda reports as "Init Duration"). A Ping costs one DynamoDB PutItem
//! and no MTurk call. Then one warm invocation of the same event.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use testkit::mturk_double::MturkDouble;
use testkit::runtime_api::{FunctionProcess, Invocation, RuntimeApi};
use testkit::Stack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::common::{self, print_result, Args, HandlerEnv, Summary};

const INVOKE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Runs {
    init: Vec<Duration>,
    first_invoke: Vec<Duration>,
    total: Vec<Duration>,
    warm: Vec<Duration>,
    rss_kib: Vec<u64>,
    cpu: Vec<Duration>,
    /// Answers with no failed record.
    complete: usize,
    /// Answers in which every record failed as "not started before the deadline".
    deadline_failed: usize,
    deadline_header: Option<String>,
}

impl Runs {
    fn report(&self, label: &str) -> Value {
        let show = |name: &str, v: &[Duration]| {
            if let Some(s) = Summary::of(v) {
                println!("  {name:<34} {s}");
            }
        };
        println!("{label}:");
        println!(
            "  {:<34} {} complete, {} with every record refused on its deadline",
            "first answers", self.complete, self.deadline_failed
        );
        show("spawn -> first /next (init)", &self.init);
        show("first /next -> response", &self.first_invoke);
        show("spawn -> response (cold start)", &self.total);
        show("warm invocation (same event)", &self.warm);
        if let (Some(lo), Some(hi)) = (self.rss_kib.iter().min(), self.rss_kib.iter().max()) {
            println!(
                "  {:<34} {lo}..{hi} KiB",
                "peak RSS (VmHWM) after 2 invokes"
            );
        }
        show("CPU (user+sys) after 2 invokes", &self.cpu);
        if self.deadline_failed > 0 {
            println!(
                "  NOTE: {} of {} first answers failed every record as past its deadline \
                 (deadline header {:?}); no DynamoDB write happened in those",
                self.deadline_failed,
                self.deadline_failed + self.complete,
                self.deadline_header.as_deref().unwrap_or("?")
            );
        }
        json!({
            "complete_answers": self.complete,
            "answers_failed_on_deadline": self.deadline_failed,
            "deadline_header": self.deadline_header,
            "init": Summary::of(&self.init),
            "first_invoke": Summary::of(&self.first_invoke),
            "cold_start": Summary::of(&self.total),
            "warm_invoke": Summary::of(&self.warm),
            "peak_rss_kib": {"min": self.rss_kib.iter().min(), "max": self.rss_kib.iter().max()},
            "cpu_after_two_invokes": Summary::of(&self.cpu),
        })
    }
}

fn assert_no_failures(answer: &Value, log: &str) -> anyhow::Result<()> {
    let failures = answer.get("batchItemFailures").and_then(Value::as_array);
    if failures.is_none_or(|f| !f.is_empty()) {
        bail!("unexpected answer {answer}\nhandler log:\n{log}");
    }
    Ok(())
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    let runs: usize = args.number("runs", 20)?;
    let repo = common::repo(args)?;
    let binary = common::binary(args, &repo)?;
    let cargo_lambda = args.get("cargo-lambda").map(str::to_owned);
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(repo.join("events/ping.json")).context("events/ping.json")?,
    )?;

    let stack = Stack::from_env().await?;
    let table = stack.ledger_table().await?;
    let double = MturkDouble::start(None).await?;
    let qualification = double.create_qualification_type("Cold start benchmark");
    let env = HandlerEnv {
        table: &table,
        qualification: &qualification,
        mturk_endpoint: &double.endpoint(),
        mturk_max_rps: Some(2.0),
        queue_url: None,
        extra: Vec::new(),
    }
    .build()?;
    println!(
        "binary: {} ({} bytes)",
        binary.display(),
        std::fs::metadata(&binary)?.len()
    );

    let ours = with_runtime_api(&binary, &env, &event, runs, None).await?;
    let ours_json = ours.report("testkit Runtime API (this crate)");

    let mut matched = Value::Null;
    let emulator = match find_cargo_lambda(cargo_lambda.as_deref(), &repo) {
        None => {
            let why =
                "cargo-lambda not found on PATH nor in .local/venv/bin (pip install cargo-lambda)";
            println!("cargo-lambda emulator: not measured: {why}");
            json!({"measured": false, "why": why})
        }
        Some(cl) => match under_cargo_lambda(&cl, &repo, &binary, &env, &event, runs).await {
            Ok(r) => {
                let mut j = r.report(&format!("cargo-lambda emulator ({})", cl.display()));
                j["measured"] = true.into();
                j["cargo_lambda"] = cl.display().to_string().into();
                // The same work as under the emulator: our API handing out
                // the emulator's fixed deadline, so every record is refused.
                if let Some(deadline) = r
                    .deadline_header
                    .as_deref()
                    .and_then(|d| d.parse::<u64>().ok())
                {
                    let same =
                        with_runtime_api(&binary, &env, &event, runs, Some(deadline)).await?;
                    matched = same.report(&format!(
                        "testkit Runtime API, deadline header {deadline} as cargo-lambda sends"
                    ));
                }
                j
            }
            Err(e) => {
                println!("cargo-lambda emulator: not measured: {e:#}");
                json!({"measured": false, "why": format!("{e:#}")})
            }
        },
    };
    print_result(
        "cold-start",
        json!({
            "binary": binary.display().to_string(),
            "binary_bytes": std::fs::metadata(&binary)?.len(),
            "runs": runs,
            "event": "events/ping.json",
            "runtime_api": ours_json,
            "cargo_lambda": emulator,
            "runtime_api_with_emulator_deadline": matched,
        }),
    );
    Ok(())
}

/// `runs` cold starts through a fresh [`RuntimeApi`] each; `deadline`
/// replaces the deadline header (epoch ms) when given.
async fn with_runtime_api(
    binary: &Path,
    env: &[(String, String)],
    event: &Value,
    runs: usize,
    deadline: Option<u64>,
) -> anyhow::Result<Runs> {
    let mut ours = Runs {
        deadline_header: deadline.map(|d| d.to_string()),
        ..Runs::default()
    };
    for run in 0..runs {
        let api = RuntimeApi::start().await?;
        let waiting = {
            let (api, event) = (api.clone(), event.clone());
            tokio::spawn(async move {
                let answer = match deadline {
                    Some(d) => api.invoke_with_deadline(event, INVOKE_TIMEOUT, d).await,
                    None => api.invoke(event, INVOKE_TIMEOUT).await,
                };
                (answer, Instant::now())
            })
        };
        let process = FunctionProcess::spawn(binary, &api, env)?;
        let (answer, done) = waiting.await?;
        let answer = match answer {
            Ok(Invocation::Response(v)) => v,
            other => bail!("run {run}: {other:?}\nhandler log:\n{}", process.log_text()),
        };
        r_check(&answer, &mut ours, &process)?;
        let spawned = process.spawned_at();
        let first_poll = api.first_poll().context("no poll recorded")?;
        ours.init.push(first_poll - spawned);
        ours.first_invoke.push(done - first_poll);
        ours.total.push(done - spawned);
        let started = Instant::now();
        let warm = match deadline {
            Some(d) => {
                api.invoke_with_deadline(event.clone(), INVOKE_TIMEOUT, d)
                    .await
            }
            None => api.invoke(event.clone(), INVOKE_TIMEOUT).await,
        };
        match warm {
            Ok(Invocation::Response(v)) if deadline.is_none() => {
                assert_no_failures(&v, &process.log_text())?
            }
            Ok(Invocation::Response(_)) => {}
            other => bail!("warm run {run}: {other:?}"),
        }
        ours.warm.push(started.elapsed());
        let stats = process.stats();
        ours.rss_kib.extend(stats.peak_rss_kib);
        ours.cpu.extend(stats.cpu_time);
        process.kill();
        drop(process);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(ours)
}

/// Counts a first answer: no failed record, or every record refused as
/// not started before its deadline (a handler that reads the deadline
/// header as already past); anything else is an error.
fn r_check(answer: &Value, runs: &mut Runs, process: &FunctionProcess) -> anyhow::Result<()> {
    match answer["batchItemFailures"].as_array() {
        Some(f) if f.is_empty() => runs.complete += 1,
        Some(_) if process.log_text().contains("record not started") => runs.deadline_failed += 1,
        _ => bail!(
            "unexpected answer {answer}\nhandler log:\n{}",
            process.log_text()
        ),
    }
    Ok(())
}

fn find_cargo_lambda(given: Option<&str>, repo: &Path) -> Option<PathBuf> {
    match given {
        Some("none") => return None,
        Some(p) => return Some(PathBuf::from(p)),
        None => {}
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("cargo-lambda"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let venv = repo.join(".local/venv/bin/cargo-lambda");
        venv.is_file().then_some(venv)
    })
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// `cargo lambda watch --only-lambda-apis` on 127.0.0.1:`port`: the runtime
/// API under `/.rt`, invokes under `/2015-03-31/functions/_/invocations`.
struct Emulator {
    child: Child,
}

impl Emulator {
    async fn start(
        cargo_lambda: &Path,
        repo: &Path,
        port: u16,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let out = std::fs::File::create(log)?;
        let child = Command::new(cargo_lambda)
            .args(["lambda", "watch", "--only-lambda-apis", "--invoke-address"])
            .arg("127.0.0.1")
            .arg("--invoke-port")
            .arg(port.to_string())
            .arg("--manifest-path")
            .arg(repo.join("Cargo.toml"))
            .env("CARGO_NET_OFFLINE", "true")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("starting {}", cargo_lambda.display()))?;
        let mut emulator = Emulator { child };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(emulator);
            }
            if let Some(status) = emulator.child.try_wait()? {
                bail!(
                    "cargo lambda watch exited ({status}) before listening:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("cargo lambda watch did not listen on 127.0.0.1:{port} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn under_cargo_lambda(
    cargo_lambda: &Path,
    repo: &Path,
    binary: &Path,
    env: &[(String, String)],
    event: &Value,
    runs: usize,
) -> anyhow::Result<Runs> {
    let logs = std::env::temp_dir().join(format!("bench-cargo-lambda-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    let body = serde_json::to_vec(event)?;
    let mut r = Runs {
        deadline_header: Some(probe_deadline_header(cargo_lambda, repo, &logs).await?),
        ..Runs::default()
    };
    for run in 0..runs {
        // A fresh emulator per run, as a fresh Runtime API per run above.
        let port = free_port()?;
        let _emulator = Emulator::start(
            cargo_lambda,
            repo,
            port,
            &logs.join(format!("emulator-{run}.log")),
        )
        .await?;
        let address = format!("127.0.0.1:{port}");
        let path = "/2015-03-31/functions/_/invocations";
        let waiting = {
            let (address, body) = (address.clone(), body.clone());
            tokio::spawn(async move {
                let answer = http_post(&address, path, &body, INVOKE_TIMEOUT).await;
                (answer, Instant::now())
            })
        };
        // Give the emulator the invoke first, as the Runtime API above holds it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let process = FunctionProcess::spawn_external(
            binary,
            // A full URL: lambda_runtime parses a bare host:port/path as no URI.
            &format!("http://{address}/.rt"),
            "_",
            env,
            &logs.join(format!("function-{run}.log")),
        )?;
        let (answer, done) = waiting.await?;
        let (status, text) =
            answer.with_context(|| format!("run {run}: invoking through the emulator"))?;
        if status != 200 {
            bail!(
                "run {run}: the emulator answered {status}: {text}\nfunction log:\n{}",
                process.log_text()
            );
        }
        let answer: Value = serde_json::from_str(&text).context(text.clone())?;
        // cargo-lambda sends `lambda-runtime-deadline-ms: 600000` (a fixed
        // number): a handler reading it as an epoch time sees its deadline
        // as past and refuses every record. Such answers are counted apart.
        r_check(&answer, &mut r, &process)?;
        r.total.push(done - process.spawned_at());
        let started = Instant::now();
        let (status, text) = http_post(&address, path, &body, INVOKE_TIMEOUT).await?;
        if status != 200 {
            bail!("warm run {run}: the emulator answered {status}: {text}");
        }
        r.warm.push(started.elapsed());
        let stats = process.stats();
        r.rss_kib.extend(stats.peak_rss_kib);
        r.cpu.extend(stats.cpu_time);
        process.kill();
    }
    let _ = std::fs::remove_dir_all(&logs);
    Ok(r)
}

/// Plays the runtime once against a fresh emulator to see the headers it
/// hands a function with each event; returns `lambda-runtime-deadline-ms`.
async fn probe_deadline_header(
    cargo_lambda: &Path,
    repo: &Path,
    logs: &Path,
) -> anyhow::Result<String> {
    let port = free_port()?;
    let _emulator = Emulator::start(cargo_lambda, repo, port, &logs.join("probe.log")).await?;
    let address = format!("127.0.0.1:{port}");
    let invoke = {
        let address = address.clone();
        tokio::spawn(async move {
            http_request(
                "POST",
                &address,
                "/2015-03-31/functions/_/invocations",
                b"{}",
                INVOKE_TIMEOUT,
            )
            .await
        })
    };
    let (status, head, _) = http_request(
        "GET",
        &address,
        "/.rt/2018-06-01/runtime/invocation/next",
        b"",
        INVOKE_TIMEOUT,
    )
    .await?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let id = header("lambda-runtime-aws-request-id")
        .with_context(|| format!("no request id ({status})"))?;
    let deadline = header("lambda-runtime-deadline-ms").context("no deadline header")?;
    http_request(
        "POST",
        &address,
        &format!("/.rt/2018-06-01/runtime/invocation/{id}/response"),
        b"{}",
        INVOKE_TIMEOUT,
    )
    .await?;
    let _ = invoke.await;
    Ok(deadline)
}

/// A bare HTTP/1.1 POST; returns the status and the (de-chunked) body.
async fn http_post(
    address: &str,
    path: &str,
    body: &[u8],
    limit: Duration,
) -> anyhow::Result<(u16, String)> {
    let (status, _, body) = http_request("POST", address, path, body, limit).await?;
    Ok((status, body))
}

/// A bare HTTP/1.1 request; returns the status, the head and the (de-chunked) body.
async fn http_request(
    method: &str,
    address: &str,
    path: &str,
    body: &[u8],
    limit: Duration,
) -> anyhow::Result<(u16, String, String)> {
    tokio::time::timeout(limit, async {
        let mut stream = TcpStream::connect(address).await?;
        // One write, no Nagle: else the body waits for a delayed ACK (~40 ms).
        stream.set_nodelay(true)?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let mut request = head.into_bytes();
        request.extend_from_slice(body);
        stream.write_all(&request).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .context("no end of headers in the answer")?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no status in the answer")?;
        let chunked = head.lines().any(|l| {
            l.to_ascii_lowercase()
                .starts_with("transfer-encoding: chunked")
        });
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Ok((status, head.to_owned(), body))
    })
    .await
    .map_err(|_| anyhow::anyhow!("no answer within {limit:?}"))?
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
