//! Writing one file: appending entries and handing out stable value pointers.
//!
//! The whole largest file size is reserved in the address space when the file
//! is opened, so growing the file never moves the mapping and a pointer handed
//! out stays valid as long as the writer lives. Space is reserved for real
//! with `posix_fallocate` (of the new range only) before the mapping past the
//! old end is touched, so a full disk or tmpfs is an error here instead of a
//! SIGBUS later.
//!
//! A writer is the file's only writer: it holds an exclusive `flock` on it
//! (on its open file description) until it is dropped or released, and a
//! second writer, in this process or another, gets [`StoreError::FileLocked`].

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use hashbrown::HashMap;
use memmap2::{MmapOptions, MmapRaw};

use crate::error::StoreError;
use crate::format::{
    padding, value_offset, HEADER_SIZE, INITIAL_FILE_SIZE, MAX_FILE_SIZE, VALUE_PAYLOAD,
};
use crate::lock;
use crate::procfs::{self, FileId};
use crate::reader::{entries_sized, read_used};

/// Address space reserved for an in-memory store (no directory configured).
const ANONYMOUS_RESERVE: usize = 64 << 20;

/// One file this process writes, with the index of its keys.
pub struct FileWriter {
    path: Option<PathBuf>,
    map: MmapRaw,
    /// Bytes of each entry's value area (16 but in exemplar files).
    payload: usize,
    state: Mutex<WriterState>,
}

/// A writer's lock held across `fork` ([`FileWriter::hold_for_fork`]);
/// dropping it unlocks.
pub(crate) struct ForkHold {
    state: MutexGuard<'static, WriterState>,
    map: *mut libc::c_void,
    len: usize,
}

impl ForkHold {
    /// In the child: lets go of the parent's file without touching its lock
    /// (which the parent keeps): closes the inherited descriptor and puts
    /// private anonymous memory in place of the inherited mapping (which
    /// would keep the parent's open file, and so its lock, alive for as long
    /// as the child lives). No cell uses that mapping in the child: the epoch
    /// moved, and the only thread (the one that forked) was not updating.
    pub(crate) fn close_inherited(mut self) {
        if self.state.file.take().is_some() {
            // SAFETY: replaces our own reservation with memory of the same
            // size; mmap is async-signal-safe. On failure the mapping stays.
            unsafe {
                libc::mmap(
                    self.map,
                    self.len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                    -1,
                    0,
                );
            }
        }
    }
}

struct WriterState {
    /// The locked file; `None` for an anonymous store and once released.
    file: Option<File>,
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

/// Takes the writer's exclusive lock on `file`, or names who holds it.
fn lock_file(file: &File, path: &Path) -> Result<(), StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    if procfs::try_lock(file, true).map_err(open_err)? {
        return Ok(());
    }
    let holder = file
        .metadata()
        .ok()
        .and_then(|m| procfs::flock_holder(FileId::of(&m)))
        .map_or_else(
            || "another writer".to_owned(),
            |pid| {
                if pid == std::process::id() {
                    format!("another store of this process ({})", procfs::describe(pid))
                } else {
                    procfs::describe(pid)
                }
            },
        );
    Err(StoreError::FileLocked {
        path: path.to_owned(),
        holder,
    })
}

/// Opens and locks `path` for writing without following symlinks, creating
/// it if missing. A new file is made aside under a dot-name (which scrapes
/// ignore), locked, given its initial space and header, and then linked into
/// place, so no scrape ever sees it empty, no other writer gets it first, and
/// a full disk leaves no file behind.
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
            Ok(file) => {
                if !file.metadata().map_err(open_err)?.file_type().is_file() {
                    return Err(StoreError::NotRegular(path.to_owned()));
                }
                lock_file(&file, path)?;
                return Ok(file);
            }
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
        lock_file(fresh.as_file(), path)?;
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
            // The temporary name goes when `fresh` drops; the handle (the
            // same open file description, so the same lock) stays.
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
    /// it (a file left by an earlier process of the same id), and locks it
    /// for as long as the writer lives: a file another writer holds is
    /// [`StoreError::FileLocked`].
    ///
    /// Symlinks are not followed. If the file's tail is corrupt, the valid
    /// entries before it are kept and the rest is overwritten by new entries.
    pub fn open(path: &Path) -> Result<FileWriter, StoreError> {
        FileWriter::open_sized(path, VALUE_PAYLOAD)
    }

    /// [`FileWriter::open`] for a file whose entries have a value area of
    /// `payload` bytes (a multiple of 8, at least 16).
    pub fn open_sized(path: &Path, payload: usize) -> Result<FileWriter, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let file = open_or_create(path)?;
        let size = file.metadata().map_err(open_err)?.len() as usize;
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
            map,
            payload,
            state: Mutex::new(WriterState {
                file: Some(file),
                capacity: size,
                used: HEADER_SIZE,
                index: HashMap::default(),
            }),
        };
        {
            let mut state = lock(&writer.state);
            if size < INITIAL_FILE_SIZE {
                writer.grow_to(&mut state, INITIAL_FILE_SIZE)?;
            }
            writer.adopt(&mut state);
        }
        Ok(writer)
    }

    /// A store in anonymous memory: values work but no other process sees them.
    pub fn anonymous() -> Result<FileWriter, StoreError> {
        FileWriter::anonymous_sized(VALUE_PAYLOAD)
    }

    /// [`FileWriter::anonymous`] with value areas of `payload` bytes.
    pub fn anonymous_sized(payload: usize) -> Result<FileWriter, StoreError> {
        let map = MmapOptions::new()
            .len(ANONYMOUS_RESERVE)
            .map_anon()
            .map_err(|source| StoreError::Open {
                path: PathBuf::from("<anonymous>"),
                source,
            })?;
        let writer = FileWriter {
            path: None,
            map: MmapRaw::from(map),
            payload,
            state: Mutex::new(WriterState {
                file: None,
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
        let mut state = lock(&self.state);
        if let Some(&pos) = state.index.get(key) {
            return Ok(self.at(pos));
        }
        if let (Some(path), None) = (&self.path, &state.file) {
            return Err(StoreError::Released(path.clone()));
        }
        let size = value_offset(key.len()) + self.payload;
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
            std::ptr::write_bytes(base.add(size - self.payload), 0, self.payload);
        }
        state.used = end;
        self.used_atomic().store(end as i32, Ordering::Release);
        let pos = end - self.payload;
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

    /// Reserves real space up to `size` bytes: only the range past the
    /// current capacity, never the live bytes before it (some file systems
    /// emulate fallocate by writing the range).
    fn grow_to(&self, state: &mut WriterState, size: usize) -> Result<(), StoreError> {
        let path = || self.path.clone().unwrap_or_default();
        let Some(file) = &state.file else {
            return Err(StoreError::Full(path()));
        };
        let start = state.capacity.min(size);
        nix::fcntl::posix_fallocate(file, start as libc::off_t, (size - start) as libc::off_t)
            .map_err(|e| StoreError::Grow {
                path: path(),
                size,
                source: std::io::Error::from(e),
            })?;
        state.capacity = size;
        Ok(())
    }

    /// Gives up the file: unlocks and closes it, so another writer may take
    /// it. The mapping stays, so value pointers handed out stay valid (and
    /// still address the file); new entries are refused.
    ///
    /// The lock belongs to the open file, which a forked child shares: a
    /// child must not release a writer it inherited (it would unlock the
    /// parent's file). Writers of a [`crate::Store`] are let go of in the
    /// child without unlocking.
    pub fn release(&self) {
        if let Some(file) = lock(&self.state).file.take() {
            // Explicitly: the mapping holds the open file, so closing the
            // descriptor alone would keep the lock.
            // SAFETY: flock(2) on a descriptor we own.
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_UN) };
        }
    }

    /// Takes this writer's lock until the returned hold is dropped: the
    /// store's `fork` prepare handler holds it across `fork`, so a child
    /// never inherits it taken by a thread that does not exist there.
    ///
    /// # Safety
    /// The writer must outlive the hold.
    pub(crate) unsafe fn hold_for_fork(&self) -> ForkHold {
        let guard = lock(&self.state);
        ForkHold {
            // SAFETY: the caller keeps the writer alive while the hold lives.
            state: unsafe {
                std::mem::transmute::<MutexGuard<'_, _>, MutexGuard<'static, _>>(guard)
            },
            map: self.map.as_mut_ptr().cast(),
            len: self.map.len(),
        }
    }

    /// Indexes the entries an earlier process left; drops a corrupt tail and
    /// clears the busy mark of a pair whose writer died midway (see `pair`).
    fn adopt(&self, state: &mut WriterState) {
        // SAFETY: `capacity` bytes are backed by the file; no one else
        // writes this file (we hold its lock).
        let data = unsafe { std::slice::from_raw_parts(self.map.as_ptr(), state.capacity) };
        let used = match read_used(data) {
            Ok(used) => used,
            Err(e) => {
                tracing::warn!(path = ?self.path, error = %e, "metric file header is corrupt; starting it afresh");
                HEADER_SIZE
            }
        };
        let mut end = HEADER_SIZE;
        for entry in entries_sized(data, HEADER_SIZE, used, self.payload) {
            match entry {
                Ok(entry) => {
                    if let Ok(key) = std::str::from_utf8(entry.key) {
                        state.index.entry(key.into()).or_insert(entry.value_pos);
                    }
                    // SAFETY: an entry's value area (`payload` bytes) lies
                    // within `used`.
                    if self.payload == VALUE_PAYLOAD {
                        crate::pair::clear_stale_busy(unsafe {
                            &*(self.at(entry.value_pos) as *const [AtomicU64; 2])
                        });
                    } else if self.payload == crate::format::EXEMPLAR_PAYLOAD {
                        crate::exemplar::clear_stale_busy(unsafe {
                            &*(self.at(entry.value_pos)
                                as *const [AtomicU64; crate::exemplar::WORDS])
                        });
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
