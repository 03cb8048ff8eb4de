//! The Bitswap server: glue between libp2p streams, the pure [`Engine`], the
//! quota gate and the block source.
//!
//! Data flow, one way: an inbound stream is read in a loop until EOF; each
//! frame is decoded, the wanted blocks' sizes are looked up (blocking pool),
//! and the engine queues tasks. Worker tasks take fair batches from the
//! engine, ask the [`QuotaGate`] about every task *before* any block is read,
//! read the admitted blocks, build responses (≤ 4 MiB each) and hand them to
//! the peer's writer, which sends them on an outbound stream the server
//! opened (Bitswap replies never go back on the inbound stream).
//!
//! Bounds: inbound streams per peer (`max_inbound_streams_per_peer`; more are
//! reset), wants past a peer's wantlist cap dropped before any lookup and
//! paid for by leaving the peer's streams unread for a while
//! ([`REFUSED_WANT_PAUSE_US`] each), one batch in flight per peer (the engine's rule), a writer queue
//! of [`WRITER_QUEUE`] responses per peer, and a write timeout
//! (`send_timeout`) after which the outbound stream is dropped. A malformed
//! frame closes that stream only; other peers never notice.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{
    Engine, EngineConfig, FrameDecoder, Protocol, ResponseBuilder, decode_request,
    engine::Batch,
    ledger::{Action, Outcome, Task},
    response::{OutFrame, Presence},
};
use crate::{
    blocks::BlockSource,
    config::BitswapConfig,
    metrics::{KindLabel, Metrics, ProtocolLabel, ReasonLabel},
    quota::{Admission, QuotaGate, Response},
};

/// Responses queued per peer writer before workers wait for it.
const WRITER_QUEUE: usize = 4;

/// Read buffer per inbound stream.
const READ_CHUNK: usize = 64 * 1024;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("protocol {0} is already being accepted")]
    AlreadyRegistered(&'static str),
}

/// A cheaply clonable handle to the server.
#[derive(Clone)]
pub struct BitswapServer {
    inner: Arc<Inner>,
}

struct Inner {
    config: BitswapConfig,
    engine: Mutex<Engine>,
    blocks: Arc<dyn BlockSource>,
    quota: Arc<dyn QuotaGate>,
    metrics: Arc<Metrics>,
    work: Notify,
    peers: Mutex<HashMap<PeerId, PeerState>>,
    /// Origin of the writers' progress clock.
    started: std::time::Instant,
}

/// What the server remembers about a connected peer besides its ledger.
#[derive(Default)]
struct PeerState {
    /// The newest protocol the peer used on an inbound stream: replies use it.
    protocol: Option<Protocol>,
    inbound_streams: usize,
    writer: Option<mpsc::Sender<Queued>>,
    backlog: Arc<Backlog>,
    /// Microseconds since the server started before which the peer's
    /// inbound streams are not read (see [`REFUSED_WANT_PAUSE_US`]).
    ingest_after: Arc<AtomicU64>,
}

/// A peer's writer backlog: bytes queued and not yet written, and when the
/// writer last got a chunk out. A backlog only counts against the peer
/// (quota `max_inflight_bytes`) while the writer is stalled, so a fast
/// reader with a full queue is never mistaken for a slow one.
#[derive(Default)]
struct Backlog {
    bytes: AtomicU64,
    /// Milliseconds since the server started, at the last progress.
    progress_ms: AtomicU64,
}

/// How long a peer's inbound streams stay unread for each want it sent past
/// its wantlist cap. A want past the cap is never answered, so an honest
/// client (which stays under the cap) never pays; a flooder is held to
/// 1 / 20 µs = 50,000 refused wants per second on all its streams together,
/// instead of the millions its streams could carry, and the rest wait in
/// its own flow-control windows.
const REFUSED_WANT_PAUSE_US: u64 = 20;

/// No chunk written for this long, with bytes queued: the peer is stalling.
const STALL_MS: u64 = 2_000;

/// How often a worker waiting for room in a peer's queue re-checks whether
/// the peer has stalled.
const QUEUE_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// The writer reports progress after every chunk of this size (the size of
/// a yamux data frame, so chunking costs no extra frames).
const PROGRESS_CHUNK: usize = crate::p2p::MAX_DATA_FRAME;

impl Backlog {
    /// Bytes that count against the peer now: the backlog if the writer is
    /// stalled, else 0.
    fn stalled_bytes(&self, now_ms: u64) -> u64 {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let since = now_ms.saturating_sub(self.progress_ms.load(Ordering::Relaxed));
        if bytes > 0 && since >= STALL_MS {
            bytes
        } else {
            0
        }
    }
}

/// A frame on its way to the writer; its bytes stay in the backlog until it
/// is written or dropped.
struct Queued {
    frame: OutFrame,
    backlog: Arc<Backlog>,
}

impl Queued {
    fn new(frame: OutFrame, backlog: &Arc<Backlog>, now_ms: u64) -> Self {
        if backlog
            .bytes
            .fetch_add(frame.len() as u64, Ordering::Relaxed)
            == 0
        {
            // An idle writer has not stalled: its clock starts now.
            backlog.progress_ms.store(now_ms, Ordering::Relaxed);
        }
        Self {
            frame,
            backlog: backlog.clone(),
        }
    }
}

impl Drop for Queued {
    fn drop(&mut self) {
        self.backlog
            .bytes
            .fetch_sub(self.frame.len() as u64, Ordering::Relaxed);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl BitswapServer {
    pub fn new(
        config: BitswapConfig,
        blocks: Arc<dyn BlockSource>,
        quota: Arc<dyn QuotaGate>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let engine = Engine::new(EngineConfig::from(&config));
        Self {
            inner: Arc::new(Inner {
                config,
                engine: Mutex::new(engine),
                blocks,
                quota,
                metrics,
                work: Notify::new(),
                peers: Mutex::new(HashMap::new()),
                started: std::time::Instant::now(),
            }),
        }
    }

    /// Forgets everything about a peer whose last connection closed.
    pub fn peer_disconnected(&self, peer: PeerId) {
        lock(&self.inner.engine).peer_disconnected(&peer);
        lock(&self.inner.peers).remove(&peer);
    }

    /// Registers every Bitswap protocol with the host and spawns the
    /// acceptors and workers. The returned task ends once `stop` is
    /// cancelled and the workers have finished their current batch.
    pub fn start(
        &self,
        control: libp2p_stream::Control,
        stop: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, ServerError> {
        let mut tasks = tokio::task::JoinSet::new();
        for protocol in Protocol::ALL {
            let mut incoming = control
                .clone()
                .accept(StreamProtocol::new(protocol.as_str()))
                .map_err(|_| ServerError::AlreadyRegistered(protocol.as_str()))?;
            let server = self.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                loop {
                    let next = tokio::select! {
                        _ = stop.cancelled() => break,
                        next = incoming.next() => next,
                    };
                    let Some((peer, stream)) = next else { break };
                    server.accept_stream(peer, protocol, stream, &stop);
                }
            });
        }
        for _ in 0..self.inner.config.workers {
            let server = self.clone();
            let stop = stop.clone();
            let control = control.clone();
            tasks.spawn(async move { server.worker(control, stop).await });
        }
        Ok(tokio::spawn(async move {
            while tasks.join_next().await.is_some() {}
        }))
    }

    fn accept_stream(
        &self,
        peer: PeerId,
        protocol: Protocol,
        stream: Stream,
        stop: &CancellationToken,
    ) {
        let label = ProtocolLabel {
            protocol: protocol.as_str(),
        };
        let ingest_after = {
            let mut peers = lock(&self.inner.peers);
            let state = peers.entry(peer).or_default();
            let cap = match self.inner.quota.limits(&peer) {
                Some(l) => l
                    .max_inbound_streams
                    .min(self.inner.config.max_inbound_streams_per_peer),
                None => self.inner.config.max_inbound_streams_per_peer,
            };
            if state.inbound_streams >= cap {
                drop(peers);
                tracing::debug!(%peer, "too many inbound bitswap streams; resetting");
                self.reject("too_many_streams");
                return; // dropping the stream resets it
            }
            state.inbound_streams += 1;
            state.protocol = Some(protocol);
            state.ingest_after.clone()
        };
        self.inner
            .metrics
            .bitswap_streams
            .get_or_create(&label)
            .inc();
        let server = self.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                result = server.read_stream(peer, protocol, stream, &ingest_after) => {
                    if let Err(reason) = result {
                        tracing::debug!(%peer, %protocol, reason, "closing bitswap stream");
                    }
                }
            }
            if let Some(state) = lock(&server.inner.peers).get_mut(&peer) {
                state.inbound_streams = state.inbound_streams.saturating_sub(1);
            }
        });
    }

    fn reject(&self, reason: &'static str) {
        self.inner
            .metrics
            .bitswap_rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Reads messages from one inbound stream until EOF or a bad frame.
    async fn read_stream(
        &self,
        peer: PeerId,
        protocol: Protocol,
        mut stream: Stream,
        ingest_after: &AtomicU64,
    ) -> Result<(), &'static str> {
        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let n = stream.read(&mut buf).await.map_err(|_| "read error")?;
            if n == 0 {
                return decoder.finish().map_err(|_| {
                    self.reject("truncated_frame");
                    "stream ended inside a frame"
                });
            }
            let mut input = &buf[..n];
            loop {
                match decoder.decode(&mut input) {
                    Ok(Some(frame)) => {
                        self.pause_ingest(ingest_after).await;
                        let refused = self.handle_message(peer, protocol, &frame).await?;
                        self.charge_ingest(peer, ingest_after, refused);
                    }
                    Ok(None) => break,
                    Err(_) => {
                        self.reject("bad_frame");
                        return Err("bad frame");
                    }
                }
            }
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.inner.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Waits until the peer's inbound streams may be read again.
    async fn pause_ingest(&self, ingest_after: &AtomicU64) {
        let wait = ingest_after
            .load(Ordering::Relaxed)
            .saturating_sub(self.now_us());
        if wait > 0 {
            tokio::time::sleep(std::time::Duration::from_micros(wait)).await;
            self.inner
                .metrics
                .bitswap_ingest_paused_ms
                .inc_by(wait / 1000);
        }
    }

    /// Pushes back the time the peer's streams are next read by
    /// [`REFUSED_WANT_PAUSE_US`] per want it sent past its cap.
    fn charge_ingest(&self, peer: PeerId, ingest_after: &AtomicU64, refused: u64) {
        if refused == 0 {
            return;
        }
        let pause = refused.saturating_mul(REFUSED_WANT_PAUSE_US);
        let now = self.now_us();
        let before = ingest_after
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |after| {
                Some(after.max(now).saturating_add(pause))
            })
            .unwrap_or_else(|after| after);
        if before <= now {
            tracing::debug!(%peer, refused, pause_us = pause, "wants past the wantlist cap; pausing the peer's streams");
        }
    }

    /// Applies one inbound message; returns how many of its wants were
    /// refused because the peer's wantlist was full.
    async fn handle_message(
        &self,
        peer: PeerId,
        protocol: Protocol,
        frame: &[u8],
    ) -> Result<u64, &'static str> {
        let m = &self.inner.metrics;
        m.bitswap_messages_received
            .get_or_create(&ProtocolLabel {
                protocol: protocol.as_str(),
            })
            .inc();
        let mut request = decode_request(frame, self.inner.config.max_cid_bytes).map_err(|_| {
            self.reject("malformed_message");
            "malformed message"
        })?;
        if request.rejects.total() > 0 {
            m.bitswap_rejected
                .get_or_create(&ReasonLabel {
                    reason: "bad_entry",
                })
                .inc_by(u64::from(request.rejects.total()));
        }
        let mut blocks_wanted = 0;
        for w in &request.wants {
            if w.kind == super::WantKind::Block {
                blocks_wanted += 1;
            }
        }
        let haves_wanted = request.wants.len() as u64 - blocks_wanted;
        m.bitswap_wants_received
            .get_or_create(&KindLabel { kind: "block" })
            .inc_by(blocks_wanted);
        m.bitswap_wants_received
            .get_or_create(&KindLabel { kind: "have" })
            .inc_by(haves_wanted);
        m.bitswap_wants_received
            .get_or_create(&KindLabel { kind: "cancel" })
            .inc_by(request.cancels.len() as u64);

        let cap = self
            .inner
            .quota
            .limits(&peer)
            .map_or(usize::MAX, |l| l.max_wantlist_entries);
        let trimmed = lock(&self.inner.engine).trim_over_cap(&peer, &mut request, cap);
        let hashes = request.want_hashes();
        let sizes = if hashes.is_empty() {
            Vec::new()
        } else {
            let blocks = self.inner.blocks.clone();
            match tokio::task::spawn_blocking(move || blocks.block_sizes(&hashes)).await {
                Ok(Ok(sizes)) => sizes,
                Ok(Err(e)) => {
                    // An index failure must not look like "not held" to a peer
                    // that would then prune us; drop the message instead.
                    tracing::warn!(%peer, error = %e, "block index lookup failed");
                    return Ok(trimmed);
                }
                Err(_) => return Err("lookup task failed"),
            }
        };
        let received = lock(&self.inner.engine).receive_capped(peer, &request, &sizes, cap);
        let refused = trimmed + received.over_cap;
        if refused > 0 {
            m.bitswap_rejected
                .get_or_create(&ReasonLabel {
                    reason: "wantlist_full",
                })
                .inc_by(refused);
        }
        if received.queued > 0 {
            self.inner.work.notify_waiters();
        }
        Ok(refused)
    }

    async fn worker(self, control: libp2p_stream::Control, stop: CancellationToken) {
        loop {
            let notified = self.inner.work.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let batch = lock(&self.inner.engine).next_batch();
            match batch {
                Some(batch) => self.serve_batch(batch, &control).await,
                None => {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = &mut notified => {}
                    }
                }
            }
            if stop.is_cancelled() {
                return;
            }
        }
    }

    /// Quota check, block reads, response building and hand-off for one batch.
    async fn serve_batch(&self, batch: Batch, control: &libp2p_stream::Control) {
        let peer = batch.peer;
        let now_ms = self.inner.started.elapsed().as_millis() as u64;
        let (protocol, inflight) = lock(&self.inner.peers)
            .get(&peer)
            .map(|s| (s.protocol, s.backlog.stalled_bytes(now_ms)))
            .unwrap_or((None, 0));
        let protocol = protocol.unwrap_or(Protocol::V120);
        let slow_reader = self.inner.quota.check_inflight(&peer, inflight);

        // The one choke point: nothing is read before the gate has answered.
        let mut plan: Vec<(Task, Admission)> = Vec::with_capacity(batch.tasks.len());
        for task in batch.tasks {
            let admission = match task.action {
                Action::SendBlock => slow_reader.unwrap_or_else(|| {
                    self.inner
                        .quota
                        .admit(&peer, Response::Block, task.block_size.unwrap_or(0))
                }),
                Action::SendHave => {
                    self.inner
                        .quota
                        .admit(&peer, Response::Have, task.block_size.unwrap_or(0))
                }
                Action::SendDontHave => self.inner.quota.admit(&peer, Response::DontHave, 0),
            };
            plan.push((task, admission));
        }

        let to_read: Vec<_> = plan
            .iter()
            .filter(|(t, a)| t.action == Action::SendBlock && *a == Admission::Serve)
            .map(|(t, _)| *t.cid.hash())
            .collect();
        let mut data: HashMap<_, Bytes> = HashMap::new();
        if !to_read.is_empty() {
            let blocks = self.inner.blocks.clone();
            let read = tokio::task::spawn_blocking(move || {
                to_read
                    .into_iter()
                    .filter_map(|mh| match blocks.read_block(&mh) {
                        Ok(Some(bytes)) => Some((mh, bytes)),
                        Ok(None) => None,
                        Err(e) => {
                            tracing::warn!(error = %e, "block read failed");
                            None
                        }
                    })
                    .collect::<HashMap<_, _>>()
            })
            .await;
            if let Ok(read) = read {
                data = read;
            }
        }

        let mut builder = ResponseBuilder::new(protocol);
        builder.set_pending_bytes(batch.pending_bytes);
        let mut outcomes = Vec::with_capacity(plan.len());
        let (mut blocks_sent, mut bytes_sent, mut haves, mut dont_haves) = (0u64, 0u64, 0u64, 0u64);
        for (task, admission) in plan {
            // DONT_HAVE in place of what a quota withholds goes to every
            // 1.2.0 peer, asked for or not: it is what makes Kubo and
            // Helia stop waiting on us (see quota/default.toml).
            let dont_have = |builder: &mut ResponseBuilder, dont_haves: &mut u64| {
                if builder.add_presence(&task.cid, Presence::DontHave) {
                    *dont_haves += 1;
                    Outcome::SentDontHave
                } else {
                    Outcome::Dropped
                }
            };
            let outcome = match (task.action, admission) {
                (_, Admission::Drop) => Outcome::Dropped,
                (Action::SendDontHave, _) => {
                    if builder.add_presence(&task.cid, Presence::DontHave) {
                        dont_haves += 1;
                        Outcome::Sent
                    } else {
                        Outcome::Dropped
                    }
                }
                (_, Admission::DontHave) => dont_have(&mut builder, &mut dont_haves),
                (Action::SendHave, Admission::Serve) => {
                    if builder.add_presence(&task.cid, Presence::Have) {
                        haves += 1;
                        Outcome::Sent
                    } else {
                        Outcome::Dropped
                    }
                }
                (Action::SendBlock, Admission::Serve) => match data.remove(task.cid.hash()) {
                    Some(bytes) => {
                        let len = bytes.len() as u64;
                        match builder.add_block(&task.cid, bytes) {
                            Ok(true) => {
                                blocks_sent += 1;
                                bytes_sent += len;
                                Outcome::Sent
                            }
                            _ => Outcome::Dropped,
                        }
                    }
                    // Vanished between lookup and read (shard removed).
                    None if task.send_dont_have => dont_have(&mut builder, &mut dont_haves),
                    None => Outcome::Dropped,
                },
            };
            outcomes.push((task.cid, outcome));
        }

        let delivered = if builder.is_empty() {
            true
        } else {
            let frames = builder.finish_parts();
            let frame_count = frames.len() as u64;
            let ok = self.send(peer, protocol, frames, control).await;
            if ok {
                let m = &self.inner.metrics;
                m.bitswap_messages_sent
                    .get_or_create(&ProtocolLabel {
                        protocol: protocol.as_str(),
                    })
                    .inc_by(frame_count);
                m.bitswap_blocks_sent.inc_by(blocks_sent);
                m.bitswap_block_bytes_sent.inc_by(bytes_sent);
                m.bitswap_haves_sent.inc_by(haves);
                m.bitswap_dont_haves_sent.inc_by(dont_haves);
            }
            ok
        };
        if !delivered {
            for (_, outcome) in &mut outcomes {
                *outcome = Outcome::Dropped;
            }
        }
        lock(&self.inner.engine).batch_done(&peer, batch.id, &outcomes);
        // The peer may have more queued work; let a worker pick it up.
        self.inner.work.notify_waiters();
    }

    /// Queues frames on the peer's writer, starting it if needed. Returns
    /// false when the peer is gone or its writer is stuck.
    async fn send(
        &self,
        peer: PeerId,
        protocol: Protocol,
        frames: Vec<OutFrame>,
        control: &libp2p_stream::Control,
    ) -> bool {
        let (sender, backlog) = {
            let mut peers = lock(&self.inner.peers);
            let state = peers.entry(peer).or_default();
            let backlog = state.backlog.clone();
            let sender = match &state.writer {
                Some(tx) if !tx.is_closed() => tx.clone(),
                _ => {
                    let (tx, rx) = mpsc::channel(WRITER_QUEUE);
                    state.writer = Some(tx.clone());
                    tokio::spawn(writer(
                        peer,
                        protocol,
                        rx,
                        control.clone(),
                        self.inner.config.send_timeout,
                        (backlog.clone(), self.inner.started),
                    ));
                    tx
                }
            };
            (sender, backlog)
        };
        let deadline = tokio::time::Instant::now() + self.inner.config.send_timeout;
        for frame in frames {
            let now_ms = self.inner.started.elapsed().as_millis() as u64;
            let queued = Queued::new(frame, &backlog, now_ms);
            // Wait for room in the peer's queue, but not on a peer that has
            // stopped reading: the quota gate is asked while waiting, so a
            // stalled peer frees this worker within STALL_MS + QUEUE_POLL.
            let sent = loop {
                match tokio::time::timeout(QUEUE_POLL, sender.reserve()).await {
                    Ok(Ok(permit)) => {
                        permit.send(queued);
                        break true;
                    }
                    Ok(Err(_)) => break false,
                    Err(_) => {
                        let now_ms = self.inner.started.elapsed().as_millis() as u64;
                        let stalled = backlog.stalled_bytes(now_ms);
                        if tokio::time::Instant::now() >= deadline
                            || self.inner.quota.check_inflight(&peer, stalled).is_some()
                        {
                            break false;
                        }
                    }
                }
            };
            if !sent {
                tracing::debug!(%peer, "peer writer stalled or gone; dropping response");
                if let Some(state) = lock(&self.inner.peers).get_mut(&peer) {
                    state.writer = None;
                }
                return false;
            }
        }
        true
    }
}

/// Owns the outbound stream to one peer: opens it lazily, writes frames in
/// order, reopens it once after a failure, and gives up on a write that
/// takes longer than `timeout`.
async fn writer(
    peer: PeerId,
    protocol: Protocol,
    mut rx: mpsc::Receiver<Queued>,
    mut control: libp2p_stream::Control,
    timeout: std::time::Duration,
    (backlog, started): (Arc<Backlog>, std::time::Instant),
) {
    let mut stream: Option<Stream> = None;
    while let Some(queued) = rx.recv().await {
        let frame = &queued.frame;
        let mut attempts = 0;
        loop {
            attempts += 1;
            if stream.is_none() {
                match tokio::time::timeout(
                    timeout,
                    control.open_stream(peer, StreamProtocol::new(protocol.as_str())),
                )
                .await
                {
                    Ok(Ok(s)) => stream = Some(s),
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "cannot open bitswap stream");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "opening bitswap stream timed out");
                        return;
                    }
                }
            }
            let Some(s) = stream.as_mut() else { return };
            let write = async {
                for part in frame.parts() {
                    for chunk in part.chunks(PROGRESS_CHUNK) {
                        s.write_all(chunk).await?;
                        backlog
                            .progress_ms
                            .store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                    }
                }
                s.flush().await
            };
            match tokio::time::timeout(timeout, write).await {
                Ok(Ok(())) => break,
                Ok(Err(e)) if attempts < 2 => {
                    tracing::debug!(%peer, error = %e, "bitswap stream write failed; reopening");
                    stream = None;
                }
                _ => {
                    tracing::debug!(%peer, "bitswap stream write failed or timed out; giving up");
                    return;
                }
            }
        }
    }
    if let Some(mut s) = stream {
        let _ = s.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backlog_counts_only_while_the_writer_is_stalled() {
        let backlog = Arc::new(Backlog::default());
        let frame = ResponseBuilder::new(Protocol::V120);
        let mut frame = frame;
        let cid = cid::Cid::new_v1(0x55, cid::multihash::Multihash::wrap(0, b"x").unwrap());
        frame.add_block(&cid, Bytes::from_static(b"x")).unwrap();
        let frame = frame.finish_parts().remove(0);
        let len = frame.len() as u64;

        // Queued at t = 10 s on an idle writer: not stalled until 12 s.
        let queued = Queued::new(frame, &backlog, 10_000);
        assert_eq!(backlog.stalled_bytes(11_999), 0);
        assert_eq!(backlog.stalled_bytes(12_000), len);
        // Progress resets the clock.
        backlog.progress_ms.store(12_500, Ordering::Relaxed);
        assert_eq!(backlog.stalled_bytes(13_000), 0);
        // Written (dropped): nothing left to count.
        drop(queued);
        assert_eq!(backlog.stalled_bytes(60_000), 0);
    }
}
