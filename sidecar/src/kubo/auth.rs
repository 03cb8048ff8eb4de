//! [`KuboAuth`]: the secret Kubo's RPC demands when `API.Authorizations`
//! is set, parsed from Kubo's own `AuthSecret` syntax.
//!
//! Pure: no I/O. Parsed by the config (`kubo.auth`), sent by the client.
//! Must never print the secret: not in `Debug`, not in a parse error.

use base64::Engine;
use reqwest::header::HeaderValue;

/// Kubo's `API.Authorizations` secret, written as Kubo's `AuthSecret`:
/// `bearer:<token>` or `basic:<user>:<password>`.
///
/// Kubo compares the whole `Authorization` header with the one it derives
/// from its `AuthSecret`, byte for byte: `Bearer <token>`, or `Basic ` and
/// the standard base64 of `<user>:<password>` (everything after `basic:`,
/// so a password may contain `:`). Checked on Kubo 0.43.0: `bearer <token>`
/// (lower case) is refused with 403.
#[derive(Clone, PartialEq, Eq)]
pub struct KuboAuth {
    /// The `Authorization` header value, marked sensitive so that the HTTP
    /// stack never logs it.
    header: HeaderValue,
}

impl KuboAuth {
    /// The `Authorization` header to send.
    pub(super) fn header(&self) -> &HeaderValue {
        &self.header
    }
}

impl std::fmt::Debug for KuboAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self
            .header
            .as_bytes()
            .split(|b| *b == b' ')
            .next()
            .unwrap_or_default();
        write!(
            f,
            "KuboAuth({} <redacted>)",
            String::from_utf8_lossy(scheme)
        )
    }
}

/// The parse error: names the accepted forms, never echoes the input.
const SYNTAX: &str = "must be \"bearer:<token>\" or \"basic:<user>:<password>\" \
     (Kubo's API.Authorizations AuthSecret syntax), without control characters";

impl std::str::FromStr for KuboAuth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // A control character (often a newline left from a secrets file)
        // cannot be what Kubo's config holds.
        if s.chars().any(char::is_control) {
            return Err(SYNTAX.to_string());
        }
        let header = if let Some(token) = s.strip_prefix("bearer:") {
            (!token.is_empty()).then(|| format!("Bearer {token}"))
        } else if let Some(user_password) = s.strip_prefix("basic:") {
            user_password.contains(':').then(|| {
                let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
                format!("Basic {encoded}")
            })
        } else {
            None
        };
        let header = header.ok_or_else(|| SYNTAX.to_string())?;
        let mut header = HeaderValue::from_str(&header).map_err(|_| SYNTAX.to_string())?;
        header.set_sensitive(true);
        Ok(Self { header })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_become_kubos_exact_headers() {
        let a: KuboAuth = "bearer:s3cret-token".parse().unwrap();
        assert_eq!(a.header(), "Bearer s3cret-token");
        assert!(a.header().is_sensitive());
        // Everything after "basic:" is "<user>:<password>"; the password
        // may hold ':'. base64("alice:pa:ss") = "YWxpY2U6cGE6c3M=".
        let b: KuboAuth = "basic:alice:pa:ss".parse().unwrap();
        assert_eq!(b.header(), "Basic YWxpY2U6cGE6c3M=");
    }

    #[test]
    fn debug_and_errors_never_show_the_secret() {
        let a: KuboAuth = "bearer:s3cret-token".parse().unwrap();
        assert_eq!(format!("{a:?}"), "KuboAuth(Bearer <redacted>)");
        let b: KuboAuth = "basic:alice:pa:ss".parse().unwrap();
        let shown = format!("{b:?} {b:#?}");
        assert!(
            !shown.contains("YWxp") && !shown.contains("alice"),
            "{shown}"
        );
        let e = "bearer:s3cret\ntoken".parse::<KuboAuth>().unwrap_err();
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn other_forms_are_refused_with_the_accepted_ones_named() {
        for bad in [
            "",
            "s3cret",
            "bearer:",
            "basic:",
            "basic:alice",
            "Bearer s3cret",
            "Bearer:s3cret",
            "token:s3cret",
            "bearer:a\nb",
            "bearer:a\u{7f}b",
            "basic:alice:pa\rss",
        ] {
            let e = bad.parse::<KuboAuth>().unwrap_err();
            assert!(e.contains("bearer:<token>") && e.contains("basic:<user>:<password>"));
        }
    }
}
