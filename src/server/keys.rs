//! The root key ring: Ed25519 keys with numeric kids, loaded from PKCS#8 PEM files (production)
//! or generated once into the data directory (development), and published for verifiers.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use biscuit_auth::builder::Algorithm;
use biscuit_auth::KeyPair;
use chrono::{DateTime, Utc};

use crate::token::keys::{
    format_public_key, KeyStatus, KeysDocument, PublishedKey, ROOT_KEY_ALGORITHM,
};

/// The kid of the key `serve --dev` generates.
pub const DEV_KID: u32 = 1;

/// Where `serve --dev` keeps its generated key.
pub fn dev_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("root-key-1.pem")
}

/// Why a key file could not be used. Messages are one line and never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be opened or read.
    #[error("cannot read {what} {path}: {reason}")]
    Unreadable {
        /// What the file holds ("key file", "admin token file").
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: std::io::Error,
    },
    /// The file's mode lets group or others read it.
    #[error(
        "{what} {path} is readable by group or others (mode {mode:04o}); run `chmod 600 {path}`"
    )]
    TooOpen {
        /// What the file holds.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is not an Ed25519 private key in PKCS#8 PEM.
    #[error("key file {path} is not an Ed25519 private key in PKCS#8 PEM")]
    NotAKey {
        /// The file.
        path: PathBuf,
    },
    /// Writing a new key failed (it never overwrites an existing file).
    #[error("cannot write key file {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        reason: std::io::Error,
    },
}

/// Reads a secret file that only its owner may read; `what` names it in errors.
pub fn read_private_file(
    path: &Path,
    what: &'static str,
) -> Result<zeroize::Zeroizing<String>, KeyError> {
    let unreadable = |reason| KeyError::Unreadable {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(unreadable(std::io::Error::other("not a regular file")));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            what,
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    file.read_to_string(&mut text).map_err(unreadable)?;
    Ok(text)
}

/// Reads an Ed25519 private key from a PEM file that only its owner may read.
pub fn load_key_file(path: &Path) -> Result<KeyPair, KeyError> {
    let pem = read_private_file(path, "key file")?;
    KeyPair::from_private_key_pem_with_algorithm(&pem, Algorithm::Ed25519).map_err(|_| {
        KeyError::NotAKey {
            path: path.to_path_buf(),
        }
    })
}

/// Generates a new Ed25519 key and writes it as PKCS#8 PEM with mode 0600. Refuses to overwrite.
pub fn generate_key_file(path: &Path) -> Result<KeyPair, KeyError> {
    let write_err = |reason| KeyError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let key = KeyPair::new_with_algorithm(Algorithm::Ed25519);
    let pem = key
        .to_private_key_pem()
        .map_err(|e| write_err(std::io::Error::other(e.to_string())))?;
    write_new_private(path, pem.as_bytes()).map_err(write_err)?;
    Ok(key)
}

/// Writes `bytes` to a new file `path` (an existing one is never overwritten) readable by
/// its owner only, and syncs it.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    // The umask can only remove bits, but set the mode explicitly so it never depends on it.
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A root key held in memory.
pub struct RootKey {
    /// Key id.
    pub kid: u32,
    /// The key pair; never printed.
    keypair: KeyPair,
    /// When mandate first published this key (from the store).
    pub created_at: DateTime<Utc>,
}

impl RootKey {
    /// A root key with its first-published time.
    pub fn new(kid: u32, keypair: KeyPair, created_at: DateTime<Utc>) -> Self {
        Self {
            kid,
            keypair,
            created_at,
        }
    }

    /// The public key as published: `ed25519/<hex>`.
    pub fn public_key(&self) -> String {
        format_public_key(&self.keypair.public())
    }

    /// The key pair, for signing.
    pub fn keypair(&self) -> &KeyPair {
        &self.keypair
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootKey")
            .field("kid", &self.kid)
            .field("public_key", &self.public_key())
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Why a key ring could not be formed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyRingError {
    /// The active kid names no loaded key.
    #[error("active kid {0} is not among the loaded root keys")]
    NoActiveKey(u32),
}

/// All root keys: one signs, the others only verify.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<RootKey>,
    active: usize,
}

impl KeyRing {
    /// A key ring in which `active_kid` signs.
    pub fn new(mut keys: Vec<RootKey>, active_kid: u32) -> Result<Self, KeyRingError> {
        keys.sort_by_key(|k| k.kid);
        let active = keys
            .iter()
            .position(|k| k.kid == active_kid)
            .ok_or(KeyRingError::NoActiveKey(active_kid))?;
        Ok(Self { keys, active })
    }

    /// The key that signs new mandates.
    pub fn active(&self) -> &RootKey {
        &self.keys[self.active]
    }

    /// The key with this kid, if loaded.
    pub fn get(&self, kid: u32) -> Option<&RootKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The kids of every loaded key.
    pub fn kids(&self) -> Vec<u32> {
        self.keys.iter().map(|k| k.kid).collect()
    }

    /// The document served at `/.well-known/mandate-keys`.
    pub fn document(&self) -> KeysDocument {
        let active_kid = self.active().kid;
        KeysDocument {
            keys: self
                .keys
                .iter()
                .map(|k| PublishedKey {
                    kid: k.kid,
                    algorithm: ROOT_KEY_ALGORITHM.to_owned(),
                    public_key: k.public_key(),
                    status: if k.kid == active_kid {
                        KeyStatus::Active
                    } else {
                        KeyStatus::VerifyOnly
                    },
                    created_at: k.created_at,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    #[test]
    fn a_generated_key_file_is_owner_only_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = generate_key_file(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{text}");
        assert_eq!(load_key_file(&path).unwrap().public(), key.public());
    }

    #[test]
    fn generating_never_overwrites_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let first = generate_key_file(&path).unwrap();
        assert!(matches!(
            generate_key_file(&path),
            Err(KeyError::Write { .. })
        ));
        assert_eq!(load_key_file(&path).unwrap().public(), first.public());
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        generate_key_file(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let err = load_key_file(&path).unwrap_err();
        assert!(matches!(err, KeyError::TooOpen { mode: 0o640, .. }));
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        fs::write(&path, "not a key").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_key_file(&path),
            Err(KeyError::NotAKey { .. })
        ));
        assert!(matches!(
            load_key_file(dir.path()),
            Err(KeyError::Unreadable { .. })
        ));
        assert!(matches!(
            load_key_file(&dir.path().join("missing.pem")),
            Err(KeyError::Unreadable { .. })
        ));
    }

    #[test]
    fn the_ring_publishes_every_key_and_marks_only_the_active_one() {
        let ring = KeyRing::new(
            vec![
                RootKey::new(2, KeyPair::new(), epoch()),
                RootKey::new(1, KeyPair::new(), epoch()),
            ],
            2,
        )
        .unwrap();
        let doc = ring.document();
        let statuses: Vec<_> = doc.keys.iter().map(|k| (k.kid, k.status)).collect();
        assert_eq!(
            statuses,
            vec![(1, KeyStatus::VerifyOnly), (2, KeyStatus::Active)]
        );
        assert_eq!(ring.active().kid, 2);
        assert_eq!(doc.key_set().unwrap().len(), 2);
    }

    #[test]
    fn a_ring_without_its_active_key_is_refused() {
        let err = KeyRing::new(vec![RootKey::new(1, KeyPair::new(), epoch())], 5).unwrap_err();
        assert_eq!(err, KeyRingError::NoActiveKey(5));
    }

    #[test]
    fn debug_output_never_shows_the_private_key() {
        let key = KeyPair::new();
        let private_hex = key.private().to_bytes_hex();
        let root = RootKey::new(1, key, epoch());
        let debug = format!("{root:?}");
        assert!(!debug.contains(&private_hex), "{debug}");
        assert!(debug.contains("ed25519/"));
    }
}
