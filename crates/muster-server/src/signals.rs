//! The supervisor's signals: handlers only set a flag and write a byte to a self-pipe
//! (both done by signal-hook); the supervisor's loop polls the pipe with a timeout and
//! acts on the flags.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use signal_hook::consts::signal::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU};
use signal_hook::SigId;

/// The signals the supervisor acts on, in the order they are handled.
pub(crate) const HANDLED: [i32; 7] = [SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU];

/// Recorded signals and the pipe that wakes the loop.
pub(crate) struct SignalState {
    flags: Vec<(i32, Arc<AtomicBool>)>,
    ids: Vec<SigId>,
    read: Option<UnixStream>,
    write: Option<UnixStream>,
}

impl SignalState {
    /// Installs the handlers.
    pub(crate) fn install() -> std::io::Result<SignalState> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let mut flags = Vec::new();
        let mut ids = Vec::new();
        for &sig in &HANDLED {
            let flag = Arc::new(AtomicBool::new(false));
            // Flag first, then the pipe: the loop drains the pipe before reading flags.
            ids.push(signal_hook::flag::register(sig, Arc::clone(&flag))?);
            ids.push(signal_hook::low_level::pipe::register(
                sig,
                write.try_clone()?,
            )?);
            flags.push((sig, flag));
        }
        Ok(SignalState {
            flags,
            ids,
            read: Some(read),
            write: Some(write),
        })
    }

    /// Waits up to `timeout` for a signal, then returns the signals that arrived since
    /// the last call (each at most once, in [`HANDLED`] order).
    pub(crate) fn wait(&mut self, timeout: Duration) -> Vec<i32> {
        if let Some(read) = &mut self.read {
            let ms = timeout.as_millis().min(60_000) as u16;
            let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(ms));
            let mut buf = [0u8; 256];
            while let Ok(n) = read.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        }
        self.flags
            .iter()
            .filter(|(_, f)| f.swap(false, Ordering::AcqRel))
            .map(|(s, _)| *s)
            .collect()
    }

    /// In a freshly forked worker: removes the supervisor's actions and closes the pipe,
    /// so a signal to the worker never reaches the supervisor's loop. (The worker's own
    /// runtime registers what it needs afterwards.)
    pub(crate) fn forget_in_child(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        self.read = None;
        self.write = None;
    }
}

/// Human-readable name of a signal number.
pub(crate) fn name(sig: i32) -> &'static str {
    signal_hook::low_level::signal_name(sig).unwrap_or("unknown signal")
}
