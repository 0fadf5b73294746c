//! Preparing the multiprocess directory before anything writes to it.

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::StoreError;

/// Creates (mode 0700) or checks the multiprocess directory and clears the
/// `*.db` files an earlier run left.
///
/// Refused, with the reason: a path that is not a directory; a directory
/// owned by another user; one writable by group or others without the sticky
/// bit (anyone could plant or swap files); one this process cannot write.
/// A `*.db` symlink is removed, never followed.
pub fn prepare_dir(path: &Path) -> Result<(), StoreError> {
    let refuse = |reason: String| StoreError::Dir {
        path: path.to_owned(),
        reason,
    };
    if !path.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| refuse(format!("cannot create it: {e}")))?;
    }
    let meta = std::fs::metadata(path).map_err(|e| refuse(format!("cannot inspect it: {e}")))?;
    if !meta.is_dir() {
        return Err(refuse("exists but is not a directory".into()));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(refuse(format!(
            "is owned by uid {} but this process runs as uid {euid}; use a directory of your own",
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(refuse(format!(
            "has mode {:o}: writable by other users without the sticky bit; use `chmod 700` or a private subdirectory",
            mode & 0o7777
        )));
    }
    probe_writable(path).map_err(|e| refuse(format!("is not writable: {e}")))?;
    clear_db_files(path)
        .map_err(|e| refuse(format!("cannot clear files of an earlier run: {e}")))?;
    Ok(())
}

fn probe_writable(path: &Path) -> std::io::Result<()> {
    let probe = tempfile::Builder::new()
        .prefix(".muster-probe")
        .tempfile_in(path)?;
    probe.close()
}

fn clear_db_files(path: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name();
        if !name.to_string_lossy().ends_with(".db") {
            continue;
        }
        let file_type = entry.file_type()?;
        if file_type.is_symlink() {
            tracing::warn!(path = ?entry.path(), "removing a symlink planted in the multiprocess directory");
        } else if !file_type.is_file() {
            tracing::warn!(path = ?entry.path(), "leaving a non-regular *.db entry in place");
            continue;
        }
        std::fs::remove_file(entry.path())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_private_directory_and_clears_old_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        prepare_dir(&dir).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::write(dir.join("counter_1.db"), b"x").unwrap();
        std::fs::write(dir.join("keep.txt"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("gauge_all_2.db")).unwrap();
        prepare_dir(&dir).unwrap();
        assert!(!dir.join("counter_1.db").exists());
        assert!(std::fs::symlink_metadata(dir.join("gauge_all_2.db")).is_err());
        assert!(dir.join("keep.txt").exists());
        assert!(Path::new("/etc/passwd").exists());
    }

    #[test]
    fn refuses_unusable_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let err = prepare_dir(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");

        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare_dir(&open).unwrap_err().to_string();
        assert!(err.contains("writable by other users"), "{err}");

        let nested = file.join("below");
        assert!(prepare_dir(&nested).is_err());
    }
}
