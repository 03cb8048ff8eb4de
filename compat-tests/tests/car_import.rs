//! `sidecar car import` of bad CAR files must fail with a non-zero exit and a message that
//! names the file, and must leave the data directory usable (a good CAR still imports).

use anyhow::{Result, ensure};
use compat_tests::car;
use compat_tests::sidecar::Sidecar;

#[test]
fn bad_cars_are_refused_loudly() -> Result<()> {
    let sidecar = Sidecar::new()?;
    let dir = tempfile::tempdir()?;
    let block = b"hello from the compat tests".to_vec();
    let cid = car::cid_v1(car::RAW, &sha256_of_known_block());
    let good = car::write(&cid, &[(cid.clone(), block)]);

    let cases: [(&str, Vec<u8>); 3] = [
        ("garbage.car", b"this is not a CAR file at all".to_vec()),
        ("truncated.car", good[..good.len() - 5].to_vec()),
        ("empty.car", Vec::new()),
    ];
    for (name, bytes) in &cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes)?;
        let (ok, output) =
            sidecar.try_cli(&["car", "import", path.to_str().unwrap_or_default()])?;
        eprintln!("{name}: ok={ok}\n{output}");
        ensure!(!ok, "car import of {name} succeeded:\n{output}");
        // Look only at what the sidecar printed, not at the command line in the error.
        let stderr = output
            .split("--- stderr (tail) ---")
            .nth(1)
            .unwrap_or_default();
        ensure!(
            stderr.contains(name),
            "the error for {name} does not name the file:\n{output}"
        );
    }
    let path = dir.path().join("good.car");
    std::fs::write(&path, &good)?;
    sidecar.car_import(&[&path])?;
    Ok(())
}

/// sha2-256 of `b"hello from the compat tests"`, so the good CAR's CID matches its block
/// (computed once with `printf %s 'hello from the compat tests' | sha256sum`).
fn sha256_of_known_block() -> [u8; 32] {
    let hex = "d896f79750632bbb2d215c74a16a33f879686ea2a8fe36a92057cbbb1f3c2281";
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or_default();
    }
    out
}
