//! Whole-file tests of the CAR reader and writer: round trips, corruption,
//! truncation at every length, bad CARv2 headers and bad indexes.

use std::io::Cursor;

use cid::Cid;
use cid::multihash::Multihash;

use super::*;

/// A small set of blocks covering CIDv0 (dag-pb), CIDv1 raw, dag-pb and
/// dag-cbor, an empty block, an identity CID and a sha2-512 CID.
fn blocks() -> Vec<(Cid, Vec<u8>)> {
    let mut v = Vec::new();
    v.push((cid_v0_sha256(b"v0 block"), b"v0 block".to_vec()));
    for i in 0..5u8 {
        let data = vec![i; 100 + usize::from(i) * 37];
        v.push((cid_v1_sha256(RAW, &data), data));
    }
    let pb = b"\x0a\x02\x08\x01".to_vec();
    v.push((cid_v1_sha256(DAG_PB, &pb), pb));
    v.push((cid_v1_sha256(RAW, b""), Vec::new())); // the empty block is legal
    let cbor = b"\xa1\x61a\x01".to_vec();
    v.push((cid_v1_sha256(DAG_CBOR, &cbor), cbor));
    let id = b"inline".to_vec();
    v.push((
        Cid::new_v1(RAW, Multihash::wrap(IDENTITY, &id).unwrap()),
        id,
    ));
    let d = {
        use sha2::Digest;
        sha2::Sha512::digest(b"five twelve")
    };
    v.push((
        Cid::new_v1(RAW, Multihash::wrap(SHA2_512, &d).unwrap()),
        b"five twelve".to_vec(),
    ));
    v
}

fn write(version: u8, kind: IndexKind, blocks: &[(Cid, Vec<u8>)]) -> Vec<u8> {
    let roots = [blocks[0].0];
    let out = Cursor::new(Vec::new());
    let mut w = if version == 1 {
        CarWriter::v1(out, &roots).unwrap()
    } else {
        CarWriter::v2(out, &roots, kind).unwrap()
    };
    for (c, d) in blocks {
        w.write_block(c, d).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn scan_bytes(bytes: &[u8]) -> Result<(ScanSummary, Vec<BlockEntry>), CarError> {
    let mut entries = Vec::new();
    let s = scan(bytes, &ScanOptions::default(), |e| {
        entries.push(e.clone());
        Ok::<_, CarError>(())
    })?;
    Ok((s, entries))
}

#[test]
fn round_trips_v1_and_v2_with_every_index_kind() {
    let blocks = blocks();
    for (version, kind) in [
        (1, IndexKind::None),
        (2, IndexKind::None),
        (2, IndexKind::Sorted),
        (2, IndexKind::MultihashSorted),
    ] {
        let bytes = write(version, kind, &blocks);
        let (summary, entries) = scan_bytes(&bytes).unwrap();
        assert_eq!(summary.header.version, version);
        assert_eq!(summary.header.roots, vec![blocks[0].0]);
        assert_eq!(summary.blocks, blocks.len() as u64);
        let expect_index = match kind {
            IndexKind::None => IndexCheck::Absent,
            IndexKind::Sorted => IndexCheck::Verified {
                codec: INDEX_SORTED_CODEC,
                entries: blocks.len() as u64 - 1, // identity is not indexed
            },
            IndexKind::MultihashSorted => IndexCheck::Verified {
                codec: MULTIHASH_INDEX_SORTED_CODEC,
                entries: blocks.len() as u64 - 1,
            },
        };
        assert_eq!(summary.index, expect_index, "v{version} {kind:?}");
        let reader = CarReader::open(bytes.as_slice()).unwrap();
        for ((cid, data), e) in blocks.iter().zip(&entries) {
            assert_eq!(&e.cid, cid);
            assert_eq!(e.len as usize, data.len());
            assert_eq!(&reader.read_block(e).unwrap(), data);
            assert_eq!(&bytes[e.offset as usize..][..data.len()], data.as_slice());
        }
        assert_eq!(entries[0].cid.version(), cid::Version::V0);
    }
}

#[test]
fn corrupted_block_names_cid_and_offset() {
    let blocks = blocks();
    let mut bytes = write(1, IndexKind::None, &blocks);
    let (_, entries) = scan_bytes(&bytes).unwrap();
    let victim = &entries[3];
    bytes[victim.offset as usize + 5] ^= 0xff;
    match scan_bytes(&bytes) {
        Err(e @ CarError::HashMismatch { .. }) => {
            let CarError::HashMismatch { cid, offset } = &e else {
                unreachable!()
            };
            assert_eq!(**cid, victim.cid);
            assert_eq!(*offset, victim.offset);
            let msg = e.to_string();
            assert!(
                msg.contains(&victim.cid.to_string()) && msg.contains(&victim.offset.to_string())
            );
        }
        other => panic!("expected HashMismatch, got {other:?}"),
    }
}

#[test]
fn unsupported_hash_is_an_error_not_a_skip() {
    let data = b"blake3 data".to_vec();
    let cid = Cid::new_v1(RAW, Multihash::wrap(0x1e, &[7u8; 32]).unwrap());
    let bytes = write(1, IndexKind::None, &[(cid, data)]);
    assert!(matches!(
        scan_bytes(&bytes),
        Err(CarError::UnsupportedHash { code: 0x1e, .. })
    ));
}

#[test]
fn every_truncation_is_a_clear_error() {
    let blocks = blocks();
    for (version, kind) in [(1, IndexKind::None), (2, IndexKind::MultihashSorted)] {
        let bytes = write(version, kind, &blocks);
        for len in 0..bytes.len() {
            let prefix = &bytes[..len];
            let r = scan_bytes(prefix);
            // A CARv1 cut exactly between sections is a valid, shorter CAR.
            if let (1, Ok((s, _))) = (version, &r) {
                assert!(s.blocks < blocks.len() as u64);
                continue;
            }
            let err = r.expect_err(&format!("v{version} prefix {len} must fail"));
            assert!(
                matches!(
                    err,
                    CarError::Truncated { .. }
                        | CarError::BadV2Header(_)
                        | CarError::BadIndex(_)
                        | CarError::BadHeader { .. }
                ),
                "v{version} prefix {len}: {err}"
            );
        }
    }
}

#[test]
fn block_too_large_names_the_cid() {
    let big = vec![1u8; MAX_BLOCK_LEN as usize + 1];
    let cid = cid_v1_sha256(RAW, &big);
    let bytes = write(1, IndexKind::None, &[(cid, big)]);
    match scan_bytes(&bytes) {
        Err(CarError::BlockTooLarge { cid: c, len, .. }) => {
            assert_eq!(*c, cid);
            assert_eq!(len, u64::from(MAX_BLOCK_LEN) + 1);
        }
        other => panic!("expected BlockTooLarge, got {other:?}"),
    }
    let max = vec![2u8; MAX_BLOCK_LEN as usize];
    let bytes = write(1, IndexKind::None, &[(cid_v1_sha256(RAW, &max), max)]);
    assert_eq!(
        scan_bytes(&bytes).unwrap().0.block_bytes,
        u64::from(MAX_BLOCK_LEN)
    );
}

#[test]
fn zero_length_padding_is_refused_unless_asked() {
    let blocks = blocks();
    let mut bytes = write(1, IndexKind::None, &blocks);
    bytes.extend_from_slice(&[0, 0, 0]);
    assert!(matches!(
        scan_bytes(&bytes),
        Err(CarError::BadSection { .. })
    ));
    let opts = ScanOptions {
        read: ReadOptions {
            zero_length_section_as_eof: true,
            ..ReadOptions::default()
        },
        ..ScanOptions::default()
    };
    let s = scan(bytes.as_slice(), &opts, |_| Ok::<_, CarError>(())).unwrap();
    assert_eq!(s.blocks, blocks.len() as u64);
}

#[test]
fn bad_v2_headers_are_refused() {
    let blocks = blocks();
    let good = write(2, IndexKind::MultihashSorted, &blocks);
    let set = |at: usize, v: u64| {
        let mut b = good.clone();
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        b
    };
    let len = good.len() as u64;
    let cases = [
        ("data offset inside header", set(27, 50)),
        ("data past EOF", set(35, len)),
        ("data size zero", set(35, 0)),
        ("offset overflow", set(27, u64::MAX)),
        ("index past EOF", set(43, len + 1)),
        ("index inside data", set(43, 60)),
    ];
    for (name, bytes) in cases {
        assert!(
            matches!(scan_bytes(&bytes), Err(CarError::BadV2Header(_))),
            "{name}: {:?}",
            scan_bytes(&bytes).err()
        );
    }
    let mut pragma = good.clone();
    pragma[1] = 0xa2; // map of 2 entries: no longer the exact pragma
    assert!(scan_bytes(&pragma).is_err());
    let mut version3 = good.clone();
    version3[10] = 3;
    assert!(matches!(scan_bytes(&version3), Err(CarError::BadPragma(_))));
}

#[test]
fn index_disagreeing_with_data_is_refused() {
    let blocks = blocks();
    let good = write(2, IndexKind::MultihashSorted, &blocks);
    let index_offset = u64::from_le_bytes(good[43..51].try_into().unwrap()) as usize;
    // The last 8 bytes of the index are the last entry's offset.
    let mut moved = good.clone();
    let n = moved.len();
    moved[n - 8..].copy_from_slice(&1u64.to_le_bytes());
    assert!(matches!(scan_bytes(&moved), Err(CarError::BadIndex(m)) if m.contains("no section")));
    // A digest byte changed: either unsorted or pointing at another block.
    let mut digest = good.clone();
    digest[n - 9] ^= 0x01;
    assert!(matches!(scan_bytes(&digest), Err(CarError::BadIndex(_))));
    // An index that leaves a block out.
    let (_, entries) = scan_bytes(&good).unwrap();
    let payload = 51u64;
    let records: Vec<_> = entries
        .iter()
        .skip(1)
        .map(|e| {
            let mh = e.cid.hash();
            (mh.code(), mh.digest().to_vec(), e.section_offset - payload)
        })
        .collect();
    let mut partial = good[..index_offset].to_vec();
    partial.extend_from_slice(&write_index(IndexKind::MultihashSorted, &records));
    assert!(matches!(scan_bytes(&partial), Err(CarError::BadIndex(m)) if m.contains("missing")));
}

#[test]
fn indexes_that_include_identity_blocks_are_accepted() {
    // Some go-car versions put identity CIDs in an IndexSorted.
    let blocks = blocks();
    let good = write(2, IndexKind::None, &blocks);
    let (_, entries) = scan_bytes(&good).unwrap();
    let records: Vec<_> = entries
        .iter()
        .map(|e| {
            let mh = e.cid.hash();
            (mh.code(), mh.digest().to_vec(), e.section_offset - 51)
        })
        .collect();
    assert!(records.iter().any(|r| r.0 == IDENTITY));
    for kind in [IndexKind::Sorted, IndexKind::MultihashSorted] {
        let mut with_index = good.clone();
        let index_offset = with_index.len() as u64;
        with_index[43..51].copy_from_slice(&index_offset.to_le_bytes());
        with_index.extend_from_slice(&write_index(kind, &records));
        let (s, _) = scan_bytes(&with_index).unwrap();
        assert!(
            matches!(s.index, IndexCheck::Verified { entries, .. } if entries == blocks.len() as u64),
            "{kind:?}: {:?}",
            s.index
        );
    }
}

#[test]
fn garbage_never_panics() {
    // A deterministic byte soup around a valid file (the fuzzer does more).
    let good = write(2, IndexKind::MultihashSorted, &blocks());
    let mut x: u32 = 0x9e37_79b9;
    for round in 0..2000 {
        let mut b = good.clone();
        for _ in 0..(1 + round % 4) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let at = x as usize % b.len();
            b[at] = (x >> 8) as u8;
        }
        let _ = scan_bytes(&b);
    }
}

/// The fuzzer's seed corpus: small valid CARs of every shape. They must scan
/// cleanly; with `SIDECAR_WRITE_FUZZ_SEEDS=<dir>` they are also written there
/// (`fuzz/corpus/car_reader` is the committed copy).
#[test]
fn fuzz_seeds_are_valid_cars() {
    let few: Vec<_> = blocks().into_iter().take(4).collect();
    let seeds = [
        ("seed-v1", write(1, IndexKind::None, &few)),
        ("seed-v2-noindex", write(2, IndexKind::None, &few)),
        ("seed-v2-sorted", write(2, IndexKind::Sorted, &few)),
        (
            "seed-v2-mhsorted",
            write(2, IndexKind::MultihashSorted, &blocks()),
        ),
    ];
    let dir = std::env::var_os("SIDECAR_WRITE_FUZZ_SEEDS");
    for (name, bytes) in seeds {
        assert!(scan_bytes(&bytes).is_ok(), "{name}");
        if let Some(dir) = &dir {
            std::fs::write(std::path::Path::new(dir).join(name), &bytes).unwrap();
        }
    }
}
