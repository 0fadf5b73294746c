//! The memory of a process that merges a directory once and exits (`muster
//! scrape`, `muster push`): a region it allocates from and never gives
//! back, over transparent huge pages.
//!
//! A first merge of a big directory makes its keys, series and labels once
//! (about 140,000 allocations for the 64 × 100 benchmark directory) and the
//! process then exits. With glibc's allocator, `malloc` and `free` were
//! about 15% of the process's instructions, and each fresh 4 KiB page of
//! its heap a page fault. Here a block is the next bytes of one region (one
//! atomic exchange), freeing does nothing, and the region is backed by huge
//! pages, whose first touch is one fault per 2 MiB. A one-shot process then
//! holds all it ever allocated until it exits, a few milliseconds later:
//! the largest resident size of a scrape of that directory went from 81.4
//! to 82.5 MB (the files' mappings included). The first [`PREPARED`] bytes
//! are faulted in by a short-lived thread while the main thread lists and
//! opens files, with the other core idle; that is most of an empty
//! directory's scrape's 12 MB (7.2 MB before).
//!
//! Every other command (servers, workers, the exporter) keeps the system
//! allocator: for them the region is never set up, and [`Allocator`] passes
//! each call on after one load of a static.
//!
//! This is written by hand because it is what the one-shot commands are:
//! no allocator crate offers "allocate from one region, free nothing,
//! switched on at run time" for one process of a multi-command binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The process's allocator: the system's, until [`set_up`] gives it a region
/// to allocate from (see the module docs).
pub struct Allocator {
    /// The region, `[start, end)`; `end` is 0 until it is set up.
    start: AtomicUsize,
    end: AtomicUsize,
    /// The first byte no block has been given.
    next: AtomicUsize,
}

impl Allocator {
    /// The system allocator, until [`set_up`].
    pub const fn new() -> Allocator {
        Allocator {
            start: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
        }
    }

    /// Allocates from `[start, start + len)` from now on (with the system
    /// allocator behind it when the region is full).
    fn use_region(&self, start: usize, len: usize) {
        self.start.store(start, Ordering::Relaxed);
        self.next.store(start, Ordering::Relaxed);
        self.end.store(start + len, Ordering::Release);
    }

    /// Whether `ptr` is a block of the region.
    fn owns(&self, ptr: *mut u8) -> bool {
        let ptr = ptr as usize;
        ptr < self.end.load(Ordering::Relaxed) && ptr >= self.start.load(Ordering::Relaxed)
    }

    /// The next free bytes of the region for `layout`, taken; `None` when
    /// there is no region or not enough of it left.
    fn take(&self, layout: Layout) -> Option<*mut u8> {
        let end = self.end.load(Ordering::Acquire);
        if end == 0 {
            return None;
        }
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let at = next.checked_next_multiple_of(layout.align())?;
            let after = at.checked_add(layout.size()).filter(|&a| a <= end)?;
            // Each thread only uses the bytes it took: the exchange alone
            // orders nothing else.
            match self
                .next
                .compare_exchange_weak(next, after, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(at as *mut u8),
                Err(now) => next = now,
            }
        }
    }
}

impl Default for Allocator {
    fn default() -> Allocator {
        Allocator::new()
    }
}

// SAFETY: blocks of the region are disjoint (each is taken by one atomic
// exchange of `next`, which only grows), aligned as asked, and never reused,
// so they are fresh zeroed pages (anonymous memory) when given out; every
// other call goes to the system allocator, and a block is passed back to it
// only if it is not the region's.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.take(layout) {
            Some(block) => block,
            // SAFETY: the caller's guarantees, passed on.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.take(layout) {
            // Never given out before: still zero.
            Some(block) => block,
            // SAFETY: the caller's guarantees, passed on.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !self.owns(ptr) {
            // SAFETY: the system allocator gave `ptr`, with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.owns(ptr) {
            // SAFETY: the system allocator gave `ptr`, with this layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if new_size <= layout.size() {
            return ptr;
        }
        // The last block taken grows where it is.
        let end = ptr as usize + layout.size();
        let grown = (ptr as usize).checked_add(new_size);
        if let Some(grown) = grown.filter(|&g| g <= self.end.load(Ordering::Relaxed)) {
            if self
                .next
                .compare_exchange(end, grown, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return ptr;
            }
        }
        // SAFETY: `new_size` is non-zero and, rounded up to the alignment,
        // does not overflow (the caller's guarantees for realloc).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as above.
        let block = unsafe { self.alloc(new_layout) };
        if !block.is_null() {
            // SAFETY: both blocks are valid for `layout.size()` bytes (the
            // new one is bigger) and distinct.
            unsafe { std::ptr::copy_nonoverlapping(ptr, block, layout.size()) };
        }
        block
    }
}

/// Bytes of the region faulted in ahead by a short-lived thread: two huge
/// pages. A scrape of the 64-worker benchmark directory uses more, but
/// faulting in more than this in advance took the second core from the
/// merge (`docs/benchmarks-by-hand.md`).
#[cfg(target_os = "linux")]
const PREPARED: usize = 4 << 20;

/// Gives the process's allocator ([`Allocator`], which `main` installs) its
/// region, over transparent huge pages where the kernel allows them
/// (`madvise` mode or `always`), and starts the thread that faults its
/// first [`PREPARED`] bytes in. Best effort: where no region can be mapped,
/// the system allocator goes on alone.
#[cfg(target_os = "linux")]
pub fn set_up(allocator: &Allocator) {
    /// A transparent huge page on x86-64 and arm64 (4 KiB base pages).
    const HUGE_PAGE: usize = 2 << 20;
    /// The file descriptor table is grown to this many entries before the
    /// thread starts (see below).
    const FD_TABLE: libc::c_int = 1024;
    let Some(reserve) = region_size() else {
        return;
    };
    // SAFETY: a new private anonymous mapping, which nothing else uses.
    let mapped = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            reserve + HUGE_PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        return;
    }
    let start = (mapped as usize).next_multiple_of(HUGE_PAGE);
    // SAFETY: madvise only changes how pages of that mapping are backed;
    // fcntl and close act on a descriptor made here.
    unsafe {
        libc::madvise(start as *mut libc::c_void, reserve, libc::MADV_HUGEPAGE);
        // While a second thread lives, each growth of the descriptor table
        // waits for an RCU grace period (milliseconds): grow it now, in one
        // step, for the files about to be opened. The table never shrinks.
        // Where the limit is lower, nothing happens.
        let spare = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, FD_TABLE - 1);
        if spare >= 0 {
            libc::close(spare);
        }
    }
    allocator.use_region(start, reserve);
    // Best effort: if no thread can start, the pages are faulted in when
    // first used.
    let _ = std::thread::Builder::new()
        .name("heap".into())
        .spawn(move || {
            // SAFETY: MADV_POPULATE_WRITE faults pages of the region in
            // without changing a byte of them, so it may run while blocks of
            // it are being used.
            unsafe {
                libc::madvise(
                    start as *mut libc::c_void,
                    PREPARED,
                    libc::MADV_POPULATE_WRITE,
                );
            }
        });
}

/// How much address space the region sets aside: 4 GiB (none of it is
/// committed until touched; when it is full the system allocator takes
/// over), but no more than a quarter of the process's address-space limit
/// (`ulimit -v`), so that the files still have room to be mapped. `None`
/// (no region) when that leaves too little to matter, or where the kernel
/// counts address space as committed memory (`vm.overcommit_memory` = 2):
/// there a region would hold back memory other processes may need.
#[cfg(target_os = "linux")]
fn region_size() -> Option<usize> {
    const MOST: usize = 4 << 30;
    const LEAST: usize = 64 << 20;
    let strict =
        std::fs::read("/proc/sys/vm/overcommit_memory").is_ok_and(|v| v.trim_ascii() == b"2");
    if strict {
        return None;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    let limited = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut limit) } == 0
        && limit.rlim_cur != libc::RLIM_INFINITY;
    let size = if limited {
        MOST.min(usize::try_from(limit.rlim_cur / 4).unwrap_or(MOST))
    } else {
        MOST
    };
    (size >= LEAST).then_some(size)
}

/// Elsewhere the system allocator goes on alone.
#[cfg(not(target_os = "linux"))]
pub fn set_up(_allocator: &Allocator) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A region of `len` zeroed bytes, aligned to 4 KiB, for an allocator
    /// that is not the process's.
    fn region(len: usize) -> (Allocator, Layout, *mut u8) {
        let layout = Layout::from_size_align(len, 4096).unwrap();
        // SAFETY: a non-zero size.
        let base = unsafe { System.alloc_zeroed(layout) };
        assert!(!base.is_null());
        let allocator = Allocator::new();
        allocator.use_region(base as usize, len);
        (allocator, layout, base)
    }

    #[test]
    fn blocks_are_aligned_disjoint_zeroed_and_then_the_system_allocator_takes_over() {
        let (allocator, whole, base) = region(4096);
        let mut blocks = Vec::new();
        for (size, align) in [(1, 1), (24, 8), (3, 1), (100, 64), (8, 8)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: non-zero sizes.
            let block = unsafe { allocator.alloc_zeroed(layout) };
            assert!(allocator.owns(block), "{size} bytes from the region");
            assert_eq!(block as usize % align, 0);
            // SAFETY: the block is `size` bytes.
            let bytes = unsafe { std::slice::from_raw_parts_mut(block, size) };
            assert!(bytes.iter().all(|&b| b == 0));
            bytes.fill(size as u8);
            blocks.push((block, layout));
        }
        for (i, &(block, layout)) in blocks.iter().enumerate() {
            // SAFETY: still the block's `size` bytes, written above.
            let bytes = unsafe { std::slice::from_raw_parts(block, layout.size()) };
            assert!(
                bytes.iter().all(|&b| b == layout.size() as u8),
                "block {i} overwritten"
            );
        }
        // Too big for what is left: the system allocator's.
        let big = Layout::from_size_align(8192, 8).unwrap();
        // SAFETY: a non-zero size.
        let outside = unsafe { allocator.alloc(big) };
        assert!(!outside.is_null() && !allocator.owns(outside));
        // SAFETY: each block with the layout it was given.
        unsafe {
            allocator.dealloc(outside, big);
            for (block, layout) in blocks {
                allocator.dealloc(block, layout);
            }
            System.dealloc(base, whole);
        }
    }

    #[test]
    fn a_grown_block_keeps_its_bytes_in_place_or_out_of_the_region() {
        let (allocator, whole, base) = region(4096);
        let small = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: non-zero sizes; each block is used within its size.
        unsafe {
            let first = allocator.alloc(small);
            first.copy_from(b"0123456789abcdef".as_ptr(), 16);
            // The last block grows where it is.
            let grown = allocator.realloc(first, small, 1000);
            assert_eq!(grown, first);
            // Not the last one any more: moved, bytes kept.
            let other = allocator.alloc(small);
            let grown_layout = Layout::from_size_align(1000, 8).unwrap();
            let moved = allocator.realloc(grown, grown_layout, 2000);
            assert!(moved != grown && allocator.owns(moved));
            assert_eq!(std::slice::from_raw_parts(moved, 16), b"0123456789abcdef");
            // Past the region's end: the system allocator's, bytes kept.
            let moved_layout = Layout::from_size_align(2000, 8).unwrap();
            let outside = allocator.realloc(moved, moved_layout, 5000);
            assert!(!allocator.owns(outside));
            assert_eq!(std::slice::from_raw_parts(outside, 16), b"0123456789abcdef");
            // A block of the system allocator's grows through it.
            let outside_layout = Layout::from_size_align(5000, 8).unwrap();
            let again = allocator.realloc(outside, outside_layout, 9000);
            assert_eq!(std::slice::from_raw_parts(again, 16), b"0123456789abcdef");
            allocator.dealloc(again, Layout::from_size_align(9000, 8).unwrap());
            allocator.dealloc(other, small);
            System.dealloc(base, whole);
        }
    }

    #[test]
    fn threads_taking_blocks_at_once_never_share_a_byte() {
        let (allocator, whole, base) = region(1 << 20);
        let layout = Layout::from_size_align(40, 8).unwrap();
        let taken: Vec<Vec<usize>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4u8)
                .map(|t| {
                    let allocator = &allocator;
                    scope.spawn(move || {
                        (0..2000)
                            .map(|_| {
                                // SAFETY: a non-zero size; the block is 40 bytes.
                                unsafe {
                                    let block = allocator.alloc(layout);
                                    assert!(allocator.owns(block));
                                    block.write_bytes(t + 1, 40);
                                    block as usize
                                }
                            })
                            .collect()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for (t, blocks) in taken.iter().enumerate() {
            for &block in blocks {
                // SAFETY: a 40-byte block of the region, written above.
                let bytes = unsafe { std::slice::from_raw_parts(block as *const u8, 40) };
                assert!(
                    bytes.iter().all(|&b| b == t as u8 + 1),
                    "thread {t}'s block shared"
                );
            }
        }
        // SAFETY: the region's own layout.
        unsafe { System.dealloc(base, whole) };
    }
}
