//! [`KuboError`]: why a Kubo RPC call failed, and the one place that turns
//! an HTTP status plus Kubo's error body into one.
//!
//! Pure: no I/O. Called by the client in `mod.rs` only. Must never put the
//! auth secret or a whole (unbounded) answer into a message.

/// Kubo's message when the routing system has no value for a key
/// (`routing.ErrNotFound` in go-libp2p, sent as
/// `500 {"Message":"routing: not found","Code":0,"Type":"error"}`).
///
/// Measured on Kubo 0.43.0 for a name nobody published, identical for
/// `name/get?arg=<k51…>`, `name/get?arg=/ipns/<k51…>` and
/// `routing/get?arg=/ipns/<k51…>`, on a `Routing.Type=none` node, on a
/// `Routing.Type=dht` node with no peers, and on a `dht` node with one
/// peer. A `none` node also answers it for a name it *did* publish: that
/// router keeps nothing.
pub const NOT_FOUND_MESSAGE: &str = "routing: not found";

/// Longest Kubo message kept in a [`KuboError::Api`] (characters); the
/// rest is cut and marked with `…`.
pub const MAX_MESSAGE_CHARS: usize = 512;

/// Why a call failed. `Display` is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KuboError {
    /// No HTTP exchange happened, or it broke off: connection refused or
    /// reset, DNS failure, connect timeout, Kubo gone mid-answer.
    #[error("Kubo RPC unreachable: {0}")]
    Unreachable(String),
    /// Kubo accepted the connection but did not finish answering within
    /// the client's timeout.
    #[error("Kubo RPC did not answer within the timeout")]
    Timeout,
    /// 403 (or 401 from a proxy): `kubo.auth` is missing or does not match
    /// Kubo's `API.Authorizations`.
    #[error(
        "Kubo RPC refused the request (403): kubo.auth is missing or does not match API.Authorizations"
    )]
    Denied,
    /// The routing system has no record for the name ([`NOT_FOUND_MESSAGE`]).
    #[error("Kubo's routing system has no record for this name")]
    NotFound,
    /// Kubo answered with an error: `status` is the HTTP status (200 for
    /// an error sent late in the `X-Stream-Error` trailer), `message` is
    /// Kubo's `Message` (or the start of a non-JSON body), on one line.
    #[error("Kubo answered {status}: {message}")]
    Api { status: u16, message: String },
    /// The answer (or, from [`KuboClient::new`](super::KuboClient::new),
    /// the RPC URL) is not what a Kubo RPC looks like: too long, not JSON,
    /// a missing field.
    #[error("{0}")]
    Malformed(String),
}

impl KuboError {
    /// Stable machine-readable code, for logs, metrics and JSON errors.
    pub fn code(&self) -> &'static str {
        match self {
            KuboError::Unreachable(_) => "kubo_unreachable",
            KuboError::Timeout => "kubo_timeout",
            KuboError::Denied => "kubo_denied",
            KuboError::NotFound => "not_found",
            KuboError::Api { .. } => "kubo_error",
            KuboError::Malformed(_) => "kubo_malformed",
        }
    }

    /// Kubo could not be reached at all (as opposed to answering badly).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, KuboError::Unreachable(_))
    }

    /// `Malformed` for the answer to `command`.
    pub(super) fn malformed(command: &str, detail: impl std::fmt::Display) -> Self {
        KuboError::Malformed(one_line(&format!(
            "malformed answer from Kubo to {command}: {detail}"
        )))
    }
}

/// The error for a non-2xx `status` whose body (possibly cut short) is
/// `body`.
pub(super) fn from_status(status: u16, body: &[u8]) -> KuboError {
    match status {
        401 | 403 => KuboError::Denied,
        _ => from_message(status, &error_message(body)),
    }
}

/// The error for Kubo's `message`, sent with `status` (or in a trailer).
pub(super) fn from_message(status: u16, message: &str) -> KuboError {
    if message == NOT_FOUND_MESSAGE {
        return KuboError::NotFound;
    }
    KuboError::Api {
        status,
        message: one_line(message),
    }
}

/// Kubo's `Message` from a JSON error body, else the body as text
/// (`404 page not found`, `argument "name" is required`).
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(rename = "Message")]
        message: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => e.message,
        Err(_) => String::from_utf8_lossy(body).trim().to_string(),
    }
}

/// `text` on one line (Kubo joins wrapped errors with `\n`), at most
/// [`MAX_MESSAGE_CHARS`] characters.
fn one_line(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(line);
    }
    let out: String = out
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match out.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &out[..cut]),
        None => out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubo_error_bodies_map_to_kinds() {
        // Real Kubo 0.43.0 answers.
        assert_eq!(
            from_status(
                500,
                b"{\"Message\":\"routing: not found\",\"Code\":0,\"Type\":\"error\"}\n"
            ),
            KuboError::NotFound
        );
        let denied = b"Kubo RPC Access Denied: Please provide a valid authorization token as defined in the API.Authorizations configuration.\n";
        assert_eq!(from_status(403, denied), KuboError::Denied);
        assert_eq!(
            from_status(404, b"404 page not found\n"),
            KuboError::Api {
                status: 404,
                message: "404 page not found".into()
            }
        );
        assert_eq!(
            from_status(400, b"argument \"name\" is required\n"),
            KuboError::Api {
                status: 400,
                message: "argument \"name\" is required".into()
            }
        );
        let wrapped = br#"{"Message":"invalid IPNS record: record is malformed\nproto: cannot parse invalid wire-format data","Code":0,"Type":"error"}"#;
        let e = from_status(500, wrapped);
        assert_eq!(
            e.to_string(),
            "Kubo answered 500: invalid IPNS record: record is malformed; proto: cannot parse invalid wire-format data"
        );
        assert_eq!(e.code(), "kubo_error");
    }

    #[test]
    fn messages_are_one_bounded_line() {
        let long = "x\u{7}y".repeat(1000);
        let KuboError::Api { message, .. } = from_status(502, long.as_bytes()) else {
            panic!("not Api");
        };
        assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(message.ends_with('…') && !message.contains('\u{7}'));
        // Invalid UTF-8 is replaced, not a panic.
        assert!(matches!(
            from_status(500, &[0xff, 0xfe, b'\n']),
            KuboError::Api { status: 500, .. }
        ));
        let m = KuboError::malformed("version", "line one\nline two");
        assert_eq!(
            m.to_string(),
            "malformed answer from Kubo to version: line one; line two"
        );
    }

    #[test]
    fn codes_are_stable() {
        let all = [
            (KuboError::Unreachable("x".into()), "kubo_unreachable"),
            (KuboError::Timeout, "kubo_timeout"),
            (KuboError::Denied, "kubo_denied"),
            (KuboError::NotFound, "not_found"),
            (
                KuboError::Api {
                    status: 500,
                    message: "x".into(),
                },
                "kubo_error",
            ),
            (KuboError::Malformed("x".into()), "kubo_malformed"),
        ];
        for (e, code) in all {
            assert_eq!(e.code(), code);
            assert_eq!(e.is_unreachable(), code == "kubo_unreachable");
            assert!(!e.to_string().contains('\n'));
        }
    }
}
