//! The node's persistent libp2p identity.
//!
//! An ed25519 keypair kept in `<data-dir>/identity.key` as a libp2p protobuf
//! private key (the format `ipfs key import` reads), created on first use
//! with mode 0600 and written atomically (temp file, fsync, rename), so a
//! crash never leaves a half-written key. The peer ID therefore survives
//! restarts and upgrades.

use std::{
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use libp2p::identity::Keypair;

/// File name of the key inside the data directory.
pub const KEY_FILE: &str = "identity.key";

/// A key that could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("identity key {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("identity key {path} is not a libp2p private key: {reason}")]
    Decode { path: PathBuf, reason: String },
}

/// Loads the keypair from `data_dir`, creating a new ed25519 key if there is none.
pub fn load_or_create(data_dir: &Path) -> Result<Keypair, IdentityError> {
    let path = data_dir.join(KEY_FILE);
    let io = |source| IdentityError::Io {
        path: path.clone(),
        source,
    };
    match fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Decode {
            path: path.clone(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(data_dir).map_err(io)?;
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| IdentityError::Decode {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            let tmp = path.with_extension("key.tmp");
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
            fs::rename(&tmp, &path).map_err(io)?;
            if let Ok(dir) = fs::File::open(data_dir) {
                // Persist the rename itself; failure here only weakens durability.
                let _ = dir.sync_all();
            }
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
    }

    #[test]
    fn garbage_key_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), b"garbage").unwrap();
        let err = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a libp2p private key"), "{err}");
    }
}
