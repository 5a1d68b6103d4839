//! The watchlist's one file, `journal`: append-only records, each framed as
//! `len: u32 LE || crc32(payload): u32 LE || payload`. A record is either
//! a whole entry (`Put`: id, kind, reference, every (epoch, 16-byte watch
//! hash) it holds; a completion writes the entry again with the new epoch)
//! or a removal (`Del`: id). Never a token, never a raw value.
//!
//! [`scan`] reads the file at open and stops at the first frame that is
//! short or fails its CRC: that is a torn tail (a write cut by a crash
//! before its fsync returned, so never acknowledged), and the caller cuts
//! the file there.

use std::io::{self, Read};

use crate::ident::Kind;

use super::WatchHash;

/// Bytes before a record's payload: its length and its CRC.
pub(super) const FRAME: usize = 8;
/// Largest payload: a 128-byte reference and up to 255 epochs.
const MAX_PAYLOAD: usize = 1 + 4 + 1 + 1 + 128 + 1 + 255 * 20;

const PUT: u8 = 1;
const DEL: u8 = 2;

/// One record of the journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Record {
    Put(Stored),
    Del(u32),
}

/// A watch entry as the journal keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Stored {
    pub id: u32,
    pub kind: Kind,
    pub reference: String,
    pub hashes: Vec<(u32, WatchHash)>,
}

impl Record {
    /// Appends this record, framed, to `out`.
    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&[0u8; FRAME]);
        match self {
            Record::Put(s) => {
                out.push(PUT);
                out.extend_from_slice(&s.id.to_le_bytes());
                out.push(s.kind.code());
                // References are 1..=128 bytes (checked before they get here).
                out.push(s.reference.len() as u8);
                out.extend_from_slice(s.reference.as_bytes());
                out.push(s.hashes.len() as u8);
                for (epoch, h) in &s.hashes {
                    out.extend_from_slice(&epoch.to_le_bytes());
                    out.extend_from_slice(h);
                }
            }
            Record::Del(id) => {
                out.push(DEL);
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        let len = (out.len() - at - FRAME) as u32;
        let crc = crc32fast::hash(&out[at + FRAME..]);
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
        out[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes one payload (already checked against its CRC).
    pub(super) fn decode(p: &[u8]) -> Option<Record> {
        let (&tag, rest) = p.split_first()?;
        let id = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
        let rest = &rest[4..];
        match tag {
            DEL if rest.is_empty() => Some(Record::Del(id)),
            PUT => {
                let kind = Kind::from_code(*rest.first()?)?;
                let rlen = usize::from(*rest.get(1)?);
                let reference = std::str::from_utf8(rest.get(2..2 + rlen)?)
                    .ok()?
                    .to_string();
                let rest = &rest[2 + rlen..];
                let n = usize::from(*rest.first()?);
                let body = &rest[1..];
                if body.len() != n * 20 {
                    return None;
                }
                let hashes = body
                    .chunks_exact(20)
                    .map(|c| {
                        let epoch = u32::from_le_bytes(c[..4].try_into().expect("4 bytes"));
                        (epoch, c[4..].try_into().expect("16 bytes"))
                    })
                    .collect();
                Some(Record::Put(Stored {
                    id,
                    kind,
                    reference,
                    hashes,
                }))
            }
            _ => None,
        }
    }
}

/// Reads every whole record from `r`, calling `f(offset, record)`; returns
/// the offset where the valid records end (the file's length unless its
/// tail is torn).
pub(super) fn scan<R: Read>(mut r: R, mut f: impl FnMut(u64, Record)) -> io::Result<u64> {
    let mut at = 0u64;
    let mut head = [0u8; FRAME];
    let mut payload = Vec::with_capacity(256);
    loop {
        match read_full(&mut r, &mut head)? {
            0 => return Ok(at),
            n if n < FRAME => return Ok(at),
            _ => {}
        }
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        if len > MAX_PAYLOAD {
            return Ok(at);
        }
        payload.resize(len, 0);
        if read_full(&mut r, &mut payload)? < len || crc32fast::hash(&payload) != crc {
            return Ok(at);
        }
        let Some(rec) = Record::decode(&payload) else {
            return Ok(at);
        };
        f(at, rec);
        at += (FRAME + len) as u64;
    }
}

/// Reads the record at `offset` of `file`.
pub(super) fn read_at(file: &std::fs::File, offset: u64) -> io::Result<Record> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; FRAME];
    file.read_exact_at(&mut head, offset)?;
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "watchlist record fails its check",
        )
    };
    if len > MAX_PAYLOAD {
        return Err(bad());
    }
    let mut payload = vec![0u8; len];
    file.read_exact_at(&mut payload, offset + FRAME as u64)?;
    if crc32fast::hash(&payload) != crc {
        return Err(bad());
    }
    Record::decode(&payload).ok_or_else(bad)
}

/// Fills `buf` as far as the reader goes; the number of bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_tail_ends_the_scan() {
        let put = Record::Put(Stored {
            id: 7,
            kind: Kind::Iban,
            reference: "cust-1".into(),
            hashes: vec![(1, [3u8; 16]), (2, [4u8; 16])],
        });
        let mut buf = Vec::new();
        put.encode(&mut buf);
        Record::Del(7).encode(&mut buf);
        let whole = buf.len() as u64;
        put.encode(&mut buf);
        buf.truncate(buf.len() - 3);
        let mut seen = Vec::new();
        let end = scan(&buf[..], |at, r| seen.push((at, r))).unwrap();
        assert_eq!(end, whole);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0], (0, put));
        assert_eq!(seen[1].1, Record::Del(7));
    }
}
