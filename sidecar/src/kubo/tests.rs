//! The client against a canned HTTP/1.1 server on `127.0.0.1:0`: what it
//! sends, and how each kind of answer maps to a result. The answers'
//! bodies are real Kubo 0.43.0 answers; the real Kubo is driven by
//! `compat-tests/tests/kubo_rpc.rs`.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// Kubo's 500 for a name nobody published.
const NOT_FOUND: &str = r#"{"Message":"routing: not found","Code":0,"Type":"error"}"#;
/// Kubo's 403 body.
const DENIED: &str = "Kubo RPC Access Denied: Please provide a valid authorization token as defined in the API.Authorizations configuration.\n";

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A full HTTP/1.1 answer with `status` and a `Content-Length` body.
fn answer(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A chunked 200 answer with `body` and, if given, Kubo's late-error trailer.
fn chunked(body: &str, stream_error: Option<&str>) -> Vec<u8> {
    let mut out = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntrailer: X-Stream-Error\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_string();
    if !body.is_empty() {
        out.push_str(&format!("{:x}\r\n{body}\r\n", body.len()));
    }
    out.push_str("0\r\n");
    if let Some(e) = stream_error {
        out.push_str(&format!("X-Stream-Error: {e}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// What the server does with a request.
enum Reply {
    Bytes(Vec<u8>),
    /// Sends these bytes, then holds the connection open without a word.
    Stall(Vec<u8>),
    /// A chunked 200 that streams this many bytes (or until the client
    /// hangs up).
    Endless(usize),
}

/// Serves every request with `reply(path)`; returns its URL and what it saw.
async fn serve(
    reply: impl Fn(&str) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (log, reply) = (log.clone(), reply.clone());
            tokio::spawn(async move {
                let Some(req) = read_request(&mut s).await else {
                    return;
                };
                let path = req
                    .target()
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                log.lock().unwrap().push(req);
                match reply(&path) {
                    Reply::Bytes(b) => {
                        let _ = s.write_all(&b).await;
                    }
                    Reply::Stall(b) => {
                        let _ = s.write_all(&b).await;
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    Reply::Endless(total) => {
                        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n";
                        let _ = s.write_all(head.as_bytes()).await;
                        let chunk = format!("4000\r\n{}\r\n", "x".repeat(0x4000));
                        for _ in 0..total / 0x4000 {
                            if s.write_all(chunk.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        let _ = s.write_all(b"0\r\n\r\n").await;
                    }
                }
            });
        }
    });
    (url, seen)
}

/// Reads one request head and its `Content-Length` body.
async fn read_request(s: &mut tokio::net::TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut seen = Seen {
        head,
        body: buf[end..].to_vec(),
    };
    let len: usize = seen
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while seen.body.len() < len {
        let n = s.read(&mut byte).await.ok()?;
        if n == 0 {
            break;
        }
        seen.body.extend_from_slice(&byte[..n]);
    }
    Some(seen)
}

fn client(url: &str) -> KuboClient {
    KuboClient::new(url, None, Duration::from_secs(5)).unwrap()
}

#[tokio::test]
async fn not_found_is_none_for_both_gets() {
    let (url, seen) = serve(|_| Reply::Bytes(answer(500, NOT_FOUND))).await;
    let c = client(&url);
    assert_eq!(c.name_get("k51x").await.unwrap(), None);
    assert_eq!(c.routing_get("/ipns/k51x").await.unwrap(), None);
    // Elsewhere it stays an error, with its own code.
    assert_eq!(c.dht_peers().await.unwrap_err().code(), "not_found");
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].target(), "/api/v0/name/get?arg=k51x");
    assert_eq!(seen[1].target(), "/api/v0/routing/get?arg=%2Fipns%2Fk51x");
    assert!(seen.iter().all(|r| r.head.starts_with("POST ")));
}

#[tokio::test]
async fn statuses_map_to_kinds() {
    let (url, _) = serve(|path| {
        Reply::Bytes(match path {
            "/api/v0/name/put" => answer(
                500,
                r#"{"Message":"record validation failed: signature verification failed","Code":0,"Type":"error"}"#,
            ),
            "/api/v0/routing/put" => answer(400, "file argument 'value-file' is required\n"),
            "/api/v0/version" => answer(403, DENIED),
            "/api/v0/key/ls" => answer(401, ""),
            "/api/v0/stats/dht" => answer(502, "<html>bad gateway</html>"),
            _ => answer(200, "{}"),
        })
    })
    .await;
    let c = client(&url);
    assert_eq!(
        c.name_put("k51x", b"r", false).await.unwrap_err(),
        KuboError::Api {
            status: 500,
            message: "record validation failed: signature verification failed".into()
        }
    );
    assert_eq!(
        c.routing_put("k51x", b"r", false).await.unwrap_err(),
        KuboError::Api {
            status: 400,
            message: "file argument 'value-file' is required".into()
        }
    );
    assert_eq!(c.version().await.unwrap_err(), KuboError::Denied);
    assert_eq!(c.key_list().await.unwrap_err(), KuboError::Denied);
    assert!(matches!(
        c.dht_peers().await.unwrap_err(),
        KuboError::Api { status: 502, .. }
    ));
    let e = c
        .name_publish("self", "/ipfs/x", Duration::ZERO, Duration::ZERO, false)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, KuboError::Malformed(m) if m.contains("name/publish")),
        "{e}"
    );
}

#[tokio::test]
async fn requests_carry_kubos_arguments_auth_and_files() {
    let (url, seen) = serve(|path| {
        Reply::Bytes(match path {
            "/api/v0/name/publish" => answer(200, r#"{"Name":"k51me","Value":"/ipfs/bafkqaaa"}"#),
            "/api/v0/routing/put" => answer(
                200,
                r#"{"ID":"12D3KooW","Type":5,"Responses":null,"Extra":""}"#,
            ),
            _ => answer(200, r#"{"Name":"k51me","Value":"/ipfs/bafkqaaa"}"#),
        })
    })
    .await;
    let auth: KuboAuth = "bearer:secret-token-123".parse().unwrap();
    let c = KuboClient::new(
        &format!("{url}/api/v0/"),
        Some(auth),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(c.url(), url);
    let record = b"\x0a\x0e/ipfs/bafkqaaa\x00\xff";
    c.name_put("/ipns/k51me", record, true).await.unwrap();
    c.routing_put("k51me", record, false).await.unwrap();
    let name = c
        .name_publish(
            "my key",
            "/ipfs/bafkqaaa",
            Duration::from_secs(48 * 3600),
            Duration::from_millis(1500),
            true,
        )
        .await
        .unwrap();
    assert_eq!(name, "k51me");
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0].target(),
        "/api/v0/name/put?arg=k51me&allow-offline=true"
    );
    assert_eq!(
        seen[1].target(),
        "/api/v0/routing/put?arg=%2Fipns%2Fk51me&allow-offline=false"
    );
    assert_eq!(
        seen[2].target(),
        "/api/v0/name/publish?arg=%2Fipfs%2Fbafkqaaa&key=my+key&resolve=false&lifetime=172800000ms&ttl=1500ms&allow-offline=true"
    );
    for (req, field) in [(&seen[0], "record"), (&seen[1], "value-file")] {
        assert_eq!(req.header("authorization"), Some("Bearer secret-token-123"));
        assert!(
            req.header("content-type")
                .unwrap()
                .starts_with("multipart/form-data; boundary=")
        );
        let disposition = format!("name=\"{field}\"; filename=\"{field}\"");
        let body = &req.body;
        assert!(
            body.windows(disposition.len())
                .any(|w| w == disposition.as_bytes())
        );
        assert!(body.windows(record.len()).any(|w| w == record));
    }
    assert_eq!(seen[2].body, b"");
}

#[tokio::test]
async fn key_list_falls_back_to_key_list_on_404() {
    let (url, seen) = serve(|path| {
        Reply::Bytes(match path {
            "/api/v0/key/list" => answer(200, r#"{"Keys":[{"Name":"self","Id":"k51self"}]}"#),
            _ => answer(404, "404 page not found\n"),
        })
    })
    .await;
    let keys = client(&url).key_list().await.unwrap();
    assert_eq!(
        keys,
        [KuboKey {
            name: "self".into(),
            id: "k51self".into()
        }]
    );
    let paths: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.target().to_string())
        .collect();
    assert_eq!(paths, ["/api/v0/key/ls", "/api/v0/key/list"]);
    // Any other failure is not retried under the old name.
    let (url, seen) =
        serve(|_| Reply::Bytes(answer(500, r#"{"Message":"boom","Code":0,"Type":"error"}"#))).await;
    assert!(client(&url).key_list().await.is_err());
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn late_errors_in_the_trailer_are_errors() {
    let (url, _) = serve(|path| {
        Reply::Bytes(match path {
            "/api/v0/routing/get" => chunked("", Some("routing: not found")),
            "/api/v0/stats/dht" => chunked(
                "{\"Name\":\"wan\",\"Buckets\":[]}\n",
                Some("context canceled"),
            ),
            // A declared but empty trailer is no error.
            _ => chunked(r#"{"Version":"0.43.0"}"#, None),
        })
    })
    .await;
    let c = client(&url);
    assert_eq!(c.routing_get("k51x").await.unwrap(), None);
    assert_eq!(
        c.dht_peers().await.unwrap_err(),
        KuboError::Api {
            status: 200,
            message: "context canceled".into()
        }
    );
    assert_eq!(c.version().await.unwrap().minor, 43);
}

#[tokio::test]
async fn answers_are_read_to_a_bound() {
    let record = "r".repeat(wire::MAX_RECORD_SIZE);
    let padded_json = format!(r#"{{"Version":"0.43.0","Pad":"{record}"}}"#);
    let (url, _) = serve(move |path| match path {
        "/api/v0/name/get" => Reply::Bytes(answer(200, &record)),
        "/api/v0/version" => Reply::Bytes(chunked(&padded_json, None)),
        // Declares more than the bound and sends nothing: refused at once.
        "/api/v0/key/ls" => {
            Reply::Stall(b"HTTP/1.1 200 OK\r\ncontent-length: 2000000\r\n\r\n".to_vec())
        }
        _ => Reply::Endless(64 * 1024 * 1024),
    })
    .await;
    let c = client(&url);
    assert_eq!(
        c.name_get("k51x").await.unwrap().unwrap().len(),
        wire::MAX_RECORD_SIZE
    );
    // A JSON answer longer than a record is fine.
    assert_eq!(c.version().await.unwrap().minor, 43);
    for e in [
        c.name_put("k51x", b"", false).await.unwrap_err(),
        c.routing_get("k51x").await.unwrap_err(),
        c.key_list().await.unwrap_err(),
    ] {
        assert!(
            matches!(&e, KuboError::Malformed(m) if m.contains("longer than")),
            "{e}"
        );
    }
    // One byte more than a record is not a record.
    let over = "r".repeat(wire::MAX_RECORD_SIZE + 1);
    let (url, _) = serve(move |_| Reply::Bytes(answer(200, &over))).await;
    let e = client(&url).name_get("k51x").await.unwrap_err();
    assert!(
        matches!(&e, KuboError::Malformed(m) if m.contains("name/get")),
        "{e}"
    );
    let (url, _) = serve(|_| Reply::Bytes(answer(200, ""))).await;
    let e = client(&url).name_get("k51x").await.unwrap_err();
    assert!(
        matches!(&e, KuboError::Malformed(m) if m.contains("empty record")),
        "{e}"
    );
}

#[tokio::test]
async fn silence_is_a_timeout_and_a_closed_port_is_unreachable() {
    let (url, _) = serve(|path| match path {
        "/api/v0/version" => Reply::Stall(Vec::new()),
        _ => Reply::Stall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{".to_vec()),
    })
    .await;
    let c = KuboClient::new(&url, None, Duration::from_millis(300)).unwrap();
    assert_eq!(c.version().await.unwrap_err(), KuboError::Timeout);
    assert_eq!(c.key_list().await.unwrap_err(), KuboError::Timeout);

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let e = client(&format!("http://127.0.0.1:{port}"))
        .version()
        .await
        .unwrap_err();
    assert!(e.is_unreachable(), "{e:?}");
    assert_eq!(e.code(), "kubo_unreachable");
    assert!(!e.to_string().contains('\n'));

    // Kubo hangs up without a word.
    let (url, _) = serve(|_| Reply::Bytes(Vec::new())).await;
    let e = client(&url).version().await.unwrap_err();
    assert!(e.is_unreachable(), "{e:?}");
}

#[test]
fn only_plain_http_urls_are_taken() {
    let new = |url: &str| KuboClient::new(url, None, Duration::from_secs(1));
    assert_eq!(
        new("http://127.0.0.1:5001").unwrap().url(),
        "http://127.0.0.1:5001"
    );
    assert_eq!(
        new("http://127.0.0.1:5001/").unwrap().url(),
        "http://127.0.0.1:5001"
    );
    assert_eq!(
        new("http://localhost:5001/api/v0").unwrap().url(),
        "http://localhost:5001"
    );
    assert_eq!(new("http://[::1]:5001").unwrap().url(), "http://[::1]:5001");
    let https = new("https://kubo.example:5001").unwrap_err();
    assert!(
        https.to_string().contains("https is not supported"),
        "{https}"
    );
    for bad in [
        "",
        "127.0.0.1:5001",
        "/ip4/127.0.0.1/tcp/5001",
        "ftp://x",
        "http://",
        "http://user:pass@127.0.0.1:5001",
        "http://127.0.0.1:5001/?x=1",
    ] {
        let e = new(bad).unwrap_err();
        assert_eq!(e.code(), "kubo_malformed", "{bad:?}");
        assert!(!e.to_string().contains("pass"), "{e}");
    }
}

#[test]
fn debug_never_shows_the_secret_and_clones_share() {
    let auth: KuboAuth = "bearer:secret-token-123".parse().unwrap();
    let c = KuboClient::new("http://127.0.0.1:5001", Some(auth), Duration::from_secs(1)).unwrap();
    let shown = format!("{c:?}");
    assert!(
        shown.contains("127.0.0.1:5001") && !shown.contains("secret-token"),
        "{shown}"
    );
    let d = c.clone();
    assert!(Arc::ptr_eq(&c.inner, &d.inner));
}
