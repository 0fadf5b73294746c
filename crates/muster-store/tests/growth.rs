//! Growing a file reserves only the new range. Asking the file system to
//! reserve from offset 0 again is harmless on ext4 or tmpfs, but where
//! `fallocate` is emulated (glibc's `posix_fallocate` fallback reads and
//! writes back a byte in every block) it rewrites live bytes that other
//! threads are updating through the mapping.
//!
//! A forked child (the filter stays with it) installs a seccomp filter that fails every `fallocate`
//! starting at offset 0 except a new file's first 64 KiB, then writes enough
//! entries to double its file twice.

mod support;

use muster_store::format::{HEADER_SIZE, INITIAL_FILE_SIZE};
use muster_store::reader::{entries, MappedFile};
use muster_store::writer::FileWriter;
use muster_store::{encode_key, write_errors};

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Offsets in `struct seccomp_data`: nr, arch, then 64-bit args (low word
/// first on these little-endian targets).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG2_LO: u32 = 16 + 2 * 8;
const ARG2_HI: u32 = ARG2_LO + 4;
const ARG3_LO: u32 = 16 + 3 * 8;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// Goes on when equal to `k`, skips `jf` instructions when not.
fn jeq(k: u32, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt: 0,
        jf,
        k,
    }
}

/// In this process from now on: `fallocate(fd, mode, 0, len)` with `len`
/// other than a new file's initial size fails with EIO.
fn deny_fallocate_from_zero() -> bool {
    let load = |at| stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, at);
    let allow = stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW);
    let deny = stmt(
        libc::BPF_RET | libc::BPF_K,
        libc::SECCOMP_RET_ERRNO | libc::EIO as u32,
    );
    // Every "not equal" jumps to the first `allow`, except the last test:
    // the initial size is allowed, any other length from offset 0 denied.
    let mut program = [
        load(ARCH),
        jeq(AUDIT_ARCH, 8),
        load(NR),
        jeq(libc::SYS_fallocate as u32, 6),
        load(ARG2_LO),
        jeq(0, 4),
        load(ARG2_HI),
        jeq(0, 2),
        load(ARG3_LO),
        jeq(INITIAL_FILE_SIZE as u32, 1),
        allow,
        deny,
    ];
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: a valid filter program; no_new_privs is required to install it.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) == 0
    }
}

/// Runs in the child; the exit code says what failed.
fn grow(dir: &std::path::Path) -> i32 {
    if !deny_fallocate_from_zero() {
        return 10;
    }
    let path = dir.join("counter_1.db");
    let Ok(writer) = FileWriter::open(&path) else {
        return 11;
    };
    // ~200 KiB of entries: the file doubles from 64 KiB to 256 KiB.
    let help = "h".repeat(60);
    for i in 0..2000 {
        let key = encode_key("m", "m_total", &[("i", &i.to_string())], &help);
        match writer.value_ptr(&key) {
            // SAFETY: a value slot of `writer`, which is alive.
            Ok(slot) => {
                unsafe { &*slot }.store(1f64.to_bits(), std::sync::atomic::Ordering::Relaxed)
            }
            Err(e) => {
                eprintln!("entry {i}: {e}");
                return 12;
            }
        }
    }
    let Ok(map) = MappedFile::open(&path) else {
        return 13;
    };
    let grown = map.bytes().len() >= 4 * INITIAL_FILE_SIZE;
    let all = map
        .used()
        .map(|used| entries(map.bytes(), HEADER_SIZE, used).count())
        .unwrap_or(0);
    if !grown || all != 2000 || write_errors() != 0 {
        return 14;
    }
    0
}

#[test]
fn growth_reserves_only_the_new_range() {
    let dir = tempfile::tempdir().unwrap();
    support::assert_child_exits_zero(
        || grow(dir.path()),
        "10 seccomp unavailable, 11 open failed, 12 growth failed (it asked to reserve \
         from offset 0), 13-14 the file is not what was written",
    );
}
