//! Criterion micro-benchmarks of the three steps every screened identifier
//! takes: normalization (per kind, the IBAN with its mod-97 check), the
//! token (HMAC-SHA256 from pre-keyed midstates) and the index look-up
//! (batched, hits and misses), so that a regression in any one shows up in a
//! diff of `cargo bench` output. Whole-system figures are `cix bench`'s.

// criterion_group! writes an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;

use cix::{
    batch,
    bench::screen::signed_add,
    ident::{self, Kind},
    index::Index,
    keys::signing::SigningKeyFile,
    keys::TokenKey,
    testbed::synth::Synth,
    token::{Token, Tokenizer},
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

fn normalization(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize");
    let mut synth = Synth::new(1);
    for kind in Kind::ALL {
        let values: Vec<String> = (0..256).map(|_| synth.of(kind)).collect();
        g.throughput(Throughput::Elements(values.len() as u64));
        g.bench_function(kind.as_str(), |b| {
            let mut buf = Vec::with_capacity(64);
            b.iter(|| {
                for v in &values {
                    ident::normalize_into(kind, black_box(v), &mut buf).expect("valid");
                    black_box(&buf);
                }
            })
        });
    }
    g.finish();
}

fn token(c: &mut Criterion) {
    let tokenizer = Tokenizer::new(&TokenKey::from_bytes([7; 32]));
    let mut g = c.benchmark_group("token");
    for (name, len) in [("30 bytes", 30), ("48 bytes", 48)] {
        let msg = vec![b'7'; len];
        g.throughput(Throughput::Elements(1));
        g.bench_function(name, |b| {
            b.iter(|| tokenizer.token(Kind::Phone, black_box(&msg)))
        });
    }
    g.finish();
}

/// An index of `n` indicators (one signed batch per 10,000), and `n` tokens
/// of which none is held.
fn index_of(n: usize) -> (Index, Vec<Token>, Vec<Token>) {
    let tokenizer = Tokenizer::new(&TokenKey::from_bytes([9; 32]));
    let signer = SigningKeyFile::generate();
    let mut index = Index::new();
    let mut held = Vec::with_capacity(n);
    let mut seq = 1;
    let mut i = 0u64;
    while (held.len()) < n {
        let m = (n - held.len()).min(10_000);
        let entries = (0..m)
            .map(|_| {
                let t = tokenizer.token(Kind::BankAccount, format!("{i:016}").as_bytes());
                i += 1;
                held.push(t);
                batch::entry(&t, i32::from(Kind::BankAccount.code()), 1)
            })
            .collect();
        index
            .apply(&signed_add(seq, "BENCH", entries, &signer))
            .expect("a valid batch");
        seq += m as u64;
    }
    index.merge();
    let absent = (0..n as u64)
        .map(|j| tokenizer.token(Kind::Phone, format!("{j:016}").as_bytes()))
        .collect();
    (index, held, absent)
}

fn lookup(c: &mut Criterion) {
    let (index, held, absent) = index_of(1_000_000);
    let mut g = c.benchmark_group("look-up, 1M indicators");
    for (name, tokens) in [("hits", &held), ("misses", &absent)] {
        g.throughput(Throughput::Elements(64));
        let mut at = 0usize;
        g.bench_function(format!("{name}, batches of 64"), |b| {
            b.iter_batched(
                || {
                    at = (at + 64 * 7919) % (tokens.len() - 64);
                    &tokens[at..at + 64]
                },
                |batch| black_box(index.may_hold(batch)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, normalization, token, lookup);
criterion_main!(benches);
