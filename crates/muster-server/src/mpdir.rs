//! The multiprocess directory, taken over before any worker or collector exists.

use std::path::{Path, PathBuf};

use muster_store::{DirLock, StoreError};

use crate::ServerError;

/// The directory in use, held (its lock) for as long as this value lives;
/// removes it at drop when it is a private temporary one.
pub(crate) struct MultiprocDir {
    path: PathBuf,
    _lock: DirLock,
    _temp: Option<tempfile::TempDir>,
}

impl MultiprocDir {
    /// Takes over `configured` (created 0700, checked, locked against other servers,
    /// refused if live writers use it, then cleared of earlier files), or a private
    /// temporary directory when `None`.
    pub(crate) fn prepare(configured: Option<&Path>) -> Result<MultiprocDir, ServerError> {
        let (path, temp) = match configured {
            Some(p) => {
                let abs = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    std::env::current_dir()
                        .map_err(|e| ServerError::io("current directory", e))?
                        .join(p)
                };
                (abs, None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("muster-metrics-")
                    .tempdir()
                    .map_err(|e| {
                        ServerError::MultiprocDir(format!(
                            "cannot create a temporary directory: {e}"
                        ))
                    })?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let lock = muster_store::prepare_dir(&path).map_err(|e| {
            ServerError::MultiprocDir(match e {
                StoreError::Dir { path, reason } => format!("{}: {reason}", path.display()),
                // Names the directory itself.
                other => other.to_string(),
            })
        })?;
        Ok(MultiprocDir {
            path,
            _lock: lock,
            _temp: temp,
        })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
