//! Identifier kinds and their canonical forms, per `docs/spec/IDENTIFIERS.md` v1.
//!
//! This module owns:
//! - the closed set of identifier kinds ([`Kind`]) with their ASCII tags and
//!   stable on-disk codes;
//! - normalization of a raw identifier into its canonical form ([`normalize`],
//!   and the allocation-free hot-path variant [`normalize_into`]);
//! - the rejection reasons ([`Reason`]) the spec defines.
//!
//! It does no I/O. It must never log, store or echo a raw identifier value:
//! errors carry only a [`Reason`], and [`Canonical`]'s `Debug` is redacted.
//! A [`Canonical`] is zeroized when dropped, and [`normalize_into`] zeroizes
//! its buffer when a value is refused.
//! Every rule here is normative: accepting more or less than the spec does
//! breaks matching between coalition members.

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroize;

/// Identifier kind. The order is normative for [`Kind::code`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// An IBAN (`iban`).
    Iban,
    /// A payment card number (`pan`).
    Pan,
    /// A bank account as `COUNTRY:ROUTING:ACCOUNT` (`bank_account`).
    BankAccount,
    /// A card acceptor as `ACQUIRER:MERCHANT_ID` (`merchant`).
    Merchant,
    /// A crypto-asset address as `CHAIN:ADDRESS` (`wallet`).
    Wallet,
    /// An e-mail address (`email`).
    Email,
    /// An E.164 phone number (`phone`).
    Phone,
    /// A bare host name (`domain`).
    Domain,
}

impl Kind {
    /// All kinds, in code order.
    pub const ALL: [Kind; 8] = [
        Kind::Iban,
        Kind::Pan,
        Kind::BankAccount,
        Kind::Merchant,
        Kind::Wallet,
        Kind::Email,
        Kind::Phone,
        Kind::Domain,
    ];

    /// The spec's ASCII tag (the `KIND` hashed into a token).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Iban => "iban",
            Kind::Pan => "pan",
            Kind::BankAccount => "bank_account",
            Kind::Merchant => "merchant",
            Kind::Wallet => "wallet",
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::Domain => "domain",
        }
    }

    /// Parses the exact lower-case tag; anything else is [`Reason::Kind`].
    pub fn parse(s: &str) -> Result<Kind, Reason> {
        Ok(match s {
            "iban" => Kind::Iban,
            "pan" => Kind::Pan,
            "bank_account" => Kind::BankAccount,
            "merchant" => Kind::Merchant,
            "wallet" => Kind::Wallet,
            "email" => Kind::Email,
            "phone" => Kind::Phone,
            "domain" => Kind::Domain,
            _ => return Err(Reason::Kind),
        })
    }

    /// Stable on-disk code, 1..=8 in declaration order.
    pub fn code(self) -> u8 {
        match self {
            Kind::Iban => 1,
            Kind::Pan => 2,
            Kind::BankAccount => 3,
            Kind::Merchant => 4,
            Kind::Wallet => 5,
            Kind::Email => 6,
            Kind::Phone => 7,
            Kind::Domain => 8,
        }
    }

    /// Inverse of [`Kind::code`].
    pub fn from_code(c: u8) -> Option<Kind> {
        match c {
            1..=8 => Some(Kind::ALL[usize::from(c - 1)]),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = Reason;
    fn from_str(s: &str) -> Result<Kind, Reason> {
        Kind::parse(s)
    }
}

/// Why an identifier was rejected. Carries no part of the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Nothing left after the kind's first step.
    Empty,
    /// Breaks a format rule.
    Format,
    /// Well-formed but the check digits are wrong (IBAN mod-97, PAN Luhn).
    Checksum,
    /// Unknown kind tag.
    Kind,
}

impl Reason {
    /// The spec's name of the reason: `empty`, `format`, `checksum` or `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Empty => "empty",
            Reason::Format => "format",
            Reason::Checksum => "checksum",
            Reason::Kind => "kind",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Reason {}

/// Canonical form of an identifier; always ASCII. `Debug` prints
/// `Canonical(<redacted>)`, never the value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Canonical(String);

impl Canonical {
    /// The canonical form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The canonical form's bytes, as hashed into a token.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
    /// The canonical form, owned (the caller's to zeroize).
    pub fn into_string(mut self) -> String {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Canonical {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Canonical {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Canonical(<redacted>)")
    }
}

/// Normalizes `raw` as an identifier of `kind` into its canonical form.
pub fn normalize(kind: Kind, raw: &str) -> Result<Canonical, Reason> {
    let mut out = Vec::with_capacity(raw.len());
    normalize_into(kind, raw, &mut out)?;
    // Every successful path writes ASCII only; the error arm is unreachable.
    String::from_utf8(out).map(Canonical).map_err(|e| {
        e.into_bytes().zeroize();
        Reason::Format
    })
}

/// Hot-path variant of [`normalize`]: writes the canonical form into `out`
/// (cleared first). Allocates nothing when `out` has enough capacity (the
/// canonical form is never longer than `raw`). On error `out` is left empty.
/// `raw` is the value's bytes (`&str`, or a received value's slice):
/// normalization works on bytes, and any byte >= 0x80 is `format`.
pub fn normalize_into<R: AsRef<[u8]> + ?Sized>(
    kind: Kind,
    raw: &R,
    out: &mut Vec<u8>,
) -> Result<(), Reason> {
    out.clear();
    let raw = raw.as_ref();
    let r = match kind {
        Kind::Iban => iban(raw, out),
        Kind::Pan => pan(raw, out),
        Kind::BankAccount => bank_account(raw, out),
        Kind::Merchant => merchant(raw, out),
        Kind::Wallet => wallet(raw, out),
        Kind::Email => email(raw, out),
        Kind::Phone => phone(raw, out),
        Kind::Domain => domain(raw, out),
    };
    if r.is_err() {
        // What was written before the rule failed is part of a raw value.
        out.zeroize();
    }
    r
}

// ---------------------------------------------------------------------------
// Common rules. Everything works on bytes: a non-ASCII character is encoded as
// bytes >= 0x80, which are never separators, never trimmed, never case-mapped
// and never in any accepted charset, so it always ends up as `format`.

/// Separators: space, tab, CR, LF and '-'.
#[inline]
fn is_sep(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'-')
}

/// What trim removes: space, tab, CR, LF (not '-').
#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Printable ASCII, 0x21..=0x7E.
#[inline]
fn is_printable(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

#[inline]
fn trim(s: &[u8]) -> &[u8] {
    let mut a = 0;
    let mut b = s.len();
    while a < b && is_ws(s[a]) {
        a += 1;
    }
    while b > a && is_ws(s[b - 1]) {
        b -= 1;
    }
    &s[a..b]
}

/// Splits `s` on ':' into exactly `N` fields, or `Format`.
#[inline]
fn split_exact<const N: usize>(s: &[u8]) -> Result<[&[u8]; N], Reason> {
    let mut fields: [&[u8]; N] = [&[]; N];
    let mut it = s.split(|&b| b == b':');
    for f in fields.iter_mut() {
        *f = it.next().ok_or(Reason::Format)?;
    }
    if it.next().is_some() {
        return Err(Reason::Format);
    }
    Ok(fields)
}

/// Removes separators, upper-cases, requires 1..=max of `[A-Z0-9]`.
#[inline]
fn push_alnum_field(field: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), Reason> {
    let start = out.len();
    for &b in field {
        if is_sep(b) {
            continue;
        }
        if !b.is_ascii_alphanumeric() {
            return Err(Reason::Format);
        }
        out.push(b.to_ascii_uppercase());
    }
    let n = out.len() - start;
    if n == 0 || n > max {
        return Err(Reason::Format);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Kinds.

/// iban: remove separators, upper-case; `[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}`;
/// ISO 13616 mod-97 must give 1.
fn iban(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Reason> {
    out.extend(
        raw.iter()
            .copied()
            .filter(|&b| !is_sep(b))
            .map(|b| b.to_ascii_uppercase()),
    );
    if out.is_empty() {
        return Err(Reason::Empty);
    }
    let s = &out[..];
    if !(15..=34).contains(&s.len())
        || !s[0].is_ascii_uppercase()
        || !s[1].is_ascii_uppercase()
        || !s[2].is_ascii_digit()
        || !s[3].is_ascii_digit()
        || !s[4..]
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(Reason::Format);
    }
    // Move the first four characters to the end, letters become 10..=35, and
    // the whole number mod 97 must be 1. Digits accumulate in a u64, reduced
    // only when two more could overflow it: a few divisions per IBAN, not one
    // per character.
    let mut r: u64 = 0;
    for &b in s[4..].iter().chain(&s[..4]) {
        r = if b.is_ascii_digit() {
            r * 10 + u64::from(b - b'0')
        } else {
            r * 100 + u64::from(b - b'A') + 10
        };
        if r >= 1 << 56 {
            r %= 97;
        }
    }
    if r % 97 != 1 {
        return Err(Reason::Checksum);
    }
    Ok(())
}

/// pan: remove separators; 12..=19 digits; Luhn.
fn pan(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Reason> {
    out.extend(raw.iter().copied().filter(|&b| !is_sep(b)));
    if out.is_empty() {
        return Err(Reason::Empty);
    }
    if !(12..=19).contains(&out.len()) || !out.iter().all(u8::is_ascii_digit) {
        return Err(Reason::Format);
    }
    let mut sum: u32 = 0;
    for (i, &b) in out.iter().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    if sum % 10 != 0 {
        return Err(Reason::Checksum);
    }
    Ok(())
}

/// bank_account: `COUNTRY:ROUTING:ACCOUNT`.
fn bank_account(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Reason> {
    let t = trim(raw);
    if t.is_empty() {
        return Err(Reason::Empty);
    }
    let [country, routing, account] = split_exact::<3>(t)?;
    let country = trim(country);
    if country.len() != 2 || !country.iter().all(u8::is_ascii_alphabetic) {
        return Err(Reason::Format);
    }
    out.extend(country.iter().map(u8::to_ascii_uppercase));
    out.push(b':');
    push_alnum_field(routing, 34, out)?;
    out.push(b':');
    push_alnum_field(account, 34, out)
}

/// merchant: `ACQUIRER:MERCHANT_ID`.
fn merchant(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Reason> {
    let t = trim(raw);
    if t.is_empty() {
        return Err(Reason::Empty);
    }
    let [acquirer, mid] = split_exact::<2>(t)?;
    push_alnum_field(acquirer, 11, out)?;
    out.push(b':');
    let start = out.len();
    for &b in mid {
        if is_ws(b) {
            continue;
        }
        // ':' cannot occur here (split_exact), but the rule excludes it.
        if !is_printable(b) || b == b':' {
            return Err(Reason::Format);
        }
        out.push(b.to_ascii_uppercase());
    }
    let n = out.len() - start;
    if n == 0 || n > 15 {
        return Err(Reason::Format);
    }
    Ok(())
}

/// wallet: `CHAIN:ADDRESS`.
fn wallet(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Reason> {
    let t = trim(raw);
    if t.is_empty() {
        return Err(Reason::Empty);
    }
    // Exactly one ':' (a second one fails the address's character check).
    let colon = t.iter().position(|&b| b == b':').ok_or(Reason::Format)?;
    let (chain, addr) = (trim(&t[..colon]), trim(&t[colon + 1..]));
    if chain.is_empty()
        || chain.len() > 16
        || !chain
            .iter()
            .all(|&b| matches!(b.to_ascii_lowercase(), b'a'..=b'z' | b'0'..=b'9' | b'-'))
    {
        return Err(Reason::Format);
    }
    // Whole-slice folds rather than early exits: valid addresses are read
    // to the end anyway, and these compile to a few wide instructions.
    if addr.is_empty()
        || addr.len() > 128
        || !addr
            .iter()
            .fold(true, |ok, &b| ok & is_printable(b) & (b != b':'))
    {
        return Err(Reason::Format);
    }
    out.extend(chain.iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let start = out.len();
    out.extend_from_slice(addr);
    if is_evm_lower(addr) || is_bech32_lower(addr) {
        out[start..].make_ascii_lowercase();
    }
    Ok(())
}

/// Whether the lower-cased `a` matches `0x[0-9a-f]{40}`.
fn is_evm_lower(a: &[u8]) -> bool {
    a.len() == 42
        && a[0] == b'0'
        && a[1].eq_ignore_ascii_case(&b'x')
        && a[2..].iter().fold(true, |ok, b| ok & b.is_ascii_hexdigit())
}

/// Whether the lower-cased `a` matches `(bc1|tb1|ltc1)[02-9ac-hj-np-z]{6,87}`.
fn is_bech32_lower(a: &[u8]) -> bool {
    let lower_starts = |p: &[u8]| a.len() >= p.len() && a[..p.len()].eq_ignore_ascii_case(p);
    let rest = if lower_starts(b"bc1") || lower_starts(b"tb1") {
        &a[3..]
    } else if lower_starts(b"ltc1") {
        &a[4..]
    } else {
        return false;
    };
    (6..=87).contains(&rest.len())
        && rest.iter().all(|&b| {
            matches!(
                b.to_ascii_lowercase(),
                b'0' | b'2'..=b'9' | b'a' | b'c'..=b'h' | b'j'..=b'n' | b'p'..=b'z'
            )
        })
}

/// email: trim; <= 254 chars; printable ASCII; lower-case; exactly one '@';
/// remove one trailing '.' of the domain; local part and domain non-empty.
fn email(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Reason> {
    let t = trim(raw);
    if t.is_empty() {
        return Err(Reason::Empty);
    }
    // Byte length > 254 means > 254 chars or some non-ASCII: format either way.
    if t.len() > 254 {
        return Err(Reason::Format);
    }
    // One pass: printable ASCII only, and exactly one '@'.
    let mut at = usize::MAX;
    for (i, &b) in t.iter().enumerate() {
        if !is_printable(b) || (b == b'@' && at != usize::MAX) {
            return Err(Reason::Format);
        }
        if b == b'@' {
            at = i;
        }
    }
    if at == usize::MAX {
        return Err(Reason::Format);
    }
    let end = if t.len() > at + 1 && t[t.len() - 1] == b'.' {
        t.len() - 1
    } else {
        t.len()
    };
    // Local part and domain (after removing one trailing '.') non-empty.
    if at == 0 || end <= at + 1 {
        return Err(Reason::Format);
    }
    out.extend_from_slice(&t[..end]);
    out.make_ascii_lowercase();
    Ok(())
}

/// phone: remove separators and '.', '(', ')'; leading "00" becomes '+';
/// must match `\+[1-9][0-9]{6,14}`.
fn phone(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Reason> {
    out.extend(
        raw.iter()
            .copied()
            .filter(|&b| !is_sep(b) && !matches!(b, b'.' | b'(' | b')')),
    );
    if out.is_empty() {
        return Err(Reason::Empty);
    }
    if out.starts_with(b"00") {
        out.remove(0);
        out[0] = b'+';
    }
    let s = &out[..];
    if !(8..=16).contains(&s.len())
        || s[0] != b'+'
        || !(b'1'..=b'9').contains(&s[1])
        || !s[2..].iter().all(u8::is_ascii_digit)
    {
        return Err(Reason::Format);
    }
    Ok(())
}

/// domain: trim, lower-case, remove one trailing '.'; <= 253 chars; at least
/// two labels, each `[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?`.
fn domain(raw: &[u8], out: &mut Vec<u8>) -> Result<(), Reason> {
    let t = trim(raw);
    if t.is_empty() {
        return Err(Reason::Empty);
    }
    let t = match t {
        [rest @ .., b'.'] => rest,
        _ => t,
    };
    if t.len() > 253 {
        return Err(Reason::Format);
    }
    let mut labels = 0usize;
    for label in t.split(|&b| b == b'.') {
        labels += 1;
        let ok = match label {
            [] => false,
            [first, mid @ .., last] => {
                label.len() <= 63
                    && first.is_ascii_alphanumeric()
                    && last.is_ascii_alphanumeric()
                    && mid.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
            }
            [only] => only.is_ascii_alphanumeric(),
        };
        if !ok {
            return Err(Reason::Format);
        }
    }
    if labels < 2 {
        return Err(Reason::Format);
    }
    out.extend_from_slice(t);
    out.make_ascii_lowercase();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(kind: Kind, raw: &str) -> String {
        match normalize(kind, raw) {
            Ok(c) => c.into_string(),
            Err(r) => panic!("{kind} {raw:?} rejected: {r}"),
        }
    }

    fn err(kind: Kind, raw: &str) -> Reason {
        match normalize(kind, raw) {
            Ok(c) => panic!("{kind} {raw:?} accepted as {:?}", c.as_str()),
            Err(r) => r,
        }
    }

    #[test]
    fn kind_tags_codes_roundtrip() {
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(k.code() as usize, i + 1);
            assert_eq!(Kind::from_code(k.code()), Some(*k));
            assert_eq!(Kind::parse(k.as_str()), Ok(*k));
            assert_eq!(k.as_str().parse::<Kind>(), Ok(*k));
            assert_eq!(k.to_string(), k.as_str());
        }
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::from_code(9), None);
        for bad in ["", "IBAN", "Iban", " iban", "iban ", "ssn", "bank-account"] {
            assert_eq!(Kind::parse(bad), Err(Reason::Kind), "{bad:?}");
        }
        let tags: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            tags,
            [
                "iban",
                "pan",
                "bank_account",
                "merchant",
                "wallet",
                "email",
                "phone",
                "domain"
            ]
        );
    }

    #[test]
    fn reason_strings() {
        assert_eq!(Reason::Empty.to_string(), "empty");
        assert_eq!(Reason::Format.as_str(), "format");
        assert_eq!(Reason::Checksum.as_str(), "checksum");
        assert_eq!(Reason::Kind.as_str(), "kind");
    }

    #[test]
    fn canonical_debug_redacted() {
        let c = normalize(Kind::Email, "secret.person@example.com").unwrap();
        let d = format!("{c:?}");
        assert_eq!(d, "Canonical(<redacted>)");
        assert!(!d.contains("secret"));
        assert_eq!(c.as_bytes(), b"secret.person@example.com");
    }

    #[test]
    fn iban_separators_and_case() {
        let want = "GB82WEST12345698765432";
        for sep in [" ", "\t", "\r", "\n", "-", " - ", "\r\n"] {
            let raw = format!("gb82{sep}west{sep}1234{sep}5698{sep}7654{sep}32");
            assert_eq!(ok(Kind::Iban, &raw), want);
        }
        assert_eq!(ok(Kind::Iban, "  GB82WEST12345698765432\n"), want);
        // Other punctuation is not a separator.
        assert_eq!(
            err(Kind::Iban, "GB82.WEST.1234.5698.7654.32"),
            Reason::Format
        );
        // Non-breaking space is not a separator.
        assert_eq!(
            err(Kind::Iban, "GB82\u{a0}WEST12345698765432"),
            Reason::Format
        );
    }

    #[test]
    fn iban_empty_format_checksum() {
        for e in ["", " ", "-", " \t\r\n- "] {
            assert_eq!(err(Kind::Iban, e), Reason::Empty, "{e:?}");
        }
        assert_eq!(err(Kind::Iban, "GB82WEST12345698765433"), Reason::Checksum);
        assert_eq!(err(Kind::Iban, "G182WEST12345698765432"), Reason::Format);
        assert_eq!(err(Kind::Iban, "GBX2WEST12345698765432"), Reason::Format);
        // Length bounds: 15 ok (Norway), 14 not; 34 ok, 35 not.
        assert_eq!(ok(Kind::Iban, "NO9386011117947"), "NO9386011117947");
        assert_eq!(err(Kind::Iban, "NO938601111794"), Reason::Format);
        let l34 = make_iban("LC", &"1".repeat(30));
        assert_eq!(l34.len(), 34);
        assert_eq!(ok(Kind::Iban, &l34), l34);
        let l35 = make_iban("LC", &"1".repeat(31));
        assert_eq!(err(Kind::Iban, &l35), Reason::Format);
        // Non-ASCII lowercase letters are not upper-cased, so rejected.
        assert_eq!(err(Kind::Iban, "GB82WEST1234569876543ä"), Reason::Format);
    }

    /// The IBAN check (digits reduced in a u64 a few times per value) agrees
    /// with reducing after every character, over random IBAN-shaped values
    /// of every length and the ones that grow fastest (all letters).
    #[test]
    fn iban_check_agrees_with_per_character_reduction() {
        use rand::{Rng, SeedableRng};
        let reference = |s: &[u8]| {
            let mut r = 0u32;
            for &b in s[4..].iter().chain(&s[..4]) {
                r = if b.is_ascii_digit() {
                    (r * 10 + u32::from(b - b'0')) % 97
                } else {
                    (r * 100 + u32::from(b - b'A') + 10) % 97
                };
            }
            r == 1
        };
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut rng = rand::rngs::StdRng::seed_from_u64(97);
        let mut valid = 0;
        for n in 0..50_000 {
            let len = rng.gen_range(15..=34);
            let mut v: Vec<u8> = (0..len)
                .map(|i| match i {
                    0 | 1 => rng.gen_range(b'A'..=b'Z'),
                    2 | 3 => rng.gen_range(b'0'..=b'9'),
                    _ if n % 5 == 0 => b'Z',
                    _ => ALNUM[rng.gen_range(0..ALNUM.len())],
                })
                .collect();
            if n % 2 == 0 {
                // Make about half valid: fix the check digits.
                let body = String::from_utf8(v[4..].to_vec()).unwrap();
                let cc = String::from_utf8(v[..2].to_vec()).unwrap();
                v = make_iban(&cc, &body).into_bytes();
            }
            let s = String::from_utf8(v.clone()).unwrap();
            let expect = reference(&v);
            valid += usize::from(expect);
            match normalize(Kind::Iban, &s) {
                Ok(_) => assert!(expect, "{s}: accepted, reference says checksum"),
                Err(r) => assert_eq!((r, expect), (Reason::Checksum, false), "{s}"),
            }
        }
        assert!(valid > 20_000, "{valid}");
    }

    /// Builds a valid IBAN with the given country and BBAN.
    fn make_iban(cc: &str, bban: &str) -> String {
        let mut r = 0u32;
        for b in bban.bytes().chain(cc.bytes()).chain(*b"00") {
            r = if b.is_ascii_digit() {
                (r * 10 + u32::from(b - b'0')) % 97
            } else {
                (r * 100 + u32::from(b - b'A') + 10) % 97
            };
        }
        format!("{cc}{:02}{bban}", 98 - r)
    }

    #[test]
    fn pan_rules() {
        assert_eq!(ok(Kind::Pan, "4111-1111 1111\t1111"), "4111111111111111");
        assert_eq!(err(Kind::Pan, " - "), Reason::Empty);
        assert_eq!(err(Kind::Pan, "4111111111111112"), Reason::Checksum);
        assert_eq!(err(Kind::Pan, "41111111111"), Reason::Format); // 11 digits
        assert_eq!(ok(Kind::Pan, "000000000000"), "000000000000"); // 12 digits, Luhn 0
        assert_eq!(ok(Kind::Pan, "0000000000000000000"), "0000000000000000000"); // 19
        assert_eq!(err(Kind::Pan, "00000000000000000000"), Reason::Format); // 20
        assert_eq!(err(Kind::Pan, "4111.1111.1111.1111"), Reason::Format);
        assert_eq!(err(Kind::Pan, "４１１１111111111111"), Reason::Format);
    }

    #[test]
    fn bank_account_rules() {
        assert_eq!(
            ok(Kind::BankAccount, " us : 0210-00021 : 0001 2345 6789 "),
            "US:021000021:000123456789"
        );
        assert_eq!(ok(Kind::BankAccount, "gb:ab-12:x"), "GB:AB12:X");
        assert_eq!(err(Kind::BankAccount, " \t\r\n "), Reason::Empty);
        // '-' is not trimmed from the whole input, and makes COUNTRY bad.
        assert_eq!(err(Kind::BankAccount, "-US:1:2"), Reason::Format);
        assert_eq!(err(Kind::BankAccount, "-"), Reason::Format);
        assert_eq!(err(Kind::BankAccount, "US:1"), Reason::Format);
        assert_eq!(err(Kind::BankAccount, "US:1:2:3"), Reason::Format);
        assert_eq!(err(Kind::BankAccount, "USA:1:2"), Reason::Format);
        assert_eq!(err(Kind::BankAccount, "U1:1:2"), Reason::Format);
        assert_eq!(err(Kind::BankAccount, "US::2"), Reason::Format);
        assert_eq!(err(Kind::BankAccount, "US:1: - "), Reason::Format);
        assert_eq!(err(Kind::BankAccount, "US:1/2:3"), Reason::Format);
        assert_eq!(err(Kind::BankAccount, "\u{a0}US:1:2"), Reason::Format);
        let a34 = "A".repeat(34);
        assert_eq!(
            ok(Kind::BankAccount, &format!("US:1:{a34}")),
            format!("US:1:{a34}")
        );
        assert_eq!(
            err(Kind::BankAccount, &format!("US:1:{a34}B")),
            Reason::Format
        );
        assert_eq!(
            err(Kind::BankAccount, &format!("US:{a34}B:1")),
            Reason::Format
        );
    }

    #[test]
    fn merchant_rules() {
        assert_eq!(
            ok(Kind::Merchant, "412345:MERCHANT001    "),
            "412345:MERCHANT001"
        );
        assert_eq!(
            ok(Kind::Merchant, "ica-0001:shop#42/x"),
            "ICA0001:SHOP#42/X"
        );
        // '-' is kept in MERCHANT_ID (only whitespace is removed).
        assert_eq!(ok(Kind::Merchant, "1:a-b c\td"), "1:A-BCD");
        assert_eq!(err(Kind::Merchant, "   "), Reason::Empty);
        assert_eq!(err(Kind::Merchant, "412345:"), Reason::Format);
        assert_eq!(err(Kind::Merchant, ":ABC"), Reason::Format);
        assert_eq!(err(Kind::Merchant, "noseparator"), Reason::Format);
        assert_eq!(err(Kind::Merchant, "1:2:3"), Reason::Format);
        assert_eq!(
            ok(Kind::Merchant, "12345678901:ABCDEFGHIJKLMNO"),
            "12345678901:ABCDEFGHIJKLMNO"
        );
        assert_eq!(err(Kind::Merchant, "123456789012:A"), Reason::Format);
        assert_eq!(err(Kind::Merchant, "1:ABCDEFGHIJKLMNOP"), Reason::Format);
        assert_eq!(err(Kind::Merchant, "1/2:A"), Reason::Format);
        assert_eq!(err(Kind::Merchant, "1:é"), Reason::Format);
        assert_eq!(err(Kind::Merchant, "1:a\u{7f}"), Reason::Format);
    }

    #[test]
    fn wallet_rules() {
        let evm = "0x52908400098527886E0F7030069857D2E4169EE7";
        assert_eq!(
            ok(Kind::Wallet, &format!(" ETH : {evm} ")),
            "eth:0x52908400098527886e0f7030069857d2e4169ee7"
        );
        // Upper-case 0X prefix: its lower-case form matches, so lower-cased.
        assert_eq!(
            ok(
                Kind::Wallet,
                "eth:0X52908400098527886E0F7030069857D2E4169EE7"
            ),
            "eth:0x52908400098527886e0f7030069857d2e4169ee7"
        );
        // 41 hex digits: not EVM, case kept.
        assert_eq!(
            ok(
                Kind::Wallet,
                "eth:0x52908400098527886E0F7030069857D2E4169EE7A"
            ),
            "eth:0x52908400098527886E0F7030069857D2E4169EE7A"
        );
        assert_eq!(
            ok(
                Kind::Wallet,
                "btc:BC1QAR0SRRR7XFKVY5L643LYDNW9RE59GTZZWF5MDQ"
            ),
            "btc:bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"
        );
        assert_eq!(ok(Kind::Wallet, "ltc:LTC1QQQQQQ"), "ltc:ltc1qqqqqq");
        assert_eq!(ok(Kind::Wallet, "btc:TB1QQQQQQ"), "btc:tb1qqqqqq");
        // Too short for bech32 (5 after prefix), and a 'B' (excluded) inside.
        assert_eq!(ok(Kind::Wallet, "btc:BC1QQQQQ"), "btc:BC1QQQQQ");
        assert_eq!(ok(Kind::Wallet, "btc:BC1QQQQQBQ"), "btc:BC1QQQQQBQ");
        // Base58 keeps its case.
        assert_eq!(
            ok(Kind::Wallet, "btc:1BoatSLRHtKNngkdXEeobR76b53LETtpyT"),
            "btc:1BoatSLRHtKNngkdXEeobR76b53LETtpyT"
        );
        assert_eq!(ok(Kind::Wallet, "Base-Sepolia2:Ab"), "base-sepolia2:Ab");
        assert_eq!(err(Kind::Wallet, " "), Reason::Empty);
        assert_eq!(err(Kind::Wallet, "btc:"), Reason::Format);
        assert_eq!(err(Kind::Wallet, "btc:   "), Reason::Format);
        assert_eq!(err(Kind::Wallet, ":abc"), Reason::Format);
        assert_eq!(err(Kind::Wallet, "btc"), Reason::Format);
        assert_eq!(err(Kind::Wallet, "btc:a:b"), Reason::Format);
        assert_eq!(err(Kind::Wallet, "bitcoin mainnet:abc"), Reason::Format);
        assert_eq!(err(Kind::Wallet, "btc_main:abc"), Reason::Format);
        assert_eq!(ok(Kind::Wallet, &format!("{}:a", "c".repeat(16))).len(), 18);
        assert_eq!(
            err(Kind::Wallet, &format!("{}:a", "c".repeat(17))),
            Reason::Format
        );
        let a128 = "A".repeat(128);
        assert_eq!(ok(Kind::Wallet, &format!("x:{a128}")), format!("x:{a128}"));
        assert_eq!(err(Kind::Wallet, &format!("x:{a128}A")), Reason::Format);
        assert_eq!(err(Kind::Wallet, "x:a b"), Reason::Format);
        assert_eq!(err(Kind::Wallet, "x:ä"), Reason::Format);
    }

    #[test]
    fn email_rules() {
        assert_eq!(
            ok(Kind::Email, "  Seller.Example+tag@Mail.EXAMPLE.com "),
            "seller.example+tag@mail.example.com"
        );
        assert_eq!(ok(Kind::Email, "a@b.com."), "a@b.com");
        // Only one trailing dot is removed; the domain is not checked further.
        assert_eq!(ok(Kind::Email, "a@b.."), "a@b.");
        assert_eq!(ok(Kind::Email, "a@localhost"), "a@localhost");
        assert_eq!(ok(Kind::Email, "-a-@-b-"), "-a-@-b-");
        assert_eq!(err(Kind::Email, " \t "), Reason::Empty);
        assert_eq!(err(Kind::Email, "a@."), Reason::Format);
        assert_eq!(err(Kind::Email, "@b.com"), Reason::Format);
        assert_eq!(err(Kind::Email, "user@"), Reason::Format);
        assert_eq!(err(Kind::Email, "a@b@c.com"), Reason::Format);
        assert_eq!(err(Kind::Email, "no-at.example.com"), Reason::Format);
        assert_eq!(err(Kind::Email, "a b@c.com"), Reason::Format);
        assert_eq!(err(Kind::Email, "josé@example.com"), Reason::Format);
        assert_eq!(err(Kind::Email, "\u{a0}a@b.com"), Reason::Format);
        // 254 characters counted after trimming (trailing dot included).
        let local = "a".repeat(64);
        let d254 = format!("{local}@{}", "b".repeat(254 - 65));
        assert_eq!(d254.len(), 254);
        assert_eq!(ok(Kind::Email, &format!("  {d254}\n")), d254);
        assert_eq!(err(Kind::Email, &format!("{d254}b")), Reason::Format);
        assert_eq!(err(Kind::Email, &format!("{d254}.")), Reason::Format);
    }

    #[test]
    fn phone_rules() {
        assert_eq!(ok(Kind::Phone, "+63 (917) 123-4567"), "+639171234567");
        assert_eq!(ok(Kind::Phone, "0063.917.123.4567"), "+639171234567");
        assert_eq!(ok(Kind::Phone, "0 0 63 917 123 4567"), "+639171234567");
        assert_eq!(ok(Kind::Phone, "+1\t202\r\n555-0143"), "+12025550143");
        assert_eq!(err(Kind::Phone, " -.() "), Reason::Empty);
        assert_eq!(err(Kind::Phone, "917 123 4567"), Reason::Format);
        assert_eq!(err(Kind::Phone, "+0 917 123 4567"), Reason::Format);
        assert_eq!(err(Kind::Phone, "000 917 123 4567"), Reason::Format);
        assert_eq!(err(Kind::Phone, "00"), Reason::Format);
        assert_eq!(err(Kind::Phone, "+00639171234567"), Reason::Format);
        assert_eq!(err(Kind::Phone, "++639171234567"), Reason::Format);
        // 7 to 15 digits in all.
        assert_eq!(ok(Kind::Phone, "+1234567"), "+1234567");
        assert_eq!(err(Kind::Phone, "+123456"), Reason::Format);
        assert_eq!(ok(Kind::Phone, "+123456789012345"), "+123456789012345");
        assert_eq!(err(Kind::Phone, "+1234567890123456"), Reason::Format);
        assert_eq!(err(Kind::Phone, "+63\u{2009}9171234567"), Reason::Format);
        assert_eq!(err(Kind::Phone, "+63/9171234567"), Reason::Format);
    }

    #[test]
    fn domain_rules() {
        assert_eq!(ok(Kind::Domain, " Shop.Example.COM. "), "shop.example.com");
        assert_eq!(
            ok(Kind::Domain, "xn--bcher-kva.example"),
            "xn--bcher-kva.example"
        );
        assert_eq!(ok(Kind::Domain, "a.b"), "a.b");
        assert_eq!(ok(Kind::Domain, "1.2.3.4"), "1.2.3.4");
        assert_eq!(err(Kind::Domain, " \n"), Reason::Empty);
        assert_eq!(err(Kind::Domain, "."), Reason::Format);
        assert_eq!(err(Kind::Domain, "localhost"), Reason::Format);
        assert_eq!(err(Kind::Domain, "localhost."), Reason::Format);
        assert_eq!(err(Kind::Domain, "a.b.."), Reason::Format);
        assert_eq!(err(Kind::Domain, ".a.b"), Reason::Format);
        assert_eq!(err(Kind::Domain, "a..b"), Reason::Format);
        assert_eq!(err(Kind::Domain, "-bad-.example"), Reason::Format);
        assert_eq!(err(Kind::Domain, "bad-.example"), Reason::Format);
        assert_eq!(err(Kind::Domain, "a_b.example"), Reason::Format);
        assert_eq!(err(Kind::Domain, "bücher.example"), Reason::Format);
        assert_eq!(
            err(Kind::Domain, "http://shop.example.com/path"),
            Reason::Format
        );
        assert_eq!(err(Kind::Domain, "-a.b"), Reason::Format);
        // 63-character label ok, 64 not.
        let l63 = format!("a{}a", "-".repeat(61));
        assert_eq!(
            ok(Kind::Domain, &format!("{l63}.com")),
            format!("{l63}.com")
        );
        assert_eq!(err(Kind::Domain, &format!("a{l63}.com")), Reason::Format);
        // 253 characters ok (after the trailing dot is removed), 254 not.
        let lab = "a".repeat(63);
        let d253 = format!("{lab}.{lab}.{lab}.{}", "b".repeat(61));
        assert_eq!(d253.len(), 253);
        assert_eq!(ok(Kind::Domain, &d253), d253);
        assert_eq!(ok(Kind::Domain, &format!("{d253}.")), d253);
        assert_eq!(err(Kind::Domain, &format!("{d253}b")), Reason::Format);
    }

    #[test]
    fn normalize_into_reuses_buffer_and_clears_on_error() {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(b"garbage");
        normalize_into(Kind::Pan, "4111 1111 1111 1111", &mut out).unwrap();
        assert_eq!(out, b"4111111111111111");
        let cap = out.capacity();
        assert_eq!(
            normalize_into(Kind::Pan, "4111 1111 1111 1112", &mut out),
            Err(Reason::Checksum)
        );
        assert!(out.is_empty());
        normalize_into(Kind::Phone, "0063 917 123 4567", &mut out).unwrap();
        assert_eq!(out, b"+639171234567");
        assert_eq!(out.capacity(), cap);
    }
}
