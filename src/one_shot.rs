//! Set-up for a process that merges a directory once and exits (`muster
//! scrape`, `muster push`): its heap grows in one step, backed by
//! transparent huge pages.
//!
//! A first merge of a big directory allocates its keys, series and labels
//! once (tens of megabytes for a gunicorn directory of 64 workers) and the
//! process then exits. With glibc's defaults the heap grows 128 KiB at a time
//! and the first touch of every 4 KiB page is a page fault: on the 64 × 100
//! benchmark directory that was half of the process's page faults and about
//! a fifth of its CPU time (`docs/benchmarks-by-hand.md`). Asking glibc for
//! one large step and the kernel for huge pages over it makes those faults
//! 512 times fewer. Long-lived processes (the exporter, workers) keep the
//! defaults: for them this memory is allocated once, and huge pages would
//! only raise their resident size.
//!
//! This is glibc's own `glibc.malloc.hugetlb=1` tunable, which can only be
//! set through the environment before the process starts; done by hand here
//! for the one-shot commands alone.

/// Makes the heap grow by [`STEP`] at once, over transparent huge pages
/// where the kernel allows them (`madvise` mode or `always`). Best effort:
/// nothing changes where the C library or kernel says no.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn grow_heap_in_huge_pages() {
    /// How much the heap grows by when it must grow.
    const STEP: usize = 64 << 20;
    /// A transparent huge page on x86-64 and arm64 (4 KiB base pages).
    const HUGE_PAGE: usize = 2 << 20;
    // SAFETY: mallopt only changes glibc's tuning (no allocation is live
    // that depends on it); sbrk(0) only reads the program break; the block
    // is freed at once and never touched; madvise only changes how pages of
    // the heap, which this process owns, are backed.
    unsafe {
        // Grow by STEP, serve big blocks from the heap too (they would
        // otherwise be mapped one by one, 4 KiB pages again), and never
        // give the step back.
        let tuned = libc::mallopt(libc::M_TOP_PAD, STEP as i32) == 1
            && libc::mallopt(libc::M_MMAP_THRESHOLD, (4 * STEP) as i32) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, (8 * STEP) as i32) == 1;
        if !tuned {
            return;
        }
        let before = libc::sbrk(0) as usize;
        // A block bigger than what is left on top of the heap makes glibc
        // grow it now, by the block and STEP.
        // (black_box: the compiler may otherwise drop the unused pair.)
        libc::free(std::hint::black_box(libc::malloc(HUGE_PAGE)));
        let after = libc::sbrk(0) as usize;
        let start = before.next_multiple_of(HUGE_PAGE);
        if after > start {
            libc::madvise(
                start as *mut libc::c_void,
                after - start,
                libc::MADV_HUGEPAGE,
            );
        }
    }
}

/// Elsewhere the allocator's defaults stay.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn grow_heap_in_huge_pages() {}
