//! `sidecar car import` as an operator runs it: clear errors for bad CARs
//! with nothing indexed, and a `kill -9` mid-import that leaves the store
//! consistent (nothing of that CAR served; re-running completes).

mod common;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use cid::Cid;
use common::*;
use sidecar::{car::cid_v1_sha256, store::Store};

const RAW: u64 = 0x55;

fn blocks(n: u32, tag: &str) -> Vec<(Cid, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let data = format!("{tag} block number {i:08}").into_bytes();
            (cid_v1_sha256(RAW, &data), data)
        })
        .collect()
}

fn indexed(data_dir: &Path, cid: &Cid) -> bool {
    let store = Store::open_in_dir(data_dir).expect("store opens after the import process is gone");
    store.lookup(cid.hash()).expect("lookup").is_some()
}

fn shards_listed(data_dir: &Path) -> usize {
    let out = sidecar_cmd(data_dir, &["car", "ls", "--json"]);
    assert!(
        out.status.success(),
        "car ls: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn bad_cars_are_refused_with_a_clear_error_and_index_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let good = blocks(50, "good");
    let car = write_car(dir.path(), "good.car", &good);
    let bytes = std::fs::read(&car).unwrap();

    // A block whose bytes do not match its CID: flip the last byte.
    let mut corrupted = bytes.clone();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 0xff;
    // Cut off in the middle of the last block.
    let truncated = bytes[..bytes.len() - 5].to_vec();
    // A CARv2 pragma followed by a header whose data offset points past the end.
    let mut bad_v2 = vec![
        0x0a, 0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02,
    ];
    bad_v2.extend_from_slice(&[0u8; 16]);
    bad_v2.extend_from_slice(&(1u64 << 40).to_le_bytes());
    bad_v2.extend_from_slice(&100u64.to_le_bytes());
    bad_v2.extend_from_slice(&0u64.to_le_bytes());

    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("corrupted.car", corrupted, "hash mismatch"),
        ("truncated.car", truncated, "truncated"),
        ("bad-v2.car", bad_v2, "CARv2 header"),
        (
            "garbage.car",
            b"this is not a CAR file at all".to_vec(),
            "CAR",
        ),
    ];
    for (name, content, expect) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let out = sidecar_cmd(&data, &["car", "import", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: import should fail");
        assert!(stderr.contains(expect), "{name}: {stderr}");
        assert!(
            stderr.contains(name),
            "{name}: the error names the file: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    // The corrupted CAR names the bad block's CID.
    let out = sidecar_cmd(
        &data,
        &[
            "car",
            "import",
            dir.path().join("corrupted.car").to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&good[49].0.to_string()),
        "names the CID: {stderr}"
    );

    assert_eq!(shards_listed(&data), 0, "nothing registered from bad CARs");
    assert!(
        !indexed(&data, &good[0].0),
        "no block of a refused CAR is indexed"
    );

    // The good one still imports into the same store.
    let out = sidecar_cmd(&data, &["car", "import", car.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(indexed(&data, &good[0].0));
}

#[test]
fn kill_9_during_import_leaves_the_store_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Enough blocks that the import runs for a while (hundreds of ms even
    // in an optimized build), so the kill lands mid-import.
    let many = blocks(600_000, "many");
    let car = write_car(dir.path(), "many.car", &many);
    let first = many[0].0;
    let last = many[many.len() - 1].0;

    let mut child = Command::new(sidecar_bin())
        .arg("--data-dir")
        .arg(&data)
        .args(["car", "import"])
        .arg(&car)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the store exists (the import is under way), then a little more.
    let deadline = Instant::now() + WAIT;
    while !data.join("sidecar.redb").exists() {
        assert!(Instant::now() < deadline, "import never created the store");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the import finished before it could be killed; the test needs a bigger CAR"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    assert_eq!(
        shards_listed(&data),
        0,
        "a killed import registers no shard"
    );
    assert!(
        !indexed(&data, &first),
        "no block of a half-imported CAR is indexed"
    );
    assert!(!indexed(&data, &last));

    let out = sidecar_cmd(&data, &["car", "import", car.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "re-import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(shards_listed(&data), 1);
    assert!(indexed(&data, &first));
    assert!(indexed(&data, &last));
}
