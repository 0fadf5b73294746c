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
    pub(crate) raw: Vec<&'a [u8]>,
    /// The key that followed each key last.
    next: Vec<u32>,
}

impl<'a> Keys<'a> {
    fn new() -> Keys<'a> {
        Keys {
            table: HashTable::new(),
            raw: Vec::new(),
            next: Vec::new(),
        }
    }

    /// The number of `raw`, which probably is the one after `prev`.
    fn intern(&mut self, raw: &'a [u8], prev: u32, hasher: &foldhash::fast::FixedState) -> u32 {
        if let Some(&hint) = self.next.get(prev as usize) {
            if self.raw.get(hint as usize).is_some_and(|k| **k == *raw) {
                return hint;
            }
        }
        let hash = hasher.hash_one(raw);
        let known = &self.raw;
        let key = match self.table.find(hash, |&k| *known[k as usize] == *raw) {
            Some(&key) => key,
            None => {
                let key = self.raw.len() as u32;
                self.raw.push(raw);
                self.next.push(u32::MAX);
                let known = &self.raw;
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

/// Scans the jobs, in several threads when they hold many bytes; returns,
/// per run of consecutive jobs, the keys met and each job's result, in job
/// order.
pub(crate) fn scan<'a>(jobs: &[Job<'a>]) -> Vec<(Keys<'a>, Vec<FileScan>)> {
    let bytes: usize = jobs.iter().map(|j| j.to - j.from).sum();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
        .min(bytes / BYTES_PER_THREAD)
        .max(1);
    if threads == 1 {
        return vec![scan_run(jobs)];
    }
    // Runs of about equal bytes.
    let share = bytes.div_ceil(threads);
    let mut runs = Vec::with_capacity(threads);
    let (mut start, mut acc) = (0, 0);
    for (i, job) in jobs.iter().enumerate() {
        acc += job.to - job.from;
        if acc >= share && runs.len() + 1 < threads {
            runs.push(&jobs[start..=i]);
            (start, acc) = (i + 1, 0);
        }
    }
    runs.push(&jobs[start..]);
    std::thread::scope(|scope| {
        let others: Vec<_> = runs[1..]
            .iter()
            .map(|run| scope.spawn(move || scan_run(run)))
            .collect();
        let mut results = vec![scan_run(runs[0])];
        for handle in others {
            // A panic here is a bug in this module: pass it on as it is.
            results.push(
                handle
                    .join()
                    .unwrap_or_else(|e| std::panic::resume_unwind(e)),
            );
        }
        results
    })
}

/// Scans a run of jobs in this thread.
fn scan_run<'a>(jobs: &[Job<'a>]) -> (Keys<'a>, Vec<FileScan>) {
    // The same hash for every thread's table is not needed: each is private.
    let hasher = foldhash::fast::FixedState::default();
    let mut keys = Keys::new();
    let results = jobs
        .iter()
        .map(|job| {
            let data = job.map.bytes();
            let mut found = Vec::with_capacity((job.to - job.from) / 128);
            let (mut end, mut problem) = (job.from, None);
            let mut prev = u32::MAX;
            for entry in entries(data, job.from, job.to) {
                match entry {
                    Ok(entry) => {
                        prev = keys.intern(entry.key, prev, &hasher);
                        let (value, timestamp) = job.map.load(entry.value_pos);
                        found.push(Scanned {
                            value_pos: entry.value_pos as u32,
                            key: prev,
                            value,
                            timestamp,
                        });
                        end = entry.end();
                    }
                    Err(e) => {
                        problem = Some(e);
                        break;
                    }
                }
            }
            FileScan {
                entries: found,
                end,
                problem,
            }
        })
        .collect();
    (keys, results)
}
