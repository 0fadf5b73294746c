//! Liveness shared between the supervisor and its workers: an anonymous `MAP_SHARED`
//! mapping created before the first fork, one cache-line slot per worker slot, holding
//! the worker's state and a heartbeat timestamp (monotonic clock, which is system-wide
//! on Linux and so comparable across processes).

use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};

/// Most application workers the scoreboard has slots for (a reload needs one extra
/// slot per worker while it rolls, and the metrics process has a slot of its own).
pub const MAX_APP_WORKERS: usize = 1024;
/// Total number of slots.
pub(crate) const SLOTS: usize = 2 * MAX_APP_WORKERS + 1;
/// The slot used by the `--metrics-bind` process.
pub(crate) const METRICS_SLOT: usize = SLOTS - 1;

/// What a worker is doing, as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SlotState {
    /// No process holds the slot.
    Free = 0,
    /// Forked, not yet serving.
    Booting = 1,
    /// Accepting and serving requests.
    Ready = 2,
    /// Not accepting any more; finishing in-flight requests before exiting.
    Draining = 3,
}

impl SlotState {
    fn from_u32(v: u32) -> SlotState {
        match v {
            1 => SlotState::Booting,
            2 => SlotState::Ready,
            3 => SlotState::Draining,
            _ => SlotState::Free,
        }
    }
}

/// One worker's shared record.
#[repr(C, align(64))]
pub struct Slot {
    heartbeat_ms: AtomicU64,
    state: AtomicU32,
    pid: AtomicI32,
    requests: AtomicU64,
    /// Metric values this slot's workers, all of them since the server
    /// started, could not write to the (full or broken) directory.
    write_errors: AtomicU64,
}

impl Slot {
    /// Records that the worker is alive now.
    pub fn beat(&self) {
        self.heartbeat_ms.store(now_ms(), Ordering::Release);
    }
    /// Milliseconds (monotonic clock) of the last heartbeat.
    pub fn last_beat_ms(&self) -> u64 {
        self.heartbeat_ms.load(Ordering::Acquire)
    }
    /// Sets the state.
    pub fn set_state(&self, s: SlotState) {
        self.state.store(s as u32, Ordering::Release);
    }
    /// Reads the state.
    pub fn state(&self) -> SlotState {
        SlotState::from_u32(self.state.load(Ordering::Acquire))
    }
    /// Requests handled so far by the slot's current process.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    /// Adds one handled request and returns the new count.
    pub fn count_request(&self) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed) + 1
    }
    /// Prepares the slot for a freshly forked process (called by the supervisor before
    /// fork, so the child starts from a consistent record).
    pub(crate) fn reset(&self, state: SlotState) {
        self.requests.store(0, Ordering::Relaxed);
        self.pid.store(0, Ordering::Relaxed);
        self.beat();
        self.set_state(state);
    }
    /// The slot's write errors so far (kept across the workers that use it).
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    /// Publishes the slot's write errors: those of earlier workers in the
    /// slot (`base`) plus this process's.
    pub(crate) fn publish_write_errors(&self, base: u64) {
        self.write_errors
            .store(base + muster_store::write_errors(), Ordering::Relaxed);
    }

    /// Records the pid of the process holding the slot.
    pub(crate) fn set_pid(&self, pid: i32) {
        self.pid.store(pid, Ordering::Release);
    }
}

/// The shared mapping of all slots.
pub struct Scoreboard {
    ptr: NonNull<Slot>,
    len: usize,
}

// SAFETY: the mapping is only accessed through atomics in `Slot`.
unsafe impl Send for Scoreboard {}
// SAFETY: as above.
unsafe impl Sync for Scoreboard {}

impl Scoreboard {
    /// Maps `SLOTS` zeroed slots shared with every process forked afterwards.
    pub fn new() -> std::io::Result<Scoreboard> {
        let bytes = std::mem::size_of::<Slot>() * SLOTS;
        let len = NonZeroUsize::new(bytes).ok_or_else(|| std::io::Error::other("empty"))?;
        // SAFETY: a fresh anonymous mapping, not aliasing any Rust object; zeroed by the
        // kernel, which is a valid `Slot` (all atomics 0 = Free).
        let ptr = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .map_err(std::io::Error::from)?;
        Ok(Scoreboard {
            ptr: ptr.cast(),
            len: SLOTS,
        })
    }

    /// Write errors of every worker that ever ran (slots are never reset).
    pub fn write_errors(&self) -> u64 {
        (0..self.len)
            .filter_map(|i| self.slot(i))
            .map(Slot::write_errors)
            .sum()
    }

    /// The slot at `index`, if it exists.
    pub fn slot(&self, index: usize) -> Option<&Slot> {
        if index < self.len {
            // SAFETY: index is in bounds of the live mapping; `Slot` is made of atomics.
            Some(unsafe { &*self.ptr.as_ptr().add(index) })
        } else {
            None
        }
    }
}

impl Drop for Scoreboard {
    fn drop(&mut self) {
        let bytes = std::mem::size_of::<Slot>() * self.len;
        // SAFETY: we created this mapping with this length; no references outlive self.
        let _ = unsafe { munmap(self.ptr.cast(), bytes) };
    }
}

/// Milliseconds on the monotonic clock (system-wide, so comparable across processes).
pub fn now_ms() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => (ts.tv_sec() as u64) * 1000 + (ts.tv_nsec() as u64) / 1_000_000,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_across_fork_free_access() {
        let sb = Scoreboard::new().expect("map");
        let s = sb.slot(3).expect("slot");
        assert_eq!(s.state(), SlotState::Free);
        s.reset(SlotState::Booting);
        assert_eq!(s.state(), SlotState::Booting);
        assert!(s.last_beat_ms() > 0);
        assert_eq!(s.count_request(), 1);
        assert!(sb.slot(SLOTS).is_none());
        assert_eq!(std::mem::size_of::<Slot>(), 64);
    }

    #[test]
    fn write_errors_survive_slot_reuse_and_add_up() {
        let sb = Scoreboard::new().expect("map");
        let own = muster_store::write_errors();
        let (a, b) = (sb.slot(0).expect("slot"), sb.slot(7).expect("slot"));
        a.publish_write_errors(5);
        b.publish_write_errors(2);
        // A replacement worker in slot 0 starts from what the slot holds.
        a.reset(SlotState::Booting);
        assert_eq!(a.write_errors(), 5 + own);
        a.publish_write_errors(a.write_errors());
        assert_eq!(sb.write_errors(), 5 + 2 + 3 * own);
    }
}
