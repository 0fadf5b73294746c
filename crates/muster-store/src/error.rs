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
    /// A process id that would make an unparsable file name.
    #[error("invalid process id {0:?}: use 1-64 characters from [A-Za-z0-9-]")]
    BadId(String),
}
