//! Value cells: what metric handles hold; they find their value in the
//! current process's file without a system call on the hot path.
//!
//! A [`ValueCell`] caches a pointer to its value together with the epoch tag
//! it was resolved under (see `epoch`). The tag changes in the child after
//! every `fork` and whenever a store is reconfigured, so a metric created
//! before `fork` resolves again, once, into the child's own file. Checking the
//! tag is one load of the cell and one of the current tag, and a compare.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::epoch;
use crate::format::FileKind;
use crate::pair;
use crate::store::Store;

/// Low 48 bits of a packed cell: the value's address.
const ADDR_MASK: u64 = (1 << 48) - 1;

/// Where a value lives: a store, a file kind and the key of its entry.
///
/// Updates are lock-free atomics on the mapped file. The first update in a
/// process (or after `fork`, or after the store is reconfigured) finds or
/// appends the entry; later ones reuse the cached pointer.
pub struct ValueCell {
    /// Epoch tag (high 16 bits) and value address (low 48); 0 = unresolved.
    packed: AtomicU64,
    store: Store,
    kind: FileKind,
    key: Box<str>,
}

impl ValueCell {
    /// A cell for `key` (see [`crate::encode_key`]) in the file of `kind` of
    /// the default store.
    pub fn new(kind: FileKind, key: String) -> ValueCell {
        ValueCell::new_in(Store::global(), kind, key)
    }

    /// A cell for `key` in the file of `kind` of `store`.
    pub fn new_in(store: &Store, kind: FileKind, key: String) -> ValueCell {
        ValueCell {
            packed: AtomicU64::new(0),
            store: store.clone(),
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

    /// The store the value is written to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    #[inline(always)]
    fn slot(&self) -> &AtomicU64 {
        let packed = self.packed.load(Ordering::Acquire);
        if packed >> 48 == epoch::current() {
            // SAFETY: the address was stored by `resolve` under this tag,
            // which no other resolution can have used (tags are not reused
            // while held), and points into memory the store keeps while it
            // lives; `self.store` keeps it alive.
            unsafe { &*((packed & ADDR_MASK) as *const AtomicU64) }
        } else {
            self.resolve()
        }
    }

    #[cold]
    #[inline(never)]
    fn resolve(&self) -> &AtomicU64 {
        // Hold the tag before resolving: whatever happens after, this
        // resolution is never cached under a tag that became current later.
        let tag = epoch::current();
        let held = epoch::hold(tag);
        let ptr = self.store.value_ptr(self.kind, &self.key);
        let addr = ptr as u64;
        if held && addr & !ADDR_MASK == 0 {
            let old = self.packed.swap(tag << 48 | addr, Ordering::AcqRel);
            epoch::release(old >> 48);
        } else if held {
            epoch::release(tag);
        }
        // SAFETY: the value and its timestamp live as long as the store,
        // which `self.store` keeps alive.
        unsafe { &*ptr }
    }

    /// The value and the timestamp after it (every entry, and the in-memory
    /// fallback, has both).
    #[inline(always)]
    fn pair(&self) -> &[AtomicU64; 2] {
        // SAFETY: every value slot is followed by its 8-byte timestamp, and
        // `[AtomicU64; 2]` has the alignment of `AtomicU64`.
        unsafe { &*(self.slot() as *const AtomicU64 as *const [AtomicU64; 2]) }
    }

    /// The start of the entry's value area (the value, then the timestamp;
    /// an exemplar slot in exemplar files), resolved like every update.
    #[inline]
    pub(crate) fn words_ptr(&self) -> *const AtomicU64 {
        self.slot()
    }

    /// Makes sure the entry exists, so the series shows 0 before any update.
    pub fn touch(&self) {
        self.slot();
    }

    /// Adds `delta` to the value (compare-and-swap on the f64 bits).
    #[inline]
    pub fn add(&self, delta: f64) {
        let slot = self.slot();
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(current) + delta).to_bits();
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => current = actual,
            }
        }
    }

    /// Sets the value.
    #[inline]
    pub fn set(&self, value: f64) {
        self.slot().store(value.to_bits(), Ordering::Relaxed);
    }

    /// Adds `delta` to the value and sets its timestamp (seconds since the
    /// epoch), as one pair for readers (see [`ValueCell::timestamp`]).
    /// Concurrent `*_with_timestamp` calls take turns, so every add is kept;
    /// a cell whose timestamp matters should be updated only through them.
    pub fn add_with_timestamp(&self, delta: f64, timestamp: f64) {
        pair::update(self.pair(), |v| v + delta, timestamp);
    }

    /// Sets the value and its timestamp (seconds since the epoch), as one
    /// pair for readers.
    pub fn set_with_timestamp(&self, value: f64, timestamp: f64) {
        pair::update(self.pair(), |_| value, timestamp);
    }

    /// The value as this process last wrote it.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.slot().load(Ordering::Relaxed))
    }

    /// The timestamp as this process last wrote it.
    pub fn timestamp(&self) -> f64 {
        // A busy pair's writer is a thread of this process, so alive.
        pair::load(self.pair(), || true).1
    }
}

impl Drop for ValueCell {
    fn drop(&mut self) {
        epoch::release(*self.packed.get_mut() >> 48);
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
