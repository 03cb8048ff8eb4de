//! Block hash verification: does a block's bytes hash to its CID's multihash?
//! Supports sha2-256, sha2-512 and identity. Any other hash function is an
//! [`CarError::UnsupportedHash`], never a silent pass: a block we cannot
//! verify is a block we must not serve. Pure; called by `section.rs`.

use cid::Cid;
use sha2::{Digest, Sha256, Sha512};

use super::{CarError, IDENTITY, SHA2_256, SHA2_512};

/// The outcome of checking one block, for callers that want it without an
/// error (e.g. a `verify` tool).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashCheck {
    /// The digest matches.
    Ok,
    /// The digest does not match.
    Mismatch,
    /// The hash function (or a truncated digest length) is not supported.
    Unsupported,
}

/// Checks `data` against the multihash in `cid`.
pub fn check_block(cid: &Cid, data: &[u8]) -> HashCheck {
    let mh = cid.hash();
    let digest = mh.digest();
    let matches = match (mh.code(), digest.len()) {
        (SHA2_256, 32) => Sha256::digest(data).as_slice() == digest,
        (SHA2_512, 64) => Sha512::digest(data).as_slice() == digest,
        (IDENTITY, _) => digest == data,
        _ => return HashCheck::Unsupported,
    };
    if matches {
        HashCheck::Ok
    } else {
        HashCheck::Mismatch
    }
}

/// Verifies `data` (found at absolute `offset`) against `cid`.
pub fn verify_block(cid: &Cid, data: &[u8], offset: u64) -> Result<(), CarError> {
    match check_block(cid, data) {
        HashCheck::Ok => Ok(()),
        HashCheck::Mismatch => Err(CarError::HashMismatch {
            cid: Box::new(*cid),
            offset,
        }),
        HashCheck::Unsupported => Err(CarError::UnsupportedHash {
            cid: Box::new(*cid),
            offset,
            code: cid.hash().code(),
            digest_len: cid.hash().size(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::car::{RAW, cid_v1_sha256};
    use cid::multihash::Multihash;

    #[test]
    fn sha256_sha512_identity() {
        let data = b"hello";
        assert_eq!(check_block(&cid_v1_sha256(RAW, data), data), HashCheck::Ok);
        assert_eq!(
            check_block(&cid_v1_sha256(RAW, data), b"hellO"),
            HashCheck::Mismatch
        );
        let d512 = Sha512::digest(data);
        let c512 = Cid::new_v1(RAW, Multihash::wrap(SHA2_512, &d512).unwrap());
        assert_eq!(check_block(&c512, data), HashCheck::Ok);
        assert_eq!(check_block(&c512, b"x"), HashCheck::Mismatch);
        let id = Cid::new_v1(RAW, Multihash::wrap(IDENTITY, data).unwrap());
        assert_eq!(check_block(&id, data), HashCheck::Ok);
        assert_eq!(check_block(&id, b"hell"), HashCheck::Mismatch);
    }

    #[test]
    fn unknown_and_truncated_hashes_are_unsupported() {
        let blake3 = Cid::new_v1(RAW, Multihash::wrap(0x1e, &[0u8; 32]).unwrap());
        let err = verify_block(&blake3, b"x", 7).unwrap_err();
        assert!(matches!(
            err,
            CarError::UnsupportedHash {
                offset: 7,
                code: 0x1e,
                ..
            }
        ));
        assert!(err.to_string().contains(&blake3.to_string()));
        let short = Cid::new_v1(RAW, Multihash::wrap(SHA2_256, &[0u8; 20]).unwrap());
        assert_eq!(check_block(&short, b"x"), HashCheck::Unsupported);
    }
}
