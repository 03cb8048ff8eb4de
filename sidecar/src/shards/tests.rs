//! Import and serving tests: real CAR files in a temp dir, a real redb store,
//! and the CAR-backed `BlockSource` reading them back.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cid::Cid;

use super::*;
use crate::blocks::car_store::CarBlockSource;
use crate::blocks::{BlockError, BlockSource, Mh};
use crate::car::{CarWriter, DAG_PB, IndexKind, RAW, cid_v0_sha256, cid_v1_sha256};
use crate::store::Store;

fn make_blocks(tag: &str, n: usize) -> Vec<(Cid, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let data = format!("{tag} block {i} {}", "x".repeat(i % 97)).into_bytes();
            let cid = match i % 3 {
                0 => cid_v0_sha256(&data),
                1 => cid_v1_sha256(DAG_PB, &data),
                _ => cid_v1_sha256(RAW, &data),
            };
            (cid, data)
        })
        .collect()
}

fn write_car(path: &Path, v2: bool, blocks: &[(Cid, Vec<u8>)]) {
    let out = BufWriter::new(std::fs::File::create(path).unwrap());
    let roots = [blocks[0].0];
    let mut w = if v2 {
        CarWriter::v2(out, &roots, IndexKind::MultihashSorted).unwrap()
    } else {
        CarWriter::v1(out, &roots).unwrap()
    };
    for (c, d) in blocks {
        w.write_block(c, d).unwrap();
    }
    w.finish().unwrap();
}

fn mh(c: &Cid) -> Mh {
    *c.hash()
}

struct Env {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Arc<Store>,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = Arc::new(Store::open_in_dir(&root).unwrap());
    Env {
        _dir: dir,
        root,
        store,
    }
}

fn assert_served(src: &CarBlockSource, blocks: &[(Cid, Vec<u8>)]) {
    for (c, d) in blocks {
        let got = src.read_block(&mh(c)).unwrap();
        assert_eq!(got.as_deref(), Some(d.as_slice()), "{c}");
        assert_eq!(src.block_size(&mh(c)).unwrap(), Some(d.len() as u32));
    }
}

fn assert_not_indexed(store: &Store, blocks: &[(Cid, Vec<u8>)]) {
    for (c, _) in blocks {
        assert_eq!(
            store.lookup(&mh(c)).unwrap(),
            None,
            "{c} must not be indexed"
        );
    }
}

#[test]
fn imports_v1_and_v2_and_serves_every_block() {
    let e = env();
    let a = make_blocks("a", 300);
    let b = make_blocks("b", 200);
    write_car(&e.root.join("a.car"), false, &a);
    write_car(&e.root.join("b.car"), true, &b);
    let mut reports = 0;
    let sa = import_car(&e.store, e.root.join("a.car"), |_| reports += 1).unwrap();
    assert!(reports > 0);
    let sb = import_car(&e.store, e.root.join("b.car"), |_| {}).unwrap();
    assert_eq!(
        (sa.outcome, sa.blocks, sa.new_entries),
        (ImportOutcome::Indexed, 300, 300)
    );
    assert_eq!((sb.outcome, sb.blocks), (ImportOutcome::Indexed, 200));
    assert_ne!(sa.shard_id, sb.shard_id);
    assert!(matches!(
        sb.index,
        Some(crate::car::IndexCheck::Verified { entries: 200, .. })
    ));

    let src = CarBlockSource::new(e.store.clone());
    assert_served(&src, &a);
    assert_served(&src, &b);
    let unknown = mh(&cid_v1_sha256(RAW, b"nobody has this"));
    assert_eq!(src.read_block(&unknown).unwrap(), None);
    let sizes = src
        .block_sizes(&[mh(&a[0].0), unknown, mh(&b[5].0)])
        .unwrap();
    assert_eq!(
        sizes,
        vec![Some(a[0].1.len() as u32), None, Some(b[5].1.len() as u32)]
    );

    let shards = list_shards(&e.store).unwrap();
    assert_eq!(shards.len(), 2);
    assert_eq!(shards[0].roots, vec![a[0].0.to_string()]);
    assert_eq!(shards[1].car_version, 2);
    assert_eq!(e.store.block_count().unwrap(), 500);
}

#[test]
fn reimport_is_idempotent_and_changed_files_are_reindexed() {
    let e = env();
    let path = e.root.join("a.car");
    let v1 = make_blocks("first", 50);
    write_car(&path, false, &v1);
    let first = import_car(&e.store, &path, |_| {}).unwrap();
    let again = import_car(&e.store, &path, |_| {}).unwrap();
    assert_eq!(again.outcome, ImportOutcome::AlreadyIndexed);
    assert_eq!((again.shard_id, again.blocks), (first.shard_id, 50));
    assert_eq!(e.store.block_count().unwrap(), 50);

    // Same path, new contents: re-indexed under the same id, old entries gone.
    let v2 = make_blocks("second", 30);
    write_car(&path, true, &v2);
    let re = import_car(&e.store, &path, |_| {}).unwrap();
    assert_eq!(re.outcome, ImportOutcome::Reindexed);
    assert_eq!(re.shard_id, first.shard_id);
    assert_not_indexed(&e.store, &v1);
    assert_eq!(e.store.block_count().unwrap(), 30);
    let src = CarBlockSource::new(e.store.clone());
    assert_served(&src, &v2);
    assert_eq!(list_shards(&e.store).unwrap().len(), 1);

    // `force` re-indexes an unchanged file.
    let opts = ImportOptions {
        force: true,
        ..ImportOptions::default()
    };
    let forced = import_car_with(&e.store, &path, &opts, |_| {}).unwrap();
    assert_eq!(forced.outcome, ImportOutcome::Reindexed);
    assert_served(&src, &v2);
}

#[test]
fn failed_import_leaves_no_partial_index() {
    let e = env();
    let a = make_blocks("a", 100);
    write_car(&e.root.join("a.car"), false, &a);
    import_car(&e.store, e.root.join("a.car"), |_| {}).unwrap();

    // B: 100 good blocks, then one whose bytes do not match its CID, then more.
    let mut b = make_blocks("b", 200);
    b[100].1[0] ^= 0xff;
    write_car(&e.root.join("b.car"), false, &b);
    let err = import_car(&e.store, e.root.join("b.car"), |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("hash mismatch") && msg.contains(&b[100].0.to_string()),
        "{msg}"
    );
    assert!(msg.contains("b.car"), "{msg}");

    let src = CarBlockSource::new(e.store.clone());
    assert_served(&src, &a);
    assert_not_indexed(&e.store, &b);
    assert_eq!(list_shards(&e.store).unwrap().len(), 1);
    assert_eq!(e.store.block_count().unwrap(), 100);

    // A truncated CAR fails the same way.
    let bytes = std::fs::read(e.root.join("a.car")).unwrap();
    std::fs::write(e.root.join("t.car"), &bytes[..bytes.len() - 3]).unwrap();
    let err = import_car(&e.store, e.root.join("t.car"), |_| {}).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_eq!(list_shards(&e.store).unwrap().len(), 1);
}

#[test]
fn shared_blocks_keep_their_first_location() {
    let e = env();
    let a = make_blocks("a", 20);
    let mut b = make_blocks("b", 20);
    b.extend(a[..5].iter().cloned());
    b.push(b[0].clone()); // a duplicate inside B too
    write_car(&e.root.join("a.car"), false, &a);
    write_car(&e.root.join("b.car"), false, &b);
    let sa = import_car(&e.store, e.root.join("a.car"), |_| {}).unwrap();
    let sb = import_car(&e.store, e.root.join("b.car"), |_| {}).unwrap();
    assert_eq!(sb.blocks, 26);
    assert_eq!(sb.new_entries, 20);
    for (c, _) in &a[..5] {
        assert_eq!(e.store.lookup(&mh(c)).unwrap().unwrap().shard, sa.shard_id);
    }
    assert_served(&CarBlockSource::new(e.store.clone()), &b);
}

#[test]
fn index_survives_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let a = make_blocks("a", 10);
    write_car(&dir.path().join("a.car"), true, &a);
    {
        let store = Store::open_in_dir(dir.path()).unwrap();
        import_car(&store, dir.path().join("a.car"), |_| {}).unwrap();
    }
    let store = Arc::new(Store::open_in_dir(dir.path()).unwrap());
    assert_served(&CarBlockSource::new(store), &a);
}

#[test]
fn changed_shard_file_is_an_error_not_wrong_bytes() {
    let e = env();
    let path = e.root.join("a.car");
    let a = make_blocks("a", 10);
    write_car(&path, false, &a);
    import_car(&e.store, &path, |_| {}).unwrap();
    // Same size, different bytes, different mtime.
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1))
        .unwrap();
    let src = CarBlockSource::new(e.store.clone());
    let err = src.read_block(&mh(&a[9].0)).unwrap_err();
    assert!(matches!(err, BlockError::Shard { .. }), "{err}");
    assert!(err.to_string().contains("changed"), "{err}");
}

#[test]
fn verify_on_read_catches_rewritten_bytes() {
    let e = env();
    let path = e.root.join("a.car");
    let a = make_blocks("a", 3);
    write_car(&path, false, &a);
    import_car(&e.store, &path, |_| {}).unwrap();
    let src = CarBlockSource::new(e.store.clone()).with_verify_on_read(true);
    assert_served(&src, &a);
    // Corrupt the file in place, keeping size and mtime as registered.
    let meta = e.store.shard(0).unwrap().unwrap();
    let loc = e.store.lookup(&mh(&a[1].0)).unwrap().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[loc.offset as usize] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let mtime =
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(meta.mtime_unix_nanos as u64);
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(mtime).unwrap();
    let fresh = CarBlockSource::new(e.store.clone()).with_verify_on_read(true);
    assert!(fresh.read_block(&mh(&a[1].0)).is_err());
}

#[test]
fn many_threads_and_a_tiny_handle_cache() {
    let e = env();
    let mut all = Vec::new();
    for i in 0..4 {
        let blocks = make_blocks(&format!("s{i}"), 40);
        let p = e.root.join(format!("{i}.car"));
        write_car(&p, i % 2 == 0, &blocks);
        import_car(&e.store, &p, |_| {}).unwrap();
        all.extend(blocks);
    }
    let src = Arc::new(CarBlockSource::new(e.store.clone()).with_max_open_shards(2));
    let all = Arc::new(all);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let src = src.clone();
            let all = all.clone();
            std::thread::spawn(move || {
                for round in 0..3 {
                    for (i, (c, d)) in all.iter().enumerate() {
                        if (i + t + round) % 2 == 0 {
                            let got = src.read_block(&mh(c)).unwrap();
                            assert_eq!(got.as_deref(), Some(d.as_slice()));
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(src.open_shards() <= 2);
}

#[test]
fn summary_line_names_blocks_bytes_and_rate() {
    let e = env();
    let a = make_blocks("a", 5);
    write_car(&e.root.join("a.car"), false, &a);
    let paths = [e.root.join("a.car"), e.root.join("missing.car")];
    let results = import_each_with_progress_bar(&e.store, &paths);
    let line = format_summary(results[0].as_ref().unwrap());
    assert!(line.contains("5 blocks") && line.contains("MB/s"), "{line}");
    assert!(matches!(results[1], Err(ImportError::Io { .. })));
    let failures = import_with_progress_bar(&e.store, &paths).unwrap_err();
    assert_eq!(failures.to_string(), "1 of 2 CAR files failed to import");
    assert_eq!(failures.imported[0].outcome, ImportOutcome::AlreadyIndexed);
    let again = import_with_progress_bar(&e.store, &paths[..1]).unwrap();
    assert!(format_summary(&again[0]).contains("already indexed"));
}

#[test]
fn lookups_see_each_commit() {
    let e = env();
    let a = make_blocks("a", 5);
    let b = make_blocks("b", 5);
    write_car(&e.root.join("a.car"), false, &a);
    write_car(&e.root.join("b.car"), false, &b);
    import_car(&e.store, e.root.join("a.car"), |_| {}).unwrap();
    assert!(e.store.lookup(&mh(&a[0].0)).unwrap().is_some());
    assert_not_indexed(&e.store, &b); // takes the shared read snapshot
    import_car(&e.store, e.root.join("b.car"), |_| {}).unwrap();
    assert_served(&CarBlockSource::new(e.store.clone()), &b);
    let many = e.store.lookup_many(&[mh(&a[1].0), mh(&b[1].0)]).unwrap();
    assert!(many.iter().all(Option::is_some));
}
