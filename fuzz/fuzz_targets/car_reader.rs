//! Fuzz target `car_reader`: the whole CAR pipeline the importer runs (header,
//! CARv2 header, every section, hash verification, CARv2 index parse and
//! cross-check), reading from memory through `ReadAt for [u8]`. Any panic,
//! hang or unbounded allocation is a bug; errors are expected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sidecar::car::{CarError, ReadOptions, ScanOptions, read_index, scan};

fuzz_target!(|data: &[u8]| {
    for zero_length_section_as_eof in [false, true] {
        let opts = ScanOptions {
            read: ReadOptions {
                verify_hashes: true,
                zero_length_section_as_eof,
            },
            check_index: true,
        };
        let mut blocks = 0u64;
        let r = scan(data, &opts, |e| {
            blocks += 1;
            // Every reported block lies inside the input.
            assert!(e.offset + u64::from(e.len) <= data.len() as u64);
            Ok::<_, CarError>(())
        });
        if let Ok(s) = r {
            assert_eq!(s.blocks, blocks);
        }
    }
    // The index parser on its own, from the first byte.
    let _ = read_index(data, 0, data.len() as u64, |e| {
        assert!(e.digest.len() <= 64);
        Ok(())
    });
});
