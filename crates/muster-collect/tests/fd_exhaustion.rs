//! A file a long-lived collector could not open because the process had run
//! out of file descriptors is read at a later scrape, once descriptors are
//! free again: the collector does not serve lower totals than a fresh one
//! (which Prometheus would see as a counter reset).
//!
//! This test changes process-wide state (it takes every free descriptor for
//! a moment), so it is the only test of this binary: the test process is the
//! child that runs out.

mod support;

use std::fs::File;

use muster_collect::Collector;
use muster_store::encode_key;
use support::write;

/// Opens `/dev/null` until the process has no descriptor left; returns them.
/// The soft limit is lowered first (and restored by the caller) so that this
/// takes a bounded number of descriptors.
fn exhaust_descriptors() -> Vec<File> {
    let mut held = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) => held.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => return held,
            Err(e) => panic!("unexpected error while taking descriptors: {e}"),
        }
        assert!(held.len() < 100_000, "the descriptor limit did not bite");
    }
}

fn nofile_limit() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

fn set_nofile_limit(lim: &libc::rlimit) {
    // SAFETY: setrlimit reads the struct we pass.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) }, 0);
}

#[test]
fn files_that_failed_to_open_are_read_once_descriptors_are_free() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = encode_key("jobs", "jobs_total", &[], "Jobs done.");
    let gauge = encode_key("busy", "busy", &[], "Busy workers.");
    for pid in 0..10 {
        write(d, &format!("counter_{pid}.db"), &key, 1.0, None);
    }
    let mut long_lived = Collector::new(d);
    let set = long_lived.collect().unwrap();
    assert_eq!(set.value("jobs_total", &[]), Some(10.0));

    // Ten more workers write while the collector's process is out of
    // descriptors at its next scrape.
    for pid in 10..20 {
        write(d, &format!("counter_{pid}.db"), &key, 1.0, None);
        write(d, &format!("gauge_livesum_{pid}.db"), &gauge, 1.0, None);
    }
    let saved = nofile_limit();
    set_nofile_limit(&libc::rlimit {
        rlim_cur: saved.rlim_cur.min(4096),
        rlim_max: saved.rlim_max,
    });
    let mut held = exhaust_descriptors();
    // One descriptor free: enough to list the directory, not to open 20 files.
    held.pop();
    let starved = long_lived.collect();
    drop(held);
    set_nofile_limit(&saved);
    let starved = starved.expect("one descriptor is enough to list the directory");
    let seen = starved.value("jobs_total", &[]).unwrap_or(0.0);
    assert!(
        (10.0..20.0).contains(&seen),
        "jobs_total {seen}: some new files cannot have been opened"
    );
    assert!(
        long_lived
            .last_errors()
            .iter()
            .any(|(_, problem)| problem.contains("Too many open files")),
        "{:?}",
        long_lived.last_errors()
    );

    // Descriptors are back: the next scrape opens what it could not before.
    let healed = long_lived.collect().unwrap();
    let fresh = Collector::new(d).collect().unwrap();
    assert_eq!(fresh.value("jobs_total", &[]), Some(20.0));
    assert_eq!(healed, fresh);
    assert!(
        long_lived.last_errors().is_empty(),
        "{:?}",
        long_lived.last_errors()
    );
}
