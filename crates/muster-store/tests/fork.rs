//! fork() and the store: a child never inherits a store lock taken by a
//! thread it does not have, writes its own files, and never holds its
//! parent's files.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use muster_store::writer::FileWriter;
use muster_store::{encode_key, FileKind, Store, ValueCell};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

const FORKS: usize = 150;
const CHILD_DEADLINE: Duration = Duration::from_secs(10);

/// Waits for `child` up to the deadline; kills it if it is still running.
fn wait_or_kill(child: Pid) -> Result<WaitStatus, String> {
    let deadline = Instant::now() + CHILD_DEADLINE;
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)).map_err(|e| e.to_string())? {
            WaitStatus::StillAlive if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            WaitStatus::StillAlive => {
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                return Err(format!("child {child} hung for {CHILD_DEADLINE:?}"));
            }
            status => return Ok(status),
        }
    }
}

/// What the child does: one update in its own file; exit code 0 if it worked.
fn in_child(dir: &std::path::Path) -> i32 {
    let cell = ValueCell::new(
        FileKind::Counter,
        encode_key("forked", "forked_total", &[], ""),
    );
    cell.add(1.0);
    let own = dir.join(format!("counter_{}.db", std::process::id()));
    if cell.get() == 1.0 && own.exists() {
        0
    } else {
        1
    }
}

/// A thread keeps the default store busy (reconfiguring it and resolving new
/// cells, both under its lock) while the test forks; every child must update
/// a metric and exit. A child stuck on an inherited lock is killed after a
/// deadline and fails the test.
#[test]
fn forking_while_other_threads_use_the_store_never_hangs_the_child() {
    let dir = tempfile::tempdir().unwrap();
    muster_store::configure(dir.path());
    let stop = AtomicBool::new(false);
    let failures = std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                muster_store::set_process_id(["a", "b"][(i % 2) as usize]).unwrap();
                let key = encode_key("busy", "busy_total", &[("i", &(i % 64).to_string())], "");
                ValueCell::new(FileKind::Counter, key).add(1.0);
                i += 1;
            }
        });
        let mut failures = Vec::new();
        for _ in 0..FORKS {
            // SAFETY: the child updates a metric and leaves with _exit.
            match unsafe { fork() }.unwrap() {
                ForkResult::Child => unsafe { libc::_exit(in_child(dir.path())) },
                ForkResult::Parent { child } => match wait_or_kill(child) {
                    Ok(WaitStatus::Exited(_, 0)) => {}
                    Ok(other) => failures.push(format!("child {child}: {other:?}")),
                    Err(e) => failures.push(e),
                },
            }
        }
        stop.store(true, Ordering::Relaxed);
        failures
    });
    assert!(
        failures.is_empty(),
        "{} of {FORKS} children failed: {failures:?}",
        failures.len()
    );
}

/// A child that outlives its parent does not keep the parent's files locked
/// (it inherited their descriptors and mappings): a new writer with the
/// parent's id gets them as soon as the parent is gone.
#[test]
fn a_child_does_not_keep_its_parents_files_locked() {
    let dir = tempfile::tempdir().unwrap();
    // The grandchild says it is running (past fork) on one pipe, and lives
    // until the test closes the other.
    let (started_r, started_w) = nix::unistd::pipe().unwrap();
    let (wait_end, release_end) = nix::unistd::pipe().unwrap();
    // SAFETY: the child writes a metric, forks, and leaves with _exit.
    let parent = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop((release_end, started_r));
            let store = Store::new(dir.path());
            store.set_process_id("p").unwrap();
            ValueCell::new_in(
                &store,
                FileKind::Counter,
                encode_key("c", "c_total", &[], ""),
            )
            .add(1.0);
            // SAFETY: the grandchild only signals, waits and leaves with _exit.
            match unsafe { fork() } {
                Ok(ForkResult::Child) => {
                    let _ = nix::unistd::write(&started_w, b"1");
                    let _ = nix::unistd::read(&wait_end, &mut [0u8; 1]);
                    unsafe { libc::_exit(0) }
                }
                Ok(ForkResult::Parent { .. }) => unsafe { libc::_exit(0) },
                Err(_) => unsafe { libc::_exit(1) },
            }
        }
        ForkResult::Parent { child } => child,
    };
    drop((wait_end, started_w));
    assert_eq!(
        waitpid(parent, None).unwrap(),
        WaitStatus::Exited(parent, 0)
    );
    assert_eq!(
        nix::unistd::read(&started_r, &mut [0u8; 1]).unwrap(),
        1,
        "the grandchild did not start"
    );
    let taken = FileWriter::open(&dir.path().join("counter_p.db"));
    drop(release_end);
    if let Err(e) = taken {
        panic!("the orphaned child kept the file: {e}");
    }
}
