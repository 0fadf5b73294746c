//! Reading mapped files that another program shrinks meanwhile.
//!
//! A scrape maps the directory's files and reads them in place. Writers of
//! the format only grow files, but anyone can shrink one (`> counter_x.db`,
//! `truncate -s 0`, a clean-up script), and reading a mapped page past a
//! file's new end raises SIGBUS, which kills the process: an exporter that
//! serves every other file too, a server's supervisor compacting files.
//!
//! So while a thread reads mapped files inside [`reading`], a SIGBUS for a
//! page past a file's end (`BUS_ADRERR`) maps a page of zeros in place of
//! the vanished one, and the read goes on. Zeros read as an empty header or
//! entry, so the file is reported bad; [`faults`] counts these, so that the
//! reader can map its files again at their new sizes. Any other SIGBUS goes
//! to the handler installed before (Rust's, or the default): the process
//! dies as it would have.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

thread_local! {
    /// How many [`Reading`] guards this thread holds.
    static READING: Cell<usize> = const { Cell::new(0) };
}

/// Pages of shrunk files replaced by zeros, since the process started.
static FAULTS: AtomicU64 = AtomicU64::new(0);
/// The page size, known once the handler is installed.
static PAGE: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();
/// The SIGBUS action there was before this module's.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// While alive, a SIGBUS of this thread past the end of a mapped file is
/// survived (see the module docs). Not `Send`: it guards its own thread.
pub struct Reading {
    _thread: PhantomData<*const ()>,
}

impl Drop for Reading {
    fn drop(&mut self) {
        READING.with(|r| r.set(r.get() - 1));
    }
}

/// Makes this thread survive reading past the end of a shrunk mapped file
/// until the guard is dropped.
pub fn reading() -> Reading {
    INSTALL.call_once(install);
    READING.with(|r| r.set(r.get() + 1));
    Reading {
        _thread: PhantomData,
    }
}

/// How many pages of shrunk files were replaced by zeros in this process.
pub fn faults() -> u64 {
    FAULTS.load(Ordering::Relaxed)
}

fn install() {
    // SAFETY: sysconf only reads a constant; the action is a valid handler
    // (it only does async-signal-safe work: a thread-local and atomic
    // accesses, mmap and sigaction system calls) with an empty mask.
    unsafe {
        PAGE.store(
            libc::sysconf(libc::_SC_PAGESIZE) as usize,
            Ordering::Relaxed,
        );
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigbus as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGBUS, &action, &mut previous) == 0 {
            let _ = PREVIOUS.set(previous);
        }
    }
}

extern "C" fn on_sigbus(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    let reading = READING.try_with(|r| r.get() > 0).unwrap_or(false);
    let page = PAGE.load(Ordering::Relaxed);
    if reading && code == libc::BUS_ADRERR && page > 0 {
        // SAFETY: the page is part of a file mapping this thread is reading
        // (a SIGBUS past a file's end); a private read-only page of zeros
        // takes its place, which the reader's atomic loads may read.
        let zeros = unsafe {
            libc::mmap(
                (addr & !(page - 1)) as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if zeros != libc::MAP_FAILED {
            FAULTS.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    // Not a page of a shrunk file: the action before this module's takes
    // over, and returning runs the faulting access again under it.
    // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask.
    let default: libc::sigaction = unsafe { std::mem::zeroed() };
    let previous = PREVIOUS.get().unwrap_or(&default);
    // SAFETY: restores a valid action.
    unsafe { libc::sigaction(libc::SIGBUS, previous, std::ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::MappedFile;
    use std::io::Write;

    #[test]
    fn a_page_past_the_end_of_a_shrunk_file_reads_as_zeros() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("counter_1.db");
        // SAFETY: sysconf only reads a constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&vec![0xab; 3 * page]))
            .expect("write");
        let map = MappedFile::open(&path).expect("map");
        assert_eq!(map.bytes().len(), 3 * page);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(page as u64))
            .expect("truncate");

        let _reading = reading();
        let before = faults();
        let bytes = map.bytes();
        // SAFETY: in bounds of the mapping; volatile, so the read happens.
        let (kept, gone) = unsafe {
            (
                std::ptr::read_volatile(&bytes[page - 1]),
                std::ptr::read_volatile(&bytes[2 * page + 7]),
            )
        };
        assert_eq!(kept, 0xab, "the page still in the file");
        assert_eq!(gone, 0, "a page past the new end");
        assert_eq!(faults(), before + 1);
        // Read again: the page of zeros stays, no new fault.
        // SAFETY: as above.
        assert_eq!(unsafe { std::ptr::read_volatile(&bytes[2 * page]) }, 0);
        assert_eq!(faults(), before + 1);
    }
}
