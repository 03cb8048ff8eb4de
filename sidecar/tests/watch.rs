//! Watching names through the real daemon: WebSocket (`/name/{key}/watch`,
//! `/watch`) and Server-Sent Events (`/name/{key}/events`), live delivery
//! in order, resume with `since` / `Last-Event-ID` exactly once, `resync`
//! past the retention, a watcher that never reads cut off while another is
//! served, the per-address limit, and event numbers continuing across a
//! restart.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::*;
use futures::{SinkExt, StreamExt};
use libp2p::identity::Keypair;
use serde_json::Value;
use sidecar::ipns::{Name, testing::sign_seq};
use tokio_tungstenite::tungstenite::Message;

const IPNS: &str = "application/vnd.ipfs.ipns-record";
const DAY: Duration = Duration::from_secs(86_400);
const WAIT: Duration = Duration::from_secs(15);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn record(key: &Keypair, seq: u64) -> Bytes {
    sign_seq(key, seq, SystemTime::now() + DAY)
}

fn put(d: &Daemon, key: &Keypair, seq: u64) -> Name {
    let name = Name::from_public_key(&key.public());
    let r = http_request(
        &d.http,
        "PUT",
        &format!("/routing/v1/ipns/{name}"),
        &[("Content-Type", IPNS)],
        &record(key, seq),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    name
}

async fn connect(d: &Daemon, path: &str) -> Ws {
    let url = format!("ws://{}{path}", d.http);
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    ws
}

/// The next JSON text message (pings skipped).
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("no error");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn nothing_more(ws: &mut Ws) {
    if let Ok(Some(Ok(Message::Text(t)))) =
        tokio::time::timeout(Duration::from_millis(300), ws.next()).await
    {
        panic!("unexpected message {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_get_changes_in_order_and_resume_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&dir.path().join("data"), &[]);
    let (a, b) = (Keypair::generate_ed25519(), Keypair::generate_ed25519());
    let name_a = Name::from_public_key(&a.public());
    let mut one = connect(&d, &format!("/name/{name_a}/watch")).await;
    let mut all = connect(&d, "/name/*/watch").await;

    put(&d, &a, 1);
    put(&d, &b, 1);
    put(&d, &a, 2);
    let m1 = next_json(&mut one).await;
    let m2 = next_json(&mut one).await;
    assert_eq!(
        (m1["key"].as_str(), m1["value"].as_str()),
        (Some(name_a.to_string().as_str()), Some("/ipfs/bafkqaaa1"))
    );
    assert_eq!(m2["value"], "/ipfs/bafkqaaa2");
    assert!(
        m1["record"].as_str().unwrap().len() > 100,
        "single-name watches carry the record"
    );
    assert!(m2["id"].as_u64() > m1["id"].as_u64());
    nothing_more(&mut one).await;
    let ids: Vec<u64> = [
        next_json(&mut all).await,
        next_json(&mut all).await,
        next_json(&mut all).await,
    ]
    .iter()
    .map(|m| {
        assert!(m["record"].is_null(), "* leaves the record out by default");
        m["id"].as_u64().unwrap()
    })
    .collect();
    assert_eq!(ids, [1, 2, 3]);

    // Away for three updates, then back with `since`: all three, in order, once.
    drop(all);
    for seq in 3..6 {
        put(&d, &a, seq);
    }
    let mut back = connect(&d, "/name/*/watch?since=3").await;
    let got: Vec<(u64, String)> = [
        next_json(&mut back).await,
        next_json(&mut back).await,
        next_json(&mut back).await,
    ]
    .iter()
    .map(|m| {
        (
            m["id"].as_u64().unwrap(),
            m["value"].as_str().unwrap().to_owned(),
        )
    })
    .collect();
    assert_eq!(
        got,
        [
            (4, "/ipfs/bafkqaaa3".to_owned()),
            (5, "/ipfs/bafkqaaa4".to_owned()),
            (6, "/ipfs/bafkqaaa5".to_owned())
        ]
    );
    nothing_more(&mut back).await;
    put(&d, &b, 2);
    assert_eq!(next_json(&mut back).await["id"], 7);

    // The multi-name socket: subscribe, replace, refuse, unsubscribe.
    let mut multi = connect(&d, "/watch").await;
    let sub = serde_json::json!({"op": "subscribe", "names": [name_a.to_string(), "not-a-name"]});
    multi
        .send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    let ack = next_json(&mut multi).await;
    assert_eq!(
        (ack["type"].as_str(), ack["replaced"].as_bool()),
        (Some("subscribed"), Some(false))
    );
    assert_eq!(next_json(&mut multi).await["type"], "refused");
    let again =
        serde_json::json!({"op": "subscribe", "names": [name_a.to_string()], "record": false});
    multi
        .send(Message::Text(again.to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut multi).await["replaced"], true);
    put(&d, &b, 3);
    put(&d, &a, 6);
    let m = next_json(&mut multi).await;
    assert_eq!(
        (m["value"].as_str(), m["record"].is_null()),
        (Some("/ipfs/bafkqaaa6"), true)
    );
    let off = serde_json::json!({"op": "unsubscribe", "names": [name_a.to_string()]});
    multi
        .send(Message::Text(off.to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut multi).await["was_subscribed"], true);
    put(&d, &a, 7);
    nothing_more(&mut multi).await;
}

/// Reads SSE events (`(id, event, data)`) from a raw HTTP/1.1 stream until
/// `n` arrived or the stream ended.
fn sse_events(
    addr: &str,
    path: &str,
    last_event_id: Option<u64>,
    n: usize,
) -> Vec<(Option<u64>, String, Value)> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let resume = last_event_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{resume}\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.contains(" 200 "), "{status}");
    let mut line = String::new();
    while r.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
        line.clear();
    }
    // Chunked body: read it all as text, chunk sizes and all, line by line.
    let mut out = Vec::new();
    let (mut id, mut event, mut data) = (None, String::new(), String::new());
    loop {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let l = line.trim_end();
        if let Some(v) = l.strip_prefix("id: ").or(l.strip_prefix("id:")) {
            id = v.trim().parse().ok();
        } else if let Some(v) = l.strip_prefix("event: ").or(l.strip_prefix("event:")) {
            event = v.trim().to_owned();
        } else if let Some(v) = l.strip_prefix("data: ").or(l.strip_prefix("data:")) {
            data.push_str(v.trim());
        } else if l.is_empty() && !data.is_empty() {
            out.push((
                id.take(),
                std::mem::take(&mut event),
                serde_json::from_str(&data).unwrap(),
            ));
            data.clear();
            if out.len() == n {
                break;
            }
        }
    }
    let mut rest = Vec::new();
    let _ = r.get_mut().set_read_timeout(Some(Duration::from_millis(1)));
    let _ = r.read_to_end(&mut rest);
    out
}

#[test]
fn sse_resumes_with_last_event_id_and_resyncs_past_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut d = Daemon::start(&data, &[("SIDECAR_WATCH__RETENTION", "3")]);
    let key = Keypair::generate_ed25519();
    let name = Name::from_public_key(&key.public());
    for seq in 1..=4 {
        put(&d, &key, seq);
    }
    let events = sse_events(&d.http, &format!("/name/{name}/events"), Some(2), 2);
    let got: Vec<(Option<u64>, &str, &str)> = events
        .iter()
        .map(|(id, ev, v)| (*id, ev.as_str(), v["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            (Some(3), "updated", "/ipfs/bafkqaaa3"),
            (Some(4), "updated", "/ipfs/bafkqaaa4")
        ]
    );
    let events = sse_events(&d.http, "/events?names=*&since=0", None, 1);
    assert_eq!(events[0].1, "resync");
    assert_eq!(events[0].2["reason"], "retention");

    // Event numbers continue after a restart (also after kill -9).
    d.kill9();
    let d = Daemon::start(&data, &[("SIDECAR_WATCH__RETENTION", "3")]);
    let handle = std::thread::spawn({
        let http = d.http.clone();
        let path = format!("/name/{name}/events");
        move || sse_events(&http, &path, Some(4), 1)
    });
    std::thread::sleep(Duration::from_millis(300));
    put(&d, &key, 5);
    let events = handle.join().unwrap();
    assert_eq!(events[0].0, Some(5));
    assert!(d.metric("sidecar_watch_notifications_total") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_never_reads_is_cut_off_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        &dir.path().join("data"),
        &[
            ("SIDECAR_WATCH__QUEUE", "256"),
            ("SIDECAR_WATCH__SEND_TIMEOUT", "2s"),
            ("SIDECAR_WATCH__MAX_PER_IP", "3"),
        ],
    );
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // The stuck watcher asks for records in every message, shrinks its
    // receive buffer (so the kernel does not absorb megabytes for it) and
    // never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(d.http.parse().unwrap()).await.unwrap();
    let (mut stuck, _) = tokio_tungstenite::client_async(
        format!("ws://{}/name/*/watch?record=true", d.http),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    let mut reader = connect(&d, "/name/*/watch").await;
    let _third = connect(&d, "/name/*/watch").await;
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/name/*/watch", d.http)).await;
    assert!(
        refused.is_err(),
        "a fourth connection from one address is refused"
    );

    let before = rss(d.pid());
    let keys: Vec<Keypair> = (0..50).map(|_| Keypair::generate_ed25519()).collect();
    let total = 6_000u64;
    let http = d.http.clone();
    let producer = std::thread::spawn(move || {
        for i in 0..total {
            let key = &keys[(i % 50) as usize];
            let name = Name::from_public_key(&key.public());
            let r = http_request(
                &http,
                "PUT",
                &format!("/routing/v1/ipns/{name}"),
                &[("Content-Type", IPNS)],
                &record(key, i / 50 + 1),
            );
            assert_eq!(r.status, 200, "{}", r.text());
        }
    });
    let mut last = 0;
    while last < total {
        let m = next_json(&mut reader).await;
        assert_ne!(m["type"], "resync", "the reading watcher keeps up: {m}");
        let id = m["id"].as_u64().unwrap();
        assert_eq!(id, last + 1, "in order, none missing");
        last = id;
    }
    producer.join().unwrap();
    let grown_kib = rss(d.pid()).saturating_sub(before);
    eprintln!("[watch] RSS grew {grown_kib} KiB over {total} events with a stuck watcher");
    assert!(
        grown_kib < 100 * 1024,
        "memory stays bounded: +{grown_kib} KiB"
    );
    // The stuck one was cut off: draining it ends (with a resync when the
    // server could still say so) instead of yielding all events.
    let mut seen = 0u64;
    let mut resync = false;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(WAIT, stuck.next()).await {
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "resync" {
                resync = true;
            } else {
                seen += 1;
            }
        }
    }
    eprintln!("[watch] the stuck watcher got {seen} of {total} events, resync: {resync}");
    assert!(seen < total, "the stuck watcher was cut off");
}

#[test]
fn the_cli_prints_changes_as_they_come() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = Daemon::start(&data, &[]);
    let key = Keypair::generate_ed25519();
    let name = Name::from_public_key(&key.public());
    let mut child = std::process::Command::new(sidecar_bin())
        .arg("--data-dir")
        .arg(&data)
        .args(["ipns", "watch", &name.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("watching "), "{line}");
    put(&d, &key, 1);
    put(&d, &key, 2);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..2 {
        let mut l = String::new();
        out.read_line(&mut l).unwrap();
        lines.push(l.trim().to_owned());
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        lines,
        [
            format!("1 updated {name} seq=1 /ipfs/bafkqaaa1"),
            format!("2 updated {name} seq=2 /ipfs/bafkqaaa2")
        ]
    );
}
