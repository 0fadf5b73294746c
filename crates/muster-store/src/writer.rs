//! Writing one file: appending entries and handing out stable value pointers.
//!
//! The whole largest file size is reserved in the address space when the file
//! is opened, so growing the file never moves the mapping and a pointer handed
//! out stays valid for the life of the process. Space is reserved for real
//! with `posix_fallocate` before the mapping past the old end is touched, so a
//! full disk or tmpfs is an error here instead of a SIGBUS later.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use hashbrown::HashMap;
use memmap2::{MmapOptions, MmapRaw};
use parking_lot::Mutex;

use crate::error::StoreError;
use crate::format::{entry_size, padding, HEADER_SIZE, INITIAL_FILE_SIZE, MAX_FILE_SIZE};
use crate::reader::{entries, read_used};

/// Address space reserved for an in-memory store (no directory configured).
const ANONYMOUS_RESERVE: usize = 64 << 20;

/// One file this process writes, with the index of its keys.
pub struct FileWriter {
    path: Option<PathBuf>,
    file: Option<File>,
    map: MmapRaw,
    state: Mutex<WriterState>,
}

struct WriterState {
    /// Bytes backed by the file (and safe to touch).
    capacity: usize,
    /// Bytes in use; mirrors the header.
    used: usize,
    /// Key text to value offset.
    index: HashMap<Box<str>, usize, foldhash::fast::RandomState>,
}

// SAFETY: the mapping is only written under `state`'s lock (new entries) or
// through atomics (values); the raw pointer inside `MmapRaw` is what makes it
// !Sync by default.
unsafe impl Sync for FileWriter {}
unsafe impl Send for FileWriter {}

/// Opens `path` for writing without following symlinks, creating it if
/// missing. A new file is made aside under a dot-name (which scrapes ignore),
/// given its initial space and header, and then linked into place, so no
/// scrape ever sees it empty, and a full disk leaves no file behind.
fn open_or_create(path: &Path) -> Result<File, StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    for _ in 0..2 {
        let existing = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(path);
        match existing {
            Ok(file) => return Ok(file),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(StoreError::NotRegular(path.to_owned()))
            }
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(open_err(e)),
            Err(_) => {}
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fresh = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".new")
            .tempfile_in(dir)
            .map_err(open_err)?;
        nix::fcntl::posix_fallocate(fresh.as_file(), 0, INITIAL_FILE_SIZE as libc::off_t).map_err(
            |e| StoreError::Grow {
                path: path.to_owned(),
                size: INITIAL_FILE_SIZE,
                source: std::io::Error::from(e),
            },
        )?;
        std::os::unix::fs::FileExt::write_all_at(
            fresh.as_file(),
            &(HEADER_SIZE as i32).to_ne_bytes(),
            0,
        )
        .map_err(open_err)?;
        match std::fs::hard_link(fresh.path(), path) {
            // The temporary name goes when `fresh` drops; the handle stays.
            Ok(()) => return fresh.as_file().try_clone().map_err(open_err),
            // Someone else created it meanwhile: open theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(open_err(e)),
        }
    }
    Err(open_err(std::io::Error::other(
        "the file kept appearing and vanishing",
    )))
}

impl FileWriter {
    /// Opens or creates `path` for writing, adopting the entries already in
    /// it (a file left by an earlier process of the same id).
    ///
    /// Symlinks are not followed. If the file's tail is corrupt, the valid
    /// entries before it are kept and the rest is overwritten by new entries.
    pub fn open(path: &Path) -> Result<FileWriter, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let file = open_or_create(path)?;
        let meta = file.metadata().map_err(open_err)?;
        if !meta.file_type().is_file() {
            return Err(StoreError::NotRegular(path.to_owned()));
        }
        let size = meta.len() as usize;
        if size > MAX_FILE_SIZE {
            return Err(StoreError::Full(path.to_owned()));
        }
        // A shared mapping of our own file; see the module docs for why the
        // part past the file's end is never touched.
        let map = MmapOptions::new()
            .len(MAX_FILE_SIZE)
            .map_raw(&file)
            .map_err(open_err)?;
        let writer = FileWriter {
            path: Some(path.to_owned()),
            file: Some(file),
            map,
            state: Mutex::new(WriterState {
                capacity: size,
                used: HEADER_SIZE,
                index: HashMap::default(),
            }),
        };
        {
            let mut state = writer.state.lock();
            if size < INITIAL_FILE_SIZE {
                writer.grow_to(&mut state, INITIAL_FILE_SIZE)?;
            }
            writer.adopt(&mut state);
        }
        Ok(writer)
    }

    /// A store in anonymous memory: values work but no other process sees them.
    pub fn anonymous() -> Result<FileWriter, StoreError> {
        let map = MmapOptions::new()
            .len(ANONYMOUS_RESERVE)
            .map_anon()
            .map_err(|source| StoreError::Open {
                path: PathBuf::from("<anonymous>"),
                source,
            })?;
        let writer = FileWriter {
            path: None,
            file: None,
            map: MmapRaw::from(map),
            state: Mutex::new(WriterState {
                capacity: ANONYMOUS_RESERVE,
                used: HEADER_SIZE,
                index: HashMap::default(),
            }),
        };
        writer
            .used_atomic()
            .store(HEADER_SIZE as i32, Ordering::Release);
        Ok(writer)
    }

    /// The file's path (`None` for an anonymous store).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The value slot for `key`, appending a zeroed entry if it is new.
    ///
    /// The pointer stays valid as long as this writer lives; the timestamp
    /// is the next 8 bytes.
    pub fn value_ptr(&self, key: &str) -> Result<*const AtomicU64, StoreError> {
        let mut state = self.state.lock();
        if let Some(&pos) = state.index.get(key) {
            return Ok(self.at(pos));
        }
        let size = entry_size(key.len());
        let end = state.used + size;
        if end > state.capacity {
            let limit = self.map.len();
            if end > limit {
                return Err(StoreError::Full(self.path.clone().unwrap_or_default()));
            }
            let target = (state.capacity * 2).max(end).min(limit);
            self.grow_to(&mut state, target)?;
        }
        let start = state.used;
        // SAFETY: [start, end) lies within the backed capacity and past
        // `used`, so no reader looks at it until `used` is published below,
        // and no other writer touches it while we hold the lock.
        unsafe {
            let base = self.map.as_mut_ptr().add(start);
            std::ptr::copy_nonoverlapping((key.len() as i32).to_ne_bytes().as_ptr(), base, 4);
            std::ptr::copy_nonoverlapping(key.as_ptr(), base.add(4), key.len());
            std::ptr::write_bytes(base.add(4 + key.len()), b' ', padding(key.len()));
            std::ptr::write_bytes(base.add(size - 16), 0, 16);
        }
        state.used = end;
        self.used_atomic().store(end as i32, Ordering::Release);
        let pos = end - 16;
        state.index.insert(key.into(), pos);
        Ok(self.at(pos))
    }

    fn at(&self, pos: usize) -> *const AtomicU64 {
        // SAFETY: `pos` is an 8-aligned offset inside the mapping.
        unsafe { self.map.as_ptr().add(pos) as *const AtomicU64 }
    }

    fn used_atomic(&self) -> &AtomicI32 {
        // SAFETY: the header lies at the start of the page-aligned mapping.
        unsafe { &*(self.map.as_ptr() as *const AtomicI32) }
    }

    /// Reserves real space up to `size` bytes.
    fn grow_to(&self, state: &mut WriterState, size: usize) -> Result<(), StoreError> {
        let Some(file) = &self.file else {
            return Err(StoreError::Full(PathBuf::from("<anonymous>")));
        };
        let grow_err = |source| StoreError::Grow {
            path: self.path.clone().unwrap_or_default(),
            size,
            source,
        };
        nix::fcntl::posix_fallocate(file, 0, size as libc::off_t)
            .map_err(|e| grow_err(std::io::Error::from(e)))?;
        state.capacity = size;
        Ok(())
    }

    /// Indexes the entries an earlier process left; drops a corrupt tail.
    fn adopt(&self, state: &mut WriterState) {
        // SAFETY: `capacity` bytes are backed by the file; no one else
        // writes this file (one writer per id at a time).
        let data = unsafe { std::slice::from_raw_parts(self.map.as_ptr(), state.capacity) };
        let used = match read_used(data) {
            Ok(used) => used,
            Err(e) => {
                tracing::warn!(path = ?self.path, error = %e, "metric file header is corrupt; starting it afresh");
                HEADER_SIZE
            }
        };
        let mut end = HEADER_SIZE;
        for entry in entries(data, HEADER_SIZE, used) {
            match entry {
                Ok(entry) => {
                    if let Ok(key) = std::str::from_utf8(entry.key) {
                        state.index.entry(key.into()).or_insert(entry.value_pos);
                    }
                    end = entry.end();
                }
                Err(e) => {
                    tracing::warn!(path = ?self.path, error = %e, "dropping corrupt tail of metric file");
                    break;
                }
            }
        }
        state.used = end;
        self.used_atomic().store(end as i32, Ordering::Release);
    }
}
