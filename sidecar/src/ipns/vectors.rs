//! Records made by real implementations, which must validate (or fail) as
//! the spec says, at a fixed `now`.
//!
//! Origin: the six test vectors of the IPNS record spec (ipfs/specs
//! `src/ipns/ipns-record.md`, "Test Vectors", valid for 100 years), as
//! stored in ipfs/js-ipns `test/fixtures/<name>_<kind>.ipns-record`, and a
//! record published by Kubo from js-ipns `test/fixtures/records.ts`. The
//! bytes are copied verbatim (hex). (The fuzz target's seeds in
//! `fuzz/seeds/ipns_record` are records made by js-ipns.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::record::KeyType;

use super::*;

/// One fixture: the name it is for, and the record bytes in hex.
pub struct Vector {
    pub name: &'static str,
    pub hex: &'static str,
}

impl Vector {
    pub fn bytes(&self) -> Vec<u8> {
        (0..self.hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&self.hex[i..i + 2], 16).expect("hex"))
            .collect()
    }

    pub fn name(&self) -> Name {
        Name::parse(self.name).expect("fixture name")
    }

    fn validate_at(&self, now: SystemTime) -> Result<Record, RecordError> {
        validate(&self.name(), &self.bytes(), now)
    }
}

/// 2026-01-01T00:00:00Z: any time before 2123 suits the spec vectors.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_225_600)
}

/// The spec vectors' validity, 2123-08-14T12:17:03.694052Z.
const SPEC_VALIDITY: &str = "2123-08-14T12:17:03.694052Z";

/// Spec test vector: V1-only → invalid.
pub const V1_ONLY: Vector = Vector {
    name: "k51qzi5uqu5dm4tm0wt8srkg9h9suud4wuiwjimndrkydqm81cqtlb5ak6p7ku",
    hex: concat!(
        "0a242f697066732f6261666b7161647477676577773633746d70657168657a6c646e357a67691240479d7b28",
        "e45d004ab234a9047c81e1660f540d3cfd71e2174a2d33daa12ed8ac262c8c7c6ba089f3a4751fd3b06b7be7",
        "cb3a5418147ab4ee976aae06cceb58071800221b323132332d30382d31345431323a31373a30332e36393430",
        "35325a28003080a0f1c2b134",
    ),
};

/// Spec test vector: V1+V2, both signatures valid → valid, value /ipfs/bafkqaddwgevxmmraojswg33smq.
pub const V1_V2: Vector = Vector {
    name: "k51qzi5uqu5dlkw8pxuw9qmqayfdeh4kfebhmreauqdc6a7c3y7d5i9fi8mk9w",
    hex: concat!(
        "0a212f697066732f6261666b7161646477676576786d6d72616f6a7377673333736d711240a541216e40968b",
        "8cc13903938db6732e55ef6802cee665d645de06c454aaefcf0654750bc84e9b41250b35e4d41da539c5a542",
        "7fc30e08dc94a4bdca8003f80e1800221b323132332d30382d31345431323a31373a30332e3639343035325a",
        "28003080a0f1c2b13442404a51b86443894bebd3214602ec2c36270e4cd0508a666dfa355660c4fa8ba290ae",
        "7de44d76ab52c4739f397e7141974e6a41a039801260cfd3c05b006a4a250d4a75a56354544c1b000001a318",
        "5c50006556616c756558212f697066732f6261666b7161646477676576786d6d72616f6a7377673333736d71",
        "6853657175656e6365006856616c6964697479581b323132332d30382d31345431323a31373a30332e363934",
        "3035325a6c56616c69646974795479706500",
    ),
};

/// Spec test vector: V1+V2, both signatures valid, V1 value differs from the CBOR one → invalid.
pub const V1_V2_BROKEN_V1_VALUE: Vector = Vector {
    name: "k51qzi5uqu5dlmit2tuwdvnx4sbnyqgmvbxftl0eo3f33wwtb9gr7yozae9kpw",
    hex: concat!(
        "0a362f697066732f6261666b7161676c756d767a7869326c6f6d34716765796c65656275786133747465627a",
        "676b7933706f6a736867637112404e6d6b3def154edc4dff610c0380a64332583738c359d27eb0b8a884e993",
        "db089da6076f310f899524701da859a34de4abf29576159b1242daf714432179660e1800221b323132332d30",
        "382d31345431323a31373a30332e3639343035325a28003080a0f1c2b13442404a9ecbb57f6640eeff81497c",
        "b1ad50d89f47e7e516025663bef604602f86b6e9bf3c2af8d43a4aba65ac1a1b26d60dc2f85163055e47f206",
        "d656067b7d1bb7044a9201a56354544c1b000001a3185c50006556616c7565583e2f697066732f6261666b71",
        "61687477676576786d6d72616f6a7377673333736d7171686f326c756e617167653474706e6e737734696477",
        "6d6677686b7a696853657175656e6365006856616c6964697479581b323132332d30382d31345431323a3137",
        "3a30332e3639343035325a6c56616c69646974795479706500",
    ),
};

/// Spec test vector: V1+V2, only signatureV1 valid → invalid.
pub const V1_V2_BROKEN_SIG_V2: Vector = Vector {
    name: "k51qzi5uqu5diamp7qnnvs1p1gzmku3eijkeijs3418j23j077zrkok63xdm8c",
    hex: concat!(
        "0a3e2f697066732f6261666b7161687477676576786d6d72616f357578693262616d6a7a67363233666e7971",
        "6867326c686e7a717869356c736d7571686d6d7112408de2f89edb7429df57e417cc6fef99edb119f8bf23ed",
        "63896a3f90422a33385b98800ab3a82f70da704adaf6ea1e701f1fe34ff50fc895ea3a6475e21c419e011800",
        "221b323132332d30382d31345431323a31373a30332e3639343035325a28003080a0f1c2b134420d696e7661",
        "6c69642073747566664a9201a56354544c1b000001a3185c50006556616c7565583e2f697066732f6261666b",
        "7161687477676576786d6d72616f357578693262616d6a7a67363233666e79716867326c686e7a717869356c",
        "736d7571686d6d716853657175656e6365006856616c6964697479581b323132332d30382d31345431323a31",
        "373a30332e3639343035325a6c56616c69646974795479706500",
    ),
};

/// Spec test vector: V1+V2, only signatureV2 valid → valid, value /ipfs/bafkqahtwgevxmmrao5uxi2bamjzg623fnyqhg2lhnzqxi5lsmuqhmmi.
pub const V1_V2_BROKEN_SIG_V1: Vector = Vector {
    name: "k51qzi5uqu5dilgf7gorsh9vcqqq4myo6jd4zmqkuy9pxyxi5fua3uf7axph4y",
    hex: concat!(
        "0a3e2f697066732f6261666b7161687477676576786d6d72616f357578693262616d6a7a67363233666e7971",
        "6867326c686e7a717869356c736d7571686d6d69120d696e76616c69642073747566661800221b323132332d",
        "30382d31345431323a31373a30332e3639343035325a28003080a0f1c2b134424032c58e6aae6e968e70d89f",
        "31a1a0b14e18e1323d9ed61ac89b5d944761780e77b48b6b09ab3eb1b4f614606b55537b58a5ac67432832d5",
        "64998d847d071cb5074a9201a56354544c1b000001a3185c50006556616c7565583e2f697066732f6261666b",
        "7161687477676576786d6d72616f357578693262616d6a7a67363233666e79716867326c686e7a717869356c",
        "736d7571686d6d696853657175656e6365006856616c6964697479581b323132332d30382d31345431323a31",
        "373a30332e3639343035325a6c56616c69646974795479706500",
    ),
};

/// Spec test vector: V2-only (no V1 fields) → valid.
pub const V2_ONLY: Vector = Vector {
    name: "k51qzi5uqu5dit2ku9mutlfgwyz8u730on38kd10m97m36bjt66my99hb6103f",
    hex: concat!(
        "42406a7698585e2b170709d4947e148b18b120d76db43515edacf290df96b71e29c0ca5a16510256814f8255",
        "532ec4549ade26f4ca8335f4c41e2cfffeb1ba0aa5014a78a56354544c1b000001a3185c50006556616c7565",
        "58242f697066732f6261666b7161647477676977773633746d70657168657a6c646e357a6769685365717565",
        "6e6365006856616c6964697479581b323132332d30382d31345431323a31373a30332e3639343035325a6c56",
        "616c69646974795479706500",
    ),
};

/// A record published by Kubo (value `/ipfs/Qma4sWyoTiJKYx1wTjkxWY71dYg1oWgE7SE9oiTGqGnyoR`,
/// validity 2024-01-19T16:33:20.858209Z, so it validates only at a `now` before
/// that): js-ipns `test/fixtures/records.ts`, `kuboRecord`.
pub const KUBO: Vector = Vector {
    name: "12D3KooWBT21CjaZgY3MvoFFwRJLBEqgk7zwa294Boh9wdX2RUX2",
    hex: concat!(
        "0a342f697066732f516d61347357796f54694a4b59783177546a6b7857593731645967316f57674537534539",
        "6f69544771476e796f521240b2e1d49dbc1719a60959ff3fe3a08c46c0edb2a75e0670b86a8259fc8d9e5435",
        "417dfd5dff111c5d09b0e859337668ec7e898848007f6558b25373061e1c8c051800221b323032342d30312d",
        "31395431363a33333a32302e3835383230395a28003080c0e285e3684240855b3440fdba819ada55bc126860",
        "b4d8feb0d29182d1b09686213bc5a2c10ffc47bef01903a93c18ec44daab3deb9d49d700333418c35a9ef5c7",
        "accc0cf959074a8801a56354544c1b0000034630b8a0006556616c756558342f697066732f516d6134735779",
        "6f54694a4b59783177546a6b7857593731645967316f576745375345396f69544771476e796f526853657175",
        "656e6365006856616c6964697479581b323032342d30312d31395431363a33333a32302e3835383230395a6c",
        "56616c69646974795479706500",
    ),
};

#[test]
fn spec_vector_v1_v2_is_valid() {
    let r = V1_V2.validate_at(now()).expect("valid");
    assert_eq!(r.value_str(), Some("/ipfs/bafkqaddwgevxmmraojswg33smq"));
    assert_eq!(r.validity_str(), SPEC_VALIDITY);
    assert_eq!(r.sequence(), 0);
    assert_eq!(r.ttl(), Some(Duration::from_secs(1800)));
    assert_eq!(r.key_type(), KeyType::Ed25519);
    assert!(!r.has_pub_key());
    assert_eq!(r.bytes().as_ref(), V1_V2.bytes().as_slice());
}

#[test]
fn spec_vector_v2_only_is_valid() {
    let r = V2_ONLY.validate_at(now()).expect("valid");
    assert_eq!(r.value_str(), Some("/ipfs/bafkqadtwgiww63tmpeqhezldn5zgi"));
    assert_eq!(r.validity_str(), SPEC_VALIDITY);
}

#[test]
fn spec_vector_with_only_a_broken_v1_signature_is_valid() {
    let r = V1_V2_BROKEN_SIG_V1
        .validate_at(now())
        .expect("V1 signature is ignored");
    assert_eq!(
        r.value_str(),
        Some("/ipfs/bafkqahtwgevxmmrao5uxi2bamjzg623fnyqhg2lhnzqxi5lsmuqhmmi")
    );
}

#[test]
fn spec_vectors_that_must_fail() {
    let err = V1_ONLY.validate_at(now()).expect_err("V1-only");
    assert_eq!(err.code(), "v1_only");
    let err = V1_V2_BROKEN_SIG_V2
        .validate_at(now())
        .expect_err("bad V2 signature");
    assert_eq!(err.code(), "signature_invalid");
    let err = V1_V2_BROKEN_V1_VALUE
        .validate_at(now())
        .expect_err("V1 value differs");
    assert_eq!(err.code(), "v1_v2_mismatch");
    assert!(err.to_string().contains("value is \"/ipfs/"), "{err}");
}

#[test]
fn kubo_record_is_valid_before_its_eol_and_expired_after() {
    let before = UNIX_EPOCH + Duration::from_secs(1_705_600_000); // 2024-01-18T17:46:40Z
    let r = KUBO.validate_at(before).expect("valid");
    assert_eq!(
        r.value_str(),
        Some("/ipfs/Qma4sWyoTiJKYx1wTjkxWY71dYg1oWgE7SE9oiTGqGnyoR")
    );
    assert_eq!(r.validity_str(), "2024-01-19T16:33:20.858209Z");
    assert_eq!(r.ttl(), Some(Duration::from_secs(3600)));
    let err = KUBO.validate_at(now()).expect_err("expired by 2026");
    assert_eq!(err.code(), "expired");
    assert!(
        err.to_string().contains("2024-01-19T16:33:20.858209Z"),
        "{err}"
    );
}

#[test]
fn vectors_are_bound_to_their_names() {
    let err = validate(&V2_ONLY.name(), &V1_V2.bytes(), now()).expect_err("other name");
    assert_eq!(err.code(), "signature_invalid");
}

#[test]
fn vectors_order_like_boxo() {
    let a = V1_V2.validate_at(now()).expect("valid");
    let b = V1_V2_BROKEN_SIG_V1.validate_at(now()).expect("valid");
    // Same sequence and validity: the bytewise greater record wins.
    assert_eq!(a.sequence(), b.sequence());
    assert_eq!(a.validity(), b.validity());
    let want = a.bytes().as_ref().cmp(b.bytes().as_ref());
    assert_eq!(compare(&a, &b), want);
    assert_eq!(compare(&b, &a), want.reverse());
    assert_eq!(compare(&a, &a), std::cmp::Ordering::Equal);
}
