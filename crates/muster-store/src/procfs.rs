//! What `/proc` says about other processes, for refusing to share a file or a
//! directory and for naming who is in the way.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

/// A file's device and inode, as `/proc/locks` and `/proc/<pid>/maps` show them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileId {
    major: u64,
    minor: u64,
    ino: u64,
}

impl FileId {
    /// The identity of `meta`'s file.
    pub(crate) fn of(meta: &std::fs::Metadata) -> FileId {
        FileId::new(meta.dev(), meta.ino())
    }

    /// The identity of the file with this `st_dev` and inode.
    pub(crate) fn new(dev: u64, ino: u64) -> FileId {
        FileId {
            major: libc::major(dev) as u64,
            minor: libc::minor(dev) as u64,
            ino,
        }
    }

    /// Whether `dev` (`maj:min` in hex) and `ino` (decimal) name this file.
    fn matches(&self, dev: &str, ino: &str) -> bool {
        let Some((major, minor)) = dev.split_once(':') else {
            return false;
        };
        u64::from_str_radix(major, 16) == Ok(self.major)
            && u64::from_str_radix(minor, 16) == Ok(self.minor)
            && ino.parse() == Ok(self.ino)
    }
}

/// Takes an exclusive `flock` on `file` without waiting; `false` if another
/// open file description holds a lock on it.
pub(crate) fn try_lock(file: &File, exclusive: bool) -> std::io::Result<bool> {
    let kind = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    // SAFETY: flock(2) on a descriptor `file` owns.
    if unsafe { libc::flock(file.as_raw_fd(), kind | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// The pid that holds a `flock` on the file `id`, from `/proc/locks`.
pub(crate) fn flock_holder(id: FileId) -> Option<u32> {
    // The kernel lists the locks of the whole system a page at a time; while other
    // processes take and drop locks, one reading can miss a line. Read again.
    (0..5).find_map(|_| flock_holder_once(id))
}

fn flock_holder_once(id: FileId) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        // `1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF`; waiters have `->`.
        let mut fields = line.split_whitespace().skip(1);
        if fields.next()? != "FLOCK" {
            return None;
        }
        let pid = fields.nth(2)?.parse().ok()?;
        let (dev, ino) = fields.next()?.rsplit_once(':')?;
        id.matches(dev, ino).then_some(pid)
    })
}

/// Whether process `pid` has the file `id` mapped (`/proc/<pid>/maps`): a live
/// writer, not a process that merely reuses the pid of a dead one.
pub(crate) fn maps_file(pid: u32, id: FileId) -> bool {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return false;
    };
    maps.lines().any(|line| {
        // `start-end perms offset maj:min inode path`
        let mut fields = line.split_whitespace().skip(3);
        matches!((fields.next(), fields.next()), (Some(dev), Some(ino)) if id.matches(dev, ino))
    })
}

/// `pid 4242 (`python3 app.py`)`: a process named for an operator.
pub(crate) fn describe(pid: u32) -> String {
    let command = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(String::from_utf8_lossy)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|c| !c.is_empty());
    match command {
        Some(c) if c.chars().count() > 120 => {
            format!(
                "pid {pid} (`{}...`)",
                c.chars().take(120).collect::<String>()
            )
        }
        Some(c) => format!("pid {pid} (`{c}`)"),
        None => format!("pid {pid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_holder_and_the_mapper_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [0u8; 4096]).unwrap();
        let file = File::open(&path).unwrap();
        let id = FileId::of(&file.metadata().unwrap());
        let me = std::process::id();
        assert_eq!(flock_holder(id), None);
        assert!(try_lock(&file, true).unwrap());
        assert_eq!(flock_holder(id), Some(me));
        let other = File::open(&path).unwrap();
        assert!(!try_lock(&other, false).unwrap());

        assert!(!maps_file(me, id));
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        assert!(maps_file(me, id));
        drop(map);
        assert!(describe(me).starts_with(&format!("pid {me} (`")));
    }
}
