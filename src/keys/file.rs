//! Files holding secrets (token keys, log and operator signing keys, TLS
//! keys made by `cix init`): opened only when group and others have no
//! access, as ssh does, and created new with mode 0600. The permission check
//! runs on the opened file, not the path, so the file checked is the file
//! read. Callers wrap the errors in their own types with the path.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read, Write},
    path::Path,
};

use zeroize::Zeroizing;

/// Why a secret file was not opened.
#[derive(Debug)]
pub enum PrivateFileError {
    /// The file does not open, or its metadata does not read.
    Io(io::Error),
    /// Group or others have some access; `mode` holds the permission bits.
    Permissions {
        /// The file's permission bits (mode & 0o7777).
        mode: u32,
    },
}

/// Opens a secret file for reading, refusing one that group or others may
/// access.
pub fn open_private(path: &Path) -> Result<File, PrivateFileError> {
    let file = File::open(path).map_err(PrivateFileError::Io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .map_err(PrivateFileError::Io)?
            .permissions()
            .mode()
            & 0o7777;
        if mode & 0o077 != 0 {
            return Err(PrivateFileError::Permissions { mode });
        }
    }
    Ok(file)
}

/// Reads a whole secret file (as [`open_private`] opens it) into a buffer
/// zeroized when dropped, sized up front so that no copy is left behind by
/// a reallocation.
pub fn read_private(path: &Path) -> Result<Zeroizing<Vec<u8>>, PrivateFileError> {
    let mut file = open_private(path)?;
    let len = file.metadata().map_err(PrivateFileError::Io)?.len();
    let mut data = Zeroizing::new(Vec::with_capacity(
        usize::try_from(len).unwrap_or(0).saturating_add(1),
    ));
    file.read_to_end(&mut data).map_err(PrivateFileError::Io)?;
    Ok(data)
}

/// Writes `content` to a new file (never overwrites) with mode 0600 and
/// syncs it; a file left half-written is removed.
pub fn write_new_private(path: &Path, content: &[u8]) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path)?;
    let written = file.write_all(content).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(())
}
