//! Token keys and tokens, per `docs/spec/IDENTIFIERS.md` v1.
//!
//! This module owns:
//! - [`TokenKey`]: the coalition's 32-byte token key of one key epoch, its key
//!   file (64 hex characters, mode 0600) and its SHA-256 fingerprint;
//! - [`Tokenizer`]: the token function
//!   `HMAC-SHA256(K, "cix-token-v1" || 0x00 || KIND || 0x00 || CANONICAL)`;
//! - [`Token`]: the 32-byte result and its 64-lowercase-hex text form.
//!
//! Key bytes are never printed (every `Debug` here is redacted, errors never
//! echo key-file content) and are zeroized on drop.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::ident::Kind;

/// Length of a token in bytes.
pub const TOKEN_LEN: usize = 32;

/// Domain-separation prefix of every token input (`"cix-token-v1" || 0x00`).
const TOKEN_PREFIX: &[u8] = b"cix-token-v1\0";

/// A 32-byte identifier token. Not secret, but `Debug` stays short.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub [u8; TOKEN_LEN]);

/// Why a token's text or binary form was refused.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TokenParseError {
    #[error("token must be 64 lowercase hex characters")]
    Hex,
    #[error("token must be 32 bytes")]
    Length,
}

impl Token {
    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses exactly 64 lowercase hex characters (upper case is refused).
    pub fn from_hex(s: &str) -> Result<Token, TokenParseError> {
        let s = s.as_bytes();
        if s.len() != 2 * TOKEN_LEN || !s.iter().all(|&b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(TokenParseError::Hex);
        }
        let mut out = [0u8; TOKEN_LEN];
        hex::decode_to_slice(s, &mut out).map_err(|_| TokenParseError::Hex)?;
        Ok(Token(out))
    }

    /// Takes exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Result<Token, TokenParseError> {
        <[u8; TOKEN_LEN]>::try_from(b)
            .map(Token)
            .map_err(|_| TokenParseError::Length)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 2 * TOKEN_LEN];
        // Cannot fail: the buffer is exactly twice the input length.
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}…)", hex::encode(&self.0[..4]))
    }
}

impl FromStr for Token {
    type Err = TokenParseError;
    fn from_str(s: &str) -> Result<Token, TokenParseError> {
        Token::from_hex(s)
    }
}

/// Errors about token keys and key files. None of them carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "key file {}: must hold 64 hex characters (32 bytes), optionally followed by a newline",
        .path.display()
    )]
    Format { path: PathBuf },
    #[error(
        "key file {} is readable by group or others (mode {mode:o}); run: chmod 600 {}",
        .path.display(),
        .path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
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
        let file = crate::keyfile::open_private(path).map_err(|e| match e {
            crate::keyfile::PrivateFileError::Io(e) => io(e),
            crate::keyfile::PrivateFileError::Permissions { mode } => KeyError::Permissions {
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
        crate::keyfile::write_new_private(path, &text[..]).map_err(io)
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

/// Pre-keyed HMAC-SHA256 for one key. Holds, per kind, the keyed HMAC state
/// with `"cix-token-v1" || 0x00 || KIND || 0x00` already absorbed, and clones
/// it per token (cheaper than re-keying).
///
/// Note: `hmac` 0.12's `Hmac<Sha256>` does not implement `Zeroize`, so these
/// key-derived states (the inner and outer pads after one compression) are not
/// wiped on drop. They do not reveal the key itself, but they let whoever
/// holds them compute tokens; treat a `Tokenizer` like the key.
#[derive(Clone)]
pub struct Tokenizer {
    per_kind: [Hmac<Sha256>; 8],
}

impl Tokenizer {
    pub fn new(key: &TokenKey) -> Tokenizer {
        let base = <Hmac<Sha256> as Mac>::new_from_slice(&key.bytes[..])
            .expect("HMAC accepts keys of any length");
        let per_kind = Kind::ALL.map(|kind| {
            let mut m = base.clone();
            m.update(TOKEN_PREFIX);
            m.update(kind.as_str().as_bytes());
            m.update(&[0]);
            m
        });
        Tokenizer { per_kind }
    }

    /// `HMAC-SHA256(K, "cix-token-v1" || 0x00 || KIND || 0x00 || CANONICAL)`.
    /// `canonical` must come from [`crate::ident::normalize`] (or `_into`).
    #[inline]
    pub fn token(&self, kind: Kind, canonical: &[u8]) -> Token {
        let mut m = self.per_kind[usize::from(kind.code() - 1)].clone();
        m.update(canonical);
        Token(m.finalize().into_bytes().into())
    }
}

impl fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tokenizer(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn k1() -> TokenKey {
        TokenKey::from_hex(K1).unwrap()
    }

    #[test]
    fn token_matches_plain_hmac() {
        let key = k1();
        let t = Tokenizer::new(&key).token(Kind::Pan, b"4111111111111111");
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key.bytes[..]).unwrap();
        m.update(b"cix-token-v1\x00pan\x004111111111111111");
        assert_eq!(t.0[..], m.finalize().into_bytes()[..]);
        assert_eq!(
            t.to_hex(),
            "c5d63c2017fcb0fe14ccbcfe0afcd31a81685d8bf5d64a00ee7f6ed52142ad99"
        );
        // Kind separates domains.
        let t2 = Tokenizer::new(&key).token(Kind::Phone, b"4111111111111111");
        assert_ne!(t, t2);
    }

    #[test]
    fn token_hex_roundtrip_and_strictness() {
        let t = Token([0xab; 32]);
        let h = t.to_hex();
        assert_eq!(h, "ab".repeat(32));
        assert_eq!(t.to_string(), h);
        assert_eq!(Token::from_hex(&h), Ok(t));
        assert_eq!(h.parse::<Token>(), Ok(t));
        assert_eq!(
            Token::from_hex(&h.to_uppercase()),
            Err(TokenParseError::Hex)
        );
        assert_eq!(Token::from_hex(&h[..62]), Err(TokenParseError::Hex));
        assert_eq!(
            Token::from_hex(&format!("{h}\n")),
            Err(TokenParseError::Hex)
        );
        assert_eq!(
            Token::from_hex(&format!("{}zz", &h[..62])),
            Err(TokenParseError::Hex)
        );
        assert_eq!(Token::from_slice(&[1; 32]), Ok(Token([1; 32])));
        assert_eq!(Token::from_slice(&[1; 31]), Err(TokenParseError::Length));
        assert_eq!(Token::from_slice(&[1; 33]), Err(TokenParseError::Length));
        assert_eq!(format!("{t:?}"), "Token(abababab…)");
        assert_eq!(
            TokenParseError::Hex.to_string(),
            "token must be 64 lowercase hex characters"
        );
        assert_eq!(
            TokenParseError::Length.to_string(),
            "token must be 32 bytes"
        );
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
