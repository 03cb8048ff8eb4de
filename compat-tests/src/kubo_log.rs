//! Reading a client Kubo's JSON go-log (see [`crate::kubo::BITSWAP_CLIENT_LOG_LEVEL`]):
//! which DONT_HAVEs really arrived over the wire from a server.
//!
//! boxo's session logs `"Bitswap <- DONT_HAVE"` with `from` and `cid` for every DONT_HAVE
//! it receives, and after 16 consecutive ones from a peer `"peer <id> sent too many dont
//! haves, removing from session"`. The same session line is logged for a DONT_HAVE Kubo
//! *simulates* when a want-block gets no answer within its (50 ms on loopback) timeout,
//! each announced by the message queue as `"Bitswap: timeout waiting for blocks"` with its
//! CIDs; [`observe_dont_haves`] subtracts those.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::kubo::Kubo;

/// The go-log events `client` has written since line `from`.
pub fn log_events_since(client: &Kubo, from: usize) -> Vec<Value> {
    client.golog_lines().into_iter().skip(from).collect()
}

/// Whether an event's message starts with `prefix`.
pub fn is_msg(v: &Value, prefix: &str) -> bool {
    v["msg"].as_str().is_some_and(|m| m.starts_with(prefix))
}

/// What Kubo's session log says about DONT_HAVEs from one peer.
#[derive(Debug, Default)]
pub struct DontHaveObservation {
    /// Per CID: session "Bitswap <- DONT_HAVE" lines minus the DONT_HAVEs Kubo simulated
    /// for it after a timeout, i.e. DONT_HAVEs that arrived over the wire. Only CIDs with
    /// at least one such DONT_HAVE are kept.
    pub real: BTreeMap<String, usize>,
    /// CIDs Kubo simulated a DONT_HAVE for ("Bitswap: timeout waiting for blocks").
    pub simulated: usize,
    /// Whether Kubo logged pruning the peer from the session.
    pub pruned: bool,
}

/// Reads [`DontHaveObservation`] for `peer` out of Kubo's JSON go-log `events`.
pub fn observe_dont_haves(events: &[Value], peer: &str) -> DontHaveObservation {
    let mut logged: BTreeMap<String, isize> = BTreeMap::new();
    let mut obs = DontHaveObservation::default();
    for v in events {
        if is_msg(v, "Bitswap <- DONT_HAVE") && v["from"] == peer {
            if let Some(cid) = v["cid"].as_str() {
                *logged.entry(cid.to_owned()).or_default() += 1;
            }
        } else if is_msg(v, "Bitswap: timeout waiting for blocks") && v["peer"] == peer {
            for cid in v["cids"].as_array().into_iter().flatten() {
                if let Some(cid) = cid["/"].as_str().or(cid.as_str()) {
                    *logged.entry(cid.to_owned()).or_default() -= 1;
                    obs.simulated += 1;
                }
            }
        } else if is_msg(v, &format!("peer {peer} sent too many dont haves")) {
            obs.pruned = true;
        }
    }
    obs.real = logged
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| (c, n as usize))
        .collect();
    obs
}
