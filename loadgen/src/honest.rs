//! An honest peer: keeps `window` want-blocks in flight for random blocks
//! the server holds, verifies every block it gets, and counts what arrives
//! inside the measurement window.
//!
//! Its loop, one message at a time: top the wantlist up to `window`
//! (distinct CIDs, with sendDontHave, plus cancels for wants it gave up
//! on), send, then wait for a reply, a want timeout or the stop signal.
//! A want stream the server resets is reopened and every outstanding
//! want sent again (a reset can follow a write that seemed to succeed).
//! A DONT_HAVE cancels the want (the server keeps DONT_HAVE'd wants, as
//! boxo does, and they would count against the wantlist cap) and a new
//! block is asked for instead. Never panics on what the server sends.

use std::{collections::HashMap, sync::Arc, time::Duration};

use cid::Cid;
use libp2p::PeerId;
use sidecar::bitswap::{Presence, Response};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

use crate::{
    client::{self, BITSWAP, Reply},
    net::Node,
    report::HonestPeer,
    rng::Rng,
};

/// Replies buffered between the stream readers and the peer's loop.
const REPLY_QUEUE: usize = 64;

/// How long a failed peer waits to learn why its connection closed.
const CAUSE_WAIT: Duration = Duration::from_secs(2);

/// Want streams opened in a row before a peer gives up, and the pause
/// between attempts.
const MAX_REOPENS: u32 = 5;
const REOPEN_PAUSE: Duration = Duration::from_millis(100);

/// How often expired wants are looked for.
const TICK: Duration = Duration::from_millis(500);

/// The measurement window: only blocks received in `[start, end)` count.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    fn contains(&self, t: Instant) -> bool {
        t >= self.start && t < self.end
    }
}

/// How an honest peer fetches.
#[derive(Debug, Clone, Copy)]
pub struct HonestConfig {
    /// Want-blocks kept in flight. Must be at most the number of CIDs.
    pub window: usize,
    /// A want unanswered this long is cancelled and replaced.
    pub want_timeout: Duration,
}

/// Fetches until `stop` is cancelled. `begin` is when to send the first
/// wants (all peers start together). Errors end the peer and are recorded
/// in its report.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    node: Node,
    server: PeerId,
    cids: Arc<Vec<Cid>>,
    config: HonestConfig,
    seed: u64,
    begin: Instant,
    window: Window,
    stop: CancellationToken,
    report: &mut HonestPeer,
) {
    if let Err(e) = fetch(
        &node, server, &cids, config, seed, begin, window, &stop, report,
    )
    .await
    {
        // An error after the stop signal is the teardown, not a failure.
        if !stop.is_cancelled() {
            // A failed write usually means the connection is going; give
            // the swarm a moment to say why.
            let _ = tokio::time::timeout(CAUSE_WAIT, node.closed.cancelled()).await;
            report.error = Some(match node.close_cause() {
                Some(cause) => format!("{e} (connection closed: {cause})"),
                None => e,
            });
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn fetch(
    node: &Node,
    server: PeerId,
    cids: &[Cid],
    config: HonestConfig,
    seed: u64,
    begin: Instant,
    window: Window,
    stop: &CancellationToken,
    report: &mut HonestPeer,
) -> Result<(), String> {
    let incoming = node
        .control
        .clone()
        .accept(BITSWAP)
        .map_err(|e| format!("accepting {BITSWAP}: {e}"))?;
    let (tx, mut rx) = mpsc::channel::<Reply>(REPLY_QUEUE);
    let reader = client::spawn_reply_reader(incoming, tx);
    let _reader = AbortOnDrop(reader);
    let mut out = client::open(&node.control, server).await?;
    let mut rng = Rng::new(seed);
    let mut outstanding: HashMap<Cid, Instant> = HashMap::with_capacity(config.window);
    let mut cancels: Vec<Cid> = Vec::new();
    let mut tick = tokio::time::interval(TICK);
    tokio::time::sleep_until(begin).await;
    loop {
        let now = Instant::now();
        let mut wants = Vec::new();
        while outstanding.len() < config.window {
            let cid = cids[rng.below(cids.len())];
            if outstanding.insert(cid, now).is_none() {
                wants.push(cid);
            }
        }
        if !wants.is_empty() || !cancels.is_empty() {
            let frame = client::want_blocks(&wants, &cancels, false);
            if let Err(e) = client::send(&mut out, &frame).await {
                out = reopen(node, server, &outstanding, e, report).await?;
            }
            cancels.clear();
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = node.closed.cancelled() => return Err("the server closed the connection".into()),
            reply = rx.recv() => match reply {
                Some(Ok(response)) => {
                    take(&response, &mut outstanding, &mut cancels, window, report);
                }
                Some(Err(e)) => return Err(e),
                None => return Err("reply streams ended".into()),
            },
            // A write that succeeded may still be lost: the server can reset
            // the stream after the bytes left (the sidecar does when it cannot
            // accept the stream in time). Notice the reset, not the next write.
            () = reset_by_server(&mut out) => {
                let e = "the server reset the want stream".to_string();
                out = reopen(node, server, &outstanding, e, report).await?;
            }
            _ = tick.tick() => {
                let now = Instant::now();
                outstanding.retain(|cid, sent| {
                    let keep = now.duration_since(*sent) < config.want_timeout;
                    if !keep {
                        cancels.push(*cid);
                        report.timeouts += u64::from(window.contains(now));
                    }
                    keep
                });
            }
        }
    }
}

/// Replaces a want stream the server reset (or that failed to write) and
/// sends every outstanding want again, as boxo's message queue does: the
/// lost message may never have been read. Wants the server already holds
/// are not duplicated by that. Gives up after [`MAX_REOPENS`] failures in
/// a row.
async fn reopen(
    node: &Node,
    server: PeerId,
    outstanding: &HashMap<Cid, Instant>,
    mut error: String,
    report: &mut HonestPeer,
) -> Result<libp2p::Stream, String> {
    let wants: Vec<Cid> = outstanding.keys().copied().collect();
    let frame = client::want_blocks(&wants, &[], false);
    for _ in 0..MAX_REOPENS {
        if node.closed.is_cancelled() {
            break;
        }
        report.stream_reopens += 1;
        let attempt = async {
            let mut s = client::open(&node.control, server).await?;
            client::send(&mut s, &frame).await?;
            Ok::<_, String>(s)
        };
        match attempt.await {
            Ok(s) => return Ok(s),
            Err(e) => error = e,
        }
        tokio::time::sleep(REOPEN_PAUSE).await;
    }
    Err(error)
}

/// Completes once the server has closed or reset `stream` (it never
/// writes on a want stream, so any read result but data means that).
async fn reset_by_server(stream: &mut libp2p::Stream) {
    let mut buf = [0u8; 64];
    while let Ok(n) = futures::AsyncReadExt::read(stream, &mut buf).await {
        if n == 0 {
            return;
        }
    }
}

/// Applies one reply: verified blocks are counted (inside the window),
/// DONT_HAVEs are cancelled and counted.
fn take(
    response: &Response,
    outstanding: &mut HashMap<Cid, Instant>,
    cancels: &mut Vec<Cid>,
    window: Window,
    report: &mut HonestPeer,
) {
    let now = Instant::now();
    let counted = window.contains(now);
    for block in &response.blocks {
        let asked = client::block_cid(block).and_then(|cid| outstanding.remove(&cid));
        match asked {
            Some(sent) if counted => {
                report.blocks += 1;
                report.bytes += block.data.len() as u64;
                let us = now.duration_since(sent).as_micros();
                report
                    .latencies_us
                    .push(us.min(u128::from(u32::MAX)) as u32);
            }
            Some(_) => {}
            None => report.unverified += 1,
        }
    }
    for (cid, presence) in &response.presences {
        if *presence == Presence::DontHave && outstanding.remove(cid).is_some() {
            cancels.push(*cid);
            report.dont_haves += u64::from(counted);
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sidecar::bitswap::{Prefix, ResponseBlock};
    use sidecar::car::{RAW, cid_v1_sha256};

    fn block(data: &'static [u8], cid: &Cid) -> ResponseBlock {
        ResponseBlock {
            prefix: Some(Prefix::of(cid)),
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn only_verified_wanted_blocks_in_the_window_count() {
        let a = cid_v1_sha256(RAW, b"a");
        let b = cid_v1_sha256(RAW, b"b");
        let c = cid_v1_sha256(RAW, b"c");
        let now = Instant::now();
        let window = Window {
            start: now - Duration::from_secs(1),
            end: now + Duration::from_secs(60),
        };
        let mut outstanding = HashMap::from([(a, now), (b, now), (c, now)]);
        let mut cancels = Vec::new();
        let mut report = HonestPeer::default();
        let response = Response {
            blocks: vec![
                block(b"a", &a),
                block(b"x", &b), // corrupt: hashes to something else
                block(b"a", &a), // duplicate: no longer outstanding
            ],
            presences: vec![(c, Presence::DontHave)],
            ..Response::default()
        };
        take(
            &response,
            &mut outstanding,
            &mut cancels,
            window,
            &mut report,
        );
        assert_eq!((report.blocks, report.bytes), (1, 1));
        assert_eq!(report.unverified, 2);
        assert_eq!(report.dont_haves, 1);
        assert_eq!(cancels, vec![c]);
        assert_eq!(outstanding.len(), 1, "b is still wanted");
        assert!(outstanding.contains_key(&b));

        // Outside the window nothing is counted, but wants are still settled.
        let late = Window {
            start: now + Duration::from_secs(30),
            end: now + Duration::from_secs(60),
        };
        let mut report = HonestPeer::default();
        let response = Response {
            blocks: vec![block(b"b", &b)],
            ..Response::default()
        };
        take(&response, &mut outstanding, &mut cancels, late, &mut report);
        assert_eq!(report.blocks, 0);
        assert!(outstanding.is_empty());
    }
}
