//! Tokens, per `docs/spec/IDENTIFIERS.md` v1.
//!
//! This module owns:
//! - [`Tokenizer`]: the token function
//!   `HMAC-SHA256(K, "cix-token-v1" || 0x00 || KIND || 0x00 || CANONICAL)`;
//! - [`Token`]: the 32-byte result and its 64-lowercase-hex text form.
//!
//! The key of one epoch is a [`TokenKey`] ([`crate::keys`]). A `Tokenizer`'s
//! `Debug` is redacted like the key's.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{ident::Kind, keys::TokenKey};

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
    /// The text is not exactly 64 lowercase hex characters.
    #[error("token must be 64 lowercase hex characters")]
    Hex,
    /// The binary form is not exactly 32 bytes.
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
    /// Keys the per-kind HMAC states with `key`.
    pub fn new(key: &TokenKey) -> Tokenizer {
        let base = <Hmac<Sha256> as Mac>::new_from_slice(&key.bytes()[..])
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
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key.bytes()[..]).unwrap();
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
}
