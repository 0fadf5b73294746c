//! Which files of a multiprocess directory a scrape reads: every `*.db`
//! (Python's collector globs `*.db`), hidden files excepted, sorted by name;
//! and muster's own `*.muster` files (native buckets, exemplars).
//!
//! This is the one place the collector lists the directory; anything that
//! changes which files a scrape sees belongs here.

use std::ffi::OsStr;
use std::os::unix::fs::DirEntryExt;
use std::path::Path;

use muster_store::format::MUSTER_SUFFIX;

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
