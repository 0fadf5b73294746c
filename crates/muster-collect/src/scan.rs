//! Reading the entries files appended since the last scrape: the part of a
//! scrape that touches every byte of every new entry, shared out among
//! several threads when there is much of it (a first scrape of a big
//! directory).
//!
//! Each thread takes the next file nobody has taken yet and, for every new
//! entry, finds which of the distinct keys it has seen the entry's key is
//! (most entries have the key that followed the previous entry's key last
//! time, so they cost one comparison and no hash), and loads the entry's
//! value while the entry is in its cache. The merge works on key numbers
//! and loaded values (a gauge's value is loaded again with its timestamp,
//! as one pair), in one thread, in file order, and
//! parses the JSON of the keys it did not know (see [`crate::merge`]); while
//! the next file's result is not ready, that thread scans a file itself, so
//! no thread waits while there are files left to scan.

use std::hash::BuildHasher;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use muster_store::reader::{entries, MappedFile, ReadError};

/// Bytes of new entries from which a second thread helps, and each thread's
/// least share.
const BYTES_PER_THREAD: usize = 2 << 20;
/// Most threads a scan uses.
const MAX_THREADS: usize = 4;

/// A new entry: where its value is, the scan's number of its key, and the
/// value as loaded (what a sum adds; the merge loads a gauge's value and
/// timestamp again, as one pair).
pub(crate) struct Scanned {
    pub(crate) value_pos: u32,
    pub(crate) key: u32,
    pub(crate) value: f64,
}

/// What a scan found in one file.
pub(crate) struct FileScan<'a> {
    /// The entries, in file order.
    pub(crate) entries: Vec<Scanned>,
    /// Where parsing stopped: after the last entry read.
    pub(crate) end: usize,
    /// What stopped it before `used`, if anything.
    pub(crate) problem: Option<ReadError>,
    /// Which thread scanned the file: the entries' key numbers are that
    /// thread's (0 is the merging thread).
    pub(crate) scanner: usize,
    /// The keys that thread met first in this file, in the order it
    /// numbered them, with their hashes (by the merge state's hasher).
    pub(crate) new_keys: Vec<(&'a [u8], u64)>,
}

/// Distinct keys by their bytes, numbered in the order they were added;
/// each key's hash is kept, so the table grows without hashing keys again.
/// A scanning thread's keys ([`Keys`]) and the merge state's are one each.
pub(crate) struct KeyTable<K> {
    table: HashTable<u32>,
    bytes: Vec<K>,
    hashes: Vec<u64>,
}

impl<K> Default for KeyTable<K> {
    fn default() -> KeyTable<K> {
        KeyTable {
            table: HashTable::new(),
            bytes: Vec::new(),
            hashes: Vec::new(),
        }
    }
}

impl<K: std::ops::Deref<Target = [u8]>> KeyTable<K> {
    /// The number of the key `raw`, whose hash is `hash`, if it is here.
    pub(crate) fn find(&self, raw: &[u8], hash: u64) -> Option<u32> {
        let bytes = &self.bytes;
        self.table
            .find(hash, |&k| *bytes[k as usize] == *raw)
            .copied()
    }

    /// Adds `raw`, which is not here, with its hash; its number.
    pub(crate) fn add(&mut self, raw: K, hash: u64) -> u32 {
        let key = self.bytes.len() as u32;
        self.bytes.push(raw);
        self.hashes.push(hash);
        let hashes = &self.hashes;
        self.table.insert_unique(hash, key, |&k| hashes[k as usize]);
        key
    }

    /// How many keys are here.
    fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The keys numbered `from` and after, with their hashes.
    fn since(&self, from: usize) -> impl Iterator<Item = (&K, u64)> {
        self.bytes[from..]
            .iter()
            .zip(self.hashes[from..].iter().copied())
    }

    /// The bytes of key number `key`, if there is one.
    fn get(&self, key: u32) -> Option<&[u8]> {
        self.bytes.get(key as usize).map(|k| &**k)
    }
}

/// The distinct keys one thread met, numbered in the order it met them.
pub(crate) struct Keys<'a> {
    known: KeyTable<&'a [u8]>,
    /// The merge state's hasher, so that it need not hash new keys again.
    hasher: RandomState,
    /// The key that followed each key last.
    next: Vec<u32>,
}

impl<'a> Keys<'a> {
    /// No keys yet; hashes will be made by `hasher`.
    pub(crate) fn new(hasher: RandomState) -> Keys<'a> {
        Keys {
            known: KeyTable::default(),
            hasher,
            next: Vec::new(),
        }
    }

    /// The number of `raw`, which probably is the one after `prev`.
    fn intern(&mut self, raw: &'a [u8], prev: u32) -> u32 {
        if let Some(&hint) = self.next.get(prev as usize) {
            if self.known.get(hint) == Some(raw) {
                return hint;
            }
        }
        let hash = self.hasher.hash_one(raw);
        let key = match self.known.find(raw, hash) {
            Some(key) => key,
            None => {
                self.next.push(u32::MAX);
                self.known.add(raw, hash)
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

/// The new entries of many files, scanned by the threads that take part:
/// helpers ([`Shared::help`]) and the merging thread ([`Shared::take`]).
pub(crate) struct Shared<'j, 'a> {
    jobs: &'j [Job<'a>],
    /// The hasher of every thread's keys.
    hasher: RandomState,
    /// The first job nobody has taken.
    next: AtomicUsize,
    done: Mutex<Done<'a>>,
    /// Signalled when a result is stored or a helper stops.
    ready: Condvar,
}

/// The results not taken yet, by job, how many helpers still run, and
/// entry lists given back for reuse (their memory is already mapped).
struct Done<'a> {
    results: Vec<Option<FileScan<'a>>>,
    helpers: usize,
    spare: Vec<Vec<Scanned>>,
}

/// Marks a helper as stopped when it returns or unwinds, so that the
/// merging thread never waits for a result that will not come.
struct Stopped<'s, 'j, 'a>(&'s Shared<'j, 'a>);

impl Drop for Stopped<'_, '_, '_> {
    fn drop(&mut self) {
        self.0.helper_stopped();
    }
}

impl<'j, 'a> Shared<'j, 'a> {
    /// The jobs to scan, and how many helper threads should scan them: none
    /// for less than a few megabytes of new entries, else one per core
    /// beside the merging thread (at most [`MAX_THREADS`] threads in all).
    pub(crate) fn new(jobs: &'j [Job<'a>], hasher: RandomState) -> (Shared<'j, 'a>, usize) {
        let bytes: usize = jobs.iter().map(|j| j.to - j.from).sum();
        // A warm scrape reads a few entries, if any: it does not ask how many
        // cores there are (a look at the cgroup's CPU quota, not free).
        let threads = match bytes / BYTES_PER_THREAD {
            0 | 1 => 1,
            most => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_THREADS)
                .min(most),
        };
        let shared = Shared {
            jobs,
            hasher,
            next: AtomicUsize::new(0),
            done: Mutex::new(Done {
                results: jobs.iter().map(|_| None).collect(),
                helpers: threads - 1,
                spare: Vec::new(),
            }),
            ready: Condvar::new(),
        };
        (shared, threads - 1)
    }

    fn lock(&self) -> MutexGuard<'_, Done<'a>> {
        // A helper never panics while holding the lock.
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next job nobody has taken, taking it.
    fn claim(&self) -> Option<usize> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        (i < self.jobs.len()).then_some(i)
    }

    /// Scans job `i` with the keys of thread `scanner`.
    fn scan(&self, i: usize, keys: &mut Keys<'a>, scanner: usize) -> FileScan<'a> {
        let job = &self.jobs[i];
        let known = keys.known.len();
        let mut entries = self.lock().spare.pop().unwrap_or_default();
        entries.reserve((job.to - job.from) / 128);
        let (end, problem) = scan_file(job, keys, &mut entries);
        FileScan {
            entries,
            end,
            problem,
            scanner,
            new_keys: keys.known.since(known).map(|(k, h)| (*k, h)).collect(),
        }
    }

    /// Gives a result's entry list back, to be reused for another file.
    pub(crate) fn give_back(&self, mut entries: Vec<Scanned>) {
        entries.clear();
        self.lock().spare.push(entries);
    }

    /// Counts a helper out: it stopped, or could not be started (no thread
    /// to be had); the jobs it would have taken are the others'.
    pub(crate) fn helper_stopped(&self) {
        self.lock().helpers -= 1;
        self.ready.notify_all();
    }

    /// A helper thread's work: scans jobs until none is left.
    pub(crate) fn help(&self, scanner: usize) {
        let _stopped = Stopped(self);
        let _reading = muster_store::shrunk::reading();
        let mut keys = Keys::new(self.hasher);
        while let Some(i) = self.claim() {
            let scan = self.scan(i, &mut keys, scanner);
            self.lock().results[i] = Some(scan);
            self.ready.notify_all();
        }
    }

    /// The result of job `i`, for the merging thread, which takes them in
    /// job order: while it is not ready, scans the next job nobody has taken
    /// (with `keys`, the merging thread's own). `None` if every helper
    /// stopped without scanning it (one panicked).
    pub(crate) fn take(&self, i: usize, keys: &mut Keys<'a>) -> Option<FileScan<'a>> {
        loop {
            if let Some(scan) = self.lock().results[i].take() {
                return Some(scan);
            }
            match self.claim() {
                Some(j) if j == i => return Some(self.scan(i, keys, 0)),
                Some(j) => {
                    let scan = self.scan(j, keys, 0);
                    self.lock().results[j] = Some(scan);
                }
                None => {
                    let mut done = self.lock();
                    loop {
                        if let Some(scan) = done.results[i].take() {
                            return Some(scan);
                        }
                        if done.helpers == 0 {
                            return None;
                        }
                        done = self.ready.wait(done).unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
        }
    }
}

/// Scans one job, appending its entries to `found` and numbering new keys
/// in `keys`; where parsing stopped and what stopped it before the end.
fn scan_file<'a>(
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
                found.push(Scanned {
                    value_pos: entry.value_pos as u32,
                    key: prev,
                    value: job.map.load_value(entry.value_pos),
                });
                end = entry.end();
            }
            Err(e) => return (end, Some(e)),
        }
    }
    (end, None)
}
