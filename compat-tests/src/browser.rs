//! Headless Chromium (Debian's `chromium` package, installed by `scripts/setup.sh`) as a real
//! browser client, and a tiny loopback page server for it.
//!
//! [`PageServer`] serves one HTML page at `/` and records every other request the page makes
//! to it (`fetch('/report?…', {method: 'POST', body})`), so a test learns what the page saw
//! without scraping the browser: the page reports, the test reads [`PageServer::reports`].
//! [`Chromium::open`] runs `chromium --headless=new` on a URL until dropped. Nothing here
//! leaves 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tempfile::TempDir;

use crate::process::{self, Daemon};

/// Longest request body the page server keeps.
const MAX_REPORT: usize = 1 << 20;

/// One request the page made: path (with query) and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub path: String,
    pub body: String,
}

/// Serves `page` at `/`, records everything else; stops with the process (threads are
/// detached; the listener lives as long as the value).
pub struct PageServer {
    addr: SocketAddr,
    reports: Arc<Mutex<Vec<Report>>>,
}

impl PageServer {
    pub fn start(page: String) -> Result<PageServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let reports = Arc::new(Mutex::new(Vec::new()));
        let page = Arc::new(page);
        let log = reports.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (page, log) = (page.clone(), log.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &page, &log);
                });
            }
        });
        Ok(PageServer { addr, reports })
    }

    /// `http://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Requests the page made so far.
    pub fn reports(&self) -> Vec<Report> {
        self.reports.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Waits until a report whose path starts with `prefix` arrived; returns it.
    pub fn wait_report(&self, prefix: &str, timeout: Duration) -> Result<Report> {
        process::wait_for(&format!("the page to report {prefix}"), timeout, || {
            Ok(self
                .reports()
                .into_iter()
                .find(|r| r.path.starts_with(prefix)))
        })
    }
}

fn serve(stream: std::net::TcpStream, page: &str, log: &Mutex<Vec<Report>>) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("/").to_owned(),
    );
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; length.min(MAX_REPORT)];
    reader.read_exact(&mut body)?;
    let mut out = stream;
    if method == "GET" && path == "/" {
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
            page.len()
        )?;
    } else {
        if let Ok(mut l) = log.lock() {
            l.push(Report {
                path,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        write!(out, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")?;
    }
    Ok(())
}

/// The `chromium` binary.
pub fn chromium_bin() -> Result<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!(
                "chromium not found: run compat-tests/scripts/setup.sh (installs Debian's chromium)"
            )
        })
}

/// A headless Chromium showing one URL; killed (process group and all) on drop.
pub struct Chromium {
    _daemon: Daemon,
    _profile: TempDir,
}

impl Chromium {
    pub fn open(url: &str) -> Result<Chromium> {
        let profile = tempfile::Builder::new().prefix("chromium-").tempdir()?;
        let mut cmd = Command::new(chromium_bin()?);
        cmd.args([
            "--headless=new",
            // Root in CI: the setuid sandbox is unavailable.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url);
        let daemon = Daemon::spawn("chromium", cmd, profile.path()).context("starting chromium")?;
        Ok(Chromium {
            _daemon: daemon,
            _profile: profile,
        })
    }
}
