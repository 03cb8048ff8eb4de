//! Fuzz target `dnsaddr_txt`: arbitrary bytes as the character-strings of a
//! TXT record found at `_dnsaddr.<domain>`, and as a domain name.
//!
//! The first byte picks where the input is split into pieces (as a DNS
//! server splits a long value). Checks what the resolver relies on: no
//! panic; splitting never changes the verdict; a value that parses is at
//! most 255 bytes and its canonical text parses to the same multiaddr; a
//! domain that passes
//! `check_domain` is normalised (a second check is a no-op) and fits the
//! DNS limits.
#![no_main]

use dnsaddr::{MAX_TXT_VALUE, check_domain, format_txt, parse_txt, parse_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (cut, value) = match data.split_first() {
        Some((b, rest)) => (usize::from(*b), rest),
        None => (0, data),
    };
    let cut = cut.min(value.len());
    let (a, b) = value.split_at(cut);
    let whole = parse_value(value);
    let pieces = parse_txt(&[a, b]);
    assert_eq!(whole, pieces, "splitting never changes the verdict");
    if let Ok(addr) = whole {
        assert!(value.len() <= MAX_TXT_VALUE);
        // The canonical text may differ in length (another multibase, a
        // shorter IPv6 form): when it fits, it parses back to the same
        // address.
        if let Ok(text) = format_txt(&addr) {
            assert!(text.len() <= MAX_TXT_VALUE);
            assert_eq!(parse_value(text.as_bytes()), Ok(addr));
        }
    }
    if let Ok(text) = std::str::from_utf8(value)
        && let Ok(domain) = check_domain(text)
    {
        assert!(domain.len() <= dnsaddr::txt::MAX_DOMAIN_LEN);
        assert_eq!(check_domain(&domain).as_deref(), Ok(domain.as_str()));
        assert!(!domain.ends_with('.'));
    }
});
