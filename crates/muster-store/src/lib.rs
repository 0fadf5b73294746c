//! The multiprocess metric files of muster, in the format Python's
//! `prometheus_client` uses, so Rust and Python processes can share a
//! directory.
//!
//! - [`format`]: the layout (header, entries, file names, gauge modes).
//! - [`key`]: entry keys, byte-identical to Python's `mmap_key`.
//! - [`reader`]: a validating parser and a live mapped view for scrapes.
//! - [`writer`]: appending entries with stable, lock-free value slots; one
//!   writer per file (an advisory lock).
//! - [`Store`]: a directory and a process id, with a process default;
//!   [`ValueCell`]: what metric handles hold, resolving into the current
//!   process's file of its store, also after `fork`.
//! - [`exemplar`]: exemplar slots (a seqlock per series and process) in
//!   muster's own `exemplar_<id>.muster` files, which Python never reads.
//! - [`prepare_dir`]: creating, checking and taking over the directory at
//!   startup (one owner per directory).
//! - [`shrunk`]: surviving a mapped file that another program shrinks while
//!   it is read.

mod cell;
pub mod dir;
mod epoch;
pub mod error;
pub mod exemplar;
pub mod format;
pub mod key;
mod pair;
mod procfs;
pub mod reader;
pub mod shrunk;
mod store;
pub mod writer;

pub use cell::ValueCell;
pub use dir::{check_dir, prepare_dir, remove_live_gauge_files, DirLock, LOCK_FILE};
pub use error::StoreError;
pub use exemplar::{encode_labels, ExemplarCell, ExemplarError, StoredExemplar};
pub use format::{float_to_go_string, write_go_float, FileKind, FileName, GaugeMode};
pub use key::{encode_key, Key};
pub use store::{configure, configured_dir, set_process_id, write_errors, Store};

/// Locks `mutex`, also after a panic elsewhere poisoned it: every state the
/// store guards is consistent between statements.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
