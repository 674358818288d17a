//! A loopback TCP proxy that adds a fixed delay to everything passing
//! through it, in both directions: DynamoDB Local with a network's latency.
//!
//! Each chunk read from one side is written to the other side `one_way`
//! after it arrived, in order, so a request/response round trip takes
//! `2 × one_way` longer, whatever the sizes, and pipelined or concurrent
//! connections are each delayed independently (one pair of tasks per
//! connection and direction). Listens on 127.0.0.1 only; stops with the
//! value (every task is aborted on drop).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub struct DelayProxy {
    address: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards each connection to
    /// `upstream` (which must be a loopback address), `round_trip / 2` each way.
    pub async fn start(upstream: SocketAddr, round_trip: Duration) -> anyhow::Result<DelayProxy> {
        anyhow::ensure!(
            upstream.ip().is_loopback(),
            "the delay proxy only forwards to loopback, not {upstream}"
        );
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let one_way = round_trip / 2;
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let registry = Arc::clone(&tasks);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let mut held = registry.lock().expect("unpoisoned");
                held.retain(|t| !t.is_finished());
                held.extend(pump(client_read, server_write, one_way));
                held.extend(pump(server_read, client_write, one_way));
            }
        });
        tasks.lock().expect("unpoisoned").push(accept);
        Ok(DelayProxy { address, tasks })
    }

    /// `http://127.0.0.1:PORT`, for an `AWS_ENDPOINT_URL_*`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        for task in self.tasks.lock().expect("unpoisoned").drain(..) {
            task.abort();
        }
    }
}

/// One direction: a reader stamping each chunk with its release time, and a
/// writer sending it then. The writer closes its side when the reader ends.
fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) -> [JoinHandle<()>; 2] {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    [reader, writer]
}

/// The host:port of an `http://` endpoint URL.
pub fn socket_of(endpoint: &str) -> anyhow::Result<SocketAddr> {
    use anyhow::Context as _;
    let rest = endpoint
        .strip_prefix("http://")
        .with_context(|| format!("{endpoint:?} is not an http:// URL"))?;
    let host_port = rest.split('/').next().unwrap_or(rest);
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port
        .parse()
        .with_context(|| format!("{endpoint:?}: not an IP address and port"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn echoes_through_with_the_delay_each_way() {
        let upstream = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let upstream_addr = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let proxy = DelayProxy::start(upstream_addr, Duration::from_millis(200))
            .await
            .unwrap();
        let mut c = TcpStream::connect(socket_of(&proxy.endpoint()).unwrap())
            .await
            .unwrap();
        let started = std::time::Instant::now();
        c.write_all(b"ping").await.unwrap();
        let mut back = [0u8; 4];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"ping");
        // At least the added round trip; an upper bound would test the machine.
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn endpoints_name_their_socket() {
        assert_eq!(
            socket_of("http://127.0.0.1:8000").unwrap(),
            "127.0.0.1:8000".parse().unwrap()
        );
        assert_eq!(
            socket_of("http://localhost:9/").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert!(socket_of("https://example.com").is_err());
    }
}
