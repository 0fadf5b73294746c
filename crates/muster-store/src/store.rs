//! Where values go: a [`Store`] is a directory plus a process id and the
//! files this process writes there. Every metric belongs to one store; those
//! created without one use the process default ([`Store::global`], which
//! [`configure`] and [`set_process_id`] set up).
//!
//! Soundness: a [`crate::ValueCell`] caches a raw address into a store's
//! mapping. A store never unmaps a file while it lives: a file it stops
//! writing (after `configure` or `set_process_id`) is *retired*: unlocked and
//! closed, so the next writer can take it, but its mapping is kept until the
//! store itself is dropped, and a cell keeps its store alive. The default
//! store lives as long as the process. So a thread that still holds an old
//! address writes into mapped memory (still the old file), never into a hole.
//! A retired file costs 1 GiB of address space (not memory: only pages the
//! file already used stay resident, and they are the page cache's) plus its
//! key index in the heap, per reconfiguration and file kind in use.
//!
//! Fork safety: every store registers itself, and a `pthread_atfork` prepare
//! handler takes the registry's, every store's and every current file's lock
//! before `fork`; both sides release them after. So a child of a
//! multi-threaded parent never inherits a lock held by a thread it does not
//! have. In the child the parent's files are let go of without unlocking them
//! (the parent keeps its locks; see `writer::ForkHold`) and the epoch moves,
//! so cells resolve again into files of the child's own id.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};

use hashbrown::HashMap;

use crate::epoch;
use crate::error::StoreError;
use crate::format::FileKind;
use crate::lock;
use crate::writer::FileWriter;

/// Values that could not be given a place in a file, over all stores.
static WRITE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// A handle on where this process's metric values go: a directory and a
/// process id (files `<type>_<id>.db`). Cheap to clone; clones are the same
/// store.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use muster_store::{encode_key, FileKind, Store, ValueCell};
/// let store = Store::new(dir.path());
/// store.set_process_id("w0").unwrap();
/// let cell = ValueCell::new_in(&store, FileKind::Counter, encode_key("a", "a_total", &[], ""));
/// cell.add(1.0);
/// assert!(dir.path().join("counter_w0.db").exists());
/// ```
#[derive(Clone)]
pub struct Store(Arc<Shared>);

struct Shared {
    state: Mutex<State>,
    write_errors: AtomicU64,
}

/// Where the directory comes from.
enum DirSource {
    /// `PROMETHEUS_MULTIPROC_DIR` (or its lowercase form), read when files open.
    Env,
    /// Given to [`Store::new`] or [`Store::configure`].
    Path(PathBuf),
}

struct State {
    source: DirSource,
    /// An id set by [`Store::set_process_id`], with the pid of the process that set it.
    id: Option<(u32, String)>,
    /// The files of the current configuration in the current process.
    files: Option<Files>,
    /// Files no longer written, kept mapped while the store lives.
    retired: Vec<FileWriter>,
    /// Values kept in memory after a write error, for the same reason; boxed
    /// because their addresses are handed out and must not move.
    in_memory: Vec<Box<[AtomicU64]>>,
}

/// The files one process writes under one configuration.
struct Files {
    pid: u32,
    dir: Option<PathBuf>,
    id: String,
    writers: HashMap<FileKind, FileWriter>,
}

impl State {
    /// Closes the current files (their mappings stay, see the module docs).
    fn retire(&mut self) {
        if let Some(files) = self.files.take() {
            for (_, writer) in files.writers {
                writer.release();
                self.retired.push(writer);
            }
        }
    }

    fn writer(&mut self, kind: FileKind) -> Result<&FileWriter, StoreError> {
        let pid = std::process::id();
        if self.files.as_ref().is_some_and(|f| f.pid != pid) {
            // Inherited across fork: the child writes files of its own.
            self.retire();
        }
        let files = match &mut self.files {
            Some(files) => files,
            none => {
                let dir = source_dir(&self.source);
                if dir.is_none() {
                    warn_no_dir();
                }
                none.insert(Files {
                    pid,
                    dir,
                    id: id_of(&self.id, pid),
                    writers: HashMap::new(),
                })
            }
        };
        match files.writers.entry(kind) {
            hashbrown::hash_map::Entry::Occupied(e) => Ok(e.into_mut()),
            hashbrown::hash_map::Entry::Vacant(e) => {
                let payload = kind.payload_size();
                let writer = match &files.dir {
                    Some(dir) => {
                        FileWriter::open_sized(&dir.join(kind.file_name(&files.id)), payload)?
                    }
                    None => FileWriter::anonymous_sized(payload)?,
                };
                Ok(e.insert(writer))
            }
        }
    }
}

fn source_dir(source: &DirSource) -> Option<PathBuf> {
    match source {
        DirSource::Path(p) => Some(p.clone()),
        DirSource::Env => env_dir(),
    }
}

/// The id of process `pid`: the one it set, else its pid.
fn id_of(id: &Option<(u32, String)>, pid: u32) -> String {
    match id {
        Some((owner, id)) if *owner == pid => id.clone(),
        _ => pid.to_string(),
    }
}

fn warn_no_dir() {
    static WARNED: Once = Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "PROMETHEUS_MULTIPROC_DIR is not set and no directory was configured: \
             metric values stay in this process's memory and no scrape will see them"
        );
    });
}

fn env_dir() -> Option<PathBuf> {
    ["PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"]
        .iter()
        .find_map(|var| std::env::var_os(var).filter(|v| !v.is_empty()))
        .map(PathBuf::from)
}

impl Store {
    /// A store writing into `dir` (which should be prepared, see
    /// [`crate::prepare_dir`]), with this process's pid as its id.
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store::with_source(DirSource::Path(dir.into()))
    }

    /// The process default: what metrics created without a store use. Its
    /// directory is `PROMETHEUS_MULTIPROC_DIR` unless [`configure`]d; with
    /// neither, values stay in anonymous memory (with one warning).
    pub fn global() -> &'static Store {
        static GLOBAL: OnceLock<Store> = OnceLock::new();
        GLOBAL.get_or_init(|| Store::with_source(DirSource::Env))
    }

    fn with_source(source: DirSource) -> Store {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                source,
                id: None,
                files: None,
                retired: Vec::new(),
                in_memory: Vec::new(),
            }),
            write_errors: AtomicU64::new(0),
        });
        fork::register(&shared);
        Store(shared)
    }

    /// Writes into `dir` from now on. Cells resolve again, once, into the
    /// new files; the old ones are unlocked and closed, and stay mapped (see
    /// the module docs).
    pub fn configure(&self, dir: impl Into<PathBuf>) {
        self.reconfigure(|state| state.source = DirSource::Path(dir.into()));
    }

    /// Names this process's files `<type>_<id>.db` instead of
    /// `<type>_<pid>.db`, from now on.
    ///
    /// Applies to this process only (a forked child goes back to its pid, or
    /// sets an id of its own).
    pub fn set_process_id(&self, id: &str) -> Result<(), StoreError> {
        let valid = !id.is_empty()
            && id.len() <= 64
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid {
            return Err(StoreError::BadId(id.to_owned()));
        }
        let pid = std::process::id();
        self.reconfigure(|state| state.id = Some((pid, id.to_owned())));
        Ok(())
    }

    fn reconfigure(&self, change: impl FnOnce(&mut State)) {
        let mut state = lock(&self.0.state);
        change(&mut state);
        state.retire();
        drop(state);
        // After the change: a cell that resolves under the new tag sees it.
        epoch::advance();
    }

    /// The directory values go to, if any.
    pub fn dir(&self) -> Option<PathBuf> {
        source_dir(&lock(&self.0.state).source)
    }

    /// How many values of this store could not be given a place in a file
    /// (full disk, a file held by another writer, ...); they are kept in
    /// process memory only.
    pub fn write_errors(&self) -> u64 {
        self.0.write_errors.load(Ordering::Relaxed)
    }

    /// The address of `key`'s value in this process's file of `kind`,
    /// appending the entry if it is new. Never fails: on an error the value
    /// gets a place in memory (counted in [`Store::write_errors`], logged).
    /// The value and the timestamp after it (the whole value area of the
    /// kind's entries) live as long as the store.
    pub(crate) fn value_ptr(&self, kind: FileKind, key: &str) -> *const AtomicU64 {
        let mut state = lock(&self.0.state);
        match state.writer(kind).and_then(|w| w.value_ptr(key)) {
            Ok(ptr) => ptr,
            Err(e) => {
                self.0.write_errors.fetch_add(1, Ordering::Relaxed);
                WRITE_ERRORS.fetch_add(1, Ordering::Relaxed);
                log_write_error(&e);
                let words: Box<[AtomicU64]> = (0..kind.payload_size() / 8)
                    .map(|_| AtomicU64::new(0))
                    .collect();
                let ptr = words.as_ptr();
                state.in_memory.push(words);
                ptr
            }
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir()).finish()
    }
}

fn log_write_error(e: &StoreError) {
    static LOGGED: AtomicU64 = AtomicU64::new(0);
    // Log the first few, then stay quiet: the count is in `write_errors`.
    if LOGGED.fetch_add(1, Ordering::Relaxed) < 5 {
        tracing::error!(error = %e, "metric value kept in memory only: cannot write it to its file");
    }
}

/// Sets the default store's directory (see [`Store::configure`]). Without a
/// call, `PROMETHEUS_MULTIPROC_DIR` is used.
pub fn configure(dir: impl Into<PathBuf>) {
    Store::global().configure(dir);
}

/// Sets the default store's process id (see [`Store::set_process_id`]).
/// Call it before the process starts threads that update metrics.
pub fn set_process_id(id: &str) -> Result<(), StoreError> {
    Store::global().set_process_id(id)
}

/// The default store's directory, if any is configured.
pub fn configured_dir() -> Option<PathBuf> {
    Store::global().dir()
}

/// How many values of all stores of this process could not be given a place
/// in a file. Such values are kept in process memory only.
pub fn write_errors() -> u64 {
    WRITE_ERRORS.load(Ordering::Relaxed)
}

/// The registry of stores and the `pthread_atfork` handlers over it.
///
/// The locks are std's (futex words): unlocking one in the child, where the
/// threads that waited for it do not exist, just clears it. (A lock that
/// queues its waiters, like parking_lot's, would hand itself to a waiter the
/// child does not have.)
mod fork {
    use std::cell::RefCell;
    use std::sync::{Arc, Mutex, MutexGuard, Once};

    use super::{Shared, State};
    use crate::epoch;
    use crate::lock;
    use crate::writer::ForkHold;

    /// A registered store; removed by the store's `Drop` before it is freed.
    struct Registered(*const Shared);

    // SAFETY: only dereferenced under `REGISTRY`'s lock (or by the forking
    // thread that holds it), while the store cannot finish dropping.
    unsafe impl Send for Registered {}

    static REGISTRY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

    /// Every lock taken by `prepare`, held by the forking thread until the
    /// parent or child handler.
    struct Held {
        stores: Vec<(MutexGuard<'static, State>, Vec<ForkHold>)>,
        _registry: MutexGuard<'static, Vec<Registered>>,
    }

    thread_local! {
        static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
    }

    pub(super) fn register(shared: &Arc<Shared>) {
        static HANDLERS: Once = Once::new();
        HANDLERS.call_once(|| {
            // SAFETY: the handlers below only lock and unlock, close
            // descriptors (child) and do atomics (child).
            unsafe {
                libc::pthread_atfork(Some(prepare), Some(parent), Some(child));
            }
        });
        lock(&REGISTRY).push(Registered(Arc::as_ptr(shared)));
    }

    impl Drop for Shared {
        fn drop(&mut self) {
            let me: *const Shared = self;
            lock(&REGISTRY).retain(|r| r.0 != me);
        }
    }

    /// Lock order everywhere: registry, then a store, then its files.
    extern "C" fn prepare() {
        let registry = lock(&REGISTRY);
        let stores = registry
            .iter()
            .map(|r| {
                // SAFETY: a registered store cannot be freed while the
                // registry is locked (its `Drop` waits for the lock), and the
                // registry stays locked until `parent` or `child`.
                let shared: &'static Shared = unsafe { &*r.0 };
                let state = lock(&shared.state);
                let holds = state
                    .files
                    .iter()
                    .flat_map(|f| f.writers.values())
                    // SAFETY: the writers belong to `state`, locked as long
                    // as the holds live.
                    .map(|w| unsafe { w.hold_for_fork() })
                    .collect();
                (state, holds)
            })
            .collect();
        HELD.with(|h| {
            *h.borrow_mut() = Some(Held {
                stores,
                _registry: registry,
            })
        });
    }

    /// Releases what `prepare` took (in the child, after closing the
    /// inherited descriptors of the files).
    fn release(in_child: bool) {
        let Some(held) = HELD.with(|h| h.borrow_mut().take()) else {
            return;
        };
        for (state, holds) in held.stores {
            for hold in holds {
                if in_child {
                    hold.close_inherited();
                }
            }
            drop(state);
        }
    }

    extern "C" fn parent() {
        release(false);
    }

    extern "C" fn child() {
        release(true);
        epoch::advance();
    }
}
