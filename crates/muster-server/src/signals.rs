//! Signals around the supervisor and its forks.
//!
//! The supervisor's handlers only count the signal (an atomic add) and write a byte
//! to a self-pipe (`write(2)`, async-signal-safe); the loop polls the pipe with a
//! timeout and acts on the counts. Counting, not flagging: three `kill -TTIN` are
//! three workers more (gunicorn queues up to five signals; so do we, per signal).
//!
//! The handlers are installed with `sigaction(2)` directly, not through a registry
//! that keeps its own handler installed, because a forked child must get the
//! *default* dispositions back. The child blocks every signal first thing, resets the
//! supervisor's signals to `SIG_DFL`, and unblocks only once its own handlers are in
//! place ([`ChildSignals::release`]): a signal sent meanwhile stays pending and is
//! delivered then, and one that hit the inherited handler in the instant before the
//! block was counted in the child's copy of the counts and is raised again then. (The
//! parent does not block signals across `fork`: a blocked signal that arrives twice is
//! merged by the kernel, and three `kill -TTIN` must stay three.)

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{
    sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};

/// The signals the supervisor acts on, in the order they are handled.
pub(crate) const HANDLED: [Signal; 7] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
];

/// Most signals of one kind queued between two turns of the loop (gunicorn's limit).
pub(crate) const MAX_QUEUED: u32 = 5;

/// Per-signal counts, indexed by signal number.
static COUNTS: [AtomicU32; 32] = [const { AtomicU32::new(0) }; 32];
/// The write end of the self-pipe, or -1.
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn record(sig: libc::c_int) {
    if let Some(c) = usize::try_from(sig).ok().and_then(|i| COUNTS.get(i)) {
        c.fetch_add(1, Ordering::AcqRel);
    }
    let fd = WAKE_FD.load(Ordering::Acquire);
    if fd >= 0 {
        let saved = nix::errno::Errno::last_raw();
        // SAFETY: write(2) is async-signal-safe; a full pipe already wakes the loop.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
        nix::errno::Errno::set_raw(saved);
    }
}

/// The supervisor's recorded signals and the pipe that wakes its loop.
pub(crate) struct SignalState {
    read: UnixStream,
    _write: UnixStream,
}

impl SignalState {
    /// Installs the handlers. Call once, in the supervisor.
    pub(crate) fn install() -> std::io::Result<SignalState> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        WAKE_FD.store(write.as_raw_fd(), Ordering::Release);
        let action = SigAction::new(
            SigHandler::Handler(record),
            SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
            SigSet::empty(),
        );
        for sig in HANDLED {
            // SAFETY: `record` only does async-signal-safe work (atomics, write(2)).
            unsafe { sigaction(sig, &action) }.map_err(std::io::Error::from)?;
        }
        Ok(SignalState {
            read,
            _write: write,
        })
    }

    /// Waits up to `timeout` for a signal, then returns the signals that arrived since
    /// the last call, in [`HANDLED`] order, each as often as it arrived (at most
    /// [`MAX_QUEUED`] times).
    pub(crate) fn wait(&mut self, timeout: Duration) -> Vec<Signal> {
        let ms = timeout.as_millis().min(60_000) as u16;
        let mut fds = [PollFd::new(self.read.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(ms));
        let mut buf = [0u8; 256];
        while let Ok(n) = self.read.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        let mut out = Vec::new();
        for sig in HANDLED {
            let n = COUNTS[sig as usize].swap(0, Ordering::AcqRel);
            out.extend(std::iter::repeat_n(sig, n.min(MAX_QUEUED) as usize));
        }
        out
    }
}

/// Blocks every signal in this thread; returns the mask to restore (see [`restore`]).
fn block_all() -> SigSet {
    let mut old = SigSet::empty();
    // Cannot fail with valid arguments.
    let _ = sigprocmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    );
    old
}

/// Restores a signal mask saved by [`block_all`].
fn restore(mask: &SigSet) {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(mask), None);
}

/// The signals of a freshly forked child, until its own handlers exist.
#[derive(Debug, Clone)]
pub struct ChildSignals {
    /// The mask to restore.
    mask: SigSet,
    /// Signals the inherited handler caught in the child before they were blocked.
    caught: Vec<Signal>,
}

impl ChildSignals {
    /// First thing in a freshly forked child: blocks every signal, gives every signal
    /// the supervisor handles its default disposition back and forgets the self-pipe,
    /// so a signal to the child never reaches the supervisor's loop and the child's own
    /// handlers (tokio's) install cleanly.
    pub(crate) fn take_over() -> ChildSignals {
        let mask = block_all();
        WAKE_FD.store(-1, Ordering::Release);
        let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
        let mut caught = Vec::new();
        for sig in HANDLED {
            // SAFETY: installing SIG_DFL runs no code of ours.
            let _ = unsafe { sigaction(sig, &default) };
            if COUNTS[sig as usize].swap(0, Ordering::AcqRel) > 0 && sig != Signal::SIGCHLD {
                caught.push(sig);
            }
        }
        ChildSignals { mask, caught }
    }

    /// Once the child's own handlers are installed: unblocks signals (those sent since
    /// the fork are delivered now) and raises again those caught before the block.
    pub fn release(&self) {
        restore(&self.mask);
        for sig in &self.caught {
            let _ = nix::sys::signal::raise(*sig);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counting, not flagging: each signal the handler takes between two turns of
    /// the loop is one action, up to the queue limit. (`raise` runs the handler
    /// before it returns, so none of these merge in the kernel.)
    #[test]
    fn each_signal_between_two_turns_is_counted_up_to_the_limit() {
        let mut state = SignalState::install().expect("install the handlers");
        state.wait(Duration::ZERO);
        let count = |got: &[Signal], sig: Signal| got.iter().filter(|&&s| s == sig).count();
        for _ in 0..3 {
            nix::sys::signal::raise(Signal::SIGTTIN).expect("raise");
        }
        for _ in 0..MAX_QUEUED + 2 {
            nix::sys::signal::raise(Signal::SIGTTOU).expect("raise");
        }
        let got = state.wait(Duration::ZERO);
        assert_eq!(count(&got, Signal::SIGTTIN), 3, "{got:?}");
        assert_eq!(count(&got, Signal::SIGTTOU), MAX_QUEUED as usize, "{got:?}");
        assert!(
            state.wait(Duration::ZERO).is_empty(),
            "counts are taken once"
        );
    }
}
