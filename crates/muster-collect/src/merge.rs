//! The scrape-time merge, with the semantics of Python's
//! `MultiProcessCollector`, done incrementally.
//!
//! Files only ever grow by appending entries, so a long-lived [`Collector`]
//! remembers, per file, where each known entry's value is and which merged
//! series it feeds. A scrape then parses only the entries appended since
//! the last one and otherwise does one atomic load and one add per value.
//! A key's JSON is parsed once per distinct key, not once per file.

use std::ffi::OsStr;
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hashbrown::HashMap;
use muster_store::reader::{entries, MappedFile, ReadError};
use muster_store::{FileKind, FileName, GaugeMode, Key};

use crate::model::{Labels, MetricFamily, MetricKind, MetricSet, Sample};

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
/// Label pairs, sorted by name.
type LabelPairs = Vec<(String, String)>;

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

    /// Forgets what a file's entries fed into the merge (the file is gone,
    /// or starts over).
    fn release(&mut self, sums: &mut Vec<(u32, u32)>, others: &mut Vec<(u32, u32)>) {
        for &(_, slot) in sums.iter() {
            self.contributors[slot as usize] -= 1;
        }
        sums.clear();
        others.clear();
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
    name: Arc<str>,
    help: Arc<str>,
    kind: MetricKind,
    bucket_name: Arc<str>,
    count_name: Arc<str>,
    items: Vec<Item>,
}

/// A distinct key, parsed.
struct KeyInfo {
    family: u32,
    sample: Arc<str>,
    labels: Vec<(String, String)>,
    /// The slot, when it does not depend on the process.
    slot: Option<u32>,
}

/// What we know of one file of the directory.
struct Tracked {
    ino: u64,
    name: Option<FileName>,
    map: Option<MappedFile>,
    /// Entries are parsed up to here (an entry boundary).
    parsed_upto: usize,
    /// (value offset, slot) of every entry that feeds a sum slot.
    sums: Vec<(u32, u32)>,
    /// (value offset, slot) of every other entry that feeds the merge.
    others: Vec<(u32, u32)>,
    /// The file's process id, interned.
    id: u32,
    /// What went wrong reading the file in the last scrape.
    read_problem: Option<String>,
    /// Entries skipped for good because their key is bad.
    key_problem: Option<String>,
    logged: bool,
}

impl Tracked {
    fn problem(&self) -> Option<&String> {
        self.read_problem.as_ref().or(self.key_problem.as_ref())
    }
}

/// Merges a multiprocess directory; keep one alive to scrape incrementally.
pub struct Collector {
    dir: PathBuf,
    /// Known files, sorted by name.
    files: Vec<(Box<OsStr>, Tracked)>,
    keys: FastMap<Box<[u8]>, Result<u32, String>>,
    key_info: Vec<KeyInfo>,
    families: Vec<Family>,
    family_index: FastMap<Arc<str>, u32>,
    series: Vec<Series>,
    /// (family, sample name, labels) to slot.
    series_index: FastMap<(u32, Arc<str>, LabelPairs), u32>,
    histograms: Vec<HistogramSeries>,
    histogram_index: FastMap<(u32, LabelPairs), u32>,
    /// (key, interned process id) to slot, for per-process gauges.
    per_process: FastMap<(u32, u32), u32>,
    ids: FastMap<Box<str>, u32>,
    accs: Accumulators,
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
            keys: FastMap::default(),
            key_info: Vec::new(),
            families: Vec::new(),
            family_index: FastMap::default(),
            series: Vec::new(),
            series_index: FastMap::default(),
            histograms: Vec::new(),
            histogram_index: FastMap::default(),
            per_process: FastMap::default(),
            ids: FastMap::default(),
            accs: Accumulators::default(),
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

    /// Adds `muster_scrape_errors_total`, this collector's count of skipped
    /// bad files, to `set` (for a process that scrapes alone, such as the
    /// exporter; workers of one server count into a shared counter instead).
    pub fn append_own_metrics(&self, set: &mut MetricSet) {
        set.push_simple(
            "muster_scrape_errors",
            "Times a scrape skipped a bad multiprocess file (or a bad part of one).",
            MetricKind::Counter,
            "muster_scrape_errors_total",
            self.errors_total as f64,
        );
    }

    /// The metric files (`*.db`) in the directory at the last scrape, bad ones
    /// included.
    pub fn file_count(&self) -> usize {
        self.files.len()
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
        self.sync_files()?;
        self.gen += 1;
        self.last_errors.clear();
        let gen = self.gen;
        // Sum slots start from zero and are absent when no entry feeds them.
        self.accs.value.fill(0.0);
        let mut files = std::mem::take(&mut self.files);
        for (name, tracked) in &mut files {
            self.advance(tracked);
            if let Some(map) = &tracked.map {
                // Most entries: one load and one add, no branch.
                let values = &mut self.accs.value;
                for &(pos, slot) in &tracked.sums {
                    values[slot as usize] += map.load_value(pos as usize);
                }
                for &(pos, slot) in &tracked.others {
                    let (value, timestamp) = map.load(pos as usize);
                    self.accs.combine(slot, gen, value, timestamp);
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
        self.files = files;
        Ok(self.snapshot())
    }

    /// Brings the file table in line with the directory listing.
    fn sync_files(&mut self) -> Result<(), CollectError> {
        let dir_err = |source| CollectError::Dir {
            path: self.dir.clone(),
            source,
        };
        // A compaction (compact.rs) renames and unlinks files: list and open
        // them while none runs.
        let guard = crate::compact::ReadGuard::acquire(&self.dir);
        let listing = std::fs::read_dir(&self.dir).map_err(dir_err)?;
        let mut present: Vec<(Box<OsStr>, u64)> = Vec::with_capacity(self.files.len());
        for entry in listing {
            let entry = entry.map_err(dir_err)?;
            let name = entry.file_name();
            let bytes = name.as_encoded_bytes();
            if !bytes.ends_with(b".db") || bytes.starts_with(b".") {
                continue;
            }
            present.push((name.into_boxed_os_str(), entry.ino()));
        }
        present.sort_unstable();
        // Both lists are sorted by name: keep a known file when its name and
        // inode are still listed, open the rest. (The open descriptor keeps
        // a deleted file's inode from being reused, so a replaced file always
        // shows a new inode.)
        let mut known = std::mem::take(&mut self.files).into_iter().peekable();
        let mut files = Vec::with_capacity(present.len());
        let mut gone = Vec::new();
        for (name, ino) in present {
            while let Some((_, old)) = known.next_if(|(k, _)| *k < name) {
                gone.push(old);
            }
            match known.next_if(|(k, t)| *k == name && t.ino == ino) {
                Some(kept) => files.push(kept),
                None => {
                    if let Some(tracked) = self.open(&name, ino) {
                        files.push((name, tracked));
                    }
                }
            }
        }
        gone.extend(known.map(|(_, old)| old));
        // Files an archive absorbed count in the archive only (compact.rs).
        let absorbed = crate::compact::absorbed_files(
            files
                .iter()
                .filter_map(|(name, t)| Some((&**name, t.map.as_ref()?.bytes()))),
        );
        let (absorbed, files): (Vec<_>, Vec<_>) = files
            .into_iter()
            .partition(|(name, _)| absorbed.contains(&**name));
        gone.extend(absorbed.into_iter().map(|(_, t)| t));
        for mut old in gone {
            self.accs.release(&mut old.sums, &mut old.others);
        }
        self.files = files;
        if !guard.covered_listing() {
            // A compaction started meanwhile: list again under its lock.
            return self.sync_files();
        }
        Ok(())
    }

    /// Opens a newly listed file; `None` if it vanished meanwhile.
    fn open(&mut self, name: &OsStr, ino: u64) -> Option<Tracked> {
        let mut tracked = Tracked {
            ino,
            name: None,
            map: None,
            parsed_upto: muster_store::format::HEADER_SIZE,
            sums: Vec::new(),
            others: Vec::new(),
            id: 0,
            read_problem: None,
            key_problem: None,
            logged: false,
        };
        let Some(parsed) = name.to_str().and_then(FileName::parse) else {
            tracked.read_problem =
                Some("not a metric file name (<type>_<id>.db or gauge_<mode>_<id>.db)".into());
            return Some(tracked);
        };
        tracked.id = self.intern_id(&parsed.id);
        tracked.name = Some(parsed);
        match MappedFile::open(&self.dir.join(name)) {
            Ok(map) => tracked.map = Some(map),
            Err(ReadError::Io(_)) if !self.dir.join(name).exists() => return None,
            Err(ReadError::NotRegular) => {
                tracked.read_problem =
                    Some("not a regular file (a symlink or special file); not followed".into())
            }
            Err(e) => tracked.read_problem = Some(e.to_string()),
        }
        Some(tracked)
    }

    /// Parses the entries appended to `tracked` since the last scrape.
    fn advance(&mut self, tracked: &mut Tracked) {
        let Some(map) = tracked.map.as_mut() else {
            return;
        };
        let Some(name) = &tracked.name else {
            return;
        };
        tracked.read_problem = None;
        let mut used = map.used();
        if used.is_err() {
            // The file may have grown since it was mapped (or been empty).
            if let Err(e) = map.remap() {
                tracked.read_problem = Some(e.to_string());
                return;
            }
            used = map.used();
        }
        let used = match used {
            Ok(used) => used,
            Err(e) => {
                tracked.read_problem = Some(e.to_string());
                return;
            }
        };
        if used < tracked.parsed_upto {
            // Rewritten from scratch under the same inode: start over.
            self.accs.release(&mut tracked.sums, &mut tracked.others);
            tracked.key_problem = None;
            tracked.parsed_upto = muster_store::format::HEADER_SIZE;
        }
        if used == tracked.parsed_upto {
            return;
        }
        let kind = name.kind;
        let id = name.id.clone();
        let mut bad_keys = 0usize;
        let mut first_bad: Option<String> = None;
        let data = map.bytes();
        for entry in entries(data, tracked.parsed_upto, used) {
            match entry {
                Ok(entry) => {
                    tracked.parsed_upto = entry.end();
                    match self.slot_for(entry.key, kind, tracked.id, &id) {
                        Ok(slot) if self.accs.is_sum(slot) => {
                            self.accs.contributors[slot as usize] += 1;
                            tracked.sums.push((entry.value_pos as u32, slot));
                        }
                        Ok(slot) => tracked.others.push((entry.value_pos as u32, slot)),
                        Err(reason) => {
                            bad_keys += 1;
                            first_bad.get_or_insert(reason);
                        }
                    }
                }
                Err(e) => {
                    tracked.read_problem = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(reason) = first_bad {
            tracked.key_problem = Some(format!("{bad_keys} entries skipped: {reason}"));
        }
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

    /// The slot an entry with this key feeds, in a file of `kind` from the
    /// process `id` (interned as `id_num`).
    fn slot_for(
        &mut self,
        raw: &[u8],
        kind: FileKind,
        id_num: u32,
        id: &str,
    ) -> Result<u32, String> {
        let key = match self.keys.get(raw) {
            Some(found) => found.clone()?,
            None => {
                let parsed = self.register_key(raw, kind);
                self.keys.insert(raw.into(), parsed.clone());
                parsed?
            }
        };
        let info = &self.key_info[key as usize];
        let family = &self.families[info.family as usize];
        if family.kind.type_name() != kind.type_name() {
            return Err(format!(
                "family {} is a {} but this file holds {} values",
                family.name,
                family.kind.type_name(),
                kind.type_name()
            ));
        }
        if let Some(slot) = info.slot {
            return Ok(slot);
        }
        // A gauge that keeps one series per process: label it with the id.
        if let Some(&slot) = self.per_process.get(&(key, id_num)) {
            return Ok(slot);
        }
        let mut labels = info.labels.clone();
        labels.push(("pid".to_owned(), id.to_owned()));
        let (family, sample) = (info.family, info.sample.clone());
        let slot = self.plain_series(family, sample, labels);
        self.per_process.insert((key, id_num), slot);
        Ok(slot)
    }

    /// Parses a new key and creates what it needs (family, series, slot).
    fn register_key(&mut self, raw: &[u8], kind: FileKind) -> Result<u32, String> {
        let key = Key::parse(raw)
            .map_err(|e| format!("key is not valid JSON of the expected shape: {e}"))?;
        let family = self.family(&key.family, &key.help, kind);
        let fam_kind = self.families[family as usize].kind;
        let sample: Arc<str> = key.sample.into();
        let mut labels = key.labels;
        let slot = match fam_kind {
            MetricKind::Histogram => {
                let le_pos = labels.iter().position(|(n, _)| n == "le");
                if let Some(pos) = le_pos {
                    let (_, text) = labels.remove(pos);
                    let bound = parse_python_float(&text)
                        .ok_or_else(|| format!("bucket bound le={text:?} is not a number"))?;
                    Some(self.bucket_slot(family, labels.clone(), bound))
                } else if *sample != *format!("{}_sum", key.family) {
                    // Python and muster write only buckets and `_sum`; `_count`
                    // comes from the buckets. Anything else is not added into `_sum`.
                    return Err(format!(
                        "histogram entry {sample:?} is neither a `_bucket` (with `le`) nor `_sum`"
                    ));
                } else {
                    let h = self.histogram_series(family, labels.clone());
                    let slot = match self.histograms[h as usize].sum {
                        Some(slot) => slot,
                        None => {
                            let base = self.histograms[h as usize].base.clone();
                            let slot = self.new_slot(Op::Sum, sample.clone(), base);
                            self.histograms[h as usize].sum = Some(slot);
                            slot
                        }
                    };
                    Some(slot)
                }
            }
            MetricKind::Gauge(mode) if mode.is_per_process() => None,
            _ => Some(self.plain_series(family, sample.clone(), labels.clone())),
        };
        self.key_info.push(KeyInfo {
            family,
            sample,
            labels,
            slot,
        });
        Ok((self.key_info.len() - 1) as u32)
    }

    fn family(&mut self, name: &str, help: &str, kind: FileKind) -> u32 {
        if let Some(&f) = self.family_index.get(name) {
            return f;
        }
        let kind = match kind {
            FileKind::Counter => MetricKind::Counter,
            FileKind::Gauge(mode) => MetricKind::Gauge(mode),
            FileKind::Histogram => MetricKind::Histogram,
            FileKind::Summary => MetricKind::Summary,
        };
        let name: Arc<str> = name.into();
        self.families.push(Family {
            bucket_name: format!("{name}_bucket").into(),
            count_name: format!("{name}_count").into(),
            name: name.clone(),
            help: help.into(),
            kind,
            items: Vec::new(),
        });
        let index = (self.families.len() - 1) as u32;
        self.family_index.insert(name, index);
        index
    }

    fn plain_series(
        &mut self,
        family: u32,
        sample: Arc<str>,
        labels: Vec<(String, String)>,
    ) -> u32 {
        let index_key = (family, sample.clone(), labels);
        if let Some(&slot) = self.series_index.get(&index_key) {
            return slot;
        }
        let op = Op::for_kind(self.families[family as usize].kind);
        let slot = self.new_slot(op, sample, Arc::new(Labels::new(index_key.2.clone())));
        self.families[family as usize].items.push(Item::Plain(slot));
        self.series_index.insert(index_key, slot);
        slot
    }

    /// A new merged value and the series it is shown as (same index).
    fn new_slot(&mut self, op: Op, sample: Arc<str>, labels: Arc<Labels>) -> u32 {
        self.series.push(Series { sample, labels });
        self.accs.push(op)
    }

    fn histogram_series(&mut self, family: u32, labels: Vec<(String, String)>) -> u32 {
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

    fn bucket_slot(&mut self, family: u32, labels: Vec<(String, String)>, bound: f64) -> u32 {
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

    /// Builds the result from the slots this scrape set.
    fn snapshot(&self) -> MetricSet {
        let gen = self.gen;
        let mut families = Vec::with_capacity(self.families.len());
        for family in &self.families {
            let mut samples = Vec::new();
            for item in &family.items {
                match *item {
                    Item::Plain(slot) => {
                        if let Some(value) = self.accs.present(slot, gen) {
                            let series = &self.series[slot as usize];
                            samples.push(Sample {
                                name: series.sample.clone(),
                                labels: series.labels.clone(),
                                value,
                            });
                        }
                    }
                    Item::Histogram(h) => {
                        self.histogram_samples(family, &self.histograms[h as usize], &mut samples)
                    }
                }
            }
            if !samples.is_empty() {
                families.push(MetricFamily {
                    name: family.name.clone(),
                    help: family.help.clone(),
                    kind: family.kind,
                    samples,
                });
            }
        }
        MetricSet { families }
    }

    fn histogram_samples(&self, family: &Family, h: &HistogramSeries, out: &mut Vec<Sample>) {
        let gen = self.gen;
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
