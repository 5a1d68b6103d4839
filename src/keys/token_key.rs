//! The coalition's token key of one key epoch: 32 bytes, kept in a key file
//! of 64 hex characters (mode 0600, never overwritten), named by the SHA-256
//! fingerprint of its bytes. The token function itself is
//! [`crate::token::Tokenizer`].
//!
//! Key bytes are never printed (`Debug` is redacted, errors never echo
//! key-file content) and are zeroized on drop.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Errors about token keys and key files. None of them carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file does not open, read or write (an existing file is never
    /// overwritten).
    #[error("key file {}", .path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file's content is not 64 hex characters and an optional
    /// newline.
    #[error(
        "key file {}: must hold 64 hex characters (32 bytes), optionally followed by a newline",
        .path.display()
    )]
    Format {
        /// The key file.
        path: PathBuf,
    },
    /// The key file grants group or others some access.
    #[error(
        "key file {} is readable by group or others (mode {mode:o}); run: chmod 600 {}",
        .path.display(),
        .path.display()
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// The file's permission bits.
        mode: u32,
    },
    /// [`TokenKey::from_hex`] on text that is not a key (no file involved).
    #[error("token key must be 64 hex characters (32 bytes), optionally followed by a newline")]
    Hex,
}

/// The 32-byte token key of one key epoch. Zeroized on drop; `Debug` shows
/// only a fingerprint prefix.
pub struct TokenKey {
    bytes: Zeroizing<[u8; 32]>,
}

/// Largest key file we read: 64 hex + "\r\n", with room to spot trailing junk.
const KEY_FILE_MAX: u64 = 128;

impl TokenKey {
    /// The key of these 32 bytes.
    pub fn from_bytes(b: [u8; 32]) -> TokenKey {
        TokenKey {
            bytes: Zeroizing::new(b),
        }
    }

    /// Exactly 64 hex characters (either case), optionally followed by one
    /// `"\n"` or `"\r\n"`. Anything else is [`KeyError::Hex`], which does not
    /// echo the content.
    pub fn from_hex(s: &str) -> Result<TokenKey, KeyError> {
        let s = s
            .strip_suffix("\r\n")
            .or_else(|| s.strip_suffix('\n'))
            .unwrap_or(s);
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(KeyError::Hex);
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(s, &mut bytes[..]).map_err(|_| KeyError::Hex)?;
        Ok(TokenKey { bytes })
    }

    /// Reads a key file. On unix, refuses a file whose mode grants any
    /// permission to group or others ([`KeyError::Permissions`]).
    pub fn load(path: &Path) -> Result<TokenKey, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = super::file::open_private(path).map_err(|e| match e {
            super::file::PrivateFileError::Io(e) => io(e),
            super::file::PrivateFileError::Permissions { mode } => KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            },
        })?;
        // Pre-sized so the buffer never reallocates (no stray copies).
        let mut buf = Zeroizing::new(Vec::with_capacity(KEY_FILE_MAX as usize + 1));
        file.take(KEY_FILE_MAX + 1)
            .read_to_end(&mut buf)
            .map_err(io)?;
        let format = || KeyError::Format {
            path: path.to_path_buf(),
        };
        let text = std::str::from_utf8(&buf).map_err(|_| format())?;
        TokenKey::from_hex(text).map_err(|_| format())
    }

    /// Writes this key to a new file (never overwrites) with mode 0600:
    /// 64 lowercase hex characters and `"\n"`.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut text = Zeroizing::new([0u8; 65]);
        hex::encode_to_slice(&self.bytes[..], &mut text[..64]).map_err(|_| KeyError::Hex)?;
        text[64] = b'\n';
        super::file::write_new_private(path, &text[..]).map_err(io)
    }

    /// The key bytes, for the token function only.
    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// A new random key from the operating system's generator.
    pub fn generate() -> TokenKey {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut bytes[..]);
        TokenKey { bytes }
    }

    /// Lowercase hex SHA-256 of the 32 raw key bytes.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.bytes[..]))
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TokenKey(<redacted>, fingerprint={}…)",
            &self.fingerprint()[..16]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Tokenizer;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn k1() -> TokenKey {
        TokenKey::from_hex(K1).unwrap()
    }

    #[test]
    fn key_from_hex_forms() {
        let fp = k1().fingerprint();
        for s in [
            K1.to_string(),
            format!("{K1}\n"),
            format!("{K1}\r\n"),
            K1.to_uppercase(),
        ] {
            assert_eq!(TokenKey::from_hex(&s).unwrap().fingerprint(), fp, "{s:?}");
        }
        for s in [
            String::new(),
            K1[..62].to_string(),
            format!("{K1}00"),
            format!("{K1}\n\n"),
            format!("{K1}\r"),
            format!("{K1} "),
            format!(" {K1}"),
            format!("\n{K1}"),
            format!("{}zz", &K1[..62]),
            format!("{}é", &K1[..62]),
        ] {
            let e = TokenKey::from_hex(&s).unwrap_err();
            assert!(matches!(e, KeyError::Hex), "{s:?}");
            assert!(!e.to_string().contains(&K1[..8]));
        }
    }

    #[test]
    fn fingerprint_is_sha256_of_raw_bytes() {
        let key = TokenKey::from_bytes([0u8; 32]);
        // SHA-256 of 32 zero bytes.
        assert_eq!(
            key.fingerprint(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = k1();
        let d = format!("{key:?}");
        assert!(d.starts_with("TokenKey(<redacted>, fingerprint="), "{d}");
        assert!(d.contains(&key.fingerprint()[..16]));
        assert!(!d.contains("0001020304"));
        assert!(!d.contains("[0, 1, 2"));
        let t = format!("{:?}", Tokenizer::new(&key));
        assert_eq!(t, "Tokenizer(<redacted>)");
    }

    #[test]
    fn generate_is_random() {
        let a = TokenKey::generate();
        let b = TokenKey::generate();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(*a.bytes, [0u8; 32]);
    }

    #[test]
    fn write_new_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token.key");
        let key = TokenKey::generate();
        key.write_new(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert_eq!(text[..64], text[..64].to_lowercase());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = TokenKey::load(&path).unwrap();
        assert_eq!(back.fingerprint(), key.fingerprint());
        // Never overwrites.
        let e = TokenKey::generate().write_new(&path).unwrap_err();
        match e {
            KeyError::Io { source, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            TokenKey::load(&path).unwrap().fingerprint(),
            key.fingerprint()
        );
    }

    #[cfg(unix)]
    fn write_mode(path: &Path, content: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, content).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn load_refuses_group_or_other_access() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o666] {
            write_mode(&path, K1, mode);
            let e = TokenKey::load(&path).unwrap_err();
            match &e {
                KeyError::Permissions { mode: m, .. } => assert_eq!(*m, mode),
                other => panic!("{other:?}"),
            }
            let msg = e.to_string();
            let p = path.display().to_string();
            assert!(msg.contains(&format!("mode {mode:o}")), "{msg}");
            assert!(msg.contains(&format!("chmod 600 {p}")), "{msg}");
            assert!(!msg.contains(&K1[..8]));
        }
        for mode in [0o600, 0o400] {
            write_mode(&path, &format!("{K1}\n"), mode);
            assert_eq!(
                TokenKey::load(&path).unwrap().fingerprint(),
                k1().fingerprint()
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn load_format_errors_name_path_not_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let long = format!("{K1}{K1}{K1}");
        for content in [
            "",
            "\n",
            &K1[..63],
            &format!("{K1}\n\n"),
            &format!("# key\n{K1}\n"),
            &long,
        ] {
            write_mode(&path, content, 0o600);
            let e = TokenKey::load(&path).unwrap_err();
            assert!(matches!(e, KeyError::Format { .. }), "{content:?}: {e:?}");
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()));
            assert!(!msg.contains(&K1[..8]));
        }
        // Invalid UTF-8.
        std::fs::write(&path, [0xff; 65]).unwrap();
        assert!(matches!(
            TokenKey::load(&path),
            Err(KeyError::Format { .. })
        ));
        // Missing file.
        let missing = dir.path().join("missing");
        match TokenKey::load(&missing) {
            Err(KeyError::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
            }
            other => panic!("{other:?}"),
        }
    }
}
