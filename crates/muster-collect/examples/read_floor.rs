//! The floor under a one-shot scrape: a process that only reads every byte
//! in use of every `*.db` file of a directory, and merges nothing.
//!
//! ```sh
//! read_floor [--pread] scrape --dir DIR
//! ```
//!
//! It takes `muster scrape`'s arguments so that `scripts/bench.d/cold_scrape.py`
//! can time it beside `muster scrape` and Python (`--also`). The main thread
//! lists, opens and (by default) maps the files, then one thread per core
//! (at most four, as a scan uses) takes files in turn and sums their 8-byte
//! words: through the read-only mapping, as `muster scrape` reads, or with
//! `pread` into a buffer each thread reuses (`--pread`). It prints the sum,
//! so the reading cannot be left out.
//!
//! What a scrape must at least do (see `docs/benchmarks-by-hand.md`): every
//! key is read to know what its value is of.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A file to read: mapped, or open to be read with `pread`.
enum Source {
    Mapped(memmap2::Mmap),
    Pread(File),
}

impl Source {
    /// The file's bytes in use (as its header's `used` says), in `buf` when
    /// read with `pread`. A file too short for its header reads as empty.
    fn used<'a>(&'a self, buf: &'a mut Vec<u8>) -> &'a [u8] {
        match self {
            Source::Mapped(map) => {
                let header = map.get(..4).and_then(|h| h.try_into().ok());
                let used = i32::from_ne_bytes(header.unwrap_or_default());
                &map[..(used.max(0) as usize).min(map.len())]
            }
            Source::Pread(file) => {
                let mut header = [0u8; 4];
                let used = match file.read_exact_at(&mut header, 0) {
                    Ok(()) => i32::from_ne_bytes(header).max(0) as usize,
                    Err(_) => 0,
                };
                buf.resize(used, 0);
                if file.read_exact_at(buf, 0).is_err() {
                    buf.clear();
                }
                buf
            }
        }
    }
}

fn main() {
    let mut pread = false;
    let mut dir = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--pread" => pread = true,
            "--dir" => dir = args.next().map(PathBuf::from),
            "scrape" => {}
            other => fail(&format!("unexpected argument {other:?}")),
        }
    }
    let dir = dir.unwrap_or_else(|| fail("usage: read_floor [--pread] scrape --dir DIR"));
    let listing = std::fs::read_dir(&dir).unwrap_or_else(|e| fail(&e.to_string()));
    let sources: Vec<Source> = listing
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".db"))
        .map(|e| {
            let file = File::open(e.path()).unwrap_or_else(|e| fail(&e.to_string()));
            if pread {
                return Source::Pread(file);
            }
            // SAFETY: read-only; the benchmark directory is not written meanwhile.
            let map = unsafe { memmap2::Mmap::map(&file) };
            Source::Mapped(map.unwrap_or_else(|e| fail(&e.to_string())))
        })
        .collect();
    let next = AtomicUsize::new(0);
    let read = || {
        let mut sum = 0u64;
        let mut buf = Vec::new();
        while let Some(source) = sources.get(next.fetch_add(1, Ordering::Relaxed)) {
            sum = source.used(&mut buf).chunks_exact(8).fold(sum, |s, w| {
                s.wrapping_add(u64::from_ne_bytes(w.try_into().unwrap_or_default()))
            });
        }
        sum
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let sum = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(read)).collect();
        let own = read();
        helpers
            .into_iter()
            .fold(own, |s, h| s.wrapping_add(h.join().unwrap_or(0)))
    });
    println!("{sum}");
}

fn fail(message: &str) -> ! {
    eprintln!("read_floor: {message}");
    std::process::exit(2)
}
