//! A tmpfs that exists only for one child process and its descendants: the
//! child enters a mount namespace of its own, with `/` made private, and
//! mounts a small tmpfs there, between fork and exec. The mount never leaks,
//! whatever happens to the test, and vanishes with the processes; the test
//! reaches it through `/proc/<child>/root`. Mounting needs root (CI runs as
//! root): without it the spawn fails and says so.
//!
//! Shared by `tests/compaction.rs` and `crates/muster-server/tests/full_disk.rs`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Makes `cmd`'s process mount a tmpfs with `options` (`size=640k,...`) at
/// `mnt` (which must exist) in a mount namespace of its own.
pub fn mount_private_tmpfs(cmd: &mut Command, mnt: &Path, options: &str) {
    // Everything the child needs is made before fork: between fork and exec
    // it only makes system calls.
    let root = CString::new("/").unwrap();
    let target = CString::new(mnt.as_os_str().as_bytes()).unwrap();
    let tmpfs = CString::new("tmpfs").unwrap();
    let options = CString::new(options).unwrap();
    // SAFETY: the closure only makes async-signal-safe system calls on data
    // prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            let check = |r: libc::c_int| {
                if r == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                tmpfs.as_ptr(),
                target.as_ptr(),
                tmpfs.as_ptr(),
                0,
                options.as_ptr().cast(),
            ))
        });
    }
}

/// Where `mnt`, as process `pid` sees it, is for this process.
pub fn seen_by(pid: i32, mnt: &Path) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root")).join(mnt.strip_prefix("/").expect("absolute"))
}
