//! The scrape-time merge, with the semantics of Python's
//! `MultiProcessCollector`, done incrementally.
//!
//! Files only ever grow by appending entries, so a long-lived [`Collector`]
//! remembers, per file, where each known entry's value is and which merged
//! series it feeds. A scrape then parses only the entries appended since
//! the last one (read by [`crate::scan`], in several threads when there are
//! megabytes of them) and otherwise does one atomic load and one add per
//! value. Keys are interned: a key's JSON is parsed once per distinct byte
//! string, however many files hold it.
//!
//! Whatever the collector knows is a function of the directory as it is now,
//! so a long-lived collector says what a fresh one says:
//!
//! - a family has the type and help of the first file (in sorted order)
//!   that holds it, and a gauge family the mode of the last such gauge
//!   file; when files appearing or vanishing change that, the merge state
//!   is rebuilt from the files;
//! - a file that could not be opened, and an entry that fed nothing (its key
//!   did not parse, or its family has another type), are looked at again at
//!   every scrape;
//! - the state of files that are gone is dropped: once the entries released
//!   outnumber the live ones, the state is rebuilt from the live files, so
//!   memory follows what the directory holds, not what it ever held.

use std::ffi::OsStr;
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::{HashMap, HashTable};
use muster_store::format::value_offset;
use muster_store::reader::{entries, MappedFile, ReadError};
use muster_store::{shrunk, FileKind, FileName, GaugeMode};

use crate::key::{parse_key, ParsedKey, Strings};
use crate::listing::{list_metric_files, Listed};
use crate::model::{LabelPair, Labels, MetricFamily, MetricKind, MetricSet, Sample, Utf8Names};
use crate::native::MusterFiles;
use crate::scan::{Job, KeyTable, Keys, Scanned, Shared};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// Label pairs, sorted by name.
type LabelPairs = Vec<LabelPair>;

/// Released entries the state may hold before it is rebuilt, however few
/// the live ones are.
const PRUNE_MIN_ENTRIES: usize = 1024;

/// Files from which a collector's first scrape reads headers in two threads
/// ([`touch_headers`]): 256 files gain 7 to 9% of a one-shot scrape's time,
/// 16 lose more than the thread costs. Later scrapes find the headers mapped.
const TOUCH_HEADERS_FILES: usize = 64;

/// Why a scrape could not run at all (bad files never cause this).
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The directory is missing or unreadable.
    #[error("cannot read multiprocess directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// How one merged value combines the values of several processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Sum,
    Min,
    Max,
    /// The value with the largest timestamp; a timestamp of 0 never counts.
    Latest,
    /// One value per process (gauge `all` modes): the last one read.
    Last,
}

impl Op {
    fn for_kind(kind: MetricKind) -> Op {
        match kind {
            MetricKind::Gauge(mode) => match mode {
                GaugeMode::All | GaugeMode::LiveAll => Op::Last,
                GaugeMode::Min | GaugeMode::LiveMin => Op::Min,
                GaugeMode::Max | GaugeMode::LiveMax => Op::Max,
                GaugeMode::Sum | GaugeMode::LiveSum => Op::Sum,
                GaugeMode::MostRecent | GaugeMode::LiveMostRecent => Op::Latest,
            },
            _ => Op::Sum,
        }
    }
}

/// The family type a file of `kind` holds.
fn metric_kind(kind: FileKind) -> MetricKind {
    match kind {
        FileKind::Counter => MetricKind::Counter,
        FileKind::Gauge(mode) => MetricKind::Gauge(mode),
        FileKind::Histogram => MetricKind::Histogram,
        FileKind::Summary => MetricKind::Summary,
        // Not listed here (`*.db` only): `native` reads muster's own files.
        FileKind::Native | FileKind::Exemplar => MetricKind::Histogram,
    }
}

/// Merged values, one slot per output series (or histogram bucket).
#[derive(Default)]
struct Accumulators {
    op: Vec<Op>,
    value: Vec<f64>,
    timestamp: Vec<f64>,
    /// For slots merged by other ops than a sum: the scrape generation that
    /// last set the slot; older means absent.
    seen: Vec<u64>,
    /// For sum slots: how many known entries feed the slot; 0 means absent.
    contributors: Vec<u32>,
}

impl Accumulators {
    fn push(&mut self, op: Op) -> u32 {
        self.op.push(op);
        self.value.push(0.0);
        self.timestamp.push(0.0);
        self.seen.push(0);
        self.contributors.push(0);
        (self.op.len() - 1) as u32
    }

    fn is_sum(&self, slot: u32) -> bool {
        self.op[slot as usize] == Op::Sum
    }

    /// Merges one value into a slot that is not a sum (sums are added
    /// directly, see [`Collector::collect`]).
    #[inline]
    fn combine(&mut self, acc: u32, gen: u64, value: f64, timestamp: f64) {
        let i = acc as usize;
        let fresh = self.seen[i] != gen;
        match self.op[i] {
            Op::Sum => self.value[i] += value,
            Op::Min => {
                if fresh || value < self.value[i] {
                    self.value[i] = value;
                }
            }
            Op::Max => {
                if fresh || value > self.value[i] {
                    self.value[i] = value;
                }
            }
            Op::Latest => {
                if timestamp > 0.0 && (fresh || timestamp > self.timestamp[i]) {
                    self.value[i] = value;
                    self.timestamp[i] = timestamp;
                    self.seen[i] = gen;
                }
                return;
            }
            Op::Last => self.value[i] = value,
        }
        self.seen[i] = gen;
    }

    fn present(&self, acc: u32, gen: u64) -> Option<f64> {
        let i = acc as usize;
        let present = if self.op[i] == Op::Sum {
            self.contributors[i] > 0
        } else {
            self.seen[i] == gen
        };
        present.then(|| self.value[i])
    }
}

/// An output series: its sample name and labels.
struct Series {
    sample: Arc<str>,
    labels: Arc<Labels>,
}

/// A histogram's label set: its buckets, `_count` and `_sum`.
struct HistogramSeries {
    family: u32,
    /// (bound, bucket sample labels, slot), sorted by bound.
    buckets: Vec<(f64, Arc<Labels>, u32)>,
    base: Arc<Labels>,
    sum: Option<u32>,
}

enum Item {
    Plain(u32),
    Histogram(u32),
}

struct Family {
    /// The name as shown (escaped).
    name: Arc<str>,
    help: Arc<str>,
    /// The type its series were made for; `None` until an entry feeds it.
    kind: Option<MetricKind>,
    total_name: Arc<str>,
    bucket_name: Arc<str>,
    count_name: Arc<str>,
    sum_name: Arc<str>,
    items: Vec<Item>,
    /// Names as written where they differ from those shown.
    utf8_names: Option<Arc<Utf8Names>>,
}

impl Family {
    /// `sample` as an `Arc`, shared with the family's names when it is one.
    fn sample_name(&self, sample: &str) -> Arc<str> {
        [
            &self.name,
            &self.total_name,
            &self.bucket_name,
            &self.sum_name,
            &self.count_name,
        ]
        .into_iter()
        .find(|n| ***n == *sample)
        .cloned()
        .unwrap_or_else(|| sample.into())
    }
}

/// A distinct key, parsed; names as shown (escaped).
struct KeyInfo {
    family: u32,
    sample: Arc<str>,
    /// All labels, sorted by name.
    labels: LabelPairs,
    help: Arc<str>,
    /// Where `le` is in `labels`.
    le: Option<usize>,
    /// Where `pid` is in `labels`.
    pid: Option<usize>,
}

impl KeyInfo {
    /// The labels without the one at `skip`.
    fn labels_without(&self, skip: Option<usize>) -> LabelPairs {
        self.labels_kept(skip).cloned().collect()
    }

    /// The labels but the one at `skip`, where they are.
    fn labels_kept(&self, skip: Option<usize>) -> impl Iterator<Item = &LabelPair> + Clone {
        let kept = move |(i, _): &(usize, _)| Some(*i) != skip;
        self.labels
            .iter()
            .enumerate()
            .filter(kept)
            .map(|(_, pair)| pair)
    }
}

/// What we know of one file of the directory.
struct Tracked {
    ino: u64,
    name: Option<FileName>,
    map: Option<MappedFile>,
    /// Why the file could not be opened; it is tried again at every scrape.
    open_problem: Option<String>,
    /// The bytes in use at this scrape; `None` when the header cannot be read.
    used: Option<usize>,
    /// What went wrong reading the file in the last scrape.
    read_problem: Option<String>,
    parsed: Parsed,
    logged: bool,
}

/// What the merge state holds of one file's entries.
struct Parsed {
    /// Entries are parsed up to here (an entry boundary).
    upto: usize,
    /// (value offset, slot) of every entry that feeds a sum slot.
    sums: Vec<(u32, u32)>,
    /// (value offset, slot) of every other entry that feeds the merge.
    others: Vec<(u32, u32)>,
    /// (entry offset, value offset) of entries that feed nothing (yet); they
    /// are looked at again at every scrape.
    unbound: Vec<(u32, u32)>,
    /// The families of the file's entries, each with the key of its first
    /// entry, in the order they first appear.
    families: Vec<(u32, u32)>,
    /// The file's process id, interned (valid for the current state).
    pid: Option<u32>,
    /// What went wrong with the file's entries in the last scrape: one that
    /// runs past `used` (the rest is read again next time), entries that fed
    /// nothing.
    entry_problem: Option<String>,
}

impl Parsed {
    fn new() -> Parsed {
        Parsed {
            upto: muster_store::format::HEADER_SIZE,
            sums: Vec::new(),
            others: Vec::new(),
            unbound: Vec::new(),
            families: Vec::new(),
            pid: None,
            entry_problem: None,
        }
    }

    /// Entries the state holds for this file.
    fn entry_count(&self) -> usize {
        self.sums.len() + self.others.len() + self.unbound.len()
    }
}

impl Tracked {
    /// A newly listed file, not opened yet.
    fn new(ino: u64, name: &OsStr) -> Tracked {
        let parsed = name.to_str().and_then(FileName::parse);
        let open_problem = parsed
            .is_none()
            .then(|| "not a metric file name (<type>_<id>.db or gauge_<mode>_<id>.db)".to_owned());
        Tracked {
            ino,
            name: parsed,
            map: None,
            open_problem,
            used: None,
            read_problem: None,
            parsed: Parsed::new(),
            logged: false,
        }
    }

    fn problem(&self) -> Option<&String> {
        self.open_problem
            .as_ref()
            .or(self.read_problem.as_ref())
            .or(self.parsed.entry_problem.as_ref())
    }

    /// Reads the header (mapping the file again if it grew), so that the
    /// mapping stays put while entries are read; a file rewritten from
    /// scratch under the same inode starts over.
    fn check_header(&mut self, state: &mut MergeState) {
        self.used = None;
        self.read_problem = None;
        let Some(map) = &mut self.map else {
            return;
        };
        let mut used = map.used();
        if used.is_err() {
            // The file may have grown since it was mapped (or been empty).
            if let Err(e) = map.remap() {
                self.read_problem = Some(e.to_string());
                return;
            }
            used = map.used();
        }
        match used {
            Ok(used) => {
                if used < self.parsed.upto {
                    state.release(&mut self.parsed);
                }
                self.used = Some(used);
            }
            Err(e) => self.read_problem = Some(e.to_string()),
        }
    }
}

/// Everything derived from the files' entries; rebuilt from the files when it
/// must change in a way an update cannot express (see the module docs).
#[derive(Default)]
struct MergeState {
    /// Distinct keys, numbered; by key number, what they say below.
    keys: KeyTable<Box<[u8]>>,
    hasher: foldhash::fast::RandomState,
    key_info: Vec<Result<KeyInfo, Arc<str>>>,
    /// By key number, what the hot loop needs (12 bytes a key, so the table
    /// stays in the CPU's cache).
    key_bind: Vec<KeyBind>,
    families: Vec<Family>,
    family_index: FastMap<Arc<str>, u32>,
    /// Types to give families when they are made: the resolution that made
    /// the state be rebuilt.
    preset: FastMap<Arc<str>, MetricKind>,
    series: Vec<Series>,
    /// (family, sample name, labels) to slot.
    series_index: FastMap<(u32, Arc<str>, Arc<Labels>), u32>,
    histograms: Vec<HistogramSeries>,
    histogram_index: HashTable<u32>,
    /// Bucket bounds as `le` shows them (a few distinct ones, many buckets).
    bound_text: FastMap<u64, Arc<str>>,
    /// Label names and values of the keys parsed, and those the merge
    /// adds (`pid`, `le`).
    strings: Strings,
    /// A per-process gauge's series without the process: (family, sample
    /// name, labels but `pid`) to its number, and by number the sample name
    /// and labels; by key number, the key's (or [`NONE`]).
    templates: FastMap<(u32, Arc<str>, LabelPairs), u32>,
    template_list: Vec<(Arc<str>, Labels)>,
    key_template: Vec<u32>,
    /// (template, interned process id) to slot.
    per_process: FastMap<(u32, u32), u32>,
    ids: FastMap<Arc<str>, u32>,
    /// By interned number, the process id.
    id_list: Vec<Arc<str>>,
    accs: Accumulators,
    /// Marks for [`MergeState::note_family`]: the pass that last noted each family.
    family_mark: Vec<u64>,
    mark: u64,
    /// Entries of files released (gone, or started over) since the state was built.
    released: usize,
    /// Whether each file's entries are remembered (where each value is, the
    /// slot it feeds) for the next scrape: not for a collector made by
    /// [`Collector::once`].
    forgets: bool,
}

/// Merges a multiprocess directory; keep one alive to scrape incrementally.
pub struct Collector {
    dir: PathBuf,
    /// Known files, sorted by name.
    files: Vec<(Box<OsStr>, Tracked)>,
    state: MergeState,
    gen: u64,
    errors_total: u64,
    last_errors: Vec<(String, String)>,
    /// The `*.muster` files of the last listing (see `native`).
    muster_files: Vec<String>,
    /// The `*.muster` files whose problem was logged already.
    muster_logged: Vec<String>,
    /// [`shrunk::faults`] when the files were last mapped at their sizes.
    faults_seen: u64,
}

impl Collector {
    /// A collector for `dir`. Nothing is read until [`Collector::collect`].
    pub fn new(dir: impl Into<PathBuf>) -> Collector {
        Collector::made(dir.into(), false)
    }

    /// A collector for a process that scrapes once (`muster scrape`,
    /// `muster push`): it does not note where each entry's value is and
    /// which series it feeds (eight bytes per entry, written for a next
    /// scrape that never comes), so each [`Collector::collect`] reads every
    /// file from the start.
    pub fn once(dir: impl Into<PathBuf>) -> Collector {
        Collector::made(dir.into(), true)
    }

    fn made(dir: PathBuf, forgets: bool) -> Collector {
        Collector {
            dir,
            files: Vec::new(),
            state: MergeState {
                forgets,
                ..MergeState::default()
            },
            gen: 0,
            errors_total: 0,
            last_errors: Vec::new(),
            muster_files: Vec::new(),
            muster_logged: Vec::new(),
            faults_seen: shrunk::faults(),
        }
    }

    /// The directory this collector reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many times a scrape skipped a bad file (or part of one), since
    /// this collector was made.
    pub fn errors_total(&self) -> u64 {
        self.errors_total
    }

    /// Adds this collector's count of skipped bad files to
    /// `muster_scrape_errors_total` in `set` (for a process that scrapes
    /// alone, such as the exporter; workers of one server count into a shared
    /// counter instead). When the directory already holds that family (the
    /// files of a muster server do), the count is added to it: the family
    /// appears once.
    pub fn append_own_metrics(&self, set: &mut MetricSet) {
        set.add_to_counter(
            "muster_scrape_errors",
            "Times a scrape skipped a bad multiprocess file (or a bad part of one).",
            self.errors_total as f64,
        );
    }

    /// The metric files (`*.db`) in the directory at the last scrape, bad ones
    /// included.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// How many merged series this collector keeps state for, those of
    /// files gone since included until it drops them.
    pub fn tracked_series(&self) -> usize {
        self.state.series.len()
    }

    /// The bad files of the last scrape: (file name, problem).
    pub fn last_errors(&self) -> &[(String, String)] {
        &self.last_errors
    }

    /// Reads the directory and returns the merged metrics.
    ///
    /// Bad files are skipped (their valid entries still count), logged once
    /// and counted in [`Collector::errors_total`]; only an unreadable
    /// directory is an error.
    pub fn collect(&mut self) -> Result<MetricSet, CollectError> {
        // A file someone shrinks while it is read leaves zeros, not a dead
        // process (see `map_shrunk_files`).
        let _reading = shrunk::reading();
        self.map_shrunk_files();
        if self.state.forgets && self.gen > 0 {
            self.rebuild(FastMap::default());
        }
        let mut changed = self.sync_files()?;
        let live: usize = self.files.iter().map(|(_, t)| t.parsed.entry_count()).sum();
        if self.state.released > live.max(PRUNE_MIN_ENTRIES) {
            let kinds = self.state.current_kinds();
            self.rebuild(kinds);
            changed = true;
        }
        changed |= self.merge_files();
        if changed {
            if let Some(resolved) = self.resolve() {
                // A family's type or mode is not what its series were made
                // for: make them again, from the files, with the right one.
                self.rebuild(resolved);
                self.merge_files();
                self.resolve();
            }
        }
        self.last_errors.clear();
        for (name, tracked) in &mut self.files {
            if let Some(problem) = tracked.problem().cloned() {
                self.errors_total += 1;
                let file = name.to_string_lossy().into_owned();
                if !tracked.logged {
                    tracing::warn!(file = %file, problem = %problem, "skipping bad metric file (or its bad part)");
                    tracked.logged = true;
                }
                self.last_errors.push((file, problem));
            }
        }
        let mut set = self.snapshot();
        if !self.muster_files.is_empty() {
            let muster = MusterFiles::read(&self.dir, &self.muster_files);
            for (file, problem) in &muster.problems {
                self.errors_total += 1;
                if !self.muster_logged.contains(file) {
                    tracing::warn!(file = %file, problem = %problem, "skipping bad muster file (or its bad part)");
                    self.muster_logged.push(file.clone());
                }
                self.last_errors.push((file.clone(), problem.clone()));
            }
            muster.attach(&mut set);
        }
        Ok(set)
    }

    /// One pass over the files: reads the entries each appended since the
    /// last scrape ([`crate::scan`]) and, file by file in sorted order, merges
    /// the values of its known entries, looks again at entries that fed
    /// nothing, and binds and merges the new ones. Whether a file holds a
    /// family it did not hold before.
    ///
    /// When there are megabytes of new entries (a first scrape), helper
    /// threads scan files ahead while this thread binds their results in
    /// file order, scanning a file itself whenever the next result is not
    /// ready (see [`Shared`]).
    fn merge_files(&mut self) -> bool {
        self.gen += 1;
        let gen = self.gen;
        if gen == 1 && self.files.len() >= TOUCH_HEADERS_FILES {
            touch_headers(&self.files);
        }
        let state = &mut self.state;
        for (_, tracked) in &mut self.files {
            tracked.check_header(state);
        }
        if self.map_shrunk_files() {
            // A header read zeros: read them again from the files as they are.
            for (_, tracked) in &mut self.files {
                tracked.check_header(&mut self.state);
            }
        }
        let state = &mut self.state;
        // Sum slots start from zero and are absent when no entry feeds them.
        state.accs.value.fill(0.0);
        let mut work: Vec<Work<'_>> = self
            .files
            .iter_mut()
            .filter_map(|(_, t)| {
                let header = t.name.as_ref().zip(t.used);
                Some((t.map.as_ref()?, header, &mut t.parsed))
            })
            .collect();
        let jobs: Vec<Job<'_>> = work
            .iter()
            .filter(|work| has_new_entries(work))
            .map(|(map, header, parsed)| Job {
                map,
                from: parsed.upto,
                to: header.map_or(parsed.upto, |(_, used)| used),
            })
            .collect();
        let mut grew = false;
        let mut items = work.iter_mut();
        let (shared, helpers) = Shared::new(&jobs, state.hasher);
        std::thread::scope(|scope| {
            let shared = &shared;
            for scanner in 1..=helpers {
                let started = std::thread::Builder::new()
                    .name("scan".into())
                    .spawn_scoped(scope, move || shared.help(scanner));
                if started.is_err() {
                    // No thread to be had (a container's task limit): this
                    // thread scans the files itself.
                    shared.helper_stopped();
                }
            }
            let mut own = Keys::new(state.hasher);
            // By scanning thread: its key numbers as the state numbers them,
            // and the keys' bytes.
            let mut known: Vec<(Vec<u32>, Vec<&[u8]>)> = vec![Default::default(); helpers + 1];
            for i in 0..jobs.len() {
                let Some(item) = state.merge_up_to_new(&mut items, gen, &mut grew) else {
                    break;
                };
                // None: a scan thread panicked, a bug the scope passes on.
                let Some(result) = shared.take(i, &mut own) else {
                    break;
                };
                let (numbers, raw) = &mut known[result.scanner];
                for (key, hash) in result.new_keys {
                    numbers.push(state.intern_hashed(key, hash));
                    raw.push(key);
                }
                let scan = ScanView {
                    entries: &result.entries,
                    end: result.end,
                    problem: result.problem,
                    numbers,
                    raw,
                };
                grew |= state.merge_file(item, Some(scan), gen);
                shared.give_back(result.entries);
            }
        });
        for item in items {
            grew |= state.merge_file(item, None, gen);
        }
        grew
    }

    /// Brings the file table in line with the directory listing; whether
    /// files appeared, vanished or could be opened at last.
    fn sync_files(&mut self) -> Result<bool, CollectError> {
        // A compaction (compact.rs) renames and unlinks files: list and open
        // them while none runs.
        let guard = crate::compact::ReadGuard::acquire(&self.dir);
        let (listing, muster_files) =
            list_metric_files(&self.dir).map_err(|source| CollectError::Dir {
                path: self.dir.clone(),
                source,
            })?;
        self.muster_files = muster_files;
        // Both lists are sorted by name: keep a known file when its name and
        // inode are still listed, open the rest. (The open descriptor keeps
        // a deleted file's inode from being reused, so a replaced file always
        // shows a new inode.)
        let mut known = std::mem::take(&mut self.files).into_iter().peekable();
        let mut files = Vec::with_capacity(listing.len());
        let mut changed = false;
        for Listed { name, ino } in listing {
            while let Some((_, mut old)) = known.next_if(|(k, _)| *k < name) {
                self.state.release(&mut old.parsed);
                changed = true;
            }
            match known.next_if(|(k, t)| *k == name && t.ino == ino) {
                Some((name, mut kept)) => {
                    if kept.map.is_none() && kept.name.is_some() {
                        // It could not be opened before: try again.
                        changed |= self.open_into(&name, &mut kept);
                    }
                    files.push((name, kept));
                }
                None => {
                    let mut tracked = Tracked::new(ino, &name);
                    if tracked.name.is_some()
                        && !self.open_into(&name, &mut tracked)
                        && std::fs::symlink_metadata(self.dir.join(&*name)).is_err()
                    {
                        continue; // vanished since the listing
                    }
                    files.push((name, tracked));
                    changed = true;
                }
            }
        }
        for (_, mut old) in known {
            self.state.release(&mut old.parsed);
            changed = true;
        }
        // Files an archive absorbed count in the archive only (compact.rs).
        let absorbed = crate::compact::absorbed_files(
            files
                .iter()
                .filter_map(|(name, t)| Some((&**name, t.map.as_ref()?.bytes()))),
        );
        let (absorbed, files): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|(name, _)| absorbed.contains(&**name));
        for (_, mut old) in absorbed {
            self.state.release(&mut old.parsed);
            changed = true;
        }
        self.files = files;
        if !guard.covered_listing() {
            // A compaction started meanwhile: list again under its lock.
            return Ok(self.sync_files()? || changed);
        }
        Ok(changed)
    }

    /// Once a page of a file that shrank under its mapping was read as
    /// zeros ([`shrunk`]), maps every file again at its size now, so that
    /// the shrunk one is read (and reported) for what it holds; whether that
    /// happened since the last call.
    fn map_shrunk_files(&mut self) -> bool {
        let faults = shrunk::faults();
        if faults == self.faults_seen {
            return false;
        }
        self.faults_seen = faults;
        for (_, tracked) in &mut self.files {
            if let Some(map) = &mut tracked.map {
                if map.map_again().is_err() {
                    // Opened again at the next scrape.
                    tracked.map = None;
                }
            }
        }
        true
    }

    /// Opens and maps `name` into `tracked`; whether it worked. A failure
    /// is the file's problem until it works.
    fn open_into(&self, name: &OsStr, tracked: &mut Tracked) -> bool {
        match MappedFile::open(&self.dir.join(name)) {
            Ok(map) => {
                tracked.map = Some(map);
                tracked.open_problem = None;
                true
            }
            Err(ReadError::NotRegular) => {
                tracked.open_problem =
                    Some("not a regular file (a symlink or special file); not followed".into());
                false
            }
            Err(e) => {
                tracked.open_problem = Some(e.to_string());
                false
            }
        }
    }

    /// Works out each family's type, mode and help from the files, in sorted
    /// order (see the module docs), and sets the help. Returns the types of
    /// every family if one differs from the type its series were made for.
    fn resolve(&mut self) -> Option<FastMap<Arc<str>, MetricKind>> {
        let state = &mut self.state;
        let mut resolved: Vec<Option<(MetricKind, u32)>> = vec![None; state.families.len()];
        for (_, tracked) in &self.files {
            let Some(name) = &tracked.name else {
                continue;
            };
            for &(family, key) in &tracked.parsed.families {
                let slot = &mut resolved[family as usize];
                match (*slot, name.kind) {
                    (None, kind) => *slot = Some((metric_kind(kind), key)),
                    (Some((MetricKind::Gauge(_), first)), FileKind::Gauge(mode)) => {
                        *slot = Some((MetricKind::Gauge(mode), first))
                    }
                    _ => {}
                }
            }
        }
        let mut stale = false;
        for (family, resolved) in state.families.iter_mut().zip(&resolved) {
            let Some((kind, help_key)) = *resolved else {
                continue;
            };
            if let Ok(info) = &state.key_info[help_key as usize] {
                family.help = info.help.clone();
            }
            match family.kind {
                Some(made) if made != kind => stale = true,
                Some(_) => {}
                None => family.kind = Some(kind),
            }
        }
        stale.then(|| {
            state
                .families
                .iter()
                .zip(resolved)
                .filter_map(|(f, r)| Some((f.name.clone(), r?.0)))
                .collect()
        })
    }

    /// Starts the state over (every file is parsed again at the next
    /// [`Collector::merge_files`]), giving families the types in `preset`.
    fn rebuild(&mut self, preset: FastMap<Arc<str>, MetricKind>) {
        self.state = MergeState {
            preset,
            forgets: self.state.forgets,
            ..MergeState::default()
        };
        for (_, tracked) in &mut self.files {
            tracked.parsed = Parsed::new();
        }
    }

    /// Builds the result from the slots this scrape set.
    fn snapshot(&self) -> MetricSet {
        let gen = self.gen;
        let state = &self.state;
        let mut families = Vec::with_capacity(state.families.len());
        for family in &state.families {
            let Some(kind) = family.kind else {
                continue;
            };
            // At most one sample a plain series, a bucket each and two more
            // a histogram: the list is made once, at its size.
            let most = family.items.iter().map(|item| match *item {
                Item::Plain(_) => 1,
                Item::Histogram(h) => state.histograms[h as usize].buckets.len() + 2,
            });
            let mut samples = Vec::with_capacity(most.sum());
            for item in &family.items {
                match *item {
                    Item::Plain(slot) => {
                        if let Some(value) = state.accs.present(slot, gen) {
                            let series = &state.series[slot as usize];
                            samples.push(Sample {
                                name: series.sample.clone(),
                                labels: series.labels.clone(),
                                value,
                                exemplar: None,
                                native: None,
                            });
                        }
                    }
                    Item::Histogram(h) => state.histogram_samples(
                        family,
                        &state.histograms[h as usize],
                        gen,
                        &mut samples,
                    ),
                }
            }
            if !samples.is_empty() {
                families.push(MetricFamily {
                    name: family.name.clone(),
                    help: family.help.clone(),
                    kind,
                    samples,
                    utf8_names: family.utf8_names.clone(),
                });
            }
        }
        MetricSet { families }
    }
}

impl MergeState {
    /// The type of every family that has one, by name.
    fn current_kinds(&self) -> FastMap<Arc<str>, MetricKind> {
        self.families
            .iter()
            .filter_map(|f| Some((f.name.clone(), f.kind?)))
            .collect()
    }

    /// Forgets what a file's entries fed into the merge (the file is gone,
    /// or starts over), counting them for pruning.
    fn release(&mut self, parsed: &mut Parsed) {
        self.released += parsed.entry_count();
        for &(_, slot) in &parsed.sums {
            self.accs.contributors[slot as usize] -= 1;
        }
        *parsed = Parsed::new();
    }

    /// Merges the files of `items` that have no new entries; the next one
    /// that has some, if any.
    fn merge_up_to_new<'w, 'a>(
        &mut self,
        items: &mut std::slice::IterMut<'w, Work<'a>>,
        gen: u64,
        grew: &mut bool,
    ) -> Option<&'w mut Work<'a>> {
        for item in items.by_ref() {
            if has_new_entries(item) {
                return Some(item);
            }
            *grew |= self.merge_file(item, None, gen);
        }
        None
    }

    /// Merges one file: the values of its known entries, then (when its
    /// header is sound) entries that fed nothing and the new ones `scan`
    /// found; whether it holds a family it did not hold before.
    fn merge_file(
        &mut self,
        item: &mut Work<'_>,
        scan: Option<ScanView<'_, '_>>,
        gen: u64,
    ) -> bool {
        let (map, header, parsed) = item;
        // Entries bound before: one load and one add each, no branch.
        let values = &mut self.accs.value;
        for &(pos, slot) in &parsed.sums {
            values[slot as usize] += map.load_value(pos as usize);
        }
        for &(pos, slot) in &parsed.others {
            let (value, timestamp) = map.load(pos as usize);
            self.accs.combine(slot, gen, value, timestamp);
        }
        match *header {
            Some((name, used)) if scan.is_some() || !parsed.unbound.is_empty() => {
                self.advance(map, name, used, scan, parsed, gen)
            }
            _ => false,
        }
    }

    /// Binds and merges the new entries of `map` (named `name`, `used` bytes
    /// in use) that `scanned` found, after looking again at the entries that
    /// fed nothing; whether the file holds a family it did not hold before.
    fn advance(
        &mut self,
        map: &MappedFile,
        name: &FileName,
        used: usize,
        scanned: Option<ScanView<'_, '_>>,
        parsed: &mut Parsed,
        gen: u64,
    ) -> bool {
        let file = FileContext {
            kind: name.kind,
            type_tag: type_tag(name.kind),
            pid: match parsed.pid {
                Some(pid) => pid,
                None => *parsed.pid.insert(self.intern_id(&name.id)),
            },
        };
        self.mark += 1;
        for &(family, _) in &parsed.families {
            self.family_mark[family as usize] = self.mark;
        }
        let families_before = parsed.families.len();
        let mut bad = Unbound::default();

        // Entries that fed nothing at the last scrape: their key is read
        // again (a repaired file) and bound again (a resolved conflict).
        for (offset, value_pos) in std::mem::take(&mut parsed.unbound) {
            let bound = match entries(map.bytes(), offset as usize, used).next() {
                Some(Ok(entry)) => {
                    let key = self.intern_key(entry.key);
                    let value = map.load_value(value_pos as usize);
                    self.bind_entry(key, value_pos, value, map, &file, parsed, gen)
                }
                _ => Err("entry no longer readable".into()),
            };
            if let Err(reason) = bound {
                bad.add(reason, offset, value_pos, parsed);
            }
        }

        if let Some(scan) = scanned {
            if !self.forgets {
                parsed.sums.reserve(scan.entries.len());
            }
            for s in scan.entries {
                let key = scan.numbers[s.key as usize];
                let bound = self.bind_entry(key, s.value_pos, s.value, map, &file, parsed, gen);
                if let Err(reason) = bound {
                    let offset = s.value_pos - value_offset(scan.raw[s.key as usize].len()) as u32;
                    bad.add(reason, offset, s.value_pos, parsed);
                }
            }
            parsed.upto = scan.end;
            bad.read_problem = scan.problem.map(|e| e.to_string());
        }
        let keys = bad
            .first
            .map(|reason| format!("{} entries skipped: {reason}", bad.count));
        parsed.entry_problem = match (bad.read_problem, keys) {
            (Some(read), Some(keys)) => Some(format!("{read}; {keys}")),
            (read, keys) => read.or(keys),
        };
        parsed.families.len() > families_before
    }

    /// Notes the family of `key` among the file's, files the entry whose
    /// value is at `value_pos` in `map` where the slot it feeds says and
    /// merges its value: `value` into a sum, else the value and timestamp
    /// loaded again as one pair. The error says why it feeds nothing.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn bind_entry(
        &mut self,
        key: u32,
        value_pos: u32,
        value: f64,
        map: &MappedFile,
        file: &FileContext,
        parsed: &mut Parsed,
        gen: u64,
    ) -> Result<(), Arc<str>> {
        let bind = self.key_bind[key as usize];
        if bind.family != NONE && self.family_mark[bind.family as usize] != self.mark {
            self.family_mark[bind.family as usize] = self.mark;
            parsed.families.push((bind.family, key));
        }
        // The common case: a key whose slot is known, in a file of its type.
        let (slot, sum) = if bind.slot != NONE && bind.type_tag == file.type_tag {
            (bind.slot, bind.sum)
        } else {
            let slot = self.slot_for(key, file)?;
            (slot, self.accs.is_sum(slot))
        };
        if !self.forgets {
            let noted = if sum {
                &mut parsed.sums
            } else {
                &mut parsed.others
            };
            noted.push((value_pos, slot));
        }
        if sum {
            self.accs.contributors[slot as usize] += 1;
            self.accs.value[slot as usize] += value;
        } else {
            let (value, timestamp) = map.load(value_pos as usize);
            self.accs.combine(slot, gen, value, timestamp);
        }
        Ok(())
    }

    /// The number of a key's bytes, parsing them if they are new.
    fn intern_key(&mut self, raw: &[u8]) -> u32 {
        self.intern_hashed(raw, self.hasher.hash_one(raw))
    }

    /// [`MergeState::intern_key`] for bytes whose hash (by `self.hasher`)
    /// a scan thread made.
    fn intern_hashed(&mut self, raw: &[u8], hash: u64) -> u32 {
        match self.keys.find(raw, hash) {
            Some(key) => key,
            None => {
                let parsed = parse_key(raw, &mut self.strings);
                self.add_key(raw, hash, parsed)
            }
        }
    }

    fn add_key(&mut self, raw: &[u8], hash: u64, parsed: Result<ParsedKey<'_>, Arc<str>>) -> u32 {
        let info = parsed.map(|parsed| self.register(parsed));
        self.key_bind.push(KeyBind {
            family: info.as_ref().map_or(NONE, |info| info.family),
            slot: NONE,
            type_tag: NO_TYPE,
            sum: false,
        });
        self.key_info.push(info);
        self.key_template.push(NONE);
        self.keys.add(raw.into(), hash)
    }

    /// What a new key says, with its family found or made.
    fn register(&mut self, key: ParsedKey<'_>) -> KeyInfo {
        let family = self.family(&key.family, &key.help);
        if key.utf8_family.is_some() || !key.utf8_labels.is_empty() {
            let names = self.families[family as usize]
                .utf8_names
                .get_or_insert_with(Default::default);
            Arc::make_mut(names).note(key.utf8_family.as_deref(), &key.utf8_labels);
        }
        let fam = &self.families[family as usize];
        // Keys of a family nearly always share its help: share the text too.
        let help = if *fam.help == *key.help {
            fam.help.clone()
        } else {
            key.help.into()
        };
        KeyInfo {
            family,
            sample: fam.sample_name(&key.sample),
            labels: key.labels,
            help,
            le: key.le,
            pid: key.pid,
        }
    }

    /// The family called `name` (as shown), made if it is new.
    fn family(&mut self, name: &str, help: &str) -> u32 {
        if let Some(&f) = self.family_index.get(name) {
            return f;
        }
        let name: Arc<str> = name.into();
        self.families.push(Family {
            total_name: format!("{name}_total").into(),
            bucket_name: format!("{name}_bucket").into(),
            count_name: format!("{name}_count").into(),
            sum_name: format!("{name}_sum").into(),
            kind: None,
            name: name.clone(),
            help: help.into(),
            items: Vec::new(),
            utf8_names: None,
        });
        self.family_mark.push(0);
        let index = (self.families.len() - 1) as u32;
        self.family_index.insert(name, index);
        index
    }

    /// The interned number of a process id.
    fn intern_id(&mut self, id: &str) -> u32 {
        if let Some(&n) = self.ids.get(id) {
            return n;
        }
        let n = self.ids.len() as u32;
        let id: Arc<str> = id.into();
        self.ids.insert(id.clone(), n);
        self.id_list.push(id);
        n
    }

    /// The slot an entry with key `key` feeds in `file`.
    fn slot_for(&mut self, key: u32, file: &FileContext) -> Result<u32, Arc<str>> {
        let info = match &self.key_info[key as usize] {
            Ok(info) => info,
            Err(reason) => return Err(reason.clone()),
        };
        let family = &mut self.families[info.family as usize];
        let fam_kind = *family.kind.get_or_insert_with(|| {
            self.preset
                .get(&family.name)
                .copied()
                .unwrap_or(metric_kind(file.kind))
        });
        if fam_kind.type_name() != file.kind.type_name() {
            return Err(format!(
                "family {} is a {} but this file holds {} values",
                family.name,
                fam_kind.type_name(),
                file.kind.type_name()
            )
            .into());
        }
        let known = self.key_bind[key as usize].slot;
        if known != NONE {
            return Ok(known);
        }
        let family = info.family;
        let sample = info.sample.clone();
        let slot = match fam_kind {
            MetricKind::Histogram => {
                let bound = match info.le {
                    Some(le) => {
                        let text = &info.labels[le].1;
                        let bound = parse_python_float(text)
                            .ok_or_else(|| format!("bucket bound le={text:?} is not a number"))?;
                        Some(bound)
                    }
                    // Python and muster write only buckets and `_sum`;
                    // `_count` comes from the buckets. Anything else is not
                    // added into `_sum`.
                    None if sample != self.families[family as usize].sum_name => {
                        return Err(format!(
                            "histogram entry {sample:?} is neither a `_bucket` (with `le`) nor `_sum`"
                        )
                        .into());
                    }
                    None => None,
                };
                // The series' labels are the key's without `le`: found
                // without copying them, copied only for a new series.
                let h = match self.find_histogram(family, info) {
                    Ok(h) => h,
                    Err(hash) => {
                        let base = info.labels_without(info.le);
                        self.add_histogram(family, base, hash)
                    }
                };
                match bound {
                    Some(bound) => self.bucket_slot(family, h, bound),
                    None => self.histogram_sum_slot(h, sample),
                }
            }
            MetricKind::Gauge(mode) if mode.is_per_process() => {
                // One series per process, labelled with its id (which
                // replaces a label of the same name, as in Python).
                let template = match self.key_template[key as usize] {
                    NONE => {
                        let base = (family, sample, info.labels_without(info.pid));
                        let next = self.template_list.len() as u32;
                        let template = *self.templates.entry(base).or_insert_with_key(|k| {
                            self.template_list
                                .push((k.1.clone(), Labels::new(k.2.clone())));
                            next
                        });
                        self.key_template[key as usize] = template;
                        template
                    }
                    known => known,
                };
                if let Some(&slot) = self.per_process.get(&(template, file.pid)) {
                    return Ok(slot);
                }
                let pid = self.strings.get("pid");
                let (sample, base) = &self.template_list[template as usize];
                let id = &self.id_list[file.pid as usize];
                let (sample, labels) = (sample.clone(), Arc::new(base.with(&pid, id)));
                let slot = self.new_series(family, Op::Last, sample, labels);
                self.per_process.insert((template, file.pid), slot);
                return Ok(slot);
            }
            // Python drops `pid` from the gauges it merges across processes.
            MetricKind::Gauge(_) => {
                let labels = info.labels_without(info.pid);
                self.plain_series(family, Op::for_kind(fam_kind), sample, labels)
            }
            MetricKind::Counter | MetricKind::Summary => {
                let labels = info.labels.clone();
                self.plain_series(family, Op::Sum, sample, labels)
            }
        };
        self.key_bind[key as usize] = KeyBind {
            family,
            slot,
            type_tag: file.type_tag,
            sum: self.accs.is_sum(slot),
        };
        Ok(slot)
    }

    /// The `_sum` slot (sample name `sample`) of histogram series `h`.
    fn histogram_sum_slot(&mut self, h: u32, sample: Arc<str>) -> u32 {
        if let Some(slot) = self.histograms[h as usize].sum {
            return slot;
        }
        let base = self.histograms[h as usize].base.clone();
        let slot = self.new_slot(Op::Sum, sample, base);
        self.histograms[h as usize].sum = Some(slot);
        slot
    }

    /// The slot of the series (`family`, `sample`, `labels`), made (merged
    /// by `op`) if new.
    fn plain_series(&mut self, family: u32, op: Op, sample: Arc<str>, labels: LabelPairs) -> u32 {
        let labels = Arc::new(Labels::new(labels));
        let index_key = (family, sample, labels);
        if let Some(&slot) = self.series_index.get(&index_key) {
            return slot;
        }
        let slot = self.new_series(family, op, index_key.1.clone(), index_key.2.clone());
        self.series_index.insert(index_key, slot);
        slot
    }

    /// A new series of `family`, merged by `op`, and its slot.
    fn new_series(&mut self, family: u32, op: Op, sample: Arc<str>, labels: Arc<Labels>) -> u32 {
        self.series.push(Series { sample, labels });
        let slot = self.accs.push(op);
        self.families[family as usize].items.push(Item::Plain(slot));
        slot
    }

    /// A new merged value and the series it is shown as (same index).
    fn new_slot(&mut self, op: Op, sample: Arc<str>, labels: Arc<Labels>) -> u32 {
        self.series.push(Series { sample, labels });
        self.accs.push(op)
    }

    /// The histogram series of `family` that a key (`info`) feeds: labelled
    /// as the key without its `le`; else the hash to add it with.
    fn find_histogram(&self, family: u32, info: &KeyInfo) -> Result<u32, u64> {
        let kept = info.labels_kept(info.le);
        let hash = histogram_hash(&self.hasher, family, kept.clone());
        let histograms = &self.histograms;
        let same = |&h: &u32| {
            let series = &histograms[h as usize];
            series.family == family && series.base.pairs().iter().eq(kept.clone())
        };
        self.histogram_index.find(hash, same).copied().ok_or(hash)
    }

    /// A new histogram series of `family` labelled `base` (`hash` from
    /// [`Self::find_histogram`]).
    fn add_histogram(&mut self, family: u32, base: LabelPairs, hash: u64) -> u32 {
        self.histograms.push(HistogramSeries {
            family,
            buckets: Vec::new(),
            base: Arc::new(Labels::new(base)),
            sum: None,
        });
        let h = (self.histograms.len() - 1) as u32;
        self.families[family as usize]
            .items
            .push(Item::Histogram(h));
        let (histograms, hasher) = (&self.histograms, &self.hasher);
        self.histogram_index.insert_unique(hash, h, |&h| {
            let series = &histograms[h as usize];
            histogram_hash(hasher, series.family, series.base.pairs().iter())
        });
        h
    }

    /// The slot of histogram series `h`'s bucket with bound `bound`, made if new.
    fn bucket_slot(&mut self, family: u32, h: u32, bound: f64) -> u32 {
        let h = h as usize;
        let buckets = &self.histograms[h].buckets;
        let pos = buckets.partition_point(|(b, _, _)| *b < bound);
        if let Some((b, _, slot)) = buckets.get(pos) {
            if *b == bound {
                return *slot;
            }
        }
        let le_name = self.strings.get("le");
        let le = self
            .bound_text
            .entry(bound.to_bits())
            .or_insert_with(|| muster_store::float_to_go_string(bound).into());
        let labels = Arc::new(self.histograms[h].base.with(&le_name, le));
        let bucket_name = self.families[family as usize].bucket_name.clone();
        let slot = self.new_slot(Op::Sum, bucket_name, labels.clone());
        self.histograms[h]
            .buckets
            .insert(pos, (bound, labels, slot));
        slot
    }

    fn histogram_samples(
        &self,
        family: &Family,
        h: &HistogramSeries,
        gen: u64,
        out: &mut Vec<Sample>,
    ) {
        let mut cumulative = 0.0;
        let mut any = false;
        for (_, labels, slot) in &h.buckets {
            if let Some(value) = self.accs.present(*slot, gen) {
                cumulative += value;
                any = true;
                out.push(Sample {
                    name: family.bucket_name.clone(),
                    labels: labels.clone(),
                    value: cumulative,
                    exemplar: None,
                    native: None,
                });
            }
        }
        if any {
            out.push(Sample {
                name: family.count_name.clone(),
                labels: h.base.clone(),
                value: cumulative,
                exemplar: None,
                native: None,
            });
        }
        if let Some(slot) = h.sum {
            if let Some(value) = self.accs.present(slot, gen) {
                out.push(Sample {
                    name: self.series[slot as usize].sample.clone(),
                    labels: h.base.clone(),
                    value,
                    exemplar: None,
                    native: None,
                });
            }
        }
    }
}

/// The hash of a histogram series: its family and labels (without `le`).
fn histogram_hash<'p>(
    hasher: &impl BuildHasher,
    family: u32,
    labels: impl Iterator<Item = &'p LabelPair>,
) -> u64 {
    let mut state = hasher.build_hasher();
    family.hash(&mut state);
    for (name, value) in labels {
        name.hash(&mut state);
        value.hash(&mut state);
    }
    state.finish()
}

/// The file whose entries are being bound.
struct FileContext {
    kind: FileKind,
    /// [`type_tag`] of `kind`.
    type_tag: u8,
    /// The process id, interned (see [`MergeState::intern_id`]).
    pid: u32,
}

/// A mapped file being merged: its mapping, its name and bytes in use if
/// its header is sound (its entries so far count either way), and what the
/// merge state holds of it.
type Work<'a> = (
    &'a MappedFile,
    Option<(&'a FileName, usize)>,
    &'a mut Parsed,
);

/// Reads the header of every file once, in two threads, each taking the
/// next file nobody has taken (a collector's first scrape of many files,
/// see [`TOUCH_HEADERS_FILES`]): the first read of a file's header is a page
/// fault that maps its first pages, about 6 µs each, and the headers are
/// read before anything else can start. The thread's core is also awake
/// when the scan's helper starts right after.
fn touch_headers(files: &[(Box<OsStr>, Tracked)]) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let touch = || {
        let _reading = shrunk::reading();
        while let Some((_, tracked)) =
            files.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
        {
            if let Some(map) = &tracked.map {
                let _ = std::hint::black_box(map.used());
            }
        }
    };
    std::thread::scope(|scope| {
        // Without a second thread (a container's task limit), this one
        // reads them all.
        let _ = std::thread::Builder::new()
            .name("headers".into())
            .spawn_scoped(scope, touch);
        touch();
    });
}

/// Whether a file being merged has entries appended since the last scrape.
fn has_new_entries((_, header, parsed): &Work<'_>) -> bool {
    header.is_some_and(|(_, used)| used > parsed.upto)
}

/// What a scan found in one file: its entries, where parsing stopped and
/// what stopped it; with the scan's key numbers as the state numbers them,
/// and the keys' bytes.
struct ScanView<'s, 'a> {
    entries: &'s [Scanned],
    end: usize,
    problem: Option<ReadError>,
    numbers: &'s [u32],
    raw: &'s [&'a [u8]],
}

/// Entries of one file that fed nothing in this pass, and what stopped the
/// parse.
#[derive(Default)]
struct Unbound {
    count: usize,
    first: Option<Arc<str>>,
    read_problem: Option<String>,
}

impl Unbound {
    /// Keeps the entry at `offset` (value at `value_pos`) to be looked at
    /// again.
    fn add(&mut self, reason: Arc<str>, offset: u32, value_pos: u32, parsed: &mut Parsed) {
        self.count += 1;
        self.first.get_or_insert(reason);
        parsed.unbound.push((offset, value_pos));
    }
}

/// What the hot loop needs to know of a key: its family and, once known
/// and when it does not depend on the process, the slot it feeds and the
/// file type that may feed it.
#[derive(Clone, Copy)]
struct KeyBind {
    family: u32,
    slot: u32,
    type_tag: u8,
    sum: bool,
}

/// "None" in [`KeyBind`]'s and key numbers' fields.
const NONE: u32 = u32::MAX;
/// No type in [`KeyBind::type_tag`].
const NO_TYPE: u8 = u8::MAX;

/// A small number for the type of a file kind (gauge modes alike).
fn type_tag(kind: FileKind) -> u8 {
    match kind {
        FileKind::Counter => 0,
        FileKind::Gauge(_) => 1,
        FileKind::Histogram => 2,
        FileKind::Summary => 3,
        // Never listed (see `metric_kind`).
        FileKind::Native | FileKind::Exemplar => 2,
    }
}

/// Parses a float as Python's `float()` does for the strings that occur in
/// `le` labels: decimal and exponent forms, `inf`/`+Inf`/`-inf`, `nan`
/// (Rust's grammar takes these in any case, as Python does), surrounding
/// blanks and `_` between digits.
fn parse_python_float(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.contains('_') {
        text.replace('_', "").parse().ok()
    } else {
        text.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_python_float;

    #[test]
    fn parses_le_like_python() {
        assert_eq!(parse_python_float("+Inf"), Some(f64::INFINITY));
        assert_eq!(parse_python_float("1e+06"), Some(1e6));
        assert_eq!(parse_python_float("0.005"), Some(0.005));
        assert_eq!(parse_python_float(" 2 "), Some(2.0));
        assert_eq!(parse_python_float("abc"), None);
        for inf in ["inf", "+inf", "Infinity", "+INFINITY"] {
            assert_eq!(parse_python_float(inf), Some(f64::INFINITY), "{inf}");
        }
        for neg in ["-inf", "-Infinity"] {
            assert_eq!(parse_python_float(neg), Some(f64::NEG_INFINITY), "{neg}");
        }
        for nan in ["nan", "NaN", "+nan", "-NAN"] {
            assert!(parse_python_float(nan).is_some_and(f64::is_nan), "{nan}");
        }
        assert_eq!(parse_python_float("1_000.5"), Some(1000.5));
    }
}
