//! Dead-writer compaction: folding the pid-named files of dead processes into
//! one *archive* file per kind, exactly once and crash-safe, so the directory
//! stays bounded and no counter ever goes down.
//!
//! Python's `prometheus_client` names files by pid and never removes a dead
//! process's counters, histograms and summaries. A supervisor that reaped the
//! pid can: [`Compaction`] adds the dead files' values into
//! `counter_archive.db`, `histogram_archive.db`, `summary_archive.db` and
//! `gauge_{min,max,sum,mostrecent}_archive.db` (each mode folded by its own
//! rule) and removes the dead files; `live*` and `all` gauge files of a dead
//! process are removed (its values vanish, as `mark_process_dead` does for
//! `live*`). Archives are files of the ordinary format, so Python's
//! `MultiProcessCollector` reads them like any other.
//!
//! # The protocol
//!
//! One run holds an exclusive `flock` on `.muster-compact.lock` throughout.
//! Every change to the directory is one `rename` or `unlink`:
//!
//! 1. *Recover* what a killed run left: remove its hidden temporary archive,
//!    and unlink the files an archive already lists as absorbed.
//! 2. *Claim* each dead file by renaming `counter_1234.db` to
//!    `counter_1234-c<gen>.db`. Readers still count it (it is visible and in no
//!    archive); a process that reused pid 1234 now creates a new file instead
//!    of adopting this one.
//! 3. *Check* that nothing can write the claimed files any more: pid 1234 is
//!    gone and/or no process maps them writable or has them open for writing
//!    (from `/proc`); see [`Writers`]. Files that fail stay claimed and counted,
//!    for a later run.
//! 4. *Fold*: write the old archive's entries plus the claimed files' values
//!    to a hidden temporary, with a trailer (past the header's `used`, where
//!    Python does not look) listing the claimed file names it absorbed; then
//!    `rename` it over the archive.
//! 5. *Unlink* the absorbed files; remove the dropped gauge files.
//!
//! muster's reader ([`crate::Collector`]) lists and opens files while holding
//! the lock shared (so it never sees a run's renames half done), and skips
//! every file an archive it opened lists as absorbed: a value is in the
//! claimed file or in the archive, never counted in both. A run killed at any
//! point leaves a directory that reads the same; the next run finishes it.

use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use muster_store::format::{padding, HEADER_SIZE};
use muster_store::reader::{entries, MappedFile};
use muster_store::{FileKind, FileName, GaugeMode, Key};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock file a compaction holds exclusively and readers hold shared.
pub const LOCK_FILE: &str = ".muster-compact.lock";
/// The turnstile in front of [`LOCK_FILE`]: a compaction takes it first and
/// readers pass it on their way in, so a stream of overlapping readers cannot
/// keep a compaction out forever (`flock` grants a shared lock while an
/// exclusive one waits).
pub const TURNSTILE_FILE: &str = ".muster-compact.turn";
/// The id of archive files (`counter_archive.db`, ...).
pub const ARCHIVE_ID: &str = "archive";
/// Marks the trailer of an archive: the files it absorbed.
const TRAILER_MAGIC: &[u8; 8] = b"MUSTARC1";
/// How long a reader waits for a running compaction before listing anyway.
const READER_WAIT: Duration = Duration::from_secs(2);

/// What may still write a dead process's files, as far as the caller knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writers {
    /// The caller reaped the pid itself (a supervisor's child). The files are
    /// folded once no process of that pid exists or, if the pid was already
    /// reused, no process maps or has open the claimed files for writing.
    Reaped,
    /// Nobody vouches for the pid (e.g. a gunicorn master's worker). Folded
    /// only when the pid is gone *and* no process maps or has open the claimed
    /// files for writing (looked up in `/proc`).
    Unknown,
}

/// One change a compaction makes to the directory, reported before it is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Recovery: remove the temporary archive a killed run left.
    RemoveTemp(String),
    /// Recovery: unlink a file that an archive already absorbed.
    FinishUnlink(String),
    /// Rename a dead process's file to its claimed name.
    Claim {
        /// The file's name.
        from: String,
        /// Its claimed name.
        to: String,
    },
    /// Write the new archive to a hidden temporary file.
    WriteTemp(String),
    /// Rename the temporary over the archive.
    Publish {
        /// The temporary.
        temp: String,
        /// The archive.
        archive: String,
    },
    /// Unlink a claimed file the archive now holds.
    Unlink(String),
    /// Remove a dead process's `live*` or `all` gauge file.
    RemoveGauge(String),
}

/// What a compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Files whose values are now in an archive (their claimed names).
    pub absorbed: Vec<String>,
    /// Gauge files removed (`live*` and `all` modes of dead processes).
    pub removed: Vec<String>,
    /// Files left in place (claimed, still counted), with the reason.
    pub kept: Vec<(String, String)>,
    /// Archives written.
    pub archives: Vec<String>,
}

/// Why a compaction did not run or stopped. The directory is consistent
/// either way; a later run finishes what this one started.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Another compaction (or a reader stuck in its listing) held the lock.
    #[error("another compaction holds {0}; try again later")]
    Busy(PathBuf),
    /// A file system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An archive is not what a compaction writes; it is left alone.
    #[error("archive {path} is damaged ({reason}); not folding into it")]
    BadArchive {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Called before each change a compaction makes.
type StepObserver<'a> = Box<dyn FnMut(&Step) + 'a>;

/// A compaction run over one directory; configure, then [`Compaction::run`].
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use muster_collect::compact::Compaction;
/// let report = Compaction::new(dir.path()).reaped(1234).run().unwrap();
/// assert!(report.absorbed.is_empty());
/// ```
pub struct Compaction<'a> {
    dir: PathBuf,
    reaped: Vec<u32>,
    abandoned: bool,
    lock_wait: Duration,
    on_step: Option<StepObserver<'a>>,
}

impl<'a> Compaction<'a> {
    /// A run over `dir` that only recovers what a killed run left, until told
    /// which processes are dead.
    pub fn new(dir: impl Into<PathBuf>) -> Compaction<'a> {
        Compaction {
            dir: dir.into(),
            reaped: Vec::new(),
            abandoned: false,
            lock_wait: Duration::from_secs(1),
            on_step: None,
        }
    }

    /// Folds the files of `pid`, which the caller reaped ([`Writers::Reaped`]).
    pub fn reaped(mut self, pid: u32) -> Self {
        self.reaped.push(pid);
        self
    }

    /// Also folds every pid-named file whose pid is gone and that no process
    /// maps or has open for writing ([`Writers::Unknown`]).
    pub fn abandoned(mut self) -> Self {
        self.abandoned = true;
        self
    }

    /// How long to wait for the lock (another run, or readers listing) before
    /// giving up with [`CompactError::Busy`]. Default 1 s.
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// Calls `f` before each change to the directory (for logs and tests).
    pub fn on_step(mut self, f: impl FnMut(&Step) + 'a) -> Self {
        self.on_step = Some(Box::new(f));
        self
    }

    fn step(&mut self, step: Step) {
        if let Some(f) = self.on_step.as_mut() {
            f(&step);
        }
    }

    /// Runs the compaction: recovery, claim, check, fold, unlink.
    pub fn run(mut self) -> Result<Report, CompactError> {
        // A file someone shrinks meanwhile reads as zeros (a bad file), not
        // a dead supervisor.
        let _reading = muster_store::shrunk::reading();
        let deadline = Instant::now() + self.lock_wait;
        let busy = || CompactError::Busy(self.dir.join(LOCK_FILE));
        let _turn = lock(&self.dir.join(TURNSTILE_FILE), true, self.lock_wait)?.ok_or_else(busy)?;
        let wait = deadline.saturating_duration_since(Instant::now());
        let _lock = lock(&self.dir.join(LOCK_FILE), true, wait)?.ok_or_else(busy)?;
        let mut report = Report::default();
        let names = list(&self.dir)?;
        // A damaged archive is left alone, and so are the files of its kind.
        let mut archives = BTreeMap::new();
        for name in &names {
            if let Some(kind) = archive_kind(name) {
                archives.insert(kind, Archive::read(&self.dir.join(name)));
            }
        }

        // 1. Recovery.
        for name in names.iter().filter(|n| is_temp(n)) {
            self.step(Step::RemoveTemp(name.clone()));
            remove(&self.dir.join(name))?;
        }
        let mut present: HashSet<String> = names.iter().cloned().collect();
        for archive in archives.values().flatten() {
            for done in &archive.absorbed {
                if present.remove(done) {
                    self.step(Step::FinishUnlink(done.clone()));
                    remove(&self.dir.join(done))?;
                }
            }
        }

        // 2. Claim. Files of one pid form a group, checked together.
        let gen = archives
            .values()
            .flatten()
            .map(|a| a.gen)
            .chain(present.iter().filter_map(|n| Some(claimed(n)?.1)))
            .max()
            .unwrap_or(0)
            + 1;
        let mut groups: BTreeMap<u32, Group> = BTreeMap::new();
        let mut sorted: Vec<&String> = present.iter().collect();
        sorted.sort();
        for name in sorted {
            let Some(parsed) = FileName::parse(name) else {
                continue;
            };
            if let Some((pid, _)) = claimed(name) {
                // Left claimed by an earlier run: nobody vouches for it now.
                let group = groups.entry(pid).or_insert(Group::new(Writers::Unknown));
                group.writers = Writers::Unknown;
                group.files.push((parsed.kind, name.clone()));
            } else if let Some(pid) = pid_of(&parsed.id) {
                let writers = if self.reaped.contains(&pid) {
                    Writers::Reaped
                } else if self.abandoned && !pid_exists(pid) {
                    Writers::Unknown
                } else {
                    continue;
                };
                let to = parsed.kind.file_name(&format!("{pid}-c{gen}"));
                self.step(Step::Claim {
                    from: name.clone(),
                    to: to.clone(),
                });
                rename_new(&self.dir.join(name), &self.dir.join(&to))?;
                let group = groups.entry(pid).or_insert(Group::new(writers));
                if writers == Writers::Unknown {
                    group.writers = Writers::Unknown;
                }
                group.files.push((parsed.kind, to));
            }
        }

        // 3. Check.
        let mut fold: BTreeMap<FileKind, Vec<String>> = BTreeMap::new();
        let mut drop = Vec::new();
        for (pid, group) in &groups {
            if let Err(reason) = writers_gone(&self.dir, *pid, group) {
                for (_, name) in &group.files {
                    report.kept.push((name.clone(), reason.clone()));
                }
                continue;
            }
            for (kind, name) in &group.files {
                match fold_rule(*kind) {
                    Some(_) => fold.entry(*kind).or_default().push(name.clone()),
                    None => drop.push(name.clone()),
                }
            }
        }

        // 4. Fold, 5. unlink.
        let present: HashSet<String> = list(&self.dir)?.into_iter().collect();
        for (kind, members) in fold {
            match archives.remove(&kind).unwrap_or(Ok(Archive::default())) {
                Ok(archive) => self.fold(kind, archive, members, gen, &present, &mut report)?,
                Err(e) => {
                    let reason = e.to_string();
                    report
                        .kept
                        .extend(members.into_iter().map(|m| (m, reason.clone())));
                }
            }
        }
        for name in drop {
            self.step(Step::RemoveGauge(name.clone()));
            remove(&self.dir.join(&name))?;
            report.removed.push(name);
        }
        Ok(report)
    }

    /// Folds `members` (claimed files of `kind`) into the archive of `kind`.
    fn fold(
        &mut self,
        kind: FileKind,
        archive: Archive,
        members: Vec<String>,
        gen: u64,
        present: &HashSet<String>,
        report: &mut Report,
    ) -> Result<(), CompactError> {
        let rule = fold_rule(kind).expect("only foldable kinds are folded");
        let mut merged = archive.values;
        let mut absorbed = Vec::new();
        for name in members {
            match read_values(&self.dir.join(&name)) {
                Ok(values) => {
                    for (key, value, timestamp) in values {
                        merged.add(key, value, timestamp, rule);
                    }
                    absorbed.push(name);
                }
                Err(reason) => report.kept.push((name, reason)),
            }
        }
        if absorbed.is_empty() {
            return Ok(());
        }
        if rule == Rule::Sum && !matches!(kind, FileKind::Gauge(_)) {
            merged.round_up_for_readers(&self.dir, kind, present, &absorbed);
        }
        let archive_name = kind.file_name(ARCHIVE_ID);
        let temp = format!(".{archive_name}.{gen}.tmp");
        // Files an earlier archive absorbed and that could not be unlinked
        // stay listed, so that readers keep skipping them.
        let mut listed = archive
            .absorbed
            .into_iter()
            .filter(|n| self.dir.join(n).exists())
            .collect::<Vec<_>>();
        listed.extend(absorbed.iter().cloned());
        let bytes = merged.encode(gen, &listed);
        self.step(Step::WriteTemp(temp.clone()));
        write_new(&self.dir.join(&temp), &bytes)?;
        self.step(Step::Publish {
            temp: temp.clone(),
            archive: archive_name.clone(),
        });
        std::fs::rename(self.dir.join(&temp), self.dir.join(&archive_name)).map_err(|source| {
            CompactError::Io {
                what: "cannot rename the new archive over",
                path: self.dir.join(&archive_name),
                source,
            }
        })?;
        report.archives.push(archive_name);
        for name in absorbed {
            self.step(Step::Unlink(name.clone()));
            remove(&self.dir.join(&name))?;
            report.absorbed.push(name);
        }
        Ok(())
    }
}

/// The claimed files of one pid.
struct Group {
    writers: Writers,
    files: Vec<(FileKind, String)>,
}

impl Group {
    fn new(writers: Writers) -> Group {
        Group {
            writers,
            files: Vec::new(),
        }
    }
}

/// How the values of one kind fold into its archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    Sum,
    Min,
    Max,
    Latest,
}

/// `None` for the gauge files a compaction removes instead (`all`, `live*`).
fn fold_rule(kind: FileKind) -> Option<Rule> {
    match kind {
        FileKind::Counter | FileKind::Histogram | FileKind::Summary => Some(Rule::Sum),
        FileKind::Gauge(GaugeMode::Sum) => Some(Rule::Sum),
        FileKind::Gauge(GaugeMode::Min) => Some(Rule::Min),
        FileKind::Gauge(GaugeMode::Max) => Some(Rule::Max),
        FileKind::Gauge(GaugeMode::MostRecent) => Some(Rule::Latest),
        FileKind::Gauge(_) => None,
        // muster's own files are never pid-named Python files.
        FileKind::Native | FileKind::Exemplar => None,
    }
}

/// The values of an archive, in file order, keyed by the raw key bytes.
#[derive(Default)]
struct Values {
    order: Vec<Vec<u8>>,
    index: std::collections::HashMap<Vec<u8>, usize>,
    values: Vec<(f64, f64)>,
}

impl Values {
    fn add(&mut self, key: Vec<u8>, value: f64, timestamp: f64, rule: Rule) {
        let Some(&i) = self.index.get(&key) else {
            self.index.insert(key.clone(), self.order.len());
            self.order.push(key);
            self.values.push((value, timestamp));
            return;
        };
        let (old, old_ts) = self.values[i];
        self.values[i] = match rule {
            Rule::Sum => (old + value, 0.0),
            Rule::Min => (if value < old { value } else { old }, 0.0),
            Rule::Max => (if value > old { value } else { old }, 0.0),
            Rule::Latest if timestamp > old_ts => (value, timestamp),
            Rule::Latest => (old, old_ts),
        };
    }

    /// Rounds summed values up by a few units in the last place where floats
    /// are involved, so that a reader's float sum over the directory never
    /// reads lower after the fold than before it (Prometheus takes any
    /// decrease of a counter for a reset). A reader adds `n` files' values in
    /// its own order, with an error below `n` ulps of the sum of their
    /// magnitudes `T`; regrouping values can move the result by twice that,
    /// so the archive's value goes up by `(2n + 2)` ulps of `T`. Sums of whole
    /// numbers below 2^53 are exact in any order and are left alone.
    fn round_up_for_readers(
        &mut self,
        dir: &Path,
        kind: FileKind,
        present: &HashSet<String>,
        absorbed: &[String],
    ) {
        let mut magnitude = vec![0.0f64; self.order.len()];
        let mut whole = vec![true; self.order.len()];
        let mut files = 1; // the archive itself
        for name in present {
            let Some(parsed) = FileName::parse(name) else {
                continue;
            };
            if parsed.kind != kind || absorbed.contains(name) || parsed.id == ARCHIVE_ID {
                continue;
            }
            files += 1;
            for (key, value, _) in read_values(&dir.join(name)).unwrap_or_default() {
                if let Some(&i) = self.index.get(&key) {
                    magnitude[i] += value.abs();
                    whole[i] &= value.fract() == 0.0;
                }
            }
        }
        files += absorbed.len();
        for (i, (value, _)) in self.values.iter_mut().enumerate() {
            let total = magnitude[i] + value.abs();
            if whole[i] && value.fract() == 0.0 && total < 9_007_199_254_740_992.0 {
                continue;
            }
            if !value.is_finite() || total == 0.0 {
                continue;
            }
            let ulp = ulp(total);
            *value += ulp * (2 * files + 2) as f64;
        }
    }

    /// The archive's bytes: header, entries, trailer.
    fn encode(&self, gen: u64, absorbed: &[String]) -> Vec<u8> {
        let mut out = vec![0u8; HEADER_SIZE];
        for (key, (value, timestamp)) in self.order.iter().zip(&self.values) {
            out.extend_from_slice(&(key.len() as i32).to_ne_bytes());
            out.extend_from_slice(key);
            out.extend(std::iter::repeat_n(b' ', padding(key.len())));
            out.extend_from_slice(&value.to_ne_bytes());
            out.extend_from_slice(&timestamp.to_ne_bytes());
        }
        let used = out.len() as i32;
        out[..4].copy_from_slice(&used.to_ne_bytes());
        out.extend_from_slice(TRAILER_MAGIC);
        out.extend_from_slice(&gen.to_ne_bytes());
        out.extend_from_slice(&(absorbed.len() as u32).to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        for name in absorbed {
            out.extend_from_slice(&(name.len() as u32).to_ne_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        out
    }
}

/// The unit in the last place of a positive finite `x`.
fn ulp(x: f64) -> f64 {
    let next = f64::from_bits(x.to_bits() + 1);
    next - x
}

/// An archive as read back: its values, generation and absorbed files.
#[derive(Default)]
struct Archive {
    values: Values,
    gen: u64,
    absorbed: Vec<String>,
}

impl Archive {
    fn read(path: &Path) -> Result<Archive, CompactError> {
        let bad = |reason: String| CompactError::BadArchive {
            path: path.to_owned(),
            reason,
        };
        let map = MappedFile::open(path).map_err(|e| bad(e.to_string()))?;
        let used = map.used().map_err(|e| bad(e.to_string()))?;
        let (gen, absorbed) = trailer(map.bytes(), used).map_err(bad)?;
        let mut values = Values::default();
        for (key, value, timestamp) in values_of(&map, used).map_err(bad)? {
            // An archive holds each key once; `Sum` keeps a duplicate's total.
            values.add(key, value, timestamp, Rule::Sum);
        }
        Ok(Archive {
            values,
            gen,
            absorbed,
        })
    }
}

/// The generation and absorbed file names in an archive's trailer.
fn trailer(data: &[u8], used: usize) -> Result<(u64, Vec<String>), String> {
    let mut rest = data.get(used..).unwrap_or_default();
    let mut take = |n: usize| -> Result<&[u8], String> {
        if rest.len() < n {
            return Err("its trailer is cut short".into());
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    if take(8)? != TRAILER_MAGIC {
        return Err("it has no trailer listing absorbed files".into());
    }
    let gen = u64::from_ne_bytes(take(8)?.try_into().expect("8 bytes"));
    let count = u32::from_ne_bytes(take(4)?.try_into().expect("4 bytes"));
    take(4)?;
    let mut names = Vec::new();
    for _ in 0..count {
        let len = u32::from_ne_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
        let name = std::str::from_utf8(take(len)?).map_err(|e| e.to_string())?;
        names.push(name.to_owned());
    }
    Ok((gen, names))
}

/// The names of the files the archives among `files` absorbed: a reader
/// counts those only in the archive. `files` are (name, mapped bytes).
pub(crate) fn absorbed_files<'f>(
    files: impl Iterator<Item = (&'f OsStr, &'f [u8])>,
) -> HashSet<OsString> {
    let mut out = HashSet::new();
    for (name, data) in files {
        // Cheap test first: this runs over every file of every scrape.
        if !name.as_encoded_bytes().ends_with(b"_archive.db")
            || name.to_str().and_then(archive_kind).is_none()
        {
            continue;
        }
        let Ok(used) = muster_store::reader::read_used(data) else {
            continue;
        };
        match trailer(data, used) {
            Ok((_, names)) => out.extend(names.into_iter().map(OsString::from)),
            Err(reason) => {
                tracing::warn!(file = ?name, %reason, "archive without a valid trailer; its absorbed files may be counted twice")
            }
        }
    }
    out
}

/// Held by a reader while it lists and opens files: no compaction changes
/// the directory meanwhile.
pub(crate) struct ReadGuard {
    lock: Option<Flock<File>>,
    dir: PathBuf,
}

impl ReadGuard {
    /// Takes the compaction lock shared, if the lock file exists; waits at
    /// most a few seconds for a running compaction (a stuck one must not stop
    /// scrapes; the archive trailers still keep counts exact).
    pub(crate) fn acquire(dir: &Path) -> ReadGuard {
        let deadline = Instant::now() + READER_WAIT;
        // No lock file: no compaction ever ran here (one failed open).
        // Otherwise through the turnstile (held only for this instant), then
        // the lock.
        let lock = if dir.join(LOCK_FILE).exists() {
            let turn = lock(&dir.join(TURNSTILE_FILE), false, READER_WAIT);
            let wait = deadline.saturating_duration_since(Instant::now());
            let lock = lock(&dir.join(LOCK_FILE), false, wait).ok().flatten();
            drop(turn);
            lock
        } else {
            None
        };
        if lock.is_none() && dir.join(LOCK_FILE).exists() {
            tracing::warn!(dir = ?dir, "a compaction held its lock for {READER_WAIT:?}; listing without it");
        }
        ReadGuard {
            lock,
            dir: dir.to_owned(),
        }
    }

    /// Whether the listing made since [`ReadGuard::acquire`] cannot have met a
    /// compaction: the lock was held, or the lock file (which every compaction
    /// creates before changing anything) still does not exist.
    pub(crate) fn covered_listing(&self) -> bool {
        self.lock.is_some() || !self.dir.join(LOCK_FILE).exists()
    }
}

/// `flock`s `path` (exclusive: created if missing), polling until `wait`
/// has passed; `None` if it stayed locked or (shared) does not exist.
fn lock(path: &Path, exclusive: bool, wait: Duration) -> Result<Option<Flock<File>>, CompactError> {
    let io = |what, source| CompactError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    if exclusive {
        options.write(true).create(true).mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if !exclusive && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("cannot open the lock file", e)),
    };
    let arg = if exclusive {
        FlockArg::LockExclusiveNonblock
    } else {
        FlockArg::LockSharedNonblock
    };
    let deadline = Instant::now() + wait;
    loop {
        match Flock::lock(file, arg) {
            Ok(locked) => return Ok(Some(locked)),
            Err((back, Errno::EWOULDBLOCK | Errno::EINTR)) => file = back,
            Err((_, e)) => return Err(io("cannot lock", e.into())),
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The names in `dir` (hidden ones included).
fn list(dir: &Path) -> Result<Vec<String>, CompactError> {
    let io = |source| CompactError::Io {
        what: "cannot list",
        path: dir.to_owned(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        if let Some(name) = entry.map_err(io)?.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The kind of an archive file name (`counter_archive.db`, ...).
fn archive_kind(name: &str) -> Option<FileKind> {
    FileName::parse(name)
        .filter(|n| n.id == ARCHIVE_ID)
        .map(|n| n.kind)
}

/// Whether `name` is a temporary archive of a killed run.
fn is_temp(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .and_then(|n| n.rsplit_once('.'))
        .is_some_and(|(archive, gen)| {
            archive_kind(archive).is_some() && gen.bytes().all(|b| b.is_ascii_digit())
        })
}

/// A pid-named file's pid (an id of digits only).
fn pid_of(id: &str) -> Option<u32> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// A claimed file's pid and generation (`counter_1234-c7.db`).
fn claimed(name: &str) -> Option<(u32, u64)> {
    let id = FileName::parse(name)?.id;
    let (pid, gen) = id.split_once("-c")?;
    let gen = gen
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| gen.parse().ok())??;
    Some((pid_of(pid)?, gen))
}

/// Whether a process with this pid exists (a zombie counts; so does one we
/// may not signal).
fn pid_exists(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None),
        Err(Errno::ESRCH)
    )
}

/// `Ok` if nothing can write the group's claimed files any more.
fn writers_gone(dir: &Path, pid: u32, group: &Group) -> Result<(), String> {
    let alive = pid_exists(pid);
    if alive && group.writers == Writers::Unknown {
        return Err(format!("process {pid} is alive"));
    }
    if !alive && group.writers == Writers::Reaped {
        return Ok(());
    }
    let mut targets = Vec::new();
    for (_, name) in &group.files {
        let path = dir.join(name);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("{name}: {e}"))?;
        targets.push((meta.dev(), meta.ino(), path));
    }
    match find_writer(&targets) {
        Ok(None) => Ok(()),
        Ok(Some(holder)) => Err(format!("{holder} can still write it")),
        Err(e) => Err(format!("cannot tell who has it open ({e})")),
    }
}

/// A process that maps one of `targets` shared and writable, or has it open
/// for writing, as "process N": from `/proc/*/maps` and `/proc/*/fd`. Matches
/// by device and inode, and by path (for file systems such as overlayfs whose
/// mappings show another device). A process whose descriptors cannot be read
/// is an error (it might be a writer); one whose mappings alone cannot be
/// read is judged by its descriptors (prometheus_client and muster keep
/// their files open as long as they map them).
fn find_writer(targets: &[(u64, u64, PathBuf)]) -> std::io::Result<Option<String>> {
    let matches = |dev: u64, ino: u64, path: &Path| {
        targets
            .iter()
            .any(|(d, i, p)| (*d == dev && *i == ino) || p == path)
    };
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(pid_of) else {
            continue;
        };
        let proc_dir = entry.path();
        let maps = match std::fs::read_to_string(proc_dir.join("maps")) {
            Ok(maps) => maps,
            Err(e) if vanished(&e) => continue,
            // Some processes (a sandbox's init) show their descriptors but
            // not their mappings; writers of this format keep the file open.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => String::new(),
            Err(e) => return Err(e),
        };
        for line in maps.lines() {
            let mut fields = line.split_ascii_whitespace();
            let (Some(_), Some(perms), Some(_), Some(dev), Some(ino)) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                continue;
            };
            let path = Path::new(fields.next().unwrap_or(""));
            let writable_shared =
                perms.as_bytes().get(1) == Some(&b'w') && perms.as_bytes().get(3) == Some(&b's');
            if !writable_shared {
                continue;
            }
            let dev = dev
                .split_once(':')
                .and_then(|(ma, mi)| {
                    Some(libc::makedev(
                        u32::from_str_radix(ma, 16).ok()?,
                        u32::from_str_radix(mi, 16).ok()?,
                    ))
                })
                .unwrap_or(0);
            if matches(dev, ino.parse().unwrap_or(0), path) {
                return Ok(Some(format!("process {pid} (a writable mapping)")));
            }
        }
        let fds = match std::fs::read_dir(proc_dir.join("fd")) {
            Ok(fds) => fds,
            Err(e) if vanished(&e) => continue,
            Err(e) => return Err(e),
        };
        for fd in fds {
            let Ok(fd) = fd else { continue };
            let Ok(meta) = std::fs::metadata(fd.path()) else {
                continue;
            };
            let link = std::fs::read_link(fd.path()).unwrap_or_default();
            if !matches(meta.dev(), meta.ino(), &link) {
                continue;
            }
            let info = proc_dir.join("fdinfo").join(fd.file_name());
            let flags = std::fs::read_to_string(info)
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("flags:"))
                        .and_then(|f| i32::from_str_radix(f.trim(), 8).ok())
                })
                .unwrap_or(libc::O_RDWR);
            if flags & libc::O_ACCMODE != libc::O_RDONLY {
                return Ok(Some(format!("process {pid} (an open descriptor)")));
            }
        }
    }
    Ok(None)
}

/// A process that exited while we looked.
fn vanished(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// Every entry of a file: (key bytes, value, timestamp). A file that is not
/// entirely valid is an error: its values stay where they are.
fn read_values(path: &Path) -> Result<Vec<(Vec<u8>, f64, f64)>, String> {
    let map = MappedFile::open(path).map_err(|e| e.to_string())?;
    let used = map.used().map_err(|e| e.to_string())?;
    values_of(&map, used)
}

fn values_of(map: &MappedFile, used: usize) -> Result<Vec<(Vec<u8>, f64, f64)>, String> {
    let mut out = Vec::new();
    for entry in entries(map.bytes(), HEADER_SIZE, used) {
        let entry = entry.map_err(|e| e.to_string())?;
        Key::parse(entry.key).map_err(|e| format!("entry at {}: bad key: {e}", entry.offset))?;
        let (value, timestamp) = map.load(entry.value_pos);
        out.push((entry.key.to_vec(), value, timestamp));
    }
    Ok(out)
}

/// Renames `from` to `to`, refusing to replace an existing `to`.
fn rename_new(from: &Path, to: &Path) -> Result<(), CompactError> {
    if to.exists() {
        return Err(CompactError::Io {
            what: "refusing to replace",
            path: to.to_owned(),
            source: std::io::ErrorKind::AlreadyExists.into(),
        });
    }
    std::fs::rename(from, to).map_err(|source| CompactError::Io {
        what: "cannot claim",
        path: from.to_owned(),
        source,
    })
}

fn remove(path: &Path) -> Result<(), CompactError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CompactError::Io {
            what: "cannot remove",
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Creates `path` (which must not exist) with `bytes`.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), CompactError> {
    let io = |source| CompactError::Io {
        what: "cannot write",
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(claimed("counter_1234-c7.db"), Some((1234, 7)));
        assert_eq!(claimed("gauge_min_1-c12.db"), Some((1, 12)));
        assert_eq!(claimed("counter_w0.db"), None);
        assert_eq!(claimed("counter_12-cx.db"), None);
        assert_eq!(pid_of("123"), Some(123));
        assert_eq!(pid_of("+123"), None);
        assert_eq!(pid_of("w1"), None);
        assert!(is_temp(".counter_archive.db.3.tmp"));
        assert!(!is_temp(".counter_w0.db.3.tmp"));
        assert!(!is_temp("counter_archive.db"));
        assert_eq!(
            archive_kind("histogram_archive.db"),
            Some(FileKind::Histogram)
        );
        assert_eq!(archive_kind("histogram_1.db"), None);
    }

    #[test]
    fn trailer_round_trip_and_damage() {
        let mut values = Values::default();
        values.add(
            b"[\"a\", \"a_total\", {}, \"h\"]".to_vec(),
            2.0,
            0.0,
            Rule::Sum,
        );
        let bytes = values.encode(9, &["counter_5-c9.db".into()]);
        let used = muster_store::reader::read_used(&bytes).unwrap();
        assert_eq!(
            trailer(&bytes, used),
            Ok((9, vec!["counter_5-c9.db".to_owned()]))
        );
        for cut in [used, used + 4, bytes.len() - 1] {
            assert!(trailer(&bytes[..cut], used).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn fold_rules() {
        let k = || b"k".to_vec();
        let mut v = Values::default();
        v.add(k(), 3.0, 5.0, Rule::Latest);
        v.add(k(), 1.0, 4.0, Rule::Latest);
        assert_eq!(v.values[0], (3.0, 5.0));
        v.add(k(), 7.0, 6.0, Rule::Latest);
        assert_eq!(v.values[0], (7.0, 6.0));
        let mut m = Values::default();
        m.add(k(), 3.0, 0.0, Rule::Min);
        m.add(k(), -1.0, 0.0, Rule::Min);
        m.add(k(), 2.0, 0.0, Rule::Min);
        assert_eq!(m.values[0].0, -1.0);
    }

    #[test]
    fn ulp_is_the_gap_to_the_next_float() {
        assert_eq!(ulp(1.0), f64::EPSILON);
        assert_eq!(ulp(0.5), f64::EPSILON / 2.0);
    }
}
