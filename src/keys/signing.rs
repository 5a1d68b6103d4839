//! Ed25519 key files of coalition operators (who sign the trust list) and of
//! members (who sign their origin logs).
//!
//! - A private key file holds the 32-byte Ed25519 seed as 64 lowercase hex
//!   characters and `"\n"`, mode 0600, and is never overwritten. Loading
//!   refuses a file that group or others may access.
//! - A public key file holds the 32-byte public key as 64 hex characters and
//!   `"\n"`.
//!
//! Key bytes are never printed: [`SigningKeyFile`]'s `Debug` shows only the
//! public key, errors name the file but never echo its content, and the seed
//! is zeroized on drop (by `ed25519-dalek`'s `zeroize` feature).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

/// Errors about key files. None of them carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file does not open, read or write (an existing file is never
    /// overwritten).
    #[error("key file {}", .path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The content is not 64 hex characters and an optional newline.
    #[error(
        "key file {}: must hold 64 hex characters ({what}), optionally followed by a newline",
        .path.display()
    )]
    Format {
        /// The key file.
        path: PathBuf,
        /// What the file should hold: a seed or a public key.
        what: &'static str,
    },
    /// A public key file's 32 bytes are not a valid Ed25519 public key.
    #[error("public key file {}: not a valid Ed25519 public key", .path.display())]
    NotAPoint {
        /// The public key file.
        path: PathBuf,
    },
    /// A private key file grants group or others some access.
    #[error(
        "key file {} is accessible by group or others (mode {mode:o}); run: chmod 600 {}",
        .path.display(),
        .path.display()
    )]
    Permissions {
        /// The private key file.
        path: PathBuf,
        /// The file's permission bits.
        mode: u32,
    },
}

/// Largest key file we read: 64 hex + "\r\n", with room to spot trailing junk.
const KEY_FILE_MAX: u64 = 128;

const SEED_WHAT: &str = "the 32-byte Ed25519 seed";
const PUBLIC_WHAT: &str = "a 32-byte Ed25519 public key";

/// An Ed25519 private key read from or written to a key file.
pub struct SigningKeyFile {
    key: SigningKey,
}

impl SigningKeyFile {
    /// A new key from the operating system's generator.
    pub fn generate() -> SigningKeyFile {
        SigningKeyFile {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// From a 32-byte seed (tests, fixtures).
    pub fn from_seed(seed: &[u8; 32]) -> SigningKeyFile {
        SigningKeyFile {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Reads a private key file. On unix, refuses a file whose mode grants
    /// any permission to group or others ([`KeyFileError::Permissions`]).
    pub fn load(path: &Path) -> Result<SigningKeyFile, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = crate::keys::file::open_private(path).map_err(|e| match e {
            crate::keys::file::PrivateFileError::Io(e) => io(e),
            crate::keys::file::PrivateFileError::Permissions { mode } => {
                KeyFileError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                }
            }
        })?;
        let seed = read_hex32(file, path, SEED_WHAT)?;
        Ok(SigningKeyFile {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Writes the seed to a new file (never overwrites) with mode 0600: 64
    /// lowercase hex characters and `"\n"`.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyFileError> {
        let seed = Zeroizing::new(self.key.to_bytes());
        let mut text = Zeroizing::new([0u8; 65]);
        hex::encode_to_slice(&seed[..], &mut text[..64]).expect("64 hex characters for 32 bytes");
        text[64] = b'\n';
        crate::keys::file::write_new_private(path, &text[..]).map_err(|source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The public key, 64 lowercase hex characters.
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// The public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Ed25519 signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> Signature {
        self.key.sign(msg)
    }
}

impl fmt::Debug for SigningKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKeyFile(<redacted>, public={})",
            self.public_hex()
        )
    }
}

/// Reads a public key file.
pub fn load_public(path: &Path) -> Result<VerifyingKey, KeyFileError> {
    let file = File::open(path).map_err(|source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = read_hex32(file, path, PUBLIC_WHAT)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyFileError::NotAPoint {
        path: path.to_path_buf(),
    })
}

/// Writes a public key to a new file (never overwrites): 64 lowercase hex
/// characters and `"\n"`.
pub fn write_public(path: &Path, key: &VerifyingKey) -> Result<(), KeyFileError> {
    let text = format!("{}\n", hex::encode(key.as_bytes()));
    write_new_file(path, text.as_bytes(), None)
}

/// 64 hex characters (either case), optionally followed by one `"\n"` or
/// `"\r\n"`, into 32 bytes.
fn read_hex32(
    file: File,
    path: &Path,
    what: &'static str,
) -> Result<Zeroizing<[u8; 32]>, KeyFileError> {
    let format = || KeyFileError::Format {
        path: path.to_path_buf(),
        what,
    };
    // Pre-sized so the buffer never reallocates (no stray copies).
    let mut buf = Zeroizing::new(Vec::with_capacity(KEY_FILE_MAX as usize + 1));
    file.take(KEY_FILE_MAX + 1)
        .read_to_end(&mut buf)
        .map_err(|source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let text = buf
        .strip_suffix(b"\r\n")
        .or_else(|| buf.strip_suffix(b"\n"))
        .unwrap_or(&buf[..]);
    if text.len() != 64 || !text.iter().all(|b| b.is_ascii_hexdigit()) {
        return Err(format());
    }
    let mut out = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text, &mut out[..]).map_err(|_| format())?;
    Ok(out)
}

fn write_new_file(path: &Path, content: &[u8], mode: Option<u32>) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = opts.open(path).map_err(io)?;
    let written = file.write_all(content).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(io(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    // RFC 8032 test 1: the public key of SEED.
    const PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn write_load_roundtrip_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("op.key");
        let key = SigningKeyFile::generate();
        key.write_new(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert_eq!(text, text.to_lowercase());
        assert!(text.ends_with('\n'));
        assert_eq!(mode(&path), 0o600);
        let back = SigningKeyFile::load(&path).unwrap();
        assert_eq!(back.public_hex(), key.public_hex());
        // Never overwrites.
        let e = SigningKeyFile::generate().write_new(&path).unwrap_err();
        assert!(
            matches!(e, KeyFileError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists)
        );

        let pubpath = dir.path().join("op.key.pub");
        write_public(&pubpath, &key.verifying_key()).unwrap();
        assert_eq!(load_public(&pubpath).unwrap(), key.verifying_key());
        assert_eq!(
            std::fs::read_to_string(&pubpath).unwrap(),
            format!("{}\n", key.public_hex())
        );
        assert!(write_public(&pubpath, &key.verifying_key()).is_err());
    }

    #[test]
    fn known_seed_gives_known_public_key_and_signature_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .unwrap();
            f.write_all(format!("{}\r\n", SEED.to_uppercase()).as_bytes())
                .unwrap();
        }
        let key = SigningKeyFile::load(&path).unwrap();
        assert_eq!(key.public_hex(), PUBLIC);
        let sig = key.sign(b"m");
        key.verifying_key().verify_strict(b"m", &sig).unwrap();
    }

    #[test]
    fn load_refuses_group_or_other_access() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, format!("{SEED}\n")).unwrap();
        for m in [0o644, 0o640, 0o604, 0o610, 0o601, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
            let e = SigningKeyFile::load(&path).unwrap_err();
            assert!(matches!(e, KeyFileError::Permissions { .. }), "{m:o}");
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("chmod 600 {}", path.display())),
                "{msg}"
            );
            assert!(!msg.contains(&SEED[..8]));
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        SigningKeyFile::load(&path).unwrap();
    }

    #[test]
    fn bad_content_is_refused_without_echo() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        for content in [
            String::new(),
            SEED[..62].to_string(),
            format!("{SEED}00"),
            format!("{SEED}\n\n"),
            format!(" {SEED}"),
            format!("{}zz", &SEED[..62]),
        ] {
            std::fs::write(&path, &content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let e = SigningKeyFile::load(&path).unwrap_err();
            assert!(matches!(e, KeyFileError::Format { .. }), "{content:?}");
            assert!(!e.to_string().contains(&SEED[..8]));
            let e = load_public(&path).unwrap_err();
            assert!(matches!(e, KeyFileError::Format { .. }), "{content:?}");
        }
    }

    #[test]
    fn debug_shows_only_the_public_key() {
        let key = SigningKeyFile::from_seed(&hex::decode(SEED).unwrap().try_into().unwrap());
        let d = format!("{key:?}");
        assert_eq!(d, format!("SigningKeyFile(<redacted>, public={PUBLIC})"));
        assert!(!d.contains(&SEED[..8]));
    }
}
