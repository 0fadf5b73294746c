//! Which files of a multiprocess directory a scrape reads: every `*.db`
//! (Python's collector globs `*.db`), hidden files excepted, sorted by name;
//! and muster's own `*.muster` files (native buckets, exemplars).
//!
//! This is the one place the collector lists the directory; anything that
//! changes which files a scrape sees belongs here.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::DirEntryExt;
use std::path::Path;

use muster_store::format::MUSTER_SUFFIX;
use muster_store::reader::{MappedFile, ReadError};

/// Files from which a second thread helps open them, and each thread's
/// least share (opening and mapping is a few system calls per file).
const FILES_PER_THREAD: usize = 64;
/// Most threads that open files.
const MAX_THREADS: usize = 4;

/// A listed file: its name and its inode (from `readdir`, without a `stat`),
/// which tells a replaced file from the one a collector already knows.
pub(crate) struct Listed {
    pub(crate) name: Box<OsStr>,
    pub(crate) ino: u64,
}

/// The metric files of `dir`, sorted by name (bytes), and the names of
/// its `*.muster` files (sorted too), from one listing.
pub(crate) fn list_metric_files(dir: &Path) -> std::io::Result<(Vec<Listed>, Vec<String>)> {
    let mut files = Vec::new();
    let mut muster = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let bytes = name.as_encoded_bytes();
        if bytes.starts_with(b".") {
            continue;
        }
        if bytes.ends_with(b".db") {
            files.push(Listed {
                ino: entry.ino(),
                name: name.into_boxed_os_str(),
            });
        } else if bytes.ends_with(MUSTER_SUFFIX.as_bytes()) {
            if let Ok(name) = name.into_string() {
                muster.push(name);
            }
        }
    }
    files.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    muster.sort_unstable();
    Ok((files, muster))
}

/// Opens and maps the files `names` of `dir`, in order; in several threads
/// when there are hundreds (the first scrape of a big directory, where the
/// system calls would otherwise be a tenth of the scrape).
pub(crate) fn open_all(dir: &Path, names: &[&OsStr]) -> Vec<Result<MappedFile, ReadError>> {
    let open_dir = std::fs::File::open(dir);
    let open = |names: &[&OsStr]| -> Vec<_> {
        names
            .iter()
            .map(|name| match &open_dir {
                Ok(d) => MappedFile::open_in(d.as_fd(), name),
                Err(_) => MappedFile::open(&dir.join(name)),
            })
            .collect()
    };
    if names.len() < 2 * FILES_PER_THREAD {
        return open(names);
    }
    if let Ok(d) = &open_dir {
        // Make room in the descriptor table for every file now: growing a
        // table that threads share waits for an RCU grace period (10 ms and
        // more), which a process that had one thread until here never pays.
        let above = d.as_raw_fd() + names.len() as i32 + 16;
        if let Ok(fd) = nix::fcntl::fcntl(d, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(above)) {
            let _ = nix::unistd::close(fd);
        }
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
        .min(names.len() / FILES_PER_THREAD);
    let mut chunks = names.chunks(names.len().div_ceil(threads));
    let Some(first) = chunks.next() else {
        return Vec::new();
    };
    std::thread::scope(|scope| {
        let others: Vec<_> = chunks.map(|chunk| scope.spawn(|| open(chunk))).collect();
        let mut opened = open(first);
        for other in others {
            // An open that panics is a bug the scope passes on.
            opened.extend(
                other
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e)),
            );
        }
        opened
    })
}
