//! A local coalition on one machine, for the demo, `cix bench` and the
//! integration tests: ready-to-run node directories with a demo CA
//! ([`init`]) and synthetic identifiers ([`synth`]).

pub mod init;
pub mod synth;
