//! Watching names over HTTP: WebSocket and Server-Sent Events on the
//! change feed (`ipns::watch`).
//!
//! | endpoint | transport | names |
//! | --- | --- | --- |
//! | `GET /name/{key}/watch` | WebSocket, w3name's messages | one, or `*` for all |
//! | `GET /watch` | WebSocket | subscribe/unsubscribe messages, many names |
//! | `GET /name/{key}/events` | SSE | one, or `*` |
//! | `GET /events?names=a,b` | SSE | a fixed list |
//!
//! Every notification is one JSON object `{"id","kind","key","value",
//! "sequence"[,"record"]}` (`kind`: `updated` or `expired`; `record`:
//! base64, by default on for one name and off for `*` and lists; `?record=`
//! overrides). A client that reconnects with `?since=<id>` (SSE: also
//! `Last-Event-ID`) gets every change after that id, then live ones. When
//! that is impossible — the id is older than the events kept, or the
//! watcher fell `[watch] queue` changes behind — it gets
//! `{"type":"resync","reason","message","id"}` and the connection closes.
//!
//! `/watch` messages from the client: `{"op":"subscribe","names":[…],
//! "record":bool}` and `{"op":"unsubscribe","names":[…]}`. Each name is
//! acknowledged `{"type":"subscribed","name","replaced"}` (subscribing again
//! replaces, i.e. revokes, the earlier subscription) or refused
//! `{"type":"refused","name","reason"}`.
//!
//! Bounds: `[watch] max_per_ip` connections per client address (429 past
//! it), `max_names` per `/watch`, a send that takes longer than
//! `send_timeout` closes the connection, heartbeats every `heartbeat`
//! (WebSocket ping, SSE comment), client messages ≤ [`MAX_CLIENT_MESSAGE`].
//!
//! Called by: the router. Must never: keep a queue per watcher beyond the
//! feed's shared ring.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    extract::{
        ConnectInfo, Path, Query, State,
        ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade},
    },
    http::HeaderMap,
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::{ApiState, error::ApiError, rate_limit::bucket_key};
use crate::{
    config::WatchConfig,
    ipns::{
        Name,
        watch::{Event, Feed, Next, Subscription, resync_message},
    },
    metrics::{Metrics, ReasonLabel},
};

/// Longest message a `/watch` client may send.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Read buffer per WebSocket watcher (client messages are small).
pub const WS_READ_BUFFER: usize = 4 * 1024;
/// Most bytes queued in one watcher's WebSocket writer (a notification with
/// a 10 KiB record is about 14 KiB); the send timeout closes it before.
pub const WS_MAX_WRITE_BUFFER: usize = 256 * 1024;

/// What the watch endpoints share.
#[derive(Clone)]
pub struct WatchState {
    pub feed: Arc<Feed>,
    pub config: WatchConfig,
    /// Cancelled when the HTTP server stops: every watch ends.
    pub shutdown: CancellationToken,
    connections: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl WatchState {
    pub fn new(feed: Arc<Feed>, config: WatchConfig, shutdown: CancellationToken) -> Self {
        Self {
            feed,
            config,
            shutdown,
            connections: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A connection slot for `ip`, or `None` past `max_per_ip`.
    fn admit(&self, ip: IpAddr, metrics: Arc<Metrics>) -> Option<Permit> {
        let key = bucket_key(ip);
        let mut map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= self.config.max_per_ip {
            return None;
        }
        *n += 1;
        metrics.watch_connections.inc();
        Some(Permit {
            key,
            connections: self.connections.clone(),
            metrics,
        })
    }
}

/// A held connection slot; released on drop.
struct Permit {
    key: IpAddr,
    connections: Arc<Mutex<HashMap<IpAddr, u32>>>,
    metrics: Arc<Metrics>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
        self.metrics.watch_connections.dec();
    }
}

/// Which names a watcher wants, and whether with records.
#[derive(Debug, Clone, Default)]
struct Filter {
    all: Option<bool>,
    names: HashMap<Name, bool>,
}

impl Filter {
    /// `Some(with_record)` when `e` is wanted.
    fn wants(&self, e: &Event) -> Option<bool> {
        self.names.get(&e.name).copied().or(self.all)
    }
}

#[derive(Deserialize, Default)]
pub struct WatchQuery {
    since: Option<u64>,
    record: Option<bool>,
    /// `/events` only: comma-separated names.
    names: Option<String>,
}

fn parse_name(text: &str) -> Result<Name, ApiError> {
    Name::parse(text).map_err(|e| ApiError::bad_request("invalid_name", e.to_string()))
}

/// `*` or one name, with its record default.
fn key_filter(key: &str, record: Option<bool>) -> Result<Filter, ApiError> {
    if key == "*" {
        return Ok(Filter {
            all: Some(record.unwrap_or(false)),
            ..Filter::default()
        });
    }
    let name = parse_name(key)?;
    Ok(Filter {
        all: None,
        names: HashMap::from([(name, record.unwrap_or(true))]),
    })
}

fn watch_state(s: &ApiState) -> Result<WatchState, ApiError> {
    s.watch.clone().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::NOT_IMPLEMENTED,
            "not_available",
            "watching is not available here",
        )
    })
}

fn admit(w: &WatchState, s: &ApiState, client: SocketAddr) -> Result<Permit, ApiError> {
    w.admit(client.ip(), s.metrics.clone()).ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_watchers",
            format!(
                "at most {} watch connections per client address",
                w.config.max_per_ip
            ),
        )
    })
}

/// `GET /name/{key}/watch`.
pub async fn name_watch(
    State(s): State<ApiState>,
    Path(key): Path<String>,
    Query(q): Query<WatchQuery>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let filter = key_filter(&key, q.record)?;
    upgrade(s, ws, client, q.since, filter, false)
}

/// `GET /watch`.
pub async fn multi_watch(
    State(s): State<ApiState>,
    Query(q): Query<WatchQuery>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    upgrade(s, ws, client, q.since, Filter::default(), true)
}

/// Admits the client and hands the upgraded socket to [`ws_session`].
fn upgrade(
    s: ApiState,
    ws: WebSocketUpgrade,
    client: SocketAddr,
    since: Option<u64>,
    filter: Filter,
    interactive: bool,
) -> Result<Response, ApiError> {
    let w = watch_state(&s)?;
    let permit = admit(&w, &s, client)?;
    let metrics = s.metrics.clone();
    Ok(ws
        .max_message_size(MAX_CLIENT_MESSAGE)
        // tungstenite's defaults (128 KiB read buffer, 128 KiB write
        // batching) cost 136 KiB per idle watcher; watchers read little and
        // each notification is flushed at once anyway.
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| async move {
            let sub = subscribe(&w.feed, &filter, since);
            ws_session(socket, w, sub, filter, interactive, metrics).await;
            drop(permit);
        }))
}

/// A watcher of exactly one name rides that name's ring; others read the
/// shared one and filter.
fn subscribe(feed: &Arc<Feed>, filter: &Filter, since: Option<u64>) -> Subscription {
    match (filter.all, filter.names.keys().next()) {
        (None, Some(name)) if filter.names.len() == 1 => feed.subscribe_name(*name, since),
        _ => feed.subscribe(since),
    }
}

fn resync_json(reason: &str, id: u64) -> String {
    serde_json::json!({
        "type": "resync",
        "reason": reason,
        "message": resync_message(reason),
        "id": id,
    })
    .to_string()
}

/// One WebSocket watcher until it, the feed or the server ends.
async fn ws_session(
    mut socket: WebSocket,
    w: WatchState,
    mut sub: Subscription,
    mut filter: Filter,
    interactive: bool,
    metrics: Arc<Metrics>,
) {
    let timeout = w.config.send_timeout;
    let mut heartbeat = tokio::time::interval(w.config.heartbeat);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            _ = w.shutdown.cancelled() => break,
            next = sub.next() => match next {
                Next::Event(e) => {
                    let Some(with_record) = filter.wants(&e) else { continue };
                    let Ok(text) = Utf8Bytes::try_from(e.json_bytes(with_record).clone()) else {
                        continue;
                    };
                    if !send(&mut socket, Message::Text(text), timeout).await {
                        return;
                    }
                    metrics.watch_notifications.inc();
                }
                Next::Resync { reason } => {
                    metrics.watch_resyncs.get_or_create(&ReasonLabel { reason }).inc();
                    let text = resync_json(reason, sub.cursor());
                    let _ = send(&mut socket, Message::Text(text.into()), timeout).await;
                    break;
                }
                Next::Closed => break,
            },
            _ = heartbeat.tick() => {
                if !send(&mut socket, Message::Ping(Vec::new().into()), timeout).await {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(t))) if interactive => {
                    for reply in control(&mut filter, &t, w.config.max_names) {
                        if !send(&mut socket, Message::Text(reply.into()), timeout).await {
                            return;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = tokio::time::timeout(timeout, socket.send(Message::Close(None))).await;
}

/// Sends within `timeout`; false when the watcher is gone or stuck.
async fn send(socket: &mut WebSocket, m: Message, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, socket.send(m)).await,
        Ok(Ok(()))
    )
}

#[derive(Deserialize)]
struct Control {
    op: String,
    #[serde(default)]
    names: Vec<String>,
    record: Option<bool>,
}

/// Applies one `/watch` client message; returns the replies.
fn control(filter: &mut Filter, text: &str, max_names: usize) -> Vec<String> {
    let msg: Control = match serde_json::from_str(text) {
        Ok(m) => m,
        Err(e) => {
            return vec![
                serde_json::json!({"type": "error", "reason": format!("not a control message: {e}")})
                    .to_string(),
            ];
        }
    };
    let mut replies = Vec::with_capacity(msg.names.len());
    for text in &msg.names {
        let reply = match msg.op.as_str() {
            "subscribe" if text == "*" => {
                let replaced = filter.all.is_some();
                filter.all = Some(msg.record.unwrap_or(false));
                serde_json::json!({"type": "subscribed", "name": "*", "replaced": replaced})
            }
            "subscribe" => match Name::parse(text) {
                Ok(name)
                    if filter.names.len() >= max_names && !filter.names.contains_key(&name) =>
                {
                    serde_json::json!({"type": "refused", "name": text,
                        "reason": format!("at most {max_names} names per connection")})
                }
                Ok(name) => {
                    let replaced = filter
                        .names
                        .insert(name, msg.record.unwrap_or(true))
                        .is_some();
                    serde_json::json!({"type": "subscribed", "name": name.to_string(),
                        "replaced": replaced})
                }
                Err(e) => serde_json::json!({"type": "refused", "name": text,
                    "reason": e.to_string()}),
            },
            "unsubscribe" => {
                let was = if text == "*" {
                    filter.all.take().is_some()
                } else {
                    Name::parse(text).is_ok_and(|n| filter.names.remove(&n).is_some())
                };
                serde_json::json!({"type": "unsubscribed", "name": text, "was_subscribed": was})
            }
            other => serde_json::json!({"type": "error",
                "reason": format!("unknown op {other:?}: subscribe or unsubscribe")}),
        };
        replies.push(reply.to_string());
    }
    replies
}

/// `GET /name/{key}/events`.
pub async fn name_events(
    State(s): State<ApiState>,
    Path(key): Path<String>,
    Query(q): Query<WatchQuery>,
    headers: HeaderMap,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    let filter = key_filter(&key, q.record)?;
    sse(s, filter, resume_point(&q, &headers)?, client)
}

/// `GET /events?names=a,b`.
pub async fn list_events(
    State(s): State<ApiState>,
    Query(q): Query<WatchQuery>,
    headers: HeaderMap,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
) -> Result<Response, ApiError> {
    let w = watch_state(&s)?;
    let list = q.names.clone().unwrap_or_default();
    let mut filter = Filter::default();
    for text in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if text == "*" {
            filter.all = Some(q.record.unwrap_or(false));
        } else {
            filter
                .names
                .insert(parse_name(text)?, q.record.unwrap_or(false));
        }
        if filter.names.len() > w.config.max_names {
            return Err(ApiError::bad_request(
                "too_many_names",
                format!("at most {} names", w.config.max_names),
            ));
        }
    }
    if filter.all.is_none() && filter.names.is_empty() {
        return Err(ApiError::bad_request(
            "no_names",
            "give ?names=<name>,<name>… (or * for every name)",
        ));
    }
    sse(s, filter, resume_point(&q, &headers)?, client)
}

/// `Last-Event-ID` wins over `?since=`.
fn resume_point(q: &WatchQuery, headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request("invalid_resume_point", "Last-Event-ID is not a number")
            }),
        None => Ok(q.since),
    }
}

fn sse(
    s: ApiState,
    filter: Filter,
    since: Option<u64>,
    client: SocketAddr,
) -> Result<Response, ApiError> {
    let w = watch_state(&s)?;
    let permit = admit(&w, &s, client)?;
    let sub = subscribe(&w.feed, &filter, since);
    let metrics = s.metrics.clone();
    struct Session {
        sub: Subscription,
        filter: Filter,
        shutdown: CancellationToken,
        metrics: Arc<Metrics>,
        done: bool,
        _permit: Permit,
    }
    let session = Session {
        sub,
        filter,
        shutdown: w.shutdown.clone(),
        metrics,
        done: false,
        _permit: permit,
    };
    let stream = futures::stream::unfold(session, |mut s| async move {
        if s.done {
            return None;
        }
        loop {
            let next = tokio::select! {
                _ = s.shutdown.cancelled() => return None,
                n = s.sub.next() => n,
            };
            match next {
                Next::Event(e) => {
                    let Some(with_record) = s.filter.wants(&e) else {
                        continue;
                    };
                    s.metrics.watch_notifications.inc();
                    let ev = SseEvent::default()
                        .id(e.id.to_string())
                        .event(e.kind.as_str())
                        .data(e.json(with_record));
                    return Some((Ok::<_, Infallible>(ev), s));
                }
                Next::Resync { reason } => {
                    s.metrics
                        .watch_resyncs
                        .get_or_create(&ReasonLabel { reason })
                        .inc();
                    s.done = true;
                    let ev = SseEvent::default()
                        .event("resync")
                        .data(resync_json(reason, s.sub.cursor()));
                    return Some((Ok(ev), s));
                }
                Next::Closed => return None,
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(w.config.heartbeat).text("ping"))
        .into_response())
}
