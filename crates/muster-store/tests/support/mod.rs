//! Helpers shared by the store's tests.

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

/// Runs `body` in a forked child, whose exit code is what `body` returns (70
/// if it panics), and asserts the child exits 0; `codes` says what the other
/// codes mean.
pub fn assert_child_exits_zero(body: impl FnOnce() -> i32, codes: &str) {
    // SAFETY: the child runs only `body` and leaves with _exit, never
    // returning into the test harness.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(70);
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            let status = waitpid(child, None).expect("waitpid");
            assert_eq!(
                status,
                WaitStatus::Exited(child, 0),
                "exit codes: {codes}; 70 a panic; a signal means a crash"
            );
        }
    }
}
