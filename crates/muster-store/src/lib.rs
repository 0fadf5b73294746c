//! The multiprocess metric files of muster, in the format Python's
//! `prometheus_client` uses, so Rust and Python processes can share a
//! directory.
//!
//! - [`format`]: the layout (header, entries, file names, gauge modes).
//! - [`key`]: entry keys, byte-identical to Python's `mmap_key`.
//! - [`reader`]: a validating parser and a live mapped view for scrapes.
//! - [`writer`]: appending entries with stable, lock-free value slots.
//! - [`ValueCell`]: what metric handles hold; resolves into the current
//!   process's file, also after `fork`.
//! - [`prepare_dir`]: creating and checking the directory at startup.

pub mod dir;
pub mod error;
pub mod format;
pub mod key;
pub mod process;
pub mod reader;
pub mod writer;

pub use dir::prepare_dir;
pub use error::StoreError;
pub use format::{float_to_go_string, write_go_float, FileKind, FileName, GaugeMode};
pub use key::{encode_key, Key};
pub use process::{
    configure, configured_dir, remove_live_gauge_files, set_process_id, write_errors, ValueCell,
};
