//! Compaction of dead writers' files (`muster_collect::compact`): readers that
//! scrape while compactions run count every value exactly once, and files that
//! something can still write are left alone.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use muster_collect::compact::{Compaction, Step};
use muster_collect::{Collector, MetricSet};
use muster_store::writer::FileWriter;
use muster_store::{encode_key, FileKind, GaugeMode};

/// Pids above Linux's largest `pid_max` (2^22): no process has them.
const FAKE_PID: u32 = 5_000_000;

/// Writes the files a dead process `pid` would have left: counters (whole and
/// fractional), a histogram, a summary and gauges of several modes.
fn write_dead(dir: &Path, pid: u32) {
    let id = pid.to_string();
    let set = |kind: FileKind, key: &str, value: f64, ts: f64| {
        let w = FileWriter::open(&dir.join(kind.file_name(&id))).unwrap();
        let slot = unsafe { &*w.value_ptr(key).unwrap() };
        slot.store(value.to_bits(), Ordering::Relaxed);
        unsafe { &*(slot as *const AtomicU64).add(1) }.store(ts.to_bits(), Ordering::Relaxed);
    };
    let n = (pid % 97) as f64;
    for route in ["/a", "/b", "/c"] {
        let key = encode_key("req", "req_total", &[("route", route)], "Requests.");
        set(FileKind::Counter, &key, n + 1.0, 0.0);
    }
    let cpu = encode_key("cpu", "cpu_total", &[], "CPU seconds.");
    set(FileKind::Counter, &cpu, 0.1 * n + 0.013, 0.0);
    for (le, count) in [("0.1", 1.0), ("1.0", n), ("+Inf", 2.0)] {
        let key = encode_key("lat", "lat_bucket", &[("le", le)], "Latency.");
        set(FileKind::Histogram, &key, count, 0.0);
    }
    let sum = encode_key("lat", "lat_sum", &[], "Latency.");
    set(FileKind::Histogram, &sum, 0.37 * n + 0.001, 0.0);
    let s = encode_key("size", "size_count", &[], "Sizes.");
    set(FileKind::Summary, &s, 2.0, 0.0);
    for (mode, name) in [
        (GaugeMode::Min, "gmin"),
        (GaugeMode::Max, "gmax"),
        (GaugeMode::Sum, "gsum"),
        (GaugeMode::MostRecent, "grecent"),
        (GaugeMode::LiveSum, "glive"),
        (GaugeMode::All, "gall"),
    ] {
        let key = encode_key(name, name, &[], "A gauge.");
        set(FileKind::Gauge(mode), &key, n, 1000.0 + n);
    }
}

/// Samples of the kinds a compaction keeps (it drops `live*` and `all`
/// gauges of dead processes), as `name{labels}` -> value.
fn kept_samples(set: &MetricSet) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for family in &set.families {
        if family.name.starts_with("glive") || family.name.starts_with("gall") {
            continue;
        }
        for s in &family.samples {
            out.insert(format!("{}{{{}}}", s.name, s.labels.rendered()), s.value);
        }
    }
    out
}

/// Equal, up to the few ulps a fold may round fractional sums up by.
fn assert_close(expected: &BTreeMap<String, f64>, got: &BTreeMap<String, f64>, context: &str) {
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>(),
        "{context}: series differ"
    );
    for (name, want) in expected {
        let have = got[name];
        let exact = want.fract() == 0.0;
        let ok = if exact {
            have == *want
        } else {
            (have - want).abs() <= 1e-12 * want.abs()
        };
        assert!(ok, "{context}: {name} = {have}, expected {want}");
    }
}

fn db_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".db"))
        .collect();
    names.sort();
    names
}

#[test]
fn readers_count_each_value_once_while_compactions_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pids: Vec<u32> = (0..48).map(|i| FAKE_PID + i).collect();
    for &pid in &pids {
        write_dead(d, pid);
    }
    let expected = kept_samples(&Collector::new(d).collect().unwrap());
    assert!(expected.len() > 10);

    let done = AtomicBool::new(false);
    let scrapes = AtomicU64::new(0);
    std::thread::scope(|s| {
        // A long-lived collector and a fresh one per scrape, in a loop.
        let mut readers = Vec::new();
        for fresh in [false, true] {
            let (done, scrapes, expected) = (&done, &scrapes, &expected);
            readers.push(s.spawn(move || {
                let mut long_lived = Collector::new(d);
                let mut n = 0;
                while !done.load(Ordering::Acquire) || n == 0 {
                    let set = if fresh {
                        Collector::new(d).collect()
                    } else {
                        long_lived.collect()
                    }
                    .unwrap();
                    assert_close(
                        expected,
                        &kept_samples(&set),
                        &format!("scrape {n} (fresh: {fresh})"),
                    );
                    n += 1;
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        // Stops the readers even if a compaction panics.
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _done = Done(&done);
        // Three dead processes per run, as a supervisor reaps them; each run
        // starts once both readers are scraping again (they also scrape
        // during it: a reader that finds it running waits for its lock).
        for chunk in pids.chunks(3) {
            let seen = scrapes.load(Ordering::Relaxed);
            let deadline = Instant::now() + Duration::from_secs(60);
            while scrapes.load(Ordering::Relaxed) < seen + 2 {
                assert!(
                    !readers.iter().any(|r| r.is_finished()),
                    "a reader failed (its message is above)"
                );
                assert!(Instant::now() < deadline, "the readers stopped scraping");
                std::thread::yield_now();
            }
            let mut run = Compaction::new(d).lock_wait(Duration::from_secs(30));
            for &pid in chunk {
                run = run.reaped(pid);
            }
            let report = run.run().unwrap();
            assert!(report.kept.is_empty(), "{:?}", report.kept);
            assert_eq!(report.absorbed.len(), 7 * chunk.len(), "{report:?}");
            assert_eq!(report.removed.len(), 2 * chunk.len(), "{report:?}");
        }
    });
    // Only the archives are left: one per kind that folds.
    assert_eq!(
        db_names(d),
        [
            "counter_archive.db",
            "gauge_max_archive.db",
            "gauge_min_archive.db",
            "gauge_mostrecent_archive.db",
            "gauge_sum_archive.db",
            "histogram_archive.db",
            "summary_archive.db",
        ]
    );
    assert_close(
        &expected,
        &kept_samples(&Collector::new(d).collect().unwrap()),
        "after all compactions",
    );
}

#[test]
fn fractional_sums_never_read_lower_after_a_fold() {
    // Values whose float sum depends on the grouping: a reader adds files in
    // name order, the fold adds the dead ones first.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = encode_key("t", "t_total", &[], "Time.");
    let put = |id: &str, v: f64| {
        let w = FileWriter::open(&d.join(FileKind::Counter.file_name(id))).unwrap();
        unsafe { &*w.value_ptr(&key).unwrap() }.store(v.to_bits(), Ordering::Relaxed);
    };
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    put("w0", 1e6 * next());
    let mut before = Collector::new(d)
        .collect()
        .unwrap()
        .value("t_total", &[])
        .unwrap();
    for round in 0..200u32 {
        let pid = FAKE_PID + round;
        put(
            &pid.to_string(),
            next() * 10f64.powi((round % 7) as i32 - 3),
        );
        let mid = Collector::new(d)
            .collect()
            .unwrap()
            .value("t_total", &[])
            .unwrap();
        assert!(mid >= before);
        Compaction::new(d).reaped(pid).run().unwrap();
        let after = Collector::new(d)
            .collect()
            .unwrap()
            .value("t_total", &[])
            .unwrap();
        assert!(
            after >= mid,
            "round {round}: {after} < {mid} after the fold"
        );
        assert!(
            (after - mid) <= 1e-12 * mid,
            "round {round}: rounded up too far"
        );
        before = after;
    }
}

#[test]
fn files_something_can_still_write_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // "Reaped", but the pid exists again (ours) and holds the file open and
    // mapped for writing: the pid was reused and the file adopted.
    let me = std::process::id();
    let key = encode_key("c", "c_total", &[], "C.");
    let writer = FileWriter::open(&d.join(FileKind::Counter.file_name(&me.to_string()))).unwrap();
    unsafe { &*writer.value_ptr(&key).unwrap() }.store(5f64.to_bits(), Ordering::Relaxed);
    let report = Compaction::new(d).reaped(me).run().unwrap();
    assert!(report.absorbed.is_empty(), "{report:?}");
    assert_eq!(report.kept.len(), 1, "{report:?}");
    assert!(report.kept[0].1.contains("can still write"), "{report:?}");
    // Still counted, under its claimed name.
    let claimed = format!("counter_{me}-c1.db");
    assert_eq!(db_names(d), std::slice::from_ref(&claimed));
    assert_eq!(
        Collector::new(d).collect().unwrap().value("c_total", &[]),
        Some(5.0)
    );

    // An abandoned-files run leaves a live pid's files alone altogether.
    let live = FileWriter::open(&d.join(FileKind::Summary.file_name(&me.to_string()))).unwrap();
    let report = Compaction::new(d).abandoned().run().unwrap();
    assert!(report.absorbed.is_empty(), "{report:?}");
    assert!(d
        .join(FileKind::Summary.file_name(&me.to_string()))
        .exists());

    // Once the writer is gone (and the pid with it, as far as the claimed file
    // goes: nothing maps it), a later run folds the claimed file.
    drop(writer);
    drop(live);
    let report = Compaction::new(d).run();
    // Our pid is alive, so an unvouched claimed file waits.
    assert!(report.unwrap().absorbed.is_empty());
    let dead = FAKE_PID + 7;
    std::fs::rename(d.join(&claimed), d.join(format!("counter_{dead}-c1.db"))).unwrap();
    let report = Compaction::new(d).run().unwrap();
    assert_eq!(report.absorbed, [format!("counter_{dead}-c1.db")]);
    assert_eq!(
        Collector::new(d).collect().unwrap().value("c_total", &[]),
        Some(5.0)
    );
}

#[test]
fn busy_lock_and_damaged_archive_are_errors_that_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_dead(d, FAKE_PID);
    let before = db_names(d);
    // A run that cannot get the lock in time changes nothing.
    let lock = std::fs::File::create(d.join(".muster-compact.lock")).unwrap();
    let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let started = Instant::now();
    let err = Compaction::new(d)
        .reaped(FAKE_PID)
        .lock_wait(Duration::from_millis(50))
        .run()
        .unwrap_err();
    assert!(err.to_string().contains("another compaction"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(db_names(d), before);
    drop(held);

    // An archive that is not ours: its kind is left alone, others fold.
    std::fs::write(d.join("counter_archive.db"), b"garbage!garbage!").unwrap();
    let mut steps = Vec::new();
    let report = Compaction::new(d)
        .reaped(FAKE_PID)
        .on_step(|s| steps.push(s.clone()))
        .run()
        .unwrap();
    let counter = format!("counter_{FAKE_PID}-c1.db");
    assert!(
        report
            .kept
            .iter()
            .any(|(f, why)| *f == counter && why.contains("damaged")),
        "{report:?}"
    );
    assert!(report.archives.contains(&"histogram_archive.db".to_owned()));
    assert!(!steps
        .iter()
        .any(|s| matches!(s, Step::Publish { archive, .. } if archive == "counter_archive.db")));
    assert!(d.join(&counter).exists());
}
