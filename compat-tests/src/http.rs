//! A deliberately tiny blocking HTTP/1.1 client over `std::net::TcpStream`.
//!
//! The harness only talks to processes on 127.0.0.1 (Kubo's RPC API, the sidecar's
//! `/healthz` and `/metrics`), one request per connection (`Connection: close`), so it
//! needs no pooling, TLS or redirects. It understands `Content-Length`, read-to-EOF and
//! `Transfer-Encoding: chunked` bodies including trailers, because Kubo streams large
//! outputs chunked and reports late errors in an `X-Stream-Error` trailer.
//!
//! Keeping this in-tree avoids adding an HTTP client crate (and churn in the shared
//! `Cargo.lock`) for a test harness.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

/// A fully read HTTP response.
#[derive(Debug)]
pub struct Response {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The (de-chunked) body.
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body, names lower-cased.
    pub trailers: Vec<(String, String)>,
}

impl Response {
    /// The first header (or trailer) named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .chain(self.trailers.iter())
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as lossy UTF-8, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to `addr` (`host:port`) and reads the whole response. `timeout` bounds
/// the connect and every single read or write (not the total).
pub fn request(
    method: &str,
    addr: &str,
    path_and_query: &str,
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> Result<Response> {
    request_with_headers(method, addr, path_and_query, &[], body, timeout)
}

/// [`request`] with extra request headers (`name`, `value`).
pub fn request_with_headers(
    method: &str,
    addr: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> Result<Response> {
    let sock = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .ok_or_else(|| anyhow!("{addr} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut head = format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: sidecar-compat-tests\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let payload = match body {
        Some((content_type, bytes)) => {
            head.push_str(&format!("Content-Type: {content_type}\r\n"));
            bytes
        }
        None => &[][..],
    };
    head.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(payload)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).with_context(|| {
        format!("reading the response to {method} http://{addr}{path_and_query}")
    })?;
    parse_response(&raw)
        .with_context(|| format!("parsing the response to {method} {path_and_query}"))
}

/// Shorthand for a GET with no body.
pub fn get(addr: &str, path: &str, timeout: Duration) -> Result<Response> {
    request("GET", addr, path, None, timeout)
}

fn parse_response(raw: &[u8]) -> Result<Response> {
    let end = find(raw, b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..end]).context("non-UTF-8 response head")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let headers = parse_fields(lines)?;
    let rest = &raw[end + 4..];
    let find_header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (body, trailers) =
        if find_header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            dechunk(rest)?
        } else if let Some(len) = find_header("content-length") {
            let len: usize = len.parse().context("bad Content-Length")?;
            if rest.len() < len {
                bail!("body cut short: {} of {len} bytes", rest.len());
            }
            (rest[..len].to_vec(), Vec::new())
        } else {
            (rest.to_vec(), Vec::new())
        };
    Ok(Response {
        status,
        headers,
        body,
        trailers,
    })
}

fn parse_fields<'a>(lines: impl Iterator<Item = &'a str>) -> Result<Vec<(String, String)>> {
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .ok_or_else(|| anyhow!("bad header line {l:?}"))?;
            Ok((k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect()
}

type Fields = Vec<(String, String)>;

fn dechunk(mut rest: &[u8]) -> Result<(Vec<u8>, Fields)> {
    let mut body = Vec::new();
    loop {
        let eol = find(rest, b"\r\n")
            .ok_or_else(|| anyhow!("chunked body cut short (no chunk size line)"))?;
        let size_line = std::str::from_utf8(&rest[..eol]).context("bad chunk size line")?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .with_context(|| format!("bad chunk size {size_hex:?}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            let text = String::from_utf8_lossy(rest);
            let trailers = parse_fields(text.split("\r\n"))?;
            return Ok((body, trailers));
        }
        if rest.len() < size + 2 {
            bail!("chunked body cut short inside a {size}-byte chunk");
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Percent-encodes a query value (everything except RFC 3986 unreserved characters).
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chunked_body_with_trailer() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Stream-Error\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nX-Stream-Error: boom\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"abcde");
        assert_eq!(r.header("x-stream-error"), Some("boom"));
    }

    #[test]
    fn parses_content_length_body() {
        let raw = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\nnope";
        let r = parse_response(raw).unwrap();
        assert_eq!((r.status, r.text().as_str()), (500, "nope"));
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode_query_value("/ipfs/bafy x"), "%2Fipfs%2Fbafy%20x");
    }
}
