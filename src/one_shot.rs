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
//!
//! The kernel still zeroes each huge page when it is first touched (usually
//! about 0.25 ms each on the machine of `docs/benchmarks.md`, at times tens
//! of milliseconds when free huge pages are short), in the merging thread,
//! while the other core reads files. So a short-lived thread touches the
//! first [`PREPARED`] bytes of the heap at once, while the main thread is
//! still listing and opening files with the other core idle.

/// Makes the heap grow by [`STEP`] at once, over transparent huge pages
/// where the kernel allows them (`madvise` mode or `always`). Best effort:
/// nothing changes where the C library or kernel says no.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn grow_heap_in_huge_pages() {
    /// How much the heap grows by when it must grow.
    const STEP: usize = 64 << 20;
    /// A transparent huge page on x86-64 and arm64 (4 KiB base pages).
    const HUGE_PAGE: usize = 2 << 20;
    /// The file descriptor table is grown to this many entries before the
    /// heap thread starts (see below).
    const FD_TABLE: libc::c_int = 1024;
    // SAFETY: mallopt only changes glibc's tuning (no allocation is live
    // that depends on it); sbrk(0) only reads the program break; the block
    // is freed at once and never touched; madvise only changes how pages of
    // the heap, which this process owns, are backed, and MADV_POPULATE_WRITE
    // faults pages in without changing a byte of them (so it may run while
    // the allocator hands the same memory out); fcntl and close act on a
    // descriptor this function made.
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
            // While a second thread lives, each growth of the descriptor
            // table waits for an RCU grace period (milliseconds): grow it
            // now, in one step, for the files about to be opened. The table
            // never shrinks. Where the limit is lower, nothing happens.
            let spare = libc::fcntl(2, libc::F_DUPFD_CLOEXEC, FD_TABLE - 1);
            if spare >= 0 {
                libc::close(spare);
            }
            let prepared = PREPARED.min(after - start);
            // Best effort: if no thread can start, the merge faults the
            // pages in itself.
            let _ = std::thread::Builder::new()
                .name("heap".into())
                .spawn(move || {
                    libc::madvise(
                        start as *mut libc::c_void,
                        prepared,
                        libc::MADV_POPULATE_WRITE,
                    );
                });
        }
    }
}

/// How much of the heap is faulted in before the merge needs it: two huge
/// pages. A scrape of the 64-worker benchmark directory uses four. Back to
/// back, 2 and 4 MiB gained 8% of the wall time and more took the second
/// core from the merge; with a Python scrape between runs, as in use, none,
/// 4 and 8 MiB were within 2% of each other (`docs/benchmarks-by-hand.md`).
/// An empty directory's scrape pays 0.1 ms for it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const PREPARED: usize = 4 << 20;

/// Elsewhere the allocator's defaults stay.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn grow_heap_in_huge_pages() {}
