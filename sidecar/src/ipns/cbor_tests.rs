//! Tests of the DAG-CBOR reader: what boxo accepts is accepted, what it
//! refuses is refused, and nothing panics or recurses.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// `{"a": <value>}` with `value` given as hex.
fn one(value: &str) -> Vec<u8> {
    let mut v = hex("a1 61 61");
    v.extend(hex(value));
    v
}

fn reason(buf: &[u8]) -> String {
    decode_map(buf).expect_err("must be refused").reason
}

#[test]
fn reads_the_ipns_fields() {
    let mut out = Vec::new();
    let mut entries = vec![
        ("Value".to_string(), {
            let mut v = Vec::new();
            write_bytes(&mut v, b"/ipfs/x");
            v
        }),
        ("TTL".to_string(), {
            let mut v = Vec::new();
            write_uint(&mut v, 300_000_000_000);
            v
        }),
        ("Sequence".to_string(), vec![0x00]),
    ];
    write_map(&mut out, &mut entries);
    let m = decode_map(&out).expect("valid");
    let keys: Vec<&str> = m.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["TTL", "Value", "Sequence"], "DAG-CBOR key order");
    assert_eq!(m[0].1, Value::Uint(300_000_000_000));
    let Value::Bytes { bytes, offset } = m[1].1 else {
        panic!("Value is bytes")
    };
    assert_eq!(bytes, b"/ipfs/x");
    assert_eq!(&out[offset..offset + bytes.len()], b"/ipfs/x");
    assert_eq!(m[2].1, Value::Uint(0));
}

#[test]
fn accepts_every_dag_cbor_kind_as_an_extra_value() {
    for (what, value) in [
        ("negative int", "20"),
        ("u64 max", "1b ffffffffffffffff"),
        ("text", "63 616263"),
        ("empty list", "80"),
        ("empty map", "a0"),
        ("nested", "a2 61 78 82 01 f6 61 79 a1 61 7a f5"),
        ("false/true/null", "83 f4 f5 f6"),
        ("undefined (read as null by go-ipld-prime)", "f7"),
        ("float64", "fb 3ff8000000000000"),
        ("float32 (boxo tolerates)", "fa 3fc00000"),
        ("float16 (boxo tolerates)", "f9 3e00"),
        (
            "CID link",
            "d8 2a 58 25 00 01 71 12 20 \
             0000000000000000000000000000000000000000000000000000000000000000",
        ),
    ] {
        let buf = one(value);
        let m = decode_map(&buf).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(m.len(), 1, "{what}");
    }
}

#[test]
fn tolerates_unsorted_keys_like_boxo() {
    // {"b": 1, "a": 2}: not DAG-CBOR order, accepted by go-ipld-prime.
    let buf = hex("a2 6162 01 6161 02");
    let m = decode_map(&buf).expect("boxo tolerates this");
    assert_eq!(m[0].0, "b");
}

#[test]
fn refuses_what_go_ipld_prime_refuses() {
    for (what, buf, want) in [
        ("not a map", hex("80"), "top level is a list"),
        ("indefinite map", hex("bf 6161 01 ff"), "indefinite-length"),
        ("indefinite bytes", one("5f 41 00 ff"), "indefinite-length"),
        ("indefinite list", one("9f 01 ff"), "indefinite-length"),
        ("stray break", one("ff"), "break"),
        ("non-minimal int", one("18 05"), "not minimally encoded"),
        ("non-minimal u16", one("19 00ff"), "not minimally encoded"),
        (
            "non-minimal length",
            hex("a1 7801 61 01"),
            "not minimally encoded",
        ),
        (
            "duplicate key",
            hex("a2 6161 01 6161 02"),
            "duplicate map key \"a\"",
        ),
        (
            "nested duplicate",
            one("a2 6162 01 6162 02"),
            "duplicate map key \"b\"",
        ),
        ("int key", hex("a1 01 01"), "map key is an unsigned integer"),
        ("bytes key", one("a1 41 00 01"), "map key is a byte string"),
        ("other tag", one("c1 01"), "tag 1"),
        ("tag on text", one("d8 2a 61 61"), "not a byte string"),
        (
            "link without 0x00",
            one("d8 2a 42 0171"),
            "0x00 multibase prefix",
        ),
        ("link not a CID", one("d8 2a 43 00 0203"), "not a CID"),
        ("NaN", one("fb 7ff8000000000000"), "NaN"),
        ("Infinity16", one("f9 7c00"), "NaN or Infinity"),
        ("-Infinity32", one("fa ff800000"), "NaN or Infinity"),
        ("simple 16", one("f0"), "simple value"),
        ("simple in next byte", one("f8 20"), "simple value"),
        ("reserved info", one("1c"), "reserved"),
        ("truncated", hex("a1 6161 42 00"), "runs past the end"),
        ("trailing byte", hex("a1 6161 01 00"), "after the end"),
        ("bad UTF-8 key", hex("a1 61 ff 01"), "not UTF-8"),
        ("bad UTF-8 value", one("62 c328"), "not UTF-8"),
        ("empty input", vec![], "ends"),
        ("huge list", one("9b 00ffffffffffffff"), "runs past the end"),
    ] {
        let got = reason(&buf);
        assert!(got.contains(want), "{what}: got {got:?}, want {want:?}");
    }
}

#[test]
fn nesting_is_bounded_without_recursion() {
    // 1023 nested lists below the top-level map are allowed (depth 1..=1023)…
    let ok = one(&format!("{}01", "81".repeat(MAX_DEPTH - 1)));
    decode_map(&ok).expect("within the limit");
    // …one more is refused.
    let deep = one(&format!("{}01", "81".repeat(MAX_DEPTH)));
    assert!(reason(&deep).contains("nested deeper"));
    // A 10 KiB tower of maps does not blow the stack either.
    let mut tower = hex("a1 6161");
    for _ in 0..3000 {
        tower.extend(hex("a1 6161"));
    }
    tower.push(0x01);
    assert!(reason(&tower).contains("nested deeper"));
}

#[test]
fn encoder_is_minimal() {
    for (n, want) in [
        (0u64, "00"),
        (23, "17"),
        (24, "1818"),
        (255, "18ff"),
        (256, "190100"),
        (65_535, "19ffff"),
        (65_536, "1a00010000"),
        (u64::from(u32::MAX), "1affffffff"),
        (u64::from(u32::MAX) + 1, "1b0000000100000000"),
    ] {
        let mut out = Vec::new();
        write_uint(&mut out, n);
        assert_eq!(out, hex(want), "{n}");
        let mut map = hex("a1 6161");
        map.extend(&out);
        assert_eq!(decode_map(&map).expect("minimal")[0].1, Value::Uint(n));
    }
}
