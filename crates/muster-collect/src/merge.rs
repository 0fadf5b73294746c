//! The scrape-time merge, with the semantics of Python's
//! `MultiProcessCollector`, done incrementally.
//!
//! Files only ever grow by appending entries, so a long-lived [`Collector`]
//! remembers, per file, where each known entry's value is and which merged
//! series it feeds. A scrape then parses only the entries appended since
//! the last one and otherwise does one atomic load and one add per value.
//! Keys are interned: a key's JSON is parsed once per distinct byte string,
//! however many files hold it.
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
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashMap;
use muster_store::reader::{entries, MappedFile, ReadError};
use muster_store::{FileKind, FileName, GaugeMode, Key};

use crate::listing::{list_metric_files, Listed};
use crate::model::{Labels, MetricFamily, MetricKind, MetricSet, Sample};
use crate::names::{escape_label_name, escape_metric_name};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// Label pairs, sorted by name.
type LabelPairs = Vec<(String, String)>;

/// Released entries the state may hold before it is rebuilt, however few
/// the live ones are.
const PRUNE_MIN_ENTRIES: usize = 1024;

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
    bucket_name: Arc<str>,
    count_name: Arc<str>,
    sum_name: Arc<str>,
    items: Vec<Item>,
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
    /// The slot, once known, when it does not depend on the process.
    slot: Option<u32>,
}

impl KeyInfo {
    /// The labels without the one at `skip`.
    fn labels_without(&self, skip: Option<usize>) -> LabelPairs {
        let mut labels = self.labels.clone();
        if let Some(i) = skip {
            labels.remove(i);
        }
        labels
    }
}

/// What we know of one file of the directory.
struct Tracked {
    ino: u64,
    name: Option<FileName>,
    map: Option<MappedFile>,
    /// Why the file could not be opened; it is tried again at every scrape.
    open_problem: Option<String>,
    /// Entries are parsed up to here (an entry boundary).
    parsed_upto: usize,
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
    /// What went wrong reading the file in the last scrape.
    read_problem: Option<String>,
    /// Why entries fed nothing in the last scrape.
    key_problem: Option<String>,
    logged: bool,
}

impl Tracked {
    fn problem(&self) -> Option<&String> {
        self.open_problem
            .as_ref()
            .or(self.read_problem.as_ref())
            .or(self.key_problem.as_ref())
    }

    /// Entries the state holds for this file.
    fn entry_count(&self) -> usize {
        self.sums.len() + self.others.len() + self.unbound.len()
    }

    /// Forgets everything parsed from the file (its bytes are read again).
    fn forget_entries(&mut self) {
        self.parsed_upto = muster_store::format::HEADER_SIZE;
        self.sums.clear();
        self.others.clear();
        self.unbound.clear();
        self.families.clear();
        self.pid = None;
        self.key_problem = None;
    }
}

/// Everything derived from the files' entries; rebuilt from the files when it
/// must change in a way an update cannot express (see the module docs).
#[derive(Default)]
struct MergeState {
    keys: FastMap<Box<[u8]>, u32>,
    key_info: Vec<Result<KeyInfo, Arc<str>>>,
    families: Vec<Family>,
    family_index: FastMap<Arc<str>, u32>,
    /// Types to give families when they are made: the resolution that made
    /// the state be rebuilt.
    preset: FastMap<Arc<str>, MetricKind>,
    series: Vec<Series>,
    /// (family, sample name, labels) to slot.
    series_index: FastMap<(u32, Arc<str>, LabelPairs), u32>,
    histograms: Vec<HistogramSeries>,
    histogram_index: FastMap<(u32, LabelPairs), u32>,
    /// (key, interned process id) to slot, for per-process gauges.
    per_process: FastMap<(u32, u32), u32>,
    ids: FastMap<Box<str>, u32>,
    accs: Accumulators,
    /// Marks for [`MergeState::note_family`]: the pass that last noted each family.
    family_mark: Vec<u64>,
    mark: u64,
    /// Entries of files released (gone, or started over) since the state was built.
    released: usize,
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
}

impl Collector {
    /// A collector for `dir`. Nothing is read until [`Collector::collect`].
    pub fn new(dir: impl Into<PathBuf>) -> Collector {
        Collector {
            dir: dir.into(),
            files: Vec::new(),
            state: MergeState::default(),
            gen: 0,
            errors_total: 0,
            last_errors: Vec::new(),
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
        let mut changed = self.sync_files()?;
        let live: usize = self.files.iter().map(|(_, t)| t.entry_count()).sum();
        if self.state.released > live.max(PRUNE_MIN_ENTRIES) {
            let kinds = self.state.current_kinds();
            self.rebuild(kinds);
            changed = true;
        }
        changed |= self.advance_all();
        if changed {
            if let Some(resolved) = self.resolve() {
                // A family's type or mode is not what its series were made
                // for: make them again, from the files, with the right one.
                self.rebuild(resolved);
                self.advance_all();
                self.resolve();
            }
        }
        self.gen += 1;
        self.last_errors.clear();
        let gen = self.gen;
        // Sum slots start from zero and are absent when no entry feeds them.
        let accs = &mut self.state.accs;
        accs.value.fill(0.0);
        for (name, tracked) in &mut self.files {
            if let Some(map) = &tracked.map {
                // Most entries: one load and one add, no branch.
                let values = &mut accs.value;
                for &(pos, slot) in &tracked.sums {
                    values[slot as usize] += map.load_value(pos as usize);
                }
                for &(pos, slot) in &tracked.others {
                    let (value, timestamp) = map.load(pos as usize);
                    accs.combine(slot, gen, value, timestamp);
                }
            }
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
        Ok(self.snapshot())
    }

    /// Brings the file table in line with the directory listing; whether
    /// files appeared, vanished or could be opened at last.
    fn sync_files(&mut self) -> Result<bool, CollectError> {
        let listing = list_metric_files(&self.dir).map_err(|source| CollectError::Dir {
            path: self.dir.clone(),
            source,
        })?;
        // Both lists are sorted by name: keep a known file when its name and
        // inode are still listed, open the rest. (The open descriptor keeps
        // a deleted file's inode from being reused, so a replaced file always
        // shows a new inode.)
        let mut known = std::mem::take(&mut self.files).into_iter().peekable();
        let mut files = Vec::with_capacity(listing.len());
        let mut changed = false;
        for Listed { name, ino } in listing {
            while let Some((_, mut old)) = known.next_if(|(k, _)| *k < name) {
                self.state.release_entries(&mut old);
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
            self.state.release_entries(&mut old);
            changed = true;
        }
        self.files = files;
        Ok(changed)
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

    /// Parses what every file appended since the last scrape and looks at
    /// entries that fed nothing again; whether a file holds a family it did
    /// not hold before.
    fn advance_all(&mut self) -> bool {
        let mut grew = false;
        for (_, tracked) in &mut self.files {
            grew |= self.state.advance(tracked);
        }
        grew
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
            for &(family, key) in &tracked.families {
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
    /// [`Collector::advance_all`]), giving families the types in `preset`.
    fn rebuild(&mut self, preset: FastMap<Arc<str>, MetricKind>) {
        self.state = MergeState {
            preset,
            ..MergeState::default()
        };
        for (_, tracked) in &mut self.files {
            tracked.forget_entries();
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
            let mut samples = Vec::new();
            for item in &family.items {
                match *item {
                    Item::Plain(slot) => {
                        if let Some(value) = state.accs.present(slot, gen) {
                            let series = &state.series[slot as usize];
                            samples.push(Sample {
                                name: series.sample.clone(),
                                labels: series.labels.clone(),
                                value,
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
                });
            }
        }
        MetricSet { families }
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
            parsed_upto: muster_store::format::HEADER_SIZE,
            sums: Vec::new(),
            others: Vec::new(),
            unbound: Vec::new(),
            families: Vec::new(),
            pid: None,
            read_problem: None,
            key_problem: None,
            logged: false,
        }
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
    fn release_entries(&mut self, tracked: &mut Tracked) {
        self.released += tracked.entry_count();
        for &(_, slot) in &tracked.sums {
            self.accs.contributors[slot as usize] -= 1;
        }
        tracked.forget_entries();
    }

    /// Parses the entries appended to `tracked` since the last scrape, after
    /// looking again at those that fed nothing; whether the file holds a
    /// family it did not hold before.
    fn advance(&mut self, tracked: &mut Tracked) -> bool {
        let Some(mut map) = tracked.map.take() else {
            return false;
        };
        let grew = match tracked.name.take() {
            Some(name) => {
                let grew = self.advance_mapped(tracked, &mut map, &name);
                tracked.name = Some(name);
                grew
            }
            None => false,
        };
        tracked.map = Some(map);
        grew
    }

    /// [`MergeState::advance`] with the file's mapping and name taken out.
    fn advance_mapped(
        &mut self,
        tracked: &mut Tracked,
        map: &mut MappedFile,
        name: &FileName,
    ) -> bool {
        tracked.read_problem = None;
        let mut used = map.used();
        if used.is_err() {
            // The file may have grown since it was mapped (or been empty).
            if let Err(e) = map.remap() {
                tracked.read_problem = Some(e.to_string());
                return false;
            }
            used = map.used();
        }
        let used = match used {
            Ok(used) => used,
            Err(e) => {
                tracked.read_problem = Some(e.to_string());
                return false;
            }
        };
        if used < tracked.parsed_upto {
            // Rewritten from scratch under the same inode: start over.
            self.release_entries(tracked);
        }
        if used == tracked.parsed_upto && tracked.unbound.is_empty() {
            return false;
        }
        let file = FileContext {
            kind: name.kind,
            pid: match tracked.pid {
                Some(pid) => pid,
                None => *tracked.pid.insert(self.intern_id(&name.id)),
            },
            id: &name.id,
        };
        let data = map.bytes();
        self.mark += 1;
        for &(family, _) in &tracked.families {
            self.mark_family(family);
        }
        let families_before = tracked.families.len();
        let mut bad = Unbound {
            sums_before: tracked.sums.len(),
            ..Unbound::default()
        };

        // Entries that fed nothing at the last scrape: their key is read
        // again (a repaired file) and bound again (a resolved conflict).
        for (offset, value_pos) in std::mem::take(&mut tracked.unbound) {
            let bound = match entries(data, offset as usize, used).next() {
                Some(Ok(entry)) => self.bind_entry(entry.key, &file, &mut tracked.families),
                _ => Err("entry no longer readable".into()),
            };
            bad.record(bound, offset, value_pos, tracked, &self.accs);
        }

        if used > tracked.parsed_upto {
            tracked.sums.reserve((used - tracked.parsed_upto) / 128);
            for entry in entries(data, tracked.parsed_upto, used) {
                match entry {
                    Ok(entry) => {
                        tracked.parsed_upto = entry.end();
                        let bound = self.bind_entry(entry.key, &file, &mut tracked.families);
                        let (offset, value_pos) = (entry.offset as u32, entry.value_pos as u32);
                        bad.record(bound, offset, value_pos, tracked, &self.accs);
                    }
                    Err(e) => {
                        tracked.read_problem = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        for &(_, slot) in &tracked.sums[bad.sums_before..] {
            self.accs.contributors[slot as usize] += 1;
        }
        tracked.key_problem = bad
            .first
            .map(|reason| format!("{} entries skipped: {reason}", bad.count));
        tracked.families.len() > families_before
    }

    /// Interns a key, notes its family among the file's `families` and finds
    /// the slot it feeds.
    fn bind_entry(
        &mut self,
        raw: &[u8],
        file: &FileContext<'_>,
        families: &mut Vec<(u32, u32)>,
    ) -> Result<u32, Arc<str>> {
        let key = self.intern_key(raw);
        if let Ok(info) = &self.key_info[key as usize] {
            let family = info.family;
            if self.family_mark[family as usize] != self.mark {
                self.mark_family(family);
                families.push((family, key));
            }
        }
        self.slot_for(key, file)
    }

    fn mark_family(&mut self, family: u32) {
        self.family_mark[family as usize] = self.mark;
    }

    /// The number of a key's bytes, parsing them if they are new.
    fn intern_key(&mut self, raw: &[u8]) -> u32 {
        if let Some(&key) = self.keys.get(raw) {
            return key;
        }
        let info = self.parse_key(raw);
        self.key_info.push(info);
        let key = (self.key_info.len() - 1) as u32;
        self.keys.insert(raw.into(), key);
        key
    }

    /// Parses a new key; names as shown (escaped), labels sorted.
    fn parse_key(&mut self, raw: &[u8]) -> Result<KeyInfo, Arc<str>> {
        let key = Key::parse(raw)
            .map_err(|e| format!("key is not valid JSON of the expected shape: {e}"))?;
        if key.family.is_empty() || key.sample.is_empty() {
            return Err("key has an empty metric or sample name".into());
        }
        let mut labels: LabelPairs = Vec::with_capacity(key.labels.len());
        for (name, value) in key.labels {
            let shown = escape_label_name(&name);
            if shown.is_empty() {
                return Err("key has an empty label name".into());
            }
            if shown != name.as_str() && labels.iter().any(|(n, _)| *n == shown) {
                return Err(
                    format!("labels {name:?} and {shown:?} are both shown as {shown:?}").into(),
                );
            }
            labels.push((shown.into_owned(), value));
        }
        labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(format!("two labels are shown as {:?}", pair[0].0).into());
        }
        let help: Arc<str> = key.help.into();
        let family = self.family(&escape_metric_name(&key.family), &help);
        Ok(KeyInfo {
            family,
            sample: escape_metric_name(&key.sample).into(),
            le: labels.iter().position(|(n, _)| n == "le"),
            pid: labels.iter().position(|(n, _)| n == "pid"),
            labels,
            help,
            slot: None,
        })
    }

    /// The family called `name` (as shown), made if it is new.
    fn family(&mut self, name: &str, help: &Arc<str>) -> u32 {
        if let Some(&f) = self.family_index.get(name) {
            return f;
        }
        let name: Arc<str> = name.into();
        self.families.push(Family {
            bucket_name: format!("{name}_bucket").into(),
            count_name: format!("{name}_count").into(),
            sum_name: format!("{name}_sum").into(),
            kind: None,
            name: name.clone(),
            help: help.clone(),
            items: Vec::new(),
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
        self.ids.insert(id.into(), n);
        n
    }

    /// The slot an entry with key `key` feeds in `file`.
    fn slot_for(&mut self, key: u32, file: &FileContext<'_>) -> Result<u32, Arc<str>> {
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
        if let Some(slot) = info.slot {
            return Ok(slot);
        }
        let family = info.family;
        let sample = info.sample.clone();
        let slot = match fam_kind {
            MetricKind::Histogram => match info.le {
                Some(le) => {
                    let text = &info.labels[le].1;
                    let bound = parse_python_float(text)
                        .ok_or_else(|| format!("bucket bound le={text:?} is not a number"))?;
                    let labels = info.labels_without(Some(le));
                    self.bucket_slot(family, labels, bound)
                }
                None => {
                    let labels = info.labels.clone();
                    self.histogram_sum_slot(family, sample, labels)?
                }
            },
            MetricKind::Gauge(mode) if mode.is_per_process() => {
                // One series per process, labelled with its id (which
                // replaces a label of the same name, as in Python).
                if let Some(&slot) = self.per_process.get(&(key, file.pid)) {
                    return Ok(slot);
                }
                let mut labels = info.labels_without(info.pid);
                labels.push(("pid".to_owned(), file.id.to_owned()));
                let slot = self.plain_series(family, sample, labels);
                self.per_process.insert((key, file.pid), slot);
                return Ok(slot);
            }
            // Python drops `pid` from the gauges it merges across processes.
            MetricKind::Gauge(_) => {
                let labels = info.labels_without(info.pid);
                self.plain_series(family, sample, labels)
            }
            MetricKind::Counter | MetricKind::Summary => {
                let labels = info.labels.clone();
                self.plain_series(family, sample, labels)
            }
        };
        if let Ok(info) = &mut self.key_info[key as usize] {
            info.slot = Some(slot);
        }
        Ok(slot)
    }

    /// The `_sum` slot of a histogram entry without `le`.
    fn histogram_sum_slot(
        &mut self,
        family: u32,
        sample: Arc<str>,
        labels: LabelPairs,
    ) -> Result<u32, Arc<str>> {
        if sample != self.families[family as usize].sum_name {
            // Python and muster write only buckets and `_sum`; `_count`
            // comes from the buckets. Anything else is not added into `_sum`.
            return Err(format!(
                "histogram entry {sample:?} is neither a `_bucket` (with `le`) nor `_sum`"
            )
            .into());
        }
        let h = self.histogram_series(family, labels);
        if let Some(slot) = self.histograms[h as usize].sum {
            return Ok(slot);
        }
        let base = self.histograms[h as usize].base.clone();
        let slot = self.new_slot(Op::Sum, sample, base);
        self.histograms[h as usize].sum = Some(slot);
        Ok(slot)
    }

    fn plain_series(&mut self, family: u32, sample: Arc<str>, labels: LabelPairs) -> u32 {
        let index_key = (family, sample, labels);
        if let Some(&slot) = self.series_index.get(&index_key) {
            return slot;
        }
        let kind = self.families[family as usize].kind;
        let op = Op::for_kind(kind.expect("a family has a type before it has series"));
        let labels = Arc::new(Labels::new(index_key.2.clone()));
        let slot = self.new_slot(op, index_key.1.clone(), labels);
        self.families[family as usize].items.push(Item::Plain(slot));
        self.series_index.insert(index_key, slot);
        slot
    }

    /// A new merged value and the series it is shown as (same index).
    fn new_slot(&mut self, op: Op, sample: Arc<str>, labels: Arc<Labels>) -> u32 {
        self.series.push(Series { sample, labels });
        self.accs.push(op)
    }

    fn histogram_series(&mut self, family: u32, labels: LabelPairs) -> u32 {
        let index_key = (family, labels);
        if let Some(&h) = self.histogram_index.get(&index_key) {
            return h;
        }
        self.histograms.push(HistogramSeries {
            buckets: Vec::new(),
            base: Arc::new(Labels::new(index_key.1.clone())),
            sum: None,
        });
        let h = (self.histograms.len() - 1) as u32;
        self.families[family as usize]
            .items
            .push(Item::Histogram(h));
        self.histogram_index.insert(index_key, h);
        h
    }

    fn bucket_slot(&mut self, family: u32, labels: LabelPairs, bound: f64) -> u32 {
        let h = self.histogram_series(family, labels) as usize;
        let buckets = &self.histograms[h].buckets;
        let pos = buckets.partition_point(|(b, _, _)| *b < bound);
        if let Some((b, _, slot)) = buckets.get(pos) {
            if *b == bound {
                return *slot;
            }
        }
        let mut pairs = self.histograms[h].base.pairs().to_vec();
        pairs.push(("le".to_owned(), muster_store::float_to_go_string(bound)));
        let labels = Arc::new(Labels::new(pairs));
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
                });
            }
        }
        if any {
            out.push(Sample {
                name: family.count_name.clone(),
                labels: h.base.clone(),
                value: cumulative,
            });
        }
        if let Some(slot) = h.sum {
            if let Some(value) = self.accs.present(slot, gen) {
                out.push(Sample {
                    name: self.series[slot as usize].sample.clone(),
                    labels: h.base.clone(),
                    value,
                });
            }
        }
    }
}

/// The file whose entries are being bound.
struct FileContext<'a> {
    kind: FileKind,
    /// The process id, interned.
    pid: u32,
    /// The process id (the `pid` label of per-process gauges).
    id: &'a str,
}

/// Entries of one file that fed nothing in this pass.
#[derive(Default)]
struct Unbound {
    count: usize,
    first: Option<Arc<str>>,
    /// `sums` entries of the file before this pass (their slots are counted).
    sums_before: usize,
}

impl Unbound {
    /// Files the entry at `offset` where the result of binding it says.
    fn record(
        &mut self,
        bound: Result<u32, Arc<str>>,
        offset: u32,
        value_pos: u32,
        tracked: &mut Tracked,
        accs: &Accumulators,
    ) {
        match bound {
            Ok(slot) if accs.is_sum(slot) => tracked.sums.push((value_pos, slot)),
            Ok(slot) => tracked.others.push((value_pos, slot)),
            Err(reason) => {
                self.count += 1;
                self.first.get_or_insert(reason);
                tracked.unbound.push((offset, value_pos));
            }
        }
    }
}

/// Parses a float as Python's `float()` does for the strings that occur in
/// `le` labels: decimal and exponent forms, `inf`/`+Inf`/`-inf`, `nan`
/// (Rust's grammar takes these in any case, as Python does), surrounding
/// blanks and `_` between digits.
fn parse_python_float(text: &str) -> Option<f64> {
    text.trim().replace('_', "").parse().ok()
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
