//! The multiprocess directory: creating and checking it, taking it over for
//! one server, and clearing what earlier runs left.
//!
//! One owner per directory: a server holds an exclusive `flock` on
//! [`LOCK_FILE`] in it for as long as it runs, and clears files only while it
//! holds that lock. Scrapes never lock anything. Python's collector globs
//! `*.db`, and muster's skips dot-files, so neither reads the lock file.

use std::fs::{DirBuilder, File};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::StoreError;
use crate::format::{FileKind, FileName, GaugeMode};
use crate::procfs::{self, FileId};

/// The lock file a server holds in its directory; it contains the holder's pid.
pub const LOCK_FILE: &str = ".muster.lock";

/// Creates (mode 0700) or checks the multiprocess directory, touching
/// nothing in it.
///
/// Refused, with the reason: a path that is not a directory; a directory
/// owned by another user; one writable by group or others without the sticky
/// bit (anyone could plant or swap files); one this process cannot write.
pub fn check_dir(path: &Path) -> Result<(), StoreError> {
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
    probe_writable(path).map_err(|e| refuse(format!("is not writable: {e}")))
}

/// Checks the directory ([`check_dir`]), takes it over ([`DirLock::acquire`]),
/// refuses it if live writers use it, and then clears what earlier runs
/// left: `*.db` files and the writer's `.<name>.*.new` temporaries.
///
/// In use, and left untouched ([`StoreError::DirInUse`], naming the holder):
/// a directory another muster server holds; one with a `*.db` file another
/// muster writer holds (its lock); one with a `*_<pid>.db` file (Python's
/// naming) that process `<pid>` is alive and has mapped (so a reused pid does
/// not count). Files of dead writers are cleared. A `*.db` symlink is
/// removed, never followed.
///
/// The directory stays this process's until the returned lock is dropped.
#[must_use = "the directory is only held while the lock lives"]
pub fn prepare_dir(path: &Path) -> Result<DirLock, StoreError> {
    check_dir(path)?;
    let lock = DirLock::acquire(path)?;
    refuse_live_writers(path)?;
    clear_leftovers(path).map_err(|e| StoreError::Dir {
        path: path.to_owned(),
        reason: format!("cannot clear files of an earlier run: {e}"),
    })?;
    Ok(lock)
}

/// The exclusive hold of one process on a directory ([`LOCK_FILE`]), released
/// when dropped or when every process sharing it (forked children) exits.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    path: PathBuf,
}

impl DirLock {
    /// Takes the directory's lock without waiting, and writes this process's
    /// pid into the lock file. A directory another process holds is
    /// [`StoreError::DirInUse`], naming it.
    pub fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let fail = |reason: String| StoreError::Dir {
            path: dir.to_owned(),
            reason,
        };
        // A lock file replaced while we locked it (removed by hand) is retried.
        for _ in 0..3 {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| fail(format!("cannot open its lock file {LOCK_FILE}: {e}")))?;
            let meta = file
                .metadata()
                .map_err(|e| fail(format!("cannot inspect {LOCK_FILE}: {e}")))?;
            if !meta.file_type().is_file() {
                return Err(fail(format!("{LOCK_FILE} is not a regular file")));
            }
            if !procfs::try_lock(&file, true)
                .map_err(|e| fail(format!("cannot lock {LOCK_FILE}: {e}")))?
            {
                return Err(StoreError::DirInUse {
                    path: dir.to_owned(),
                    holder: lock_holder(&mut file, FileId::of(&meta)),
                });
            }
            let still_there = std::fs::symlink_metadata(&path)
                .is_ok_and(|now| now.ino() == meta.ino() && now.dev() == meta.dev());
            if !still_there {
                continue;
            }
            file.set_len(0)
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .map_err(|e| fail(format!("cannot write {LOCK_FILE}: {e}")))?;
            return Ok(DirLock { _file: file, path });
        }
        Err(fail(format!("{LOCK_FILE} kept being replaced")))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Who holds a directory's lock: the pid written in the lock file, else the
/// one `/proc/locks` shows.
fn lock_holder(file: &mut File, id: FileId) -> String {
    let mut text = String::new();
    let written = file
        .read_to_string(&mut text)
        .ok()
        .and_then(|_| text.trim().parse::<u32>().ok());
    match written.or_else(|| procfs::flock_holder(id)) {
        Some(pid) => format!("another muster server, {}", procfs::describe(pid)),
        None => "another muster server".to_owned(),
    }
}

/// Refuses the directory if a live writer has one of its `*.db` files.
fn refuse_live_writers(dir: &Path) -> Result<(), StoreError> {
    let in_use = |holder: String| StoreError::DirInUse {
        path: dir.to_owned(),
        holder,
    };
    let entries = std::fs::read_dir(dir).map_err(|e| StoreError::Dir {
        path: dir.to_owned(),
        reason: format!("cannot list it: {e}"),
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".db") || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(entry.path())
        else {
            continue;
        };
        let Ok(meta) = file.metadata() else { continue };
        let id = FileId::of(&meta);
        // A muster writer (any id) holds its file's lock.
        if !procfs::try_lock(&file, false).unwrap_or(true) {
            let holder = procfs::flock_holder(id)
                .map_or_else(|| "another process".to_owned(), procfs::describe);
            return Err(in_use(format!("a live muster writer of {name}, {holder}")));
        }
        // Python names files by pid and keeps them mapped.
        let pid = FileName::parse(&name).and_then(|f| f.id.parse::<u32>().ok());
        if let Some(pid) = pid.filter(|pid| procfs::maps_file(*pid, id)) {
            return Err(in_use(format!(
                "a live process writing {name}, {}",
                procfs::describe(pid)
            )));
        }
    }
    Ok(())
}

/// Removes the live-gauge files of process `id` (what Python's
/// `mark_process_dead` does): its `live*` gauge values vanish from scrapes.
pub fn remove_live_gauge_files(dir: &Path, id: &str) -> std::io::Result<()> {
    for mode in GaugeMode::ALL.into_iter().filter(|m| m.is_live()) {
        match std::fs::remove_file(dir.join(FileKind::Gauge(mode).file_name(id))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn probe_writable(path: &Path) -> std::io::Result<()> {
    let probe = tempfile::Builder::new()
        .prefix(".muster-probe")
        .tempfile_in(path)?;
    probe.close()
}

/// Removes `*.db` and `*.muster` files and the writer's `.<name>.*.new` temporaries (left
/// by a crash between creating a file and linking it into place).
fn clear_leftovers(path: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let temporary = name.starts_with('.') && name.ends_with(".new");
        let ours = name.ends_with(crate::format::MUSTER_SUFFIX);
        if !name.ends_with(".db") && !ours && !temporary {
            continue;
        }
        let file_type = entry.file_type()?;
        if file_type.is_symlink() {
            tracing::warn!(path = ?entry.path(), "removing a symlink planted in the multiprocess directory");
        } else if !file_type.is_file() {
            tracing::warn!(path = ?entry.path(), "leaving a non-regular entry in place");
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
        drop(prepare_dir(&dir).unwrap());
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::write(dir.join("counter_1.db"), b"x").unwrap();
        std::fs::write(dir.join("keep.txt"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("gauge_all_2.db")).unwrap();
        // A writer's temporary that a crash left, and what is not ours.
        std::fs::write(dir.join(".counter_w0.db.a1B2c3.new"), b"x").unwrap();
        std::fs::write(dir.join(".hidden"), b"x").unwrap();
        let _lock = prepare_dir(&dir).unwrap();
        assert!(!dir.join(".counter_w0.db.a1B2c3.new").exists());
        assert!(dir.join(".hidden").exists());
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
