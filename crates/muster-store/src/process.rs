//! The current process's files, and value cells that find them without a
//! system call on the hot path.
//!
//! A [`ValueCell`] caches a pointer to its value together with the store
//! *epoch* it was resolved in. The epoch changes in the child after every
//! `fork` (a `pthread_atfork` handler) and whenever the directory or the
//! process id is reconfigured, so a metric created before `fork` resolves
//! again, once, into the child's own file. Checking the epoch is one relaxed
//! load and a compare.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};

use hashbrown::HashMap;
use parking_lot::Mutex;

use crate::error::StoreError;
use crate::format::FileKind;
use crate::writer::FileWriter;

/// Low 48 bits of a packed cell: the value's address.
const ADDR_MASK: u64 = (1 << 48) - 1;

static EPOCH: AtomicU64 = AtomicU64::new(1);
static WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);
static ATFORK: Once = Once::new();
static CONFIG: Mutex<Config> = Mutex::new(Config {
    dir: None,
    id: None,
});
static CURRENT: Mutex<Option<Arc<ProcessStore>>> = Mutex::new(None);

struct Config {
    /// Set by [`configure`]; when `None`, `PROMETHEUS_MULTIPROC_DIR` is used.
    dir: Option<PathBuf>,
    /// An id set by [`set_process_id`], with the pid of the process that set it.
    id: Option<(u32, String)>,
}

extern "C" fn after_fork_in_child() {
    bump_epoch();
}

fn bump_epoch() {
    // The tag kept in cells is the low 16 bits; 0 means "never resolved".
    let next = EPOCH.fetch_add(1, Ordering::AcqRel) + 1;
    if next & 0xFFFF == 0 {
        EPOCH.fetch_add(1, Ordering::AcqRel);
    }
}

fn ensure_atfork() {
    ATFORK.call_once(|| {
        // SAFETY: registering a handler that only does an atomic increment,
        // which is async-signal-safe as fork's child handler must be.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

/// Sets the multiprocess directory for this process and the processes it
/// forks later. Without a call, `PROMETHEUS_MULTIPROC_DIR` is used.
pub fn configure(dir: impl Into<PathBuf>) {
    ensure_atfork();
    CONFIG.lock().dir = Some(dir.into());
    bump_epoch();
}

/// Names this process's files `<type>_<id>.db` instead of `<type>_<pid>.db`.
///
/// Applies to this process only (a forked child goes back to its pid). Call
/// it before the process starts threads that update metrics: cells resolve
/// again into the files of the new id.
pub fn set_process_id(id: &str) -> Result<(), StoreError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !valid {
        return Err(StoreError::BadId(id.to_owned()));
    }
    ensure_atfork();
    CONFIG.lock().id = Some((std::process::id(), id.to_owned()));
    bump_epoch();
    Ok(())
}

/// The directory metric files go to, if any is configured.
pub fn configured_dir() -> Option<PathBuf> {
    CONFIG.lock().dir.clone().or_else(env_dir)
}

fn env_dir() -> Option<PathBuf> {
    ["PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"]
        .iter()
        .find_map(|var| std::env::var_os(var).filter(|v| !v.is_empty()))
        .map(PathBuf::from)
}

/// How many times a value could not be given a place in a file (full disk,
/// unwritable directory, ...). Such values are kept in process memory only.
pub fn write_errors() -> u64 {
    WRITE_ERRORS.load(Ordering::Relaxed)
}

/// The files of one process (one epoch).
struct ProcessStore {
    epoch: u64,
    dir: Option<PathBuf>,
    id: String,
    files: Mutex<HashMap<FileKind, Arc<FileWriter>>>,
}

impl ProcessStore {
    fn writer(&self, kind: FileKind) -> Result<Arc<FileWriter>, StoreError> {
        let mut files = self.files.lock();
        if let Some(w) = files.get(&kind) {
            return Ok(w.clone());
        }
        let writer = Arc::new(match &self.dir {
            Some(dir) => FileWriter::open(&dir.join(kind.file_name(&self.id)))?,
            None => FileWriter::anonymous()?,
        });
        files.insert(kind, writer.clone());
        Ok(writer)
    }
}

fn current_store() -> Arc<ProcessStore> {
    ensure_atfork();
    let epoch = EPOCH.load(Ordering::Acquire);
    let mut current = CURRENT.lock();
    if let Some(store) = current.as_ref().filter(|s| s.epoch == epoch) {
        return store.clone();
    }
    let (dir, id) = {
        let config = CONFIG.lock();
        let pid = std::process::id();
        let id = match &config.id {
            Some((owner, id)) if *owner == pid => id.clone(),
            _ => pid.to_string(),
        };
        (config.dir.clone().or_else(env_dir), id)
    };
    if dir.is_none() {
        static WARNED: Once = Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "PROMETHEUS_MULTIPROC_DIR is not set and no directory was configured: \
                 metric values stay in this process's memory and no scrape will see them"
            );
        });
    }
    let store = Arc::new(ProcessStore {
        epoch,
        dir,
        id,
        files: Mutex::new(HashMap::new()),
    });
    *current = Some(store.clone());
    store
}

/// Where a value lives: a file kind and the key of its entry.
///
/// Updates are lock-free atomics on the mapped file. The first update in a
/// process (or after `fork`) finds or appends the entry; later ones reuse the
/// cached pointer.
pub struct ValueCell {
    packed: AtomicU64,
    kind: FileKind,
    key: Box<str>,
}

impl ValueCell {
    /// A cell for `key` (see [`crate::encode_key`]) in the file of `kind`.
    pub fn new(kind: FileKind, key: String) -> ValueCell {
        ValueCell {
            packed: AtomicU64::new(0),
            kind,
            key: key.into_boxed_str(),
        }
    }

    /// The entry's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The kind of file the value is written to.
    pub fn kind(&self) -> FileKind {
        self.kind
    }

    #[inline(always)]
    fn slot(&self) -> &AtomicU64 {
        let packed = self.packed.load(Ordering::Acquire);
        let tag = EPOCH.load(Ordering::Relaxed) & 0xFFFF;
        if packed >> 48 == tag {
            // SAFETY: the address was stored by `resolve` for this epoch and
            // points into a mapping that lives as long as the process.
            unsafe { &*((packed & ADDR_MASK) as *const AtomicU64) }
        } else {
            self.resolve()
        }
    }

    #[cold]
    #[inline(never)]
    fn resolve(&self) -> &AtomicU64 {
        let store = current_store();
        let ptr = match store.writer(self.kind).and_then(|w| w.value_ptr(&self.key)) {
            Ok(ptr) => ptr,
            Err(e) => {
                WRITE_ERRORS.fetch_add(1, Ordering::Relaxed);
                log_write_error(&e);
                // Keep counting in process memory so updates are not lost
                // for `get`, and so the hot path stays free of retries.
                let fallback: &'static [AtomicU64; 2] =
                    Box::leak(Box::new([AtomicU64::new(0), AtomicU64::new(0)]));
                fallback.as_ptr()
            }
        };
        let addr = ptr as u64;
        if addr & !ADDR_MASK == 0 {
            let tag = store.epoch & 0xFFFF;
            self.packed.store(tag << 48 | addr, Ordering::Release);
        }
        // SAFETY: a live pointer into a mapping (or leaked memory) that is
        // never unmapped while the process runs.
        unsafe { &*ptr }
    }

    /// The timestamp that follows `value` in every entry (and in the
    /// in-memory fallback pair).
    #[inline(always)]
    fn timestamp_of(value: &AtomicU64) -> &AtomicU64 {
        // SAFETY: every value slot is followed by its 8-byte timestamp.
        unsafe { &*(value as *const AtomicU64).add(1) }
    }

    /// Makes sure the entry exists, so the series shows 0 before any update.
    pub fn touch(&self) {
        self.slot();
    }

    /// Adds `delta` to the f64 in `slot` (compare-and-swap on its bits).
    #[inline(always)]
    fn add_to(slot: &AtomicU64, delta: f64) {
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + delta).to_bits();
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Adds `delta` to the value (compare-and-swap on the f64 bits).
    #[inline]
    pub fn add(&self, delta: f64) {
        Self::add_to(self.slot(), delta);
    }

    /// Adds `delta` to the value and sets its timestamp (seconds since the
    /// epoch). The addition is atomic like [`ValueCell::add`], so concurrent
    /// adds are all kept.
    pub fn add_with_timestamp(&self, delta: f64, timestamp: f64) {
        // One resolution for both halves of the entry.
        let slot = self.slot();
        Self::timestamp_of(slot).store(timestamp.to_bits(), Ordering::Relaxed);
        Self::add_to(slot, delta);
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, value: f64) {
        self.slot().store(value.to_bits(), Ordering::Relaxed);
    }

    /// Sets the value and its timestamp (seconds since the epoch).
    pub fn set_with_timestamp(&self, value: f64, timestamp: f64) {
        // One resolution for both halves of the entry.
        let slot = self.slot();
        Self::timestamp_of(slot).store(timestamp.to_bits(), Ordering::Relaxed);
        slot.store(value.to_bits(), Ordering::Relaxed);
    }

    /// The value as this process last wrote it.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.slot().load(Ordering::Relaxed))
    }

    /// The timestamp as this process last wrote it.
    pub fn timestamp(&self) -> f64 {
        f64::from_bits(Self::timestamp_of(self.slot()).load(Ordering::Relaxed))
    }
}

impl std::fmt::Debug for ValueCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueCell")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .finish()
    }
}

fn log_write_error(e: &StoreError) {
    static LOGGED: AtomicU64 = AtomicU64::new(0);
    // Log the first few, then stay quiet: the count is in `write_errors`.
    if LOGGED.fetch_add(1, Ordering::Relaxed) < 5 {
        tracing::error!(error = %e, "metric value kept in memory only: cannot write it to its file");
    }
}

/// Removes the live-gauge files of process `id` (what Python's
/// `mark_process_dead` does): its `live*` gauge values vanish from scrapes.
pub fn remove_live_gauge_files(dir: &Path, id: &str) -> std::io::Result<()> {
    for mode in crate::format::GaugeMode::ALL
        .into_iter()
        .filter(|m| m.is_live())
    {
        match std::fs::remove_file(dir.join(FileKind::Gauge(mode).file_name(id))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}
