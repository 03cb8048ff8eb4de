//! Client-side Bitswap 1.2.0 plumbing shared by honest and abusive peers:
//! encoding wantlists, reading the server's reply streams, and checking a
//! received block against its CID.
//!
//! Replies never come back on the stream the wants went out on: the server
//! opens a stream of its own to the client, so every peer must
//! [`accept`](libp2p_stream::Control::accept) the protocol before it asks
//! for anything. The message encoding and decoding are the sidecar's
//! (`sidecar::bitswap`).

use std::time::Duration;

use bytes::Bytes;
use cid::Cid;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use sha2::{Digest, Sha256};
use sidecar::{
    bitswap::{
        FrameDecoder, Request, Response, ResponseBlock, WantEntry, WantKind, decode_response,
        encode_request,
    },
    car::SHA2_256,
};
use tokio::sync::mpsc;

/// The protocol every load-generator peer speaks.
pub const BITSWAP: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");

/// Bound on opening a stream and on one write; a server that takes longer
/// is treated as having dropped us.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Read buffer per reply stream.
const READ_CHUNK: usize = 256 * 1024;

/// One framed message: want-blocks (with sendDontHave) for `wants`, then
/// cancels; `full` makes it the peer's complete wantlist.
pub fn want_blocks(wants: &[Cid], cancels: &[Cid], full: bool) -> Bytes {
    encode_request(&Request {
        full,
        wants: wants
            .iter()
            .map(|cid| WantEntry {
                cid: *cid,
                priority: 1,
                kind: WantKind::Block,
                send_dont_have: true,
            })
            .collect(),
        cancels: cancels.to_vec(),
        ..Request::default()
    })
}

/// The CID a received block really has: its prefix with the sha2-256 of
/// its bytes. `None` for a block without a prefix or with another hash
/// (this load generator only asks for sha2-256 blocks).
pub fn block_cid(block: &ResponseBlock) -> Option<Cid> {
    let prefix = block.prefix?;
    if prefix.mh_code != SHA2_256 {
        return None;
    }
    prefix.to_cid(&Sha256::digest(&block.data)).ok()
}

/// What the reply readers hand over: a decoded message, or why a reply
/// stream had to be abandoned.
pub type Reply = Result<Response, String>;

/// Reads every reply stream the server opens, decodes each message and
/// sends it to `tx` (waiting when it is full: the server then sees
/// back-pressure). Runs until `incoming` ends or `tx` is closed; abort the
/// returned task to stop it early.
pub fn spawn_reply_reader(
    mut incoming: libp2p_stream::IncomingStreams,
    tx: mpsc::Sender<Reply>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut readers = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                next = incoming.next() => match next {
                    Some((_, stream)) => {
                        readers.spawn(read_replies(stream, tx.clone()));
                    }
                    None => break,
                },
                Some(_) = readers.join_next(), if !readers.is_empty() => {}
                _ = tx.closed() => break,
            }
        }
    })
}

async fn read_replies(mut stream: Stream, tx: mpsc::Sender<Reply>) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return, // the server closed or reset it
            Ok(n) => n,
        };
        let mut input = &buf[..n];
        loop {
            let reply = match decoder.decode(&mut input) {
                Ok(Some(frame)) => decode_response(frame).map_err(|e| e.to_string()),
                Ok(None) => break,
                Err(e) => Err(format!("bad frame from server: {e}")),
            };
            let fatal = reply.is_err();
            if tx.send(reply).await.is_err() || fatal {
                return;
            }
        }
    }
}

/// Opens a Bitswap stream to `server` within [`IO_TIMEOUT`].
pub async fn open(control: &libp2p_stream::Control, server: PeerId) -> Result<Stream, String> {
    match tokio::time::timeout(IO_TIMEOUT, control.clone().open_stream(server, BITSWAP)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("opening a bitswap stream: {e}")),
        Err(_) => Err("opening a bitswap stream timed out".into()),
    }
}

/// Writes one frame within [`IO_TIMEOUT`].
pub async fn send(stream: &mut Stream, frame: &[u8]) -> Result<(), String> {
    let write = async {
        stream.write_all(frame).await?;
        stream.flush().await
    };
    match tokio::time::timeout(IO_TIMEOUT, write).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("writing wants: {e}")),
        Err(_) => Err("writing wants timed out".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sidecar::bitswap::{Prefix, decode_request};
    use sidecar::car::{RAW, cid_v1_sha256};

    #[test]
    fn wants_round_trip_through_the_server_decoder() {
        let a = cid_v1_sha256(RAW, b"a");
        let b = cid_v1_sha256(RAW, b"b");
        let frame = want_blocks(&[a], &[b], true);
        let mut decoder = FrameDecoder::new();
        let mut input = &frame[..];
        let body = decoder.decode(&mut input).unwrap().unwrap();
        let req = decode_request(&body, 256).unwrap();
        assert!(req.full);
        assert_eq!(req.wants.len(), 1);
        assert_eq!(req.wants[0].cid, a);
        assert!(req.wants[0].send_dont_have);
        assert_eq!(req.wants[0].kind, WantKind::Block);
        assert_eq!(req.cancels, vec![b]);
    }

    #[test]
    fn block_cid_detects_corrupt_data() {
        let data = Bytes::from_static(b"hello");
        let cid = cid_v1_sha256(RAW, &data);
        let good = ResponseBlock {
            prefix: Some(Prefix::of(&cid)),
            data: data.clone(),
        };
        assert_eq!(block_cid(&good), Some(cid));
        let bad = ResponseBlock {
            prefix: Some(Prefix::of(&cid)),
            data: Bytes::from_static(b"hellp"),
        };
        assert_ne!(block_cid(&bad), Some(cid));
        let legacy = ResponseBlock { prefix: None, data };
        assert_eq!(block_cid(&legacy), None);
    }
}
