//! Errors of the store.

use std::path::PathBuf;

/// What went wrong while preparing the directory or writing a file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The multiprocess directory cannot be used.
    #[error("multiprocess directory {path}: {reason}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// A file could not be opened or created.
    #[error("cannot open metric file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file could not be given more space (full disk or tmpfs, quota).
    #[error("cannot grow metric file {path} to {size} bytes: {source}")]
    Grow {
        /// The file.
        path: PathBuf,
        /// The size asked for.
        size: usize,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file reached the largest size the format allows.
    #[error("metric file {0} reached the 1 GiB limit")]
    Full(PathBuf),
    /// A file in the way is not a regular file (a symlink, a directory, ...).
    #[error("{0} is not a regular file; refusing to write through it")]
    NotRegular(PathBuf),
    /// Another writer holds the file: in another process (the same id twice,
    /// or a second server on one directory) or in another store of this one.
    #[error("metric file {path} already has a writer, {holder}; a file has one writer: give each process its own id and each server its own directory")]
    FileLocked {
        /// The file.
        path: PathBuf,
        /// Who holds it, as far as `/proc/locks` tells.
        holder: String,
    },
    /// The writer gave the file up ([`crate::writer::FileWriter::release`]).
    #[error("metric file {0} was released by this writer; it takes no new entries")]
    Released(PathBuf),
    /// Another live process uses the directory: a muster server, or writers
    /// (Python's or muster's) whose files are in it. Nothing in it was touched.
    #[error("{path} is in use by {holder}; nothing in it was touched: stop that process first, or give this server its own directory")]
    DirInUse {
        /// The directory.
        path: PathBuf,
        /// Who uses it and how.
        holder: String,
    },
    /// A process id that would make an unparsable file name.
    #[error("invalid process id {0:?}: use 1-64 characters from [A-Za-z0-9-]")]
    BadId(String),
}
