//! Building a tokio runtime when descriptors or threads may be short.
//!
//! tokio's signal driver makes one socket pair per process the first time a
//! runtime with it is built, and panics when it cannot (`ulimit -n` too small).
//! Making and closing a few descriptors first turns that case into an error: the
//! process is single-threaded until the runtime exists, so the room found is still
//! there when tokio takes it. Likewise tokio panics when it cannot start its
//! worker threads (a container's `pids.max` reached, `ulimit -u`): starting and
//! stopping as many threads first turns that into an error too.

use std::io;
use std::os::unix::net::UnixStream;

/// Descriptors a runtime with all drivers takes when it starts: epoll, its
/// waker, the signal driver's socket pair and that driver's copy of one end.
const RUNTIME_DESCRIPTORS: usize = 5;

/// Most threads a runtime starts for blocking work.
const BLOCKING_THREADS: usize = 4;

/// A runtime with all drivers enabled and `threads` worker threads (a
/// current-thread runtime for 1 or 0); an error, not a panic, when the
/// process has too few descriptors left for it or cannot start that many
/// threads.
pub fn build_runtime(threads: usize) -> io::Result<tokio::runtime::Runtime> {
    let (mut builder, started) = if threads > 1 {
        let mut multi = tokio::runtime::Builder::new_multi_thread();
        multi.worker_threads(threads);
        (multi, threads)
    } else {
        (tokio::runtime::Builder::new_current_thread(), 0)
    };
    let mut room = Vec::with_capacity(RUNTIME_DESCRIPTORS.div_ceil(2));
    while room.len() * 2 < RUNTIME_DESCRIPTORS {
        room.push(UnixStream::pair()?);
    }
    drop(room);
    start_threads(started).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot start {started} threads ({e}): the limit on tasks (pids.max, ulimit -u) is reached"),
        )
    })?;
    builder
        .max_blocking_threads(BLOCKING_THREADS)
        .enable_all()
        .build()
}

/// Starts `n` threads that wait until all are started, then ends them; the
/// first error of a thread that could not start.
fn start_threads(n: usize) -> io::Result<()> {
    let gate = std::sync::RwLock::new(());
    let closed = gate.write().unwrap_or_else(|e| e.into_inner());
    std::thread::scope(|scope| {
        let mut started = Ok(());
        for _ in 0..n {
            let waiting = std::thread::Builder::new().spawn_scoped(scope, || drop(gate.read()));
            if let Err(e) = waiting {
                started = Err(e);
                break;
            }
        }
        drop(closed);
        started
    })
}
