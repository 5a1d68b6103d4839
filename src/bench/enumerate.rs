//! `cix bench enumerate`: how fast a member holding the token key recovers
//! low-entropy identifiers from the indicator set, with cix's own token code
//! on every core. Candidates are UK mobile numbers in canonical form
//! (`+447` and 9 digits: a space of 10^9); a set of indicator tokens planted
//! among them must all be found, so the figure measures a working attack.
//! The time for 10^8 candidates is measured (or extrapolated from a smaller
//! run); the times for whole identifier spaces are extrapolated.

use std::{collections::HashSet, time::Instant};

use super::{cores, Better, Figure};
use crate::{
    ident::{self, Kind},
    keys::TokenKey,
    token::{Token, Tokenizer},
};

/// Digits after the `+447` prefix.
const DIGITS: usize = 9;
const PREFIX: &[u8] = b"+447";

fn candidate(n: u64, buf: &mut [u8; 13]) {
    buf[..4].copy_from_slice(PREFIX);
    let mut n = n;
    for i in (0..DIGITS).rev() {
        buf[4 + i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Runs the enumeration over `candidates` numbers with `planted` indicator
/// tokens among them. Returns the figures and how many were found.
pub(crate) fn run(candidates: u64, planted: usize, threads: usize) -> (Vec<Figure>, usize) {
    let candidates = candidates.clamp(1, 10u64.pow(DIGITS as u32));
    let tokenizer = Tokenizer::new(&TokenKey::generate());
    let mut buf = [0u8; 13];
    // The candidates are canonical forms, as the node itself would make them.
    candidate(candidates - 1, &mut buf);
    let raw = std::str::from_utf8(&buf).expect("ascii");
    assert_eq!(
        ident::normalize(Kind::Phone, raw).map(|c| c.as_str() == raw),
        Ok(true),
        "candidates must be canonical phone numbers"
    );
    let step = (candidates / planted.max(1) as u64).max(1);
    let targets: HashSet<Token> = (0..planted as u64)
        .map(|i| {
            candidate((i * step + step / 2).min(candidates - 1), &mut buf);
            tokenizer.token(Kind::Phone, &buf)
        })
        .collect();
    let threads = threads.max(1);
    let per = candidates.div_ceil(threads as u64);
    let start = Instant::now();
    let found: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads as u64)
            .map(|t| {
                let (tokenizer, targets) = (&tokenizer, &targets);
                s.spawn(move || {
                    let mut buf = [0u8; 13];
                    let mut found = 0usize;
                    for n in t * per..((t + 1) * per).min(candidates) {
                        candidate(n, &mut buf);
                        if targets.contains(&tokenizer.token(Kind::Phone, &buf)) {
                            found += 1;
                        }
                    }
                    found
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("worker")).sum()
    });
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    let rate = candidates as f64 / secs;
    let figures = vec![
        Figure::new(
            format!("enumerate: candidates hashed and tested ({threads} threads)"),
            rate,
            "candidates/s",
            None,
            Better::Lower,
        ),
        Figure::new(
            "enumerate: 10^8 candidates",
            1e8 / rate,
            "s",
            None,
            Better::Higher,
        ),
        Figure::new(
            "enumerate: all 10^9 UK mobile numbers (+447...)",
            1e9 / rate,
            "s",
            None,
            Better::Higher,
        ),
        Figure::new(
            "enumerate: all 10^10 ten-digit account numbers of one bank",
            1e10 / rate,
            "s",
            None,
            Better::Higher,
        ),
        Figure::new(
            "enumerate: planted indicators recovered",
            found as f64,
            "of planted",
            Some(planted as f64),
            Better::Higher,
        ),
    ];
    (figures, found)
}

/// Default: 10^8 candidates on every core.
pub(crate) fn default_threads() -> usize {
    cores()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_small_enumeration_recovers_every_planted_indicator() {
        let (figures, found) = super::run(20_000, 7, 2);
        assert_eq!(found, 7);
        assert_eq!(figures.last().unwrap().meets, Some(true));
        assert!(figures[0].value > 0.0);
    }
}
