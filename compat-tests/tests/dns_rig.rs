//! The DNS rig ([`compat_tests::dns`]) works on this machine: a real `knotd` serves a test
//! zone on loopback, takes TSIG-signed dynamic updates and refuses others, and the DoH
//! relay answers RFC 8484 POST and GET queries with what `knotd` holds.
//!
//! One test, in order (one server for all steps):
//!
//! 1. `knotd` starts seeded with a `_dnsaddr` TXT record, and `kdig` finds it;
//! 2. [`DnsServer::set_txt`] with the server's key replaces it; updates signed with a wrong
//!    secret or an unknown key name, and an unsigned one, fail with the rcode in the error
//!    and change nothing;
//! 3. a 255-byte value is one character-string, a 300-byte value two (255 + 45) in one RR,
//!    whether [`DnsServer::set_txt`] or Knot's own parser splits it; `kdig` shows both;
//! 4. through [`DohRelay`]: POST and GET return 200 `application/dns-message` with the
//!    record, `requests()` counts both, a garbage POST gets 400, a wrong content type 415,
//!    a wrong path 404; an answer too big for UDP comes back whole via the TCP retry; two
//!    queries share one kept-alive connection.
//!
//! Timings go to stderr (`cargo test -p compat-tests --test dns_rig -- --nocapture`).
//! Prerequisite: `compat-tests/scripts/setup.sh` (Debian packages knot, knot-dnsutils).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use compat_tests::dns::{
    self, DNS_MESSAGE, DnsServer, DohRelay, Header, TYPE_TXT, Tsig, answer_txt, encode_query,
};
use compat_tests::http;

const ZONE: &str = "sidecar.test";
const NAME: &str = "_dnsaddr.a";
const PEER: &str = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Queries timed through the relay for the latency figure.
const LATENCY_ROUNDS: u32 = 50;

fn dnsaddr(port: u16) -> String {
    format!("dnsaddr=/ip4/127.0.0.1/tcp/{port}/p2p/{PEER}")
}

/// Runs `f`, printing how long it took under `what`.
fn timed<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let result = f();
    eprintln!("[dns_rig] {what}: {:?}", started.elapsed());
    result
}

/// POSTs `query` to the relay and returns the response.
fn post(relay: &DohRelay, ctype: &str, body: &[u8]) -> Result<http::Response> {
    http::request(
        "POST",
        &relay.addr().to_string(),
        dns::DOH_PATH,
        Some((ctype, body)),
        HTTP_TIMEOUT,
    )
}

/// Asserts a 200 `application/dns-message` answer to `query` and returns its TXT records.
fn txt_of(resp: &http::Response, query: &[u8]) -> Result<Vec<Vec<Vec<u8>>>> {
    ensure!(
        resp.status == 200,
        "status {}: {}",
        resp.status,
        resp.text()
    );
    ensure!(
        resp.header("content-type") == Some(DNS_MESSAGE),
        "content type {:?}",
        resp.header("content-type")
    );
    let h = Header::parse(&resp.body).ok_or_else(|| anyhow!("answer shorter than a header"))?;
    let q = Header::parse(query).ok_or_else(|| anyhow!("query shorter than a header"))?;
    ensure!(
        h.id == q.id && h.is_response(),
        "not the answer to the query: {h:?}"
    );
    ensure!(
        h.rcode() == 0 && h.authoritative(),
        "rcode {} / AA {}",
        h.rcode(),
        h.authoritative()
    );
    answer_txt(&resp.body)
}

#[test]
fn knotd_serves_updates_and_the_relay_answers_doh() -> Result<()> {
    // 1. Seeded record.
    let first = dnsaddr(4001);
    let record = format!("\"{first}\"");
    let server = timed("knotd start (until SOA answers)", || {
        DnsServer::start_with(ZONE, &[(NAME, 1, "TXT", &record)])
    })?;
    let fqdn = server.fqdn(NAME);
    assert_eq!(server.zone(), "sidecar.test.");
    assert_eq!(fqdn, "_dnsaddr.a.sidecar.test.");
    let shown = timed("kdig +short TXT", || server.kdig(&["+short", "TXT", &fqdn]))?;
    assert_eq!(shown.trim(), record, "{}", server.logs_tail());
    assert_eq!(server.txt(NAME)?, [first.as_str()]);
    assert_eq!(server.txt("missing")?, Vec::<String>::new());

    // 2. Signed update; wrong secret, unknown key, unsigned.
    let second = dnsaddr(4002);
    let third = dnsaddr(4003);
    timed("set_txt (knsupdate)", || {
        server.set_txt(NAME, &[&second, &third])
    })?;
    assert_eq!(server.txt(NAME)?, [second.clone(), third.clone()]);

    let attempt = format!("update delete {fqdn} TXT\nupdate add {fqdn} 1 TXT \"evil\"\n");
    let wrong_secret = "c2VjcmV0LWJ1dC1ub3QtdGhlLXJpZ2h0LW9uZS0zMmI=";
    let refusals = [
        (
            "wrong secret",
            Some(Tsig {
                secret_b64: wrong_secret,
                ..server.tsig()
            }),
            "BADSIG",
        ),
        (
            "unknown key",
            Some(Tsig {
                name: "intruder",
                ..server.tsig()
            }),
            "BADKEY",
        ),
        ("unsigned", None, "NOTAUTH"),
    ];
    for (what, key, rcode) in refusals {
        let err = match server.nsupdate(&attempt, key) {
            Ok(out) => panic!("{what} update succeeded: {out}"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains(rcode), "{what}: expected {rcode} in:\n{err}");
        eprintln!("[dns_rig] {what} update refused with {rcode}");
    }
    assert_eq!(server.txt(NAME)?, [second.clone(), third.clone()]);

    // 3. 255 bytes and more.
    let v255 = "a".repeat(255);
    let v300 = format!("{}{}", "b".repeat(255), "c".repeat(45));
    server.set_txt("x255", &[&v255])?;
    server.set_txt("x300", &[&v300])?;
    // Knot's parser splits one over-long quoted string the same way.
    let raw = server.fqdn("raw300");
    server.nsupdate(
        &format!("update add {raw} 1 TXT \"{v300}\"\n"),
        Some(server.tsig()),
    )?;
    for name in ["x255", "x300", "raw300"] {
        let shown = server.kdig(&["+short", "TXT", &server.fqdn(name)])?;
        let lens: Vec<usize> = dns::parse_presentation_strings(shown.trim())?
            .iter()
            .map(Vec::len)
            .collect();
        eprintln!("[dns_rig] kdig +short TXT {name}: character-string lengths {lens:?}");
        let want: &[usize] = if name == "x255" { &[255] } else { &[255, 45] };
        assert_eq!(lens, want, "{name}: {shown}");
    }
    let shown = server.kdig(&["+short", "TXT", &server.fqdn("x300")])?;
    assert_eq!(
        shown.trim(),
        format!("\"{}\" \"{}\"", "b".repeat(255), "c".repeat(45))
    );
    assert_eq!(server.txt("x300")?, [v300.as_str()]);
    assert_eq!(server.txt("raw300")?, [v300.as_str()]);

    // 4. The DoH relay.
    let relay = DohRelay::start(server.addr())?;
    assert!(relay.url().starts_with("http://127.0.0.1:") && relay.url().ends_with("/dns-query"));
    let before = relay.requests();
    let query = encode_query(0xbeef, &fqdn, TYPE_TXT)?;
    let resp = timed("DoH POST", || post(&relay, DNS_MESSAGE, &query))?;
    let mut got = txt_of(&resp, &query)?;
    got.sort();
    assert_eq!(
        got,
        [
            vec![second.clone().into_bytes()],
            vec![third.clone().into_bytes()]
        ]
    );

    let query = encode_query(0, &server.fqdn("x300"), TYPE_TXT)?;
    let target = format!("{}?dns={}", dns::DOH_PATH, URL_SAFE_NO_PAD.encode(&query));
    let resp = timed("DoH GET", || {
        http::request(
            "GET",
            &relay.addr().to_string(),
            &target,
            None,
            HTTP_TIMEOUT,
        )
    })?;
    let got = txt_of(&resp, &query)?;
    assert_eq!(got, [vec![b"b".repeat(255), b"c".repeat(45)]]);
    assert!(
        resp.body
            .windows(45)
            .any(|w| w == "c".repeat(45).as_bytes())
    );
    assert_eq!(relay.requests(), before + 2);

    let rejected = relay.rejected();
    let garbage = post(&relay, DNS_MESSAGE, b"definitely not a DNS message")?;
    assert_eq!(garbage.status, 400, "{}", garbage.text());
    let wrong_type = post(&relay, "text/plain", &query)?;
    assert_eq!(wrong_type.status, 415, "{}", wrong_type.text());
    let wrong_path = http::request("GET", &relay.addr().to_string(), "/", None, HTTP_TIMEOUT)?;
    assert_eq!(wrong_path.status, 404, "{}", wrong_path.text());
    assert_eq!(relay.requests(), before + 2);
    assert_eq!(relay.rejected(), rejected + 3);

    // Four 300-byte records do not fit a 512-byte UDP answer: the relay retries over TCP.
    let big: Vec<String> = (0..4).map(|i| format!("{i}{}", "z".repeat(299))).collect();
    server.set_txt("big", &big.iter().map(String::as_str).collect::<Vec<_>>())?;
    let query = encode_query(7, &server.fqdn("big"), TYPE_TXT)?;
    let resp = post(&relay, DNS_MESSAGE, &query)?;
    let got: Vec<Vec<u8>> = txt_of(&resp, &query)?
        .into_iter()
        .map(|r| r.concat())
        .collect();
    assert_eq!(got.len(), 4, "records: {got:?}");
    assert!(big.iter().all(|v| got.contains(&v.clone().into_bytes())));
    assert_eq!(relay.tcp_retries(), 1);

    // Keep-alive: several queries on one connection, timed for the latency figure.
    let query = encode_query(9, &fqdn, TYPE_TXT)?;
    let started = Instant::now();
    keep_alive_round_trips(&relay, &query, LATENCY_ROUNDS)?;
    eprintln!(
        "[dns_rig] DoH POST over one kept-alive connection: {:?} per query ({LATENCY_ROUNDS} rounds)",
        started.elapsed() / LATENCY_ROUNDS
    );
    assert_eq!(relay.requests(), before + 3 + u64::from(LATENCY_ROUNDS));

    drop(relay);
    timed("knotd stop (drop)", || {
        drop(server);
        Ok(())
    })
}

/// Sends `rounds` POSTs of `query` on one connection, checking each answer's status.
fn keep_alive_round_trips(relay: &DohRelay, query: &[u8], rounds: u32) -> Result<()> {
    let mut stream = TcpStream::connect(relay.addr())?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    let mut pending = Vec::new();
    for round in 0..rounds {
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {DNS_MESSAGE}\r\n\
             Content-Length: {}\r\n\r\n",
            dns::DOH_PATH,
            relay.addr(),
            query.len()
        );
        stream.write_all(&[head.as_bytes(), query].concat())?;
        // Read one response: head, then Content-Length bytes.
        let head_end = loop {
            if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0; 4096];
            let n = stream
                .read(&mut chunk)
                .context("reading a kept-alive response")?;
            ensure!(n > 0, "relay closed the connection after {round} responses");
            pending.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
        ensure!(head.starts_with("http/1.1 200 "), "round {round}: {head}");
        ensure!(
            head.contains("connection: keep-alive"),
            "round {round}: {head}"
        );
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .ok_or_else(|| anyhow!("no content-length: {head}"))?
            .trim()
            .parse()?;
        while pending.len() < head_end + len {
            let mut chunk = [0; 4096];
            let n = stream.read(&mut chunk)?;
            ensure!(n > 0, "relay closed mid-body");
            pending.extend_from_slice(&chunk[..n]);
        }
        ensure!(answer_txt(&pending[head_end..head_end + len])?.len() == 2);
        pending.drain(..head_end + len);
    }
    Ok(())
}
