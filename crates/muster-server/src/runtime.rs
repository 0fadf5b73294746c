//! Building a tokio runtime when descriptors may be short.
//!
//! tokio's signal driver makes one socket pair per process the first time a
//! runtime with it is built, and panics when it cannot (`ulimit -n` too small).
//! Making and closing a few descriptors first turns that case into an error: the
//! process is single-threaded until the runtime exists, so the room found is still
//! there when tokio takes it.

use std::io;
use std::os::unix::net::UnixStream;

/// Descriptors a runtime with all drivers takes when it starts: epoll, its
/// waker, the signal driver's socket pair and that driver's copy of one end.
const RUNTIME_DESCRIPTORS: usize = 5;

/// Builds `builder`'s runtime with all drivers enabled; an error, not a panic,
/// when the process has too few descriptors left for it.
pub fn build_runtime(builder: &mut tokio::runtime::Builder) -> io::Result<tokio::runtime::Runtime> {
    let mut room = Vec::with_capacity(RUNTIME_DESCRIPTORS.div_ceil(2));
    while room.len() * 2 < RUNTIME_DESCRIPTORS {
        room.push(UnixStream::pair()?);
    }
    drop(room);
    builder.enable_all().build()
}
