//! Abusive peers: what a greedy or hostile client can do with one
//! identity and one connection, as fast as this process can do it.
//!
//! - [`Mode::Flood`]: `streams` writers send want-blocks (sendDontHave) for
//!   `batch` random CIDs per message, back to back, and cancel every want a
//!   DONT_HAVE answered, so the server's per-peer wantlist cap never stops
//!   the flow of new work.
//! - [`Mode::Wantlist`]: full wantlists of `wantlist_entries` fresh CIDs
//!   (100,000 by default), split into messages under the 4 MiB frame limit
//!   (the first one `full`), back to back.
//! - [`Mode::Streams`]: `streams` tasks open streams as fast as the
//!   server lets them, send one want on each and hold up to `max_streams`
//!   of them open; streams the server resets are dropped and replaced.
//!
//! CIDs are absent from the server (random digests) unless `present` is
//! set, in which case they are drawn from the CAR (a greedy downloader).
//! Every reply is read and counted. Counters cover the whole run.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use cid::Cid;
use futures::FutureExt;
use libp2p::{PeerId, Stream};
use sidecar::bitswap::{MAX_MESSAGE_SIZE, Presence};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    client::{self, BITSWAP, Reply},
    net::Node,
    report::AbusivePeer,
    rng::Rng,
};

/// Pause after a failed open or write before trying again, so a refusing
/// server costs this process a retry loop, not a spin.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Replies buffered between the stream readers and the counting task.
const REPLY_QUEUE: usize = 256;

/// DONT_HAVE'd CIDs waiting to be cancelled by the flood writers; past it
/// they are forgotten (the server's wantlist cap then bites).
const CANCEL_QUEUE: usize = 65_536;

/// Bytes of one want entry in a message, with margin: a 36-byte CIDv1
/// plus tag, length, priority, type and flag bytes.
const WANT_ENTRY_BYTES: usize = 48;

/// The attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Flood,
    Wantlist,
    Streams,
}

/// How an abusive peer behaves.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct AbuseConfig {
    pub mode: Mode,
    /// Want CIDs the server holds (from the CAR) instead of random ones.
    pub present: bool,
    /// Flood: wants per message.
    pub batch: usize,
    /// Flood: parallel writer streams. Streams: parallel openers.
    pub streams: usize,
    /// Wantlist: entries per full wantlist.
    pub wantlist_entries: usize,
    /// Streams: most streams held open at once.
    pub max_streams: usize,
}

#[derive(Default)]
struct Counters {
    messages: AtomicU64,
    wants: AtomicU64,
    cancels: AtomicU64,
    opened: AtomicU64,
    open_errors: AtomicU64,
    write_errors: AtomicU64,
    closed_by_server: AtomicU64,
    blocks: AtomicU64,
    bytes: AtomicU64,
    haves: AtomicU64,
    dont_haves: AtomicU64,
}

/// What the writers share.
struct Shared {
    node: Node,
    server: PeerId,
    cids: Arc<Vec<Cid>>,
    config: AbuseConfig,
    counters: Counters,
    stop: CancellationToken,
}

impl Shared {
    fn cid(&self, rng: &mut Rng) -> Cid {
        if self.config.present {
            self.cids[rng.below(self.cids.len())]
        } else {
            rng.absent_cid()
        }
    }

    fn stopped(&self) -> bool {
        self.stop.is_cancelled() || self.node.closed.is_cancelled()
    }

    /// Sleeps [`RETRY_PAUSE`] unless stopped first.
    async fn pause(&self) {
        tokio::select! {
            _ = self.stop.cancelled() => {}
            _ = self.node.closed.cancelled() => {}
            _ = tokio::time::sleep(RETRY_PAUSE) => {}
        }
    }
}

/// Runs the attack until `stop` is cancelled (or the server hangs up) and
/// fills in `report`.
pub async fn run(
    node: Node,
    server: PeerId,
    cids: Arc<Vec<Cid>>,
    config: AbuseConfig,
    seed: u64,
    stop: CancellationToken,
    report: &mut AbusivePeer,
) {
    let incoming = match node.control.clone().accept(BITSWAP) {
        Ok(i) => i,
        Err(e) => {
            report.error = Some(format!("accepting {BITSWAP}: {e}"));
            return;
        }
    };
    let shared = Arc::new(Shared {
        node,
        server,
        cids,
        config,
        counters: Counters::default(),
        stop,
    });
    let (reply_tx, reply_rx) = mpsc::channel::<Reply>(REPLY_QUEUE);
    let (cancel_tx, cancel_rx) = mpsc::channel::<Cid>(CANCEL_QUEUE);
    let reader = client::spawn_reply_reader(incoming, reply_tx);
    let counter = tokio::spawn(count_replies(shared.clone(), reply_rx, cancel_tx));
    let cancel_rx = Arc::new(tokio::sync::Mutex::new(cancel_rx));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..config.streams.max(1) {
        let s = shared.clone();
        let rng = Rng::new(seed ^ ((i as u64) << 32));
        match config.mode {
            Mode::Flood => tasks.spawn(flood(s, rng, cancel_rx.clone())),
            Mode::Wantlist => tasks.spawn(wantlist(s, rng)),
            Mode::Streams => tasks.spawn(open_streams(s, rng)),
        };
    }
    tokio::select! {
        _ = shared.stop.cancelled() => {}
        _ = shared.node.closed.cancelled() => {}
    }
    tasks.shutdown().await;
    reader.abort();
    counter.abort();
    let c = &shared.counters;
    report.mode = format!("{:?}", config.mode).to_lowercase();
    report.messages_sent = c.messages.load(Relaxed);
    report.wants_sent = c.wants.load(Relaxed);
    report.cancels_sent = c.cancels.load(Relaxed);
    report.streams_opened = c.opened.load(Relaxed);
    report.stream_open_errors = c.open_errors.load(Relaxed);
    report.write_errors = c.write_errors.load(Relaxed);
    report.streams_closed_by_server = c.closed_by_server.load(Relaxed);
    report.blocks_received = c.blocks.load(Relaxed);
    report.bytes_received = c.bytes.load(Relaxed);
    report.haves_received = c.haves.load(Relaxed);
    report.dont_haves_received = c.dont_haves.load(Relaxed);
    report.disconnected = shared.node.closed.is_cancelled() && !shared.stop.is_cancelled();
}

async fn count_replies(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Reply>,
    cancels: mpsc::Sender<Cid>,
) {
    let c = &shared.counters;
    while let Some(reply) = rx.recv().await {
        let Ok(response) = reply else { continue };
        c.blocks.fetch_add(response.blocks.len() as u64, Relaxed);
        let bytes: usize = response.blocks.iter().map(|b| b.data.len()).sum();
        c.bytes.fetch_add(bytes as u64, Relaxed);
        for (cid, presence) in response.presences {
            match presence {
                Presence::Have => {
                    c.haves.fetch_add(1, Relaxed);
                }
                Presence::DontHave => {
                    c.dont_haves.fetch_add(1, Relaxed);
                    let _ = cancels.try_send(cid);
                }
            }
        }
    }
}

/// Opens (or reopens) the writer's stream; `None` once stopped.
async fn stream(shared: &Shared, current: &mut Option<Stream>) -> Option<()> {
    while current.is_none() {
        if shared.stopped() {
            return None;
        }
        match client::open(&shared.node.control, shared.server).await {
            Ok(s) => {
                shared.counters.opened.fetch_add(1, Relaxed);
                *current = Some(s);
            }
            Err(_) => {
                shared.counters.open_errors.fetch_add(1, Relaxed);
                shared.pause().await;
            }
        }
    }
    Some(())
}

/// Sends `frame` on the writer's stream; a failed write drops the stream
/// (the next call reopens it). Returns whether the frame was written.
async fn write(shared: &Shared, current: &mut Option<Stream>, frame: &[u8]) -> bool {
    let Some(s) = current.as_mut() else {
        return false;
    };
    if client::send(s, frame).await.is_ok() {
        shared.counters.messages.fetch_add(1, Relaxed);
        true
    } else {
        shared.counters.write_errors.fetch_add(1, Relaxed);
        *current = None;
        shared.pause().await;
        false
    }
}

async fn flood(
    shared: Arc<Shared>,
    mut rng: Rng,
    cancel_rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Cid>>>,
) {
    let mut current = None;
    let batch = shared.config.batch.max(1);
    let mut cancels = Vec::with_capacity(batch);
    while stream(&shared, &mut current).await.is_some() {
        let wants: Vec<Cid> = (0..batch).map(|_| shared.cid(&mut rng)).collect();
        cancels.clear();
        {
            let mut rx = cancel_rx.lock().await;
            while cancels.len() < batch {
                match rx.try_recv() {
                    Ok(cid) => cancels.push(cid),
                    Err(_) => break,
                }
            }
        }
        let frame = client::want_blocks(&wants, &cancels, false);
        if write(&shared, &mut current, &frame).await {
            shared.counters.wants.fetch_add(wants.len() as u64, Relaxed);
            shared
                .counters
                .cancels
                .fetch_add(cancels.len() as u64, Relaxed);
        }
    }
}

async fn wantlist(shared: Arc<Shared>, mut rng: Rng) {
    let mut current = None;
    let per_message = (MAX_MESSAGE_SIZE / 2 / WANT_ENTRY_BYTES).max(1);
    while stream(&shared, &mut current).await.is_some() {
        let mut left = shared.config.wantlist_entries.max(1);
        let mut first = true;
        while left > 0 && current.is_some() && !shared.stopped() {
            let n = left.min(per_message);
            let wants: Vec<Cid> = (0..n).map(|_| shared.cid(&mut rng)).collect();
            let frame = client::want_blocks(&wants, &[], first);
            if write(&shared, &mut current, &frame).await {
                shared.counters.wants.fetch_add(n as u64, Relaxed);
            }
            left -= n;
            first = false;
        }
    }
}

async fn open_streams(shared: Arc<Shared>, mut rng: Rng) {
    // This task's share of the streams held open; the server's resets are
    // noticed and those streams dropped, so the slots (and yamux's
    // per-connection stream budget) go to new opens.
    let cap = (shared.config.max_streams / shared.config.streams.max(1)).max(1);
    let mut held: VecDeque<Stream> = VecDeque::with_capacity(cap);
    while !shared.stopped() {
        let before = held.len();
        held.retain_mut(|s| !closed_now(s));
        shared
            .counters
            .closed_by_server
            .fetch_add((before - held.len()) as u64, Relaxed);
        let mut current = None;
        if stream(&shared, &mut current).await.is_none() {
            return;
        }
        let want = [shared.cid(&mut rng)];
        let frame = client::want_blocks(&want, &[], false);
        if write(&shared, &mut current, &frame).await
            && let Some(s) = current
        {
            shared.counters.wants.fetch_add(1, Relaxed);
            held.push_back(s);
            while held.len() > cap {
                held.pop_front();
            }
        }
    }
}

/// Whether the server has already closed or reset `stream` (without
/// waiting: a stream with nothing to read yet is open).
fn closed_now(stream: &mut Stream) -> bool {
    let mut buf = [0u8; 64];
    match futures::AsyncReadExt::read(stream, &mut buf).now_or_never() {
        Some(Ok(0)) | Some(Err(_)) => true,
        Some(Ok(_)) | None => false,
    }
}
