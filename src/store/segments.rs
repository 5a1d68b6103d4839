//! Append-only segment files holding the store's batch bodies.
//!
//! A batch body (the encoded `LogBatch`, hundreds of kilobytes for a batch
//! of 10,000 entries) is written once, at the end of the newest segment
//! file, and fsynced before the store records where it is: sled holds only
//! the 16-byte [`Location`], so anything a location names is on disk.
//! Bytes written but never named (a crash between the write and sled's
//! insert) are dead weight until the next compaction. Each open writes to a
//! new segment file (created at its first write), so nothing is ever written
//! after such a tail.
//!
//! Record: CRC-32 of the body (u32 little-endian) ‖ body. Files:
//! `NNNNNNNN.seg` (segment number, decimal), at most [`SEGMENT_BYTES`] each
//! unless one body is larger. A purge writes the purged batch as a new
//! record and the old one stays until compaction copies the live records
//! into a fresh directory, so purged tokens leave the disk only then.

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use parking_lot::{Mutex, RwLock};

/// A segment file is closed for writing once it reaches this size.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Why segment files could not be opened, written or read.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// A file operation in the segment directory failed.
    #[error("segment files in {dir}")]
    Io {
        /// The segment directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A record cannot be read back as written (its file missing, the
    /// record cut short or its checksum wrong), or a body is too large to
    /// write.
    #[error("segment {segment} at offset {offset}: {what}")]
    Damaged {
        /// The segment number (0 for a body too large to write).
        segment: u32,
        /// Offset of the record in the segment file.
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
}

/// Where one body is: segment number, offset of its record, body length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Number of the segment file.
    pub segment: u32,
    /// Offset of the record (its CRC) in the file, in bytes.
    pub offset: u64,
    /// Length of the body in bytes, CRC excluded.
    pub len: u32,
}

impl Location {
    /// Length of [`Location::encode`]'s output in bytes.
    pub const ENCODED_LEN: usize = 16;

    /// Segment, offset and length, each big-endian: the value of the
    /// store's `batches` tree.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut b = [0u8; Self::ENCODED_LEN];
        b[..4].copy_from_slice(&self.segment.to_be_bytes());
        b[4..12].copy_from_slice(&self.offset.to_be_bytes());
        b[12..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    /// Inverse of [`Location::encode`]; `None` unless `b` is 16 bytes.
    pub fn decode(b: &[u8]) -> Option<Location> {
        let b: &[u8; Self::ENCODED_LEN] = b.try_into().ok()?;
        Some(Location {
            segment: u32::from_be_bytes(b[..4].try_into().ok()?),
            offset: u64::from_be_bytes(b[4..12].try_into().ok()?),
            len: u32::from_be_bytes(b[12..].try_into().ok()?),
        })
    }
}

struct Writer {
    segment: u32,
    file: Arc<File>,
    len: u64,
}

/// The segment files of one store directory: one written at a time, all
/// open for reading.
pub struct Segments {
    dir: PathBuf,
    /// The segment being written; none until this open's first write.
    writer: Mutex<Option<Writer>>,
    /// Number of the segment the first write of this open creates.
    next: u32,
    /// Every segment file, open for reading (the one being written too).
    files: RwLock<HashMap<u32, Arc<File>>>,
}

fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:08}.seg"))
}

impl Segments {
    /// Opens the segment files in `dir` (created if missing).
    pub fn open(dir: &Path) -> Result<Segments, SegmentError> {
        let io_err = |source| SegmentError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let mut files = HashMap::new();
        for entry in std::fs::read_dir(dir).map_err(io_err)? {
            let name = entry.map_err(io_err)?.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let file = File::open(segment_path(dir, n)).map_err(io_err)?;
            files.insert(n, Arc::new(file));
        }
        Ok(Segments {
            dir: dir.to_path_buf(),
            writer: Mutex::new(None),
            next: files.keys().max().map_or(1, |n| n + 1),
            files: RwLock::new(files),
        })
    }

    fn io(&self, source: io::Error) -> SegmentError {
        SegmentError::Io {
            dir: self.dir.clone(),
            source,
        }
    }

    /// Creates segment `n`, durably (its directory entry too). A file of
    /// that number left by a failed attempt is written after its end.
    fn create(&self, n: u32) -> Result<Writer, SegmentError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(segment_path(&self.dir, n))
            .map_err(|e| self.io(e))?;
        let len = file.metadata().map_err(|e| self.io(e))?.len();
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io(e))?;
        let file = Arc::new(file);
        self.files.write().insert(n, file.clone());
        Ok(Writer {
            segment: n,
            file,
            len,
        })
    }

    /// Writes `body` as a new record and makes it durable before returning
    /// its location.
    pub fn append(&self, body: &[u8]) -> Result<Location, SegmentError> {
        let at = self.write(body)?;
        self.sync()?;
        Ok(at)
    }

    /// Writes `body` as a new record without waiting for the disk: it is
    /// durable after the next [`Segments::sync`] (or once its segment is
    /// full, which syncs it before the next one starts). For copies of many
    /// records, one sync at the end.
    pub fn write(&self, body: &[u8]) -> Result<Location, SegmentError> {
        let len = u32::try_from(body.len()).map_err(|_| SegmentError::Damaged {
            segment: 0,
            offset: 0,
            what: "a batch body is larger than 4 GiB",
        })?;
        let mut guard = self.writer.lock();
        let fits = |w: &Writer| w.len == 0 || w.len + 4 + body.len() as u64 <= SEGMENT_BYTES;
        if !guard.as_ref().is_some_and(fits) {
            let n = match guard.as_ref() {
                Some(full) => {
                    full.file.sync_data().map_err(|e| self.io(e))?;
                    full.segment + 1
                }
                None => self.next,
            };
            *guard = Some(self.create(n)?);
        }
        let w = guard.as_mut().expect("a segment is open for writing");
        let mut record = Vec::with_capacity(4 + body.len());
        record.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        record.extend_from_slice(body);
        let offset = w.len;
        w.file.write_all_at(&record, offset).map_err(|e| {
            // Whatever part was written is never named; write after it.
            w.len = offset + record.len() as u64;
            self.io(e)
        })?;
        w.len = offset + record.len() as u64;
        Ok(Location {
            segment: w.segment,
            offset,
            len,
        })
    }

    /// Makes every record written so far durable.
    pub fn sync(&self) -> Result<(), SegmentError> {
        let file = self.writer.lock().as_ref().map(|w| w.file.clone());
        match file {
            Some(f) => f.sync_data().map_err(|e| self.io(e)),
            None => Ok(()),
        }
    }

    /// Reads the body at `at`, checking its CRC.
    pub fn read(&self, at: Location) -> Result<Vec<u8>, SegmentError> {
        let damaged = |what| SegmentError::Damaged {
            segment: at.segment,
            offset: at.offset,
            what,
        };
        let file = self
            .files
            .read()
            .get(&at.segment)
            .cloned()
            .ok_or_else(|| damaged("segment file missing"))?;
        let mut record = vec![0u8; 4 + at.len as usize];
        file.read_exact_at(&mut record, at.offset).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                damaged("record cut short")
            } else {
                self.io(e)
            }
        })?;
        let crc = u32::from_le_bytes(record[..4].try_into().expect("4 bytes"));
        if crc32fast::hash(&record[4..]) != crc {
            return Err(damaged("checksum mismatch"));
        }
        record.drain(..4);
        Ok(record)
    }

    /// Bytes the segment files take.
    pub fn size(&self) -> u64 {
        self.files
            .read()
            .values()
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let segs = Segments::open(dir.path()).unwrap();
        let a = segs.append(b"first body").unwrap();
        let b = segs.append(&[7u8; 1000]).unwrap();
        assert_eq!(segs.read(a).unwrap(), b"first body");
        assert_eq!(Location::decode(&b.encode()), Some(b));
        drop(segs);
        let segs = Segments::open(dir.path()).unwrap();
        assert_eq!(segs.read(b).unwrap(), vec![7u8; 1000]);
        // A new open writes a new segment.
        let c = segs.write(b"third").unwrap();
        segs.sync().unwrap();
        assert_eq!(segs.read(c).unwrap(), b"third");
        assert_eq!(c.segment, a.segment + 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
        assert_eq!(c.offset, 0);
        // One flipped bit is caught.
        let path = segment_path(dir.path(), a.segment);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[a.offset as usize + 6] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let segs = Segments::open(dir.path()).unwrap();
        assert!(matches!(
            segs.read(a),
            Err(SegmentError::Damaged {
                what: "checksum mismatch",
                ..
            })
        ));
        let cut = Location { len: 5000, ..b };
        assert!(matches!(
            segs.read(cut),
            Err(SegmentError::Damaged {
                what: "record cut short",
                ..
            })
        ));
    }

    #[test]
    fn a_full_segment_is_followed_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let segs = Segments::open(dir.path()).unwrap();
        let big = vec![1u8; (SEGMENT_BYTES / 2) as usize];
        let a = segs.append(&big).unwrap();
        let b = segs.append(&big).unwrap();
        assert_eq!(b.segment, a.segment + 1);
        assert_eq!(segs.read(a).unwrap().len(), big.len());
        assert_eq!(segs.read(b).unwrap().len(), big.len());
        assert!(segs.size() >= 2 * big.len() as u64);
    }
}
