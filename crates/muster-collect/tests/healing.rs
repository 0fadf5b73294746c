//! A long-lived collector heals: what it could not use in one scrape (an
//! entry whose key did not parse, an entry of a family another file claimed
//! first) is looked at again in the next; conflicts of type, gauge mode and
//! help resolve by sorted file names, so a long-lived collector always agrees
//! with a fresh one; and the state of files that are gone is dropped.

mod support;

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use muster_collect::{Collector, MetricSet};
use muster_store::{encode_key, FileKind, GaugeMode};
use proptest::prelude::*;
use support::{file_bytes, write};

/// Everything a scrape says, in an order that does not depend on when the
/// collector first saw each family: one line per family (name, type, help)
/// and per sample (name, sorted labels, value bits).
fn canonical(set: &MetricSet) -> Vec<String> {
    let mut out = Vec::new();
    for family in &set.families {
        out.push(format!(
            "family {} {:?} {:?}",
            family.name, family.kind, family.help
        ));
        for s in &family.samples {
            let mut labels = s.labels.pairs().to_vec();
            labels.sort();
            out.push(format!(
                "sample {} {:?} {:#x}",
                s.name,
                labels,
                s.value.to_bits()
            ));
        }
    }
    out.sort();
    out
}

fn sorted_errors(c: &Collector) -> Vec<(String, String)> {
    let mut e = c.last_errors().to_vec();
    e.sort();
    e
}

/// Collects with `long_lived` and with a fresh collector; both must say the
/// same. Returns the result.
fn agree(long_lived: &mut Collector, dir: &Path, context: &str) -> MetricSet {
    let got = long_lived.collect().expect("collect");
    let mut fresh = Collector::new(dir);
    let want = fresh.collect().expect("collect");
    assert_eq!(
        canonical(&got),
        canonical(&want),
        "{context}: a long-lived collector differs from a fresh one"
    );
    assert_eq!(
        sorted_errors(long_lived),
        sorted_errors(&fresh),
        "{context}: the two collectors report different problems"
    );
    got
}

/// A counter entry skipped because a gauge file claimed its family first is
/// counted as soon as a file that sorts earlier makes it a counter family,
/// and stays counted once the gauge file is gone.
#[test]
fn an_entry_of_a_conflicting_type_is_used_once_the_conflict_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gauge = encode_key("x", "x", &[], "h");
    let counter = encode_key("x", "x_total", &[], "h");
    write(d, "gauge_sum_b.db", &gauge, 1.0, None);
    let mut c = Collector::new(d);
    let set = agree(&mut c, d, "gauge only");
    assert_eq!(set.value("x", &[]), Some(1.0));

    // counter_a.db sorts first: the family is a counter, the gauge is the error.
    write(d, "counter_a.db", &counter, 5.0, None);
    let set = agree(&mut c, d, "a counter file sorting first");
    assert_eq!(set.value("x_total", &[]), Some(5.0));
    assert_eq!(set.value("x", &[]), None);
    assert!(
        c.last_errors()
            .iter()
            .any(|(file, _)| file == "gauge_sum_b.db"),
        "{:?}",
        c.last_errors()
    );

    std::fs::remove_file(d.join("gauge_sum_b.db")).unwrap();
    let set = agree(&mut c, d, "the gauge file removed");
    assert_eq!(set.value("x_total", &[]), Some(5.0));
    assert!(c.last_errors().is_empty(), "{:?}", c.last_errors());
}

/// Gauge files of one family that disagree on the mode merge by the mode of
/// the last of them in sorted order (what Python's collector does when it
/// reads the files in that order), whichever appeared first. The mode is part
/// of the name, so the last one is the greatest mode name: `all` <
/// `liveall` < ... < `max` < `min` < `mostrecent` < `sum`.
#[test]
fn a_mode_conflict_resolves_by_the_last_file_in_sorted_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = encode_key("g", "g", &[], "h");
    write(d, "gauge_all_b.db", &key, 2.0, None);
    let mut c = Collector::new(d);
    let set = agree(&mut c, d, "all only");
    assert_eq!(set.value("g", &[("pid", "b")]), Some(2.0));
    write(d, "gauge_max_a.db", &key, 1.0, None);
    let set = agree(&mut c, d, "a max file sorting last");
    assert_eq!(set.value("g", &[]), Some(2.0), "max of 1 and 2");
    write(d, "gauge_sum_c.db", &key, 3.0, None);
    let set = agree(&mut c, d, "a sum file sorting last");
    assert_eq!(set.value("g", &[]), Some(6.0), "sum of 1, 2 and 3");
    std::fs::remove_file(d.join("gauge_sum_c.db")).unwrap();
    assert_eq!(agree(&mut c, d, "back to max").value("g", &[]), Some(2.0));
    std::fs::remove_file(d.join("gauge_max_a.db")).unwrap();
    let set = agree(&mut c, d, "back to all");
    assert_eq!(set.value("g", &[("pid", "b")]), Some(2.0));
}

/// The help text of a family is that of the first file that holds it.
#[test]
fn help_comes_from_the_first_file_in_sorted_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "counter_b.db",
        &encode_key("x", "x_total", &[], "new help"),
        1.0,
        None,
    );
    let mut c = Collector::new(d);
    agree(&mut c, d, "one file");
    write(
        d,
        "counter_a.db",
        &encode_key("x", "x_total", &[], "old help"),
        2.0,
        None,
    );
    let set = agree(&mut c, d, "a file with other help sorting first");
    let family = set.family("x").expect("family x");
    assert_eq!(&*family.help, "old help");
    assert_eq!(set.value("x_total", &[]), Some(3.0));
}

/// An entry whose key is not valid JSON is looked at again at every scrape:
/// once the bytes are repaired (same length, in place), it counts.
#[test]
fn a_bad_key_is_read_again_at_the_next_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = encode_key("x", "x_total", &[], "h");
    let mut bad = good.clone().into_bytes();
    bad[0] = b'{';
    let path = d.join("counter_1.db");
    std::fs::write(&path, file_bytes(&[(&bad, 4.0)])).unwrap();
    let mut c = Collector::new(d);
    let set = c.collect().unwrap();
    assert_eq!(set.value("x_total", &[]), None);
    assert_eq!(c.last_errors().len(), 1, "{:?}", c.last_errors());

    // Repaired in place: same inode, same size, same `used`.
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(
        muster_store::format::HEADER_SIZE as u64 + 4,
    ))
    .unwrap();
    f.write_all(good.as_bytes()).unwrap();
    drop(f);
    let set = agree(&mut c, d, "key repaired");
    assert_eq!(set.value("x_total", &[]), Some(4.0));
    assert!(c.last_errors().is_empty(), "{:?}", c.last_errors());
}

/// A directory big enough that its first scrape is read by several threads
/// (each file by whichever takes it first), with bad keys and a truncated
/// file among files any thread may read: every good entry counts, exactly
/// the bad files are reported, every fresh scrape says the same, and the
/// repaired keys count at the next scrape of a long-lived collector.
#[test]
fn bad_entries_in_a_directory_read_by_several_threads_are_skipped_and_healed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    const FILES: usize = 24;
    const ROUTES: usize = 1500;
    const BAD_ENTRY: usize = 700;
    let (bad_files, truncated) = ([5, 13, 21], 17);
    let pad = "p".repeat(120);
    let key = |r: usize| {
        encode_key(
            "req",
            "req_total",
            &[("route", &format!("/r{r}/{pad}"))],
            "h",
        )
    };
    let mut want = vec![0.0; ROUTES];
    let mut repairs = Vec::new();
    for f in 0..FILES {
        // Workers made their series in different orders.
        let order: Vec<usize> = (0..ROUTES).map(|i| (i * 7 + f * 97) % ROUTES).collect();
        let keys: Vec<Vec<u8>> = order.iter().map(|&r| key(r).into_bytes()).collect();
        let mut entries: Vec<(&[u8], f64)> = keys
            .iter()
            .zip(&order)
            .map(|(k, &r)| (&k[..], (r * 100 + f) as f64))
            .collect();
        let mut bad = keys[BAD_ENTRY].clone();
        if bad_files.contains(&f) {
            bad[0] = b'{';
            entries[BAD_ENTRY].0 = &bad;
        }
        let mut bytes = file_bytes(&entries);
        let path = d.join(FileKind::Counter.file_name(&format!("w{f:02}")));
        if f == truncated {
            // `used` now ends inside the last entry: it is not read.
            let used = i32::from_ne_bytes(bytes[..4].try_into().unwrap()) - 8;
            bytes[..4].copy_from_slice(&used.to_ne_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        for (i, &r) in order.iter().enumerate() {
            let skipped =
                (bad_files.contains(&f) && i == BAD_ENTRY) || (f == truncated && i == ROUTES - 1);
            if !skipped {
                want[r] += (r * 100 + f) as f64;
            }
        }
        if bad_files.contains(&f) {
            // Where the bad key starts: after the header and the entries
            // before it.
            let offset: usize = muster_store::format::HEADER_SIZE
                + keys[..BAD_ENTRY]
                    .iter()
                    .map(|k| muster_store::format::value_offset(k.len()) + 16)
                    .sum::<usize>()
                + 4;
            repairs.push((path, offset, order[BAD_ENTRY], f));
        }
    }
    let check = |set: &MetricSet, want: &[f64]| {
        for (r, &value) in want.iter().enumerate() {
            let route = format!("/r{r}/{pad}");
            assert_eq!(
                set.value("req_total", &[("route", &route)]),
                Some(value),
                "route {r}"
            );
        }
    };
    let mut long_lived = Collector::new(d);
    let first = long_lived.collect().unwrap();
    check(&first, &want);
    let mut reported: Vec<String> = sorted_errors(&long_lived)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    reported.dedup();
    let mut expected: Vec<String> = bad_files
        .iter()
        .chain([&truncated])
        .map(|f| FileKind::Counter.file_name(&format!("w{f:02}")))
        .collect();
    expected.sort();
    assert_eq!(reported, expected);
    for run in 0..4 {
        let mut fresh = Collector::new(d);
        let again = fresh.collect().unwrap();
        assert_eq!(canonical(&again), canonical(&first), "fresh scrape {run}");
        assert_eq!(
            sorted_errors(&fresh),
            sorted_errors(&long_lived),
            "fresh scrape {run}"
        );
    }

    // The bad keys repaired in place (same inode, size and `used`).
    for (path, offset, r, file) in &repairs {
        let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        f.seek(SeekFrom::Start(*offset as u64)).unwrap();
        f.write_all(b"[").unwrap();
        want[*r] += (r * 100 + file) as f64;
    }
    let healed = agree(&mut long_lived, d, "bad keys repaired");
    check(&healed, &want);
    let reported: Vec<String> = sorted_errors(&long_lived)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(
        reported,
        [FileKind::Counter.file_name(&format!("w{truncated:02}"))]
    );
}

/// A gunicorn directory churns: every recycled worker leaves a new pid. The
/// state a long-lived collector keeps for files that are gone is dropped, so
/// it stays proportional to what the directory holds, not to how many
/// processes ever wrote to it.
#[test]
fn state_of_vanished_files_is_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut c = Collector::new(d);
    const SERIES: usize = 8;
    let mut most = 0;
    for pid in 1000..1600 {
        for s in 0..SERIES {
            let route = format!("/r{s}");
            let labels = [("route", route.as_str())];
            write(
                d,
                &format!("gauge_all_{pid}.db"),
                &encode_key("cache", "cache", &labels, "h"),
                s as f64,
                None,
            );
            write(
                d,
                &format!("gauge_livesum_{pid}.db"),
                &encode_key("inflight", "inflight", &labels, "h"),
                1.0,
                None,
            );
        }
        if pid > 1000 {
            // The previous worker died: its live gauge file is removed, and
            // so (by an operator's clean-up) is its `all` file.
            for file in [
                format!("gauge_livesum_{}.db", pid - 1),
                format!("gauge_all_{}.db", pid - 1),
            ] {
                std::fs::remove_file(d.join(file)).unwrap();
            }
        }
        let set = c.collect().unwrap();
        assert_eq!(
            set.family("cache").map(|f| f.samples.len()),
            Some(SERIES),
            "worker {pid}"
        );
        most = most.max(c.tracked_series());
    }
    // 600 workers made 4,800 per-process series; a fraction of them may wait
    // to be dropped, never all.
    assert!(
        most < 3 * 1024,
        "the collector kept state for up to {most} series"
    );
    agree(&mut c, d, "after the churn");
}

/// File kinds a conflict can be made of.
const KINDS: [FileKind; 8] = [
    FileKind::Counter,
    FileKind::Summary,
    FileKind::Histogram,
    FileKind::Gauge(GaugeMode::All),
    FileKind::Gauge(GaugeMode::LiveAll),
    FileKind::Gauge(GaugeMode::Max),
    FileKind::Gauge(GaugeMode::LiveSum),
    FileKind::Gauge(GaugeMode::MostRecent),
];
const IDS: [&str; 4] = ["a", "b", "c", "d"];
const FAMILIES: [&str; 2] = ["x", "y"];

#[derive(Clone, Debug)]
enum Step {
    /// Writes one entry of family `fam` into the file of `kind` and `id`.
    Write {
        kind: usize,
        id: usize,
        fam: usize,
        label: usize,
        quarters: i32,
        ts: u16,
    },
    /// Removes the file of `kind` and `id`, if it exists.
    Remove { kind: usize, id: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0..KINDS.len(), 0..IDS.len(), 0..FAMILIES.len(), 0..3usize, -8i32..40, 0u16..6)
            .prop_map(|(kind, id, fam, label, quarters, ts)| Step::Write { kind, id, fam, label, quarters, ts }),
        1 => (0..KINDS.len(), 0..IDS.len()).prop_map(|(kind, id)| Step::Remove { kind, id }),
    ]
}

fn apply(dir: &Path, step: &Step) {
    match *step {
        Step::Write {
            kind,
            id,
            fam,
            label,
            quarters,
            ts,
        } => {
            let kind = KINDS[kind];
            let name = FAMILIES[fam];
            let value = f64::from(quarters) / 4.0;
            let labels = [("l", ["p", "q", "r"][label])];
            // Each process has its own help text: the first file's must win.
            let help = format!("help from {}", IDS[id]);
            let key = match kind {
                FileKind::Counter => encode_key(name, &format!("{name}_total"), &labels, &help),
                FileKind::Summary => encode_key(name, &format!("{name}_count"), &labels, &help),
                FileKind::Histogram => {
                    let le = ["1.0", "+Inf"][label % 2];
                    encode_key(
                        name,
                        &format!("{name}_bucket"),
                        &[labels[0], ("le", le)],
                        &help,
                    )
                }
                FileKind::Gauge(_) => encode_key(name, name, &labels, &help),
                FileKind::Native | FileKind::Exemplar => unreachable!("not in KINDS"),
            };
            let ts = (ts > 0).then(|| f64::from(ts) * 10.0 + id as f64);
            write(dir, &kind.file_name(IDS[id]), &key, value, ts);
        }
        Step::Remove { kind, id } => {
            let _ = std::fs::remove_file(dir.join(KINDS[kind].file_name(IDS[id])));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Files with conflicting types, modes and help appear and vanish in any
    /// order; after every round a long-lived collector says exactly what a
    /// fresh one says, problems included.
    #[test]
    fn conflicts_resolve_alike_for_fresh_and_long_lived_collectors(
        rounds in prop::collection::vec(prop::collection::vec(step(), 1..10), 1..5)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Collector::new(dir.path());
        for (r, round) in rounds.iter().enumerate() {
            for s in round {
                apply(dir.path(), s);
            }
            let got = c.collect().expect("collect");
            let mut fresh = Collector::new(dir.path());
            let want = fresh.collect().expect("collect");
            prop_assert_eq!(canonical(&got), canonical(&want), "round {}", r);
            prop_assert_eq!(sorted_errors(&c), sorted_errors(&fresh), "round {}", r);
        }
    }
}
