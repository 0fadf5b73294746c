//! Reconfiguring the default store (`configure`, `set_process_id`) while
//! other threads update metrics: no crash, no write into unmapped memory, and
//! no update lost. Every update lands in one of the files the store wrote in
//! the meantime (a thread may finish an update through the address it
//! resolved just before; that memory stays mapped and is still the file).

use std::sync::atomic::{AtomicBool, Ordering};

use muster_store::format::HEADER_SIZE;
use muster_store::reader::{entries, MappedFile};
use muster_store::{encode_key, FileKind, Key, ValueCell};

const RECONFIGURATIONS: usize = 20_000;
/// Each reconfiguration waits until the updaters made this many updates, so
/// that updates and reconfigurations interleave (and threads get preempted
/// between checking a cell and writing through it).
const UPDATES_BETWEEN: u64 = 200;
/// The reconfigurations stop after this long, however many were done.
const TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
const UPDATERS: usize = 2;

/// The sum of sample `name` over every file of every directory.
fn total(dirs: &[&std::path::Path], name: &str) -> f64 {
    let mut sum = 0.0;
    for dir in dirs {
        for file in std::fs::read_dir(dir).unwrap() {
            let map = MappedFile::open(&file.unwrap().path()).unwrap();
            for e in entries(map.bytes(), HEADER_SIZE, map.used().unwrap()) {
                let e = e.unwrap();
                if Key::parse(e.key).unwrap().sample == name {
                    sum += map.load_value(e.value_pos);
                }
            }
        }
    }
    sum
}

#[test]
fn reconfiguring_while_threads_update_loses_nothing() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    muster_store::configure(a.path());
    let counter = ValueCell::new(FileKind::Counter, encode_key("c", "c_total", &[], ""));
    let stop = AtomicBool::new(false);
    let progress = std::sync::atomic::AtomicU64::new(0);
    let (updates, created) = std::thread::scope(|s| {
        let updaters: Vec<_> = (0..UPDATERS)
            .map(|t| {
                let (counter, stop, progress) = (&counter, &stop, &progress);
                s.spawn(move || {
                    let (mut n, mut created) = (0u64, 0u64);
                    while !stop.load(Ordering::Relaxed) {
                        counter.add(1.0);
                        progress.fetch_add(1, Ordering::Relaxed);
                        // New cells too: resolution races reconfiguration.
                        if n.is_multiple_of(64) {
                            created += 1;
                            let labels = [("t", t.to_string())];
                            let labels: Vec<_> =
                                labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                            let key = encode_key("n", "n_total", &labels, "");
                            ValueCell::new(FileKind::Counter, key).add(1.0);
                        }
                        n += 1;
                    }
                    (n, created)
                })
            })
            .collect();
        let start = std::time::Instant::now();
        let mut done = 0;
        for i in 0..RECONFIGURATIONS {
            let seen = progress.load(Ordering::Relaxed);
            while progress.load(Ordering::Relaxed) < seen + UPDATES_BETWEEN
                && start.elapsed() < TIME_LIMIT
            {
                std::thread::yield_now();
            }
            if start.elapsed() >= TIME_LIMIT {
                break;
            }
            match i % 3 {
                0 => muster_store::configure(b.path()),
                1 => muster_store::set_process_id(&format!("r{}", i % 5)).unwrap(),
                _ => muster_store::configure(a.path()),
            }
            done += 1;
        }
        eprintln!("{done} reconfigurations in {:?}", start.elapsed());
        stop.store(true, Ordering::Relaxed);
        updaters
            .into_iter()
            .map(|u| u.join().unwrap())
            .fold((0, 0), |(n, c), (dn, dc)| (n + dn, c + dc))
    });
    assert_eq!(muster_store::write_errors(), 0);
    let dirs = [a.path(), b.path()];
    assert_eq!(total(&dirs, "c_total"), updates as f64);
    assert_eq!(total(&dirs, "n_total"), created as f64);
}
