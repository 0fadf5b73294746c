//! Writing multiprocess files for the collector's tests, with muster's own
//! writer (`muster_store::writer::FileWriter`), as a worker process would.

#![allow(dead_code)] // each test file uses a different part

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use muster_store::writer::FileWriter;

/// Sets the value (and, if given, the timestamp) of `key` in the file named
/// `file` in `dir`, creating the file or the entry if needed.
pub fn write(dir: &Path, file: &str, key: &str, value: f64, timestamp: Option<f64>) {
    update(dir, file, key, |_| value, timestamp);
}

/// Replaces the value of `key` in `dir/file` by `f(old value)`.
pub fn update(dir: &Path, file: &str, key: &str, f: impl Fn(f64) -> f64, timestamp: Option<f64>) {
    let writer = FileWriter::open(&dir.join(file)).expect("open the file for writing");
    let ptr = writer.value_ptr(key).expect("an entry for the key");
    // SAFETY: the value and timestamp words of an entry of `writer`, which
    // lives until the end of this function.
    let (value, ts): (&AtomicU64, &AtomicU64) = unsafe { (&*ptr, &*ptr.add(1)) };
    let old = f64::from_bits(value.load(Ordering::Relaxed));
    value.store(f(old).to_bits(), Ordering::Release);
    if let Some(t) = timestamp {
        ts.store(t.to_bits(), Ordering::Release);
    }
}

/// The bytes of a file holding `entries` (key, value), laid out as Python
/// lays them out, for tests that need a file no writer would make.
pub fn file_bytes(entries: &[(&[u8], f64)]) -> Vec<u8> {
    let mut data = vec![0u8; muster_store::format::HEADER_SIZE];
    for (key, value) in entries {
        data.extend_from_slice(&(key.len() as i32).to_ne_bytes());
        data.extend_from_slice(key);
        data.extend(std::iter::repeat_n(
            b' ',
            muster_store::format::padding(key.len()),
        ));
        data.extend_from_slice(&value.to_ne_bytes());
        data.extend_from_slice(&0f64.to_ne_bytes());
    }
    let used = data.len() as i32;
    data[..4].copy_from_slice(&used.to_ne_bytes());
    data
}
