//! The RFC 8484 DNS-over-HTTPS relay ([`DohRelay`]): a small blocking HTTP/1.1 server on
//! 127.0.0.1 that forwards each query to one upstream DNS server over UDP, retrying over
//! TCP when the answer is truncated, and counts what it relayed.
//!
//! Called by tests (through the parent `dns` module's re-exports) that need a DoH endpoint
//! in front of a [`DnsServer`](super::DnsServer). It must never listen beyond loopback,
//! hold more than [`MAX_RELAY_CONNECTIONS`] connections or an unbounded head or body, or
//! block on the upstream without [`UPSTREAM_TIMEOUT`]; DNS parsing lives in `dns::wire`.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::wire::{Header, question_end};

/// Largest request body (a DNS message cannot exceed 65535 bytes).
pub const MAX_RELAY_BODY: usize = 64 * 1024;
/// Largest request head (request line plus headers); beyond it the answer is 431.
pub const MAX_RELAY_HEAD: usize = 8 * 1024;
/// Connections served at once; one more gets 503 and is closed.
pub const MAX_RELAY_CONNECTIONS: usize = 64;
/// Idle time after which a kept-alive connection is closed; also bounds every write.
pub const RELAY_IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait for one UDP answer from the upstream; there are [`UPSTREAM_UDP_TRIES`] tries.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// UDP sends per query before the relay gives up with 502.
pub const UPSTREAM_UDP_TRIES: usize = 2;
/// The RFC 8484 media type.
pub const DNS_MESSAGE: &str = "application/dns-message";
/// The one path the relay serves.
pub const DOH_PATH: &str = "/dns-query";

/// Counters and the stop flag shared by the accept loop and the connection threads.
#[derive(Default)]
struct RelayState {
    stop: AtomicBool,
    requests: AtomicU64,
    rejected: AtomicU64,
    tcp_retries: AtomicU64,
    open: AtomicUsize,
}

/// An RFC 8484 DoH endpoint on 127.0.0.1 relaying to one upstream DNS server.
///
/// Dropping it stops accepting at once; connections already open end at their next
/// request or after [`RELAY_IO_TIMEOUT`] idle.
pub struct DohRelay {
    addr: SocketAddr,
    state: Arc<RelayState>,
    accept: Option<JoinHandle<()>>,
}

impl DohRelay {
    /// Binds 127.0.0.1:0 and starts relaying to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<DohRelay> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the relay")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(RelayState::default());
        let accept_state = Arc::clone(&state);
        let accept = std::thread::Builder::new()
            .name("doh-accept".into())
            .spawn(move || accept_loop(&listener, &accept_state, upstream))
            .context("spawning the relay's accept thread")?;
        Ok(DohRelay {
            addr,
            state,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:<port>/dns-query`.
    pub fn url(&self) -> String {
        format!("http://{}{DOH_PATH}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries relayed and answered with 200.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Requests answered with an error status.
    pub fn rejected(&self) -> u64 {
        self.state.rejected.load(Ordering::Relaxed)
    }

    /// Queries whose UDP answer was truncated and that were asked again over TCP.
    pub fn tcp_retries(&self) -> u64 {
        self.state.tcp_retries.load(Ordering::Relaxed)
    }
}

impl Drop for DohRelay {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<RelayState>, upstream: SocketAddr) {
    for stream in listener.incoming() {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        if state.open.fetch_add(1, Ordering::SeqCst) >= MAX_RELAY_CONNECTIONS {
            state.open.fetch_sub(1, Ordering::SeqCst);
            state.rejected.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_write_timeout(Some(RELAY_IO_TIMEOUT));
            let _ = write_response(
                &mut stream,
                &Reply::error(503, "too many connections"),
                false,
            );
            continue;
        }
        let conn_state = Arc::clone(state);
        let spawned = std::thread::Builder::new()
            .name("doh-conn".into())
            .spawn(move || {
                serve_connection(stream, &conn_state, upstream);
                conn_state.open.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            state.open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// One HTTP response: status, content type, body.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn error(status: u16, why: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{why}\n").into_bytes(),
        }
    }
}

/// A parsed request head.
struct Request {
    method: String,
    target: String,
    content_type: Option<String>,
    content_length: Option<usize>,
    chunked: bool,
    keep_alive: bool,
}

/// Serves requests on `stream` until the client closes, an error, or the relay stops.
fn serve_connection(mut stream: TcpStream, state: &RelayState, upstream: SocketAddr) {
    if stream.set_read_timeout(Some(RELAY_IO_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(RELAY_IO_TIMEOUT)).is_err()
    {
        return;
    }
    let mut buf = Vec::new();
    while !state.stop.load(Ordering::SeqCst) {
        let head_len = match read_head(&mut stream, &mut buf) {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(reply) => {
                state.rejected.fetch_add(1, Ordering::Relaxed);
                let _ = write_response(&mut stream, &reply, false);
                return;
            }
        };
        let parsed = parse_head(&buf[..head_len]);
        buf.drain(..head_len);
        let (reply, keep_alive) = match parsed {
            Err(reply) => (reply, false),
            Ok(req) => match read_body(&mut stream, &mut buf, &req) {
                Err(reply) => (reply, false),
                Ok(body) => (handle(&req, &body, state, upstream), req.keep_alive),
            },
        };
        let counter = if reply.status == 200 {
            &state.requests
        } else {
            &state.rejected
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if write_response(&mut stream, &reply, keep_alive).is_err() || !keep_alive {
            return;
        }
    }
}

/// Reads until `buf` holds a whole head; returns its length including the blank line, or
/// `None` on a clean close before any byte of a new request.
fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::result::Result<Option<usize>, Reply> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(i + 4));
        }
        if buf.len() > MAX_RELAY_HEAD {
            return Err(Reply::error(431, "request head too large"));
        }
        let mut chunk = [0; 4096];
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(Reply::error(400, "connection closed mid-request")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Idle timeout or reset: nothing useful to answer.
            Err(_) => return Ok(None),
        }
    }
}

fn parse_head(head: &[u8]) -> std::result::Result<Request, Reply> {
    let text = std::str::from_utf8(head).map_err(|_| Reply::error(400, "head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reply::error(400, "malformed request line"));
    };
    let mut keep_alive = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(Reply::error(400, "unsupported HTTP version")),
    };
    let mut req = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        content_type: None,
        content_length: None,
        chunked: false,
        keep_alive,
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| Reply::error(400, "malformed header line"))?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => req.content_type = Some(value.to_ascii_lowercase()),
            "content-length" => {
                let len = value
                    .parse()
                    .map_err(|_| Reply::error(400, "bad Content-Length"))?;
                req.content_length = Some(len);
            }
            "transfer-encoding" => req.chunked = true,
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                } else if v.contains("keep-alive") {
                    keep_alive = true;
                }
            }
            _ => {}
        }
    }
    req.keep_alive = keep_alive;
    Ok(req)
}

/// The request body (`Content-Length` bytes, some maybe already in `buf`), bounded.
fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    req: &Request,
) -> std::result::Result<Vec<u8>, Reply> {
    if req.chunked {
        return Err(Reply::error(
            411,
            "chunked bodies are not supported; send Content-Length",
        ));
    }
    let len = req.content_length.unwrap_or(0);
    if len > MAX_RELAY_BODY {
        return Err(Reply::error(413, "body too large"));
    }
    while buf.len() < len {
        let mut chunk = [0; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return Err(Reply::error(400, "body shorter than Content-Length")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(Reply::error(400, "body read failed")),
        }
    }
    Ok(buf.drain(..len).collect())
}

/// Routes one request: the only place that turns relay outcomes into statuses.
fn handle(req: &Request, body: &[u8], state: &RelayState, upstream: SocketAddr) -> Reply {
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    if path != DOH_PATH {
        return Reply::error(404, "not found; the endpoint is /dns-query");
    }
    let message = match req.method.as_str() {
        "POST" => {
            let ctype = req.content_type.as_deref().unwrap_or_default();
            if ctype.split(';').next().map(str::trim) != Some(DNS_MESSAGE) {
                return Reply::error(415, "Content-Type must be application/dns-message");
            }
            body.to_vec()
        }
        "GET" => {
            let Some(b64) = query.split('&').find_map(|kv| kv.strip_prefix("dns=")) else {
                return Reply::error(400, "missing dns= parameter");
            };
            match URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')) {
                Ok(m) => m,
                Err(_) => return Reply::error(400, "dns= is not base64url"),
            }
        }
        _ => return Reply::error(405, "only GET and POST"),
    };
    let plausible = Header::parse(&message).is_some_and(|h| !h.is_response() && h.qdcount == 1)
        && question_end(&message).is_some();
    if !plausible {
        return Reply::error(400, "not a DNS query with one question");
    }
    match relay(&message, upstream, state) {
        Ok(answer) => Reply {
            status: 200,
            content_type: DNS_MESSAGE,
            body: answer,
        },
        Err(e) => Reply::error(502, &format!("upstream {upstream}: {e:#}")),
    }
}

/// Asks `upstream` over UDP ([`UPSTREAM_UDP_TRIES`] sends), and over TCP if the answer
/// is truncated.
fn relay(query: &[u8], upstream: SocketAddr, state: &RelayState) -> Result<Vec<u8>> {
    let id = Header::parse(query).map(|h| h.id).unwrap_or_default();
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    sock.connect(upstream)?;
    sock.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    let mut buf = vec![0; 65_535];
    for _ in 0..UPSTREAM_UDP_TRIES {
        sock.send(query)?;
        let deadline = Instant::now() + UPSTREAM_TIMEOUT;
        while Instant::now() < deadline {
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => return Err(e.into()),
            };
            let Some(h) = Header::parse(&buf[..n]) else {
                continue;
            };
            if h.id != id || !h.is_response() {
                continue;
            }
            if !h.truncated() {
                return Ok(buf[..n].to_vec());
            }
            state.tcp_retries.fetch_add(1, Ordering::Relaxed);
            return relay_tcp(query, upstream);
        }
    }
    bail!("no UDP answer after {UPSTREAM_UDP_TRIES} tries of {UPSTREAM_TIMEOUT:?}")
}

/// One query over TCP (two-byte length prefix, RFC 1035 §4.2.2).
fn relay_tcp(query: &[u8], upstream: SocketAddr) -> Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&upstream, UPSTREAM_TIMEOUT)?;
    stream.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    stream.set_write_timeout(Some(UPSTREAM_TIMEOUT))?;
    let len = u16::try_from(query.len()).context("query longer than 65535 bytes")?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed)?;
    let mut len = [0; 2];
    stream.read_exact(&mut len)?;
    let mut answer = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer)?;
    Ok(answer)
}

fn write_response(stream: &mut TcpStream, reply: &Reply, keep_alive: bool) -> std::io::Result<()> {
    let reason = match reply.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        reply.status,
        reply.content_type,
        reply.body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(&reply.body);
    stream.write_all(&out)?;
    stream.flush()
}
