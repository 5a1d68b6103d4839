//! Synthetic identifiers: valid, deterministic, obviously fake values of
//! every kind, for the demo, tests and benchmarks. IBANs carry correct
//! mod-97 check digits and card numbers correct Luhn digits, so the node's
//! real validation accepts them. Never real customer data.

use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::ident::Kind;

/// A generator of synthetic identifiers from a seed.
pub struct Synth {
    rng: StdRng,
}

fn digits(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect()
}

/// ISO 13616 check digits for a country code and BBAN.
pub fn iban_check_digits(country: &str, bban: &str) -> u32 {
    let rearranged = format!("{bban}{country}00");
    let mut r: u32 = 0;
    for c in rearranged.chars() {
        let v = c.to_digit(36).expect("alphanumeric");
        if v >= 10 {
            r = (r * 100 + v) % 97;
        } else {
            r = (r * 10 + v) % 97;
        }
    }
    98 - r
}

/// The Luhn check digit for a card number's other digits.
pub fn luhn_digit(body: &str) -> u32 {
    let sum: u32 = body
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = c.to_digit(10).expect("digit");
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

impl Synth {
    /// A generator whose values follow from `seed` alone.
    pub fn new(seed: u64) -> Synth {
        Synth {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// One identifier of a kind picked round-robin by `n`.
    pub fn any(&mut self, n: usize) -> (Kind, String) {
        let kind = Kind::ALL[n % Kind::ALL.len()];
        (kind, self.of(kind))
    }

    /// One identifier of `kind`.
    pub fn of(&mut self, kind: Kind) -> String {
        let r = &mut self.rng;
        match kind {
            Kind::Iban => {
                let bban = digits(r, 18);
                let check = iban_check_digits("DE", &bban);
                format!("DE{check:02}{bban}")
            }
            Kind::Pan => {
                let body = format!("4{}", digits(r, 14));
                let d = luhn_digit(&body);
                format!("{body}{d}")
            }
            Kind::BankAccount => format!("US:{}:{}", digits(r, 9), digits(r, 10)),
            Kind::Merchant => format!("{}:SYN{}", digits(r, 6), digits(r, 12)),
            Kind::Wallet => {
                let hex: String = (0..40)
                    .map(|_| char::from(b"0123456789abcdef"[r.gen_range(0..16)]))
                    .collect();
                format!("eth:0x{hex}")
            }
            Kind::Email => format!(
                "synthetic.{}@example{}.test",
                digits(r, 10),
                r.gen_range(0..100)
            ),
            Kind::Phone => format!("+1555{}", digits(r, 10)),
            Kind::Domain => format!("synthetic-{}.example", digits(r, 10)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_synthetic_value_is_valid() {
        let mut s = Synth::new(7);
        for n in 0..4000 {
            let (k, v) = s.any(n);
            assert!(crate::ident::normalize(k, &v).is_ok(), "{k} rejected");
        }
    }

    #[test]
    fn known_check_digits() {
        // GB82 WEST 1234 5698 7654 32: the standard example.
        assert_eq!(iban_check_digits("GB", "WEST12345698765432"), 82);
        // 4111 1111 1111 1111: the well-known test card.
        assert_eq!(luhn_digit("411111111111111"), 1);
    }
}
