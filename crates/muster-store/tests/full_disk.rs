//! A full file system (a 256 KiB tmpfs) must give a clear error and keep the
//! process alive: no SIGBUS, no lost updates for the values already placed.
//!
//! The tmpfs is mounted in a private mount namespace of a forked child, so it
//! vanishes with the child whatever happens. This needs root (as CI has):
//! without it the test fails and says so, it is never skipped.

mod support;

use muster_store::format::HEADER_SIZE;
use muster_store::reader::{entries, MappedFile};
use muster_store::{encode_key, FileKind, ValueCell};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Runs in the child; returns the exit code (0 = all checks passed).
fn fill_tmpfs(dir: &std::path::Path) -> i32 {
    if unshare(CloneFlags::CLONE_NEWNS).is_err()
        || mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .is_err()
        || mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=256k"),
        )
        .is_err()
    {
        return 10;
    }
    muster_store::configure(dir);
    let help = "h".repeat(200);
    let mut cells = Vec::new();
    // Each entry is ~300 bytes: 2,000 of them need far more than 256 KiB.
    for i in 0..2000 {
        let cell = ValueCell::new(
            FileKind::Counter,
            encode_key("m", "m_total", &[("i", &i.to_string())], &help),
        );
        cell.add(1.0);
        cells.push(cell);
        if muster_store::write_errors() > 0 {
            break;
        }
    }
    if muster_store::write_errors() == 0 {
        return 11;
    }
    // A new file that cannot get its space leaves nothing behind: no empty
    // `*.db` for scrapes to trip on, no temporary file.
    let before = muster_store::write_errors();
    let summary = ValueCell::new(FileKind::Summary, encode_key("s", "s_count", &[], &help));
    summary.add(1.0);
    if muster_store::write_errors() != before + 1 || summary.get() != 1.0 {
        return 16;
    }
    let names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    if names != [format!("counter_{}.db", std::process::id())] {
        eprintln!("unexpected files: {names:?}");
        return 17;
    }
    // Updates keep working everywhere (the last cell lives in memory).
    for cell in &cells {
        cell.add(1.0);
        if cell.get() != 2.0 {
            return 12;
        }
    }
    // Everything placed in the file before it filled is intact.
    let path = dir.join(format!("counter_{}.db", std::process::id()));
    let Ok(map) = MappedFile::open(&path) else {
        return 13;
    };
    let Ok(used) = map.used() else { return 14 };
    let in_file: Vec<f64> = entries(map.bytes(), HEADER_SIZE, used)
        .map(|e| e.map(|e| map.load(e.value_pos).0))
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    if in_file.len() != cells.len() - 1 || in_file.iter().any(|v| *v != 2.0) {
        return 15;
    }
    0
}

#[test]
fn a_full_tmpfs_is_an_error_not_a_crash() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts a small tmpfs and needs root; run the suite as root (scripts/test does in CI)"
    );
    let dir = tempfile::tempdir().unwrap();
    support::assert_child_exits_zero(
        || fill_tmpfs(dir.path()),
        "10 mount failed, 11 no write error, 12 update lost, 13-15 file damaged, \
         16-17 a failed new file left something behind",
    );
}
