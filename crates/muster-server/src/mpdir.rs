//! The multiprocess directory, prepared before any worker or collector exists.

use std::path::{Path, PathBuf};

use crate::ServerError;

/// The directory in use; removes it at drop when it is a private temporary one.
pub(crate) struct MultiprocDir {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl MultiprocDir {
    /// Prepares `configured` (created 0700, checked, earlier `*.db` cleared), or a
    /// private temporary directory when `None`.
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
        muster_store::prepare_dir(&path)
            .map_err(|e| ServerError::MultiprocDir(format!("{}: {e}", path.display())))?;
        Ok(MultiprocDir { path, _temp: temp })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
