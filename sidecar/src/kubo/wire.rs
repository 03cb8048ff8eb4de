//! The shapes of Kubo's RPC answers: bytes in, values out.
//!
//! Pure: no I/O, no clock. Called by the client in `mod.rs`; the bodies it
//! gets here are already bounded. Must never panic or allocate more than
//! a small multiple of the input on any input.

use base64::Engine;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::KuboError;

/// Largest IPNS record (IPNS spec, "Record Size Limit": 10 KiB). Kubo
/// refuses larger ones, so a larger answer is not a record.
pub const MAX_RECORD_SIZE: usize = 10 * 1024;

/// `routing.Value` in go-libp2p's `QueryEventType` enumeration: the event
/// whose `Extra` holds the value.
const EVENT_VALUE: i64 = 5;
/// `routing.QueryError`: the event whose `Extra` holds an error message.
const EVENT_QUERY_ERROR: i64 = 3;

/// `/api/v0/version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KuboVersion {
    /// As Kubo says it (`0.43.0`, `0.44.0-dev`).
    pub version: String,
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl KuboVersion {
    /// Parses `major.minor.patch` with an optional `v` in front and any
    /// `-pre`/`+build` suffix (`0.43.0`, `0.44.0-dev`, `v0.40.1`).
    pub fn parse(text: &str) -> Result<Self, KuboError> {
        let text = text.trim();
        let core = text.strip_prefix('v').unwrap_or(text);
        let core = core.split(['-', '+']).next().unwrap_or_default();
        let mut parts = core.split('.').map(str::parse::<u64>);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch)), None) => Ok(Self {
                version: text.to_string(),
                major,
                minor,
                patch,
            }),
            _ => Err(KuboError::malformed(
                "version",
                format_args!("{:?} is not major.minor.patch", cut(text)),
            )),
        }
    }

    /// Whether Kubo has `name/put` and `name/get` (added in 0.40).
    pub fn has_name_put(&self) -> bool {
        (self.major, self.minor) >= (0, 40)
    }
}

/// A key in Kubo's keystore (`key/ls`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct KuboKey {
    /// The key's name in Kubo (`self` is the node's identity).
    #[serde(rename = "Name")]
    pub name: String,
    /// The IPNS name it signs for, as Kubo prints it (`k51…`).
    #[serde(rename = "Id")]
    pub id: String,
}

/// Peers in Kubo's DHT routing tables (`stats/dht`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DhtPeers {
    /// In the LAN DHT (loopback and private addresses).
    pub lan: usize,
    /// In the WAN DHT (public addresses; any table not named `lan`).
    pub wan: usize,
}

/// One JSON document (the whole answer).
pub(super) fn json<T: serde::de::DeserializeOwned>(
    command: &str,
    body: &[u8],
) -> Result<T, KuboError> {
    serde_json::from_slice(body).map_err(|e| KuboError::malformed(command, e))
}

/// `version`: `{"Version":"0.43.0","Commit":"",…}`.
pub(super) fn version(body: &[u8]) -> Result<KuboVersion, KuboError> {
    #[derive(Deserialize)]
    struct Version {
        #[serde(rename = "Version")]
        version: String,
    }
    KuboVersion::parse(&json::<Version>("version", body)?.version)
}

/// `key/ls`: `{"Keys":[{"Name":"self","Id":"k51…"}]}` (`null` when empty).
pub(super) fn keys(command: &str, body: &[u8]) -> Result<Vec<KuboKey>, KuboError> {
    #[derive(Deserialize)]
    struct Keys {
        #[serde(rename = "Keys")]
        keys: Option<Vec<KuboKey>>,
    }
    Ok(json::<Keys>(command, body)?.keys.unwrap_or_default())
}

/// `name/publish`: `{"Name":"k51…","Value":"/ipfs/…"}`; the name.
pub(super) fn published_name(body: &[u8]) -> Result<String, KuboError> {
    #[derive(Deserialize)]
    struct Published {
        #[serde(rename = "Name")]
        name: String,
    }
    Ok(json::<Published>("name/publish", body)?.name)
}

/// Non-empty lines of an NDJSON answer.
fn ndjson_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|b| *b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
}

/// The record in a `routing/get` answer: the base64 `Extra` of the first
/// value event. A query-error event without a value is Kubo's error.
pub(super) fn routing_get_record(body: &[u8]) -> Result<Vec<u8>, KuboError> {
    const COMMAND: &str = "routing/get";
    #[derive(Deserialize)]
    struct Event {
        #[serde(rename = "Type")]
        kind: i64,
        #[serde(rename = "Extra", default)]
        extra: Option<String>,
    }
    let mut query_error = None;
    for line in ndjson_lines(body) {
        let event: Event =
            serde_json::from_slice(line).map_err(|e| KuboError::malformed(COMMAND, e))?;
        let extra = event.extra.unwrap_or_default();
        match event.kind {
            EVENT_VALUE => return decode_record(COMMAND, &extra),
            EVENT_QUERY_ERROR if query_error.is_none() => query_error = Some(extra),
            _ => {}
        }
    }
    match query_error {
        Some(message) => Err(super::error::from_message(200, &message)),
        None => Err(KuboError::malformed(COMMAND, "no value event")),
    }
}

/// Standard base64 (Go's `[]byte` in JSON) of at most [`MAX_RECORD_SIZE`]
/// bytes.
fn decode_record(command: &str, b64: &str) -> Result<Vec<u8>, KuboError> {
    // Checked before decoding, so a huge value costs no allocation.
    if b64.len() > MAX_RECORD_SIZE.div_ceil(3) * 4 {
        return Err(KuboError::malformed(
            command,
            format_args!("record longer than {MAX_RECORD_SIZE} bytes"),
        ));
    }
    let record = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| KuboError::malformed(command, format_args!("record is not base64: {e}")))?;
    check_record(command, &record)?;
    Ok(record)
}

/// A record answer must be 1..=[`MAX_RECORD_SIZE`] bytes.
pub(super) fn check_record(command: &str, record: &[u8]) -> Result<(), KuboError> {
    if record.is_empty() {
        return Err(KuboError::malformed(command, "empty record"));
    }
    if record.len() > MAX_RECORD_SIZE {
        return Err(KuboError::malformed(
            command,
            format_args!("record longer than {MAX_RECORD_SIZE} bytes"),
        ));
    }
    Ok(())
}

/// Peer counts from a `stats/dht` answer: one JSON object per DHT,
/// `{"Name":"wan"|"lan","Buckets":[{"Peers":[…]},…]}`.
pub(super) fn dht_peers(body: &[u8]) -> Result<DhtPeers, KuboError> {
    const COMMAND: &str = "stats/dht";
    #[derive(Deserialize)]
    struct Bucket {
        // `IgnoredAny` is zero-sized: counting allocates nothing per peer.
        #[serde(rename = "Peers", default)]
        peers: Option<Vec<IgnoredAny>>,
    }
    #[derive(Deserialize)]
    struct Dht {
        #[serde(rename = "Name")]
        name: String,
        #[serde(rename = "Buckets", default)]
        buckets: Option<Vec<Bucket>>,
    }
    let mut peers = DhtPeers::default();
    for line in ndjson_lines(body) {
        let dht: Dht =
            serde_json::from_slice(line).map_err(|e| KuboError::malformed(COMMAND, e))?;
        let n: usize = dht
            .buckets
            .unwrap_or_default()
            .iter()
            .map(|b| b.peers.as_ref().map_or(0, Vec::len))
            .sum();
        match dht.name.as_str() {
            "lan" => peers.lan += n,
            _ => peers.wan += n,
        }
    }
    Ok(peers)
}

/// At most 64 characters of `text`, for messages.
fn cut(text: &str) -> &str {
    text.char_indices()
        .nth(64)
        .map_or(text, |(i, _)| &text[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real answers from Kubo 0.43.0 (`Routing.Type=dht`, loopback peers).

    /// `routing/get?arg=/ipns/k51qzi5uqu5di3lqsv9ryf2nmy7884jpkh2qjkmoqund8tk37x38yj34dw2yg6`
    /// after `name/publish --allow-offline /ipfs/bafkqaaa` on that node.
    const ROUTING_GET: &str = r#"{"ID":"","Type":5,"Responses":null,"Extra":"Cg4vaXBmcy9iYWZrcWFhYRJARc6QdfqcgwdP2h4u41Cg2GfMvSP+6kJmx4v4YTOhEJ9/WE+omR4BvUj2CBPEyexAatrbrxKodylDcxhIOgJFCBgAIh4yMDI2LTExLTI0VDEzOjI5OjM4LjYxMDQ4MTYwOVooADCA8JLL3QhCQH7RqX7NTQdF+fyNSfQ69GZTKdVMp5Z9bwL9a4qVmMhJoyWcjHqZBrMpZn/R2KAugzRRODShsvNCcby1+GdArw9KZKVjVFRMGwAAAEXZZLgAZVZhbHVlTi9pcGZzL2JhZmtxYWFhaFNlcXVlbmNlAGhWYWxpZGl0eVgeMjAyNi0xMS0yNFQxMzoyOTozOC42MTA0ODE2MDlabFZhbGlkaXR5VHlwZQA="}
"#;
    /// `stats/dht` on a node with no peers.
    const STATS_DHT_EMPTY: &str =
        "{\"Name\":\"wan\",\"Buckets\":[]}\n{\"Name\":\"lan\",\"Buckets\":[]}\n";
    /// `stats/dht` on a node swarm-connected to one other DHT node.
    const STATS_DHT_ONE_PEER: &str = r#"{"Name":"wan","Buckets":[]}
{"Name":"lan","Buckets":[{"LastRefresh":"2026-11-22T13:30:46Z","Peers":[{"ID":"12D3KooWEzcn2sFRhoG6FpPBkicPN2CmYxjQ3tx2n6nrMbgq5KSu","Connected":true,"AgentVersion":"kubo/0.43.0","LastUsefulAt":"2026-11-22T13:30:46Z","LastQueriedAt":"2026-11-22T13:30:46Z"}]}]}
"#;
    /// `version`.
    const VERSION: &str = r#"{"Version":"0.43.0","Commit":"","Repo":"18","System":"amd64/linux","Golang":"go1.26.8"}
"#;
    /// `key/ls`.
    const KEY_LS: &str = r#"{"Keys":[{"Name":"self","Id":"k51qzi5uqu5dhxheai3i22dln4ljk1tqekcr18id2vwp3zd93rr14inomh25l7"}]}
"#;
    /// `name/publish?arg=/ipfs/bafkqaaa&resolve=false&allow-offline=true`.
    const NAME_PUBLISH: &str = r#"{"Name":"k51qzi5uqu5dhxheai3i22dln4ljk1tqekcr18id2vwp3zd93rr14inomh25l7","Value":"/ipfs/bafkqaaa"}
"#;

    #[test]
    fn versions_parse_and_gate_name_put() {
        let v = version(VERSION.as_bytes()).unwrap();
        assert_eq!(
            (v.version.as_str(), v.major, v.minor, v.patch),
            ("0.43.0", 0, 43, 0)
        );
        assert!(v.has_name_put());
        let dev = KuboVersion::parse("0.44.0-dev").unwrap();
        assert_eq!(
            (dev.version.as_str(), dev.minor, dev.patch),
            ("0.44.0-dev", 44, 0)
        );
        assert!(dev.has_name_put());
        assert!(KuboVersion::parse("0.40.0-rc1").unwrap().has_name_put());
        assert!(!KuboVersion::parse("v0.39.2").unwrap().has_name_put());
        assert!(KuboVersion::parse("1.0.0").unwrap().has_name_put());
        for bad in [
            "",
            "0.43",
            "zero.1.2",
            "0.43.0.1",
            "0.-1.0",
            "99999999999999999999.0.0",
            "garbage",
        ] {
            let e = KuboVersion::parse(bad).unwrap_err();
            assert!(matches!(e, KuboError::Malformed(_)), "{bad:?}: {e:?}");
        }
        assert!(matches!(
            version(b"{}").unwrap_err(),
            KuboError::Malformed(_)
        ));
        assert!(matches!(
            version(b"<html>").unwrap_err(),
            KuboError::Malformed(_)
        ));
    }

    #[test]
    fn routing_get_takes_the_value_event() {
        let record = routing_get_record(ROUTING_GET.as_bytes()).unwrap();
        assert_eq!(record.len(), 293);
        // The record's protobuf starts with field 1 (value) = "/ipfs/bafkqaaa".
        assert_eq!(&record[..16], b"\x0a\x0e/ipfs/bafkqaaa");
        // Other events before the value are skipped.
        let with_peer_events =
            format!("{{\"ID\":\"12D3KooW\",\"Type\":1,\"Responses\":[]}}\r\n\n{ROUTING_GET}");
        assert_eq!(
            routing_get_record(with_peer_events.as_bytes()).unwrap(),
            record
        );
    }

    #[test]
    fn routing_get_refuses_what_is_not_a_record() {
        let malformed =
            |body: &[u8]| matches!(routing_get_record(body), Err(KuboError::Malformed(_)));
        assert!(malformed(b""));
        assert!(malformed(b"{\"Type\":1,\"ID\":\"x\"}\n"));
        assert!(malformed(b"not json\n"));
        assert!(malformed(b"{\"Type\":5,\"Extra\":\"***\"}"));
        assert!(malformed(b"{\"Type\":5,\"Extra\":\"\"}"));
        assert!(malformed(b"{\"Type\":5}"));
        let huge = format!("{{\"Type\":5,\"Extra\":\"{}\"}}", "A".repeat(20_000));
        assert!(malformed(huge.as_bytes()));
        let just_over =
            base64::engine::general_purpose::STANDARD.encode([7u8; MAX_RECORD_SIZE + 1]);
        assert!(malformed(
            format!("{{\"Type\":5,\"Extra\":\"{just_over}\"}}").as_bytes()
        ));
        let max = base64::engine::general_purpose::STANDARD.encode([7u8; MAX_RECORD_SIZE]);
        let ok = routing_get_record(format!("{{\"Type\":5,\"Extra\":\"{max}\"}}").as_bytes());
        assert_eq!(ok.unwrap().len(), MAX_RECORD_SIZE);
        assert_eq!(
            routing_get_record(b"{\"Type\":3,\"Extra\":\"failed to dial\"}\n").unwrap_err(),
            KuboError::Api {
                status: 200,
                message: "failed to dial".into()
            }
        );
    }

    #[test]
    fn dht_stats_count_peers_per_table() {
        assert_eq!(
            dht_peers(STATS_DHT_EMPTY.as_bytes()).unwrap(),
            DhtPeers::default()
        );
        assert_eq!(
            dht_peers(STATS_DHT_ONE_PEER.as_bytes()).unwrap(),
            DhtPeers { lan: 1, wan: 0 }
        );
        let several = b"{\"Name\":\"wan\",\"Buckets\":null}\n{\"Name\":\"lan\",\"Buckets\":[{\"Peers\":[{\"ID\":\"a\"},{\"ID\":\"b\"}]},{\"Peers\":null},{\"Peers\":[{\"ID\":\"c\"}]}]}\n{\"Name\":\"fullrt\",\"Buckets\":[{\"Peers\":[1,2]}]}";
        assert_eq!(dht_peers(several).unwrap(), DhtPeers { lan: 3, wan: 2 });
        for bad in [&b"{"[..], b"{\"Buckets\":[]}", b"[1,2]"] {
            assert!(matches!(dht_peers(bad), Err(KuboError::Malformed(_))));
        }
    }

    #[test]
    fn keys_and_published_names_parse() {
        let keys = keys("key/ls", KEY_LS.as_bytes()).unwrap();
        assert_eq!(
            keys,
            [KuboKey {
                name: "self".into(),
                id: "k51qzi5uqu5dhxheai3i22dln4ljk1tqekcr18id2vwp3zd93rr14inomh25l7".into()
            }]
        );
        assert!(
            super::keys("key/ls", b"{\"Keys\":null}")
                .unwrap()
                .is_empty()
        );
        assert!(super::keys("key/ls", b"{\"Keys\":[{\"Name\":1}]}").is_err());
        assert_eq!(
            published_name(NAME_PUBLISH.as_bytes()).unwrap(),
            "k51qzi5uqu5dhxheai3i22dln4ljk1tqekcr18id2vwp3zd93rr14inomh25l7"
        );
        assert!(published_name(b"{\"Value\":\"/ipfs/x\"}").is_err());
    }
}
