//! Reading the entries files appended since the last scrape: the part of a
//! scrape that touches every byte of every new entry, done by several threads
//! when there is much of it (a first scrape of a big directory).
//!
//! Each thread takes a run of files (in sorted order) and, for every new
//! entry, finds which of the distinct keys it has seen the entry's key is
//! (most entries have the key that followed the previous entry's key last
//! time, so they cost one comparison and no hash), and loads the entry's
//! value and timestamp while the entry is in its cache. The merge then
//! works on key numbers and loaded values alone, in one thread, in file
//! order, and parses the JSON of the keys it did not know (see
//! [`crate::merge`]).

use std::hash::BuildHasher;

use hashbrown::HashTable;
use muster_store::reader::{entries, MappedFile, ReadError};

/// Bytes of new entries from which a second thread helps, and each thread's
/// least share.
const BYTES_PER_THREAD: usize = 2 << 20;
/// Most threads a scan uses.
const MAX_THREADS: usize = 4;

/// A new entry: where its value is, the scan's number of its key, and the
/// value and timestamp as loaded.
pub(crate) struct Scanned {
    pub(crate) value_pos: u32,
    pub(crate) key: u32,
    pub(crate) value: f64,
    pub(crate) timestamp: f64,
}

/// What a scan found in one file.
pub(crate) struct FileScan {
    /// The entries, in file order.
    pub(crate) entries: Vec<Scanned>,
    /// Where parsing stopped: after the last entry read.
    pub(crate) end: usize,
    /// What stopped it before `used`, if anything.
    pub(crate) problem: Option<ReadError>,
}

/// The distinct keys one thread met, numbered in the order it met them.
pub(crate) struct Keys<'a> {
    table: HashTable<u32>,
    // Each thread's table is private: any fixed hash will do.
    hasher: foldhash::fast::FixedState,
    pub(crate) raw: Vec<&'a [u8]>,
    /// The key that followed each key last.
    next: Vec<u32>,
}

impl<'a> Keys<'a> {
    pub(crate) fn new() -> Keys<'a> {
        Keys {
            table: HashTable::new(),
            hasher: foldhash::fast::FixedState::default(),
            raw: Vec::new(),
            next: Vec::new(),
        }
    }

    /// The number of `raw`, which probably is the one after `prev`.
    fn intern(&mut self, raw: &'a [u8], prev: u32) -> u32 {
        if let Some(&hint) = self.next.get(prev as usize) {
            if self.raw.get(hint as usize).is_some_and(|k| **k == *raw) {
                return hint;
            }
        }
        let hash = self.hasher.hash_one(raw);
        let known = &self.raw;
        let key = match self.table.find(hash, |&k| *known[k as usize] == *raw) {
            Some(&key) => key,
            None => {
                let key = self.raw.len() as u32;
                self.raw.push(raw);
                self.next.push(u32::MAX);
                let (known, hasher) = (&self.raw, &self.hasher);
                self.table
                    .insert_unique(hash, key, |&k| hasher.hash_one(known[k as usize]));
                key
            }
        };
        if let Some(next) = self.next.get_mut(prev as usize) {
            *next = key;
        }
        key
    }
}

/// One file to scan: its mapping and the range of new entries.
pub(crate) struct Job<'a> {
    pub(crate) map: &'a MappedFile,
    pub(crate) from: usize,
    pub(crate) to: usize,
}

/// The jobs split into runs of consecutive jobs, one per thread: several
/// when the jobs hold megabytes, else one. The first run is for the thread
/// that also binds every run's entries, so it gets half the bytes of each
/// other run (with two threads, a third of them).
pub(crate) fn runs<'j, 'a>(jobs: &'j [Job<'a>]) -> Vec<&'j [Job<'a>]> {
    let bytes: usize = jobs.iter().map(|j| j.to - j.from).sum();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
        .min(bytes / BYTES_PER_THREAD)
        .max(1);
    let part = bytes.div_ceil(2 * threads - 1);
    let mut runs = Vec::with_capacity(threads);
    let (mut start, mut acc) = (0, 0);
    for (i, job) in jobs.iter().enumerate() {
        acc += job.to - job.from;
        let share = if runs.is_empty() { part } else { 2 * part };
        if acc >= share && runs.len() + 1 < threads {
            runs.push(&jobs[start..=i]);
            (start, acc) = (i + 1, 0);
        }
    }
    runs.push(&jobs[start..]);
    runs
}

/// Scans a run of jobs (in a thread of its own); the keys met and each
/// job's result, in job order.
pub(crate) fn scan_run<'a>(jobs: &[Job<'a>]) -> (Keys<'a>, Vec<FileScan>) {
    let mut keys = Keys::new();
    let results = jobs
        .iter()
        .map(|job| {
            let mut entries = Vec::with_capacity((job.to - job.from) / 128);
            let (end, problem) = scan_file(job, &mut keys, &mut entries);
            FileScan {
                entries,
                end,
                problem,
            }
        })
        .collect();
    (keys, results)
}

/// Scans one job, appending its entries to `found` and numbering new keys
/// in `keys`; where parsing stopped and what stopped it before the end.
pub(crate) fn scan_file<'a>(
    job: &Job<'a>,
    keys: &mut Keys<'a>,
    found: &mut Vec<Scanned>,
) -> (usize, Option<ReadError>) {
    let mut end = job.from;
    let mut prev = u32::MAX;
    for entry in entries(job.map.bytes(), job.from, job.to) {
        match entry {
            Ok(entry) => {
                prev = keys.intern(entry.key, prev);
                let (value, timestamp) = job.map.load(entry.value_pos);
                found.push(Scanned {
                    value_pos: entry.value_pos as u32,
                    key: prev,
                    value,
                    timestamp,
                });
                end = entry.end();
            }
            Err(e) => return (end, Some(e)),
        }
    }
    (end, None)
}
