//! Test support: the real `sidecar` binary on loopback, and a raw libp2p
//! Bitswap client that sends whatever bytes a test wants.
#![allow(dead_code)] // each test binary uses a different subset

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cid::Cid;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{Multiaddr, PeerId, Stream, StreamProtocol, noise, swarm::SwarmEvent, tcp, yamux};
use sidecar::{
    bitswap::{FrameDecoder, Response, decode_response},
    car::CarWriter,
};

/// Bound on every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running sidecar daemon; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub data_dir: PathBuf,
    pub http: String,
    pub peer_id: PeerId,
    pub tcp_addr: Multiaddr,
    pub ws_addr: Multiaddr,
}

pub fn sidecar_bin() -> &'static str {
    env!("CARGO_BIN_EXE_sidecar")
}

/// Runs `sidecar --data-dir <dir> <args>` to completion.
pub fn sidecar_cmd(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(sidecar_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("sidecar binary runs")
}

impl Daemon {
    /// Starts `sidecar run` on loopback with port 0 everywhere.
    pub fn start(data_dir: &Path, extra_env: &[(&str, &str)]) -> Daemon {
        let _ = std::fs::remove_file(data_dir.join("http.addr"));
        let mut cmd = Command::new(sidecar_bin());
        cmd.arg("--data-dir")
            .arg(data_dir)
            .arg("run")
            .env(
                "SIDECAR_P2P__LISTEN",
                "/ip4/127.0.0.1/tcp/0,/ip4/127.0.0.1/tcp/0/ws",
            )
            .env("SIDECAR_HTTP__LISTEN", "127.0.0.1:0")
            .env("SIDECAR_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sidecar");
        let deadline = Instant::now() + WAIT;
        let http = loop {
            if let Ok(s) = std::fs::read_to_string(data_dir.join("http.addr")) {
                break s.trim().to_string();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("sidecar exited during start-up: {status}");
            }
            assert!(Instant::now() < deadline, "sidecar did not write http.addr");
            std::thread::sleep(Duration::from_millis(50));
        };
        let health: serde_json::Value =
            serde_json::from_str(&http_get(&http, "/healthz")).expect("healthz is JSON");
        let peer_id: PeerId = health["peer_id"].as_str().unwrap().parse().unwrap();
        let addrs: Vec<Multiaddr> = health["listen_addrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().parse().unwrap())
            .collect();
        let is_ws = |a: &Multiaddr| {
            a.iter()
                .any(|p| matches!(p, libp2p::multiaddr::Protocol::Ws(_)))
        };
        let ws_addr = addrs
            .iter()
            .find(|a| is_ws(a))
            .cloned()
            .expect("a ws address");
        let tcp_addr = addrs
            .iter()
            .find(|a| !is_ws(a))
            .cloned()
            .expect("a tcp address");
        Daemon {
            child,
            data_dir: data_dir.to_path_buf(),
            http,
            peer_id,
            tcp_addr,
            ws_addr,
        }
    }

    /// The value of one metric line (`name{labels}` exactly as exported), 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        http_get(&self.http, "/metrics")
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0.0)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Daemon {
    /// SIGKILL: no shutdown code runs, as after a crash or power loss.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking HTTP/1.1 GET that must answer 200; returns the body.
pub fn http_get(addr: &str, path: &str) -> String {
    let r = http_request(addr, "GET", path, &[], b"");
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.text()
}

pub use sidecar::http::client::Response as HttpResponse;

/// The body of an HTTP response as JSON (panics with the text otherwise).
pub fn json(r: &HttpResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.text()))
}

/// A blocking HTTP/1.1 request to the daemon (`Connection: close`).
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    sidecar::http::client::request(addr, method, path, headers, body, WAIT)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Writes a CARv1 with `blocks` and returns its path.
pub fn write_car(dir: &Path, name: &str, blocks: &[(Cid, Vec<u8>)]) -> PathBuf {
    let path = dir.join(name);
    let file = std::fs::File::create(&path).unwrap();
    let mut w = CarWriter::v1(std::io::BufWriter::new(file), &[blocks[0].0]).unwrap();
    for (cid, data) in blocks {
        w.write_block(cid, data).unwrap();
    }
    w.finish().unwrap();
    path
}

/// A raw libp2p client: TCP, noise, yamux, and streams by protocol.
pub struct RawClient {
    pub control: libp2p_stream::Control,
    pub peer_id: PeerId,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawClient {
    pub async fn connect(addr: &Multiaddr) -> RawClient {
        Self::connect_as(libp2p::identity::Keypair::generate_ed25519(), addr).await
    }

    /// [`RawClient::connect`] with a given identity.
    pub async fn connect_as(key: libp2p::identity::Keypair, addr: &Multiaddr) -> RawClient {
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| libp2p_stream::Behaviour::new())
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let peer_id = *swarm.local_peer_id();
        let control = swarm.behaviour().new_control();
        swarm.dial(addr.clone()).unwrap();
        let connected = tokio::time::timeout(WAIT, async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::ConnectionEstablished { .. } => return,
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        panic!("dial failed: {error}")
                    }
                    _ => {}
                }
            }
        })
        .await;
        assert!(connected.is_ok(), "dial timed out");
        let task = tokio::spawn(async move {
            loop {
                swarm.select_next_some().await;
            }
        });
        RawClient {
            control,
            peer_id,
            task,
        }
    }

    /// Accepts the server's reply streams for `protocol`.
    pub fn accept(&self, protocol: &'static str) -> Replies {
        Replies::new(
            self.control
                .clone()
                .accept(StreamProtocol::new(protocol))
                .expect("protocol not yet accepted"),
        )
    }

    pub async fn open(&self, peer: PeerId, protocol: &'static str) -> Stream {
        tokio::time::timeout(
            WAIT,
            self.control
                .clone()
                .open_stream(peer, StreamProtocol::new(protocol)),
        )
        .await
        .expect("open stream timed out")
        .expect("open stream")
    }
}

/// Writes raw bytes to a stream.
pub async fn send_raw(stream: &mut Stream, bytes: &[u8]) {
    stream.write_all(bytes).await.unwrap();
    stream.flush().await.unwrap();
}

/// Every response the server sends on its reply streams for one protocol,
/// read in the background for as long as this lives.
pub struct Replies {
    rx: tokio::sync::mpsc::Receiver<Response>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Replies {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Replies {
    pub fn new(mut incoming: libp2p_stream::IncomingStreams) -> Replies {
        let (tx, rx) = tokio::sync::mpsc::channel::<Response>(256);
        let task = tokio::spawn(async move {
            while let Some((_, stream)) = incoming.next().await {
                tokio::spawn(read_responses(stream, tx.clone()));
            }
        });
        Replies { rx, task }
    }

    /// Collects responses until `done` holds for the ones collected by this
    /// call, or `within` passes.
    pub async fn collect(
        &mut self,
        within: Duration,
        done: impl Fn(&[Response]) -> bool,
    ) -> Vec<Response> {
        let deadline = tokio::time::Instant::now() + within;
        let mut got = Vec::new();
        while !done(&got) {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(r)) => got.push(r),
                _ => break,
            }
        }
        got
    }
}

async fn read_responses(mut stream: Stream, tx: tokio::sync::mpsc::Sender<Response>) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok(n) = stream.read(&mut buf).await else {
            return;
        };
        if n == 0 {
            return;
        }
        let mut input = &buf[..n];
        while let Ok(Some(frame)) = decoder.decode(&mut input) {
            let r = decode_response(frame).expect("server sent a decodable response");
            if tx.send(r).await.is_err() {
                return;
            }
        }
    }
}

/// True once the stream has been closed or reset by the other side.
pub async fn closed_by_peer(stream: &mut Stream) -> bool {
    let mut buf = [0u8; 16];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}
