//! systemd's readiness protocol (`sd_notify`, for `Type=notify` units): datagrams such
//! as `READY=1` sent to the Unix socket named by `NOTIFY_SOCKET` (a path, or an
//! abstract name starting with `@`). Without `NOTIFY_SOCKET` every call is a no-op.
//!
//! The supervisor takes the variable out of its environment at start, so workers (and
//! anything they start) do not report to systemd in its name.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;

static SOCKET: OnceLock<Option<SocketAddr>> = OnceLock::new();

/// Reads and removes `NOTIFY_SOCKET`. Call once, while single-threaded.
pub(crate) fn init() {
    SOCKET.get_or_init(|| {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        // Single-threaded (the supervisor checks before it calls this).
        std::env::remove_var("NOTIFY_SOCKET");
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str());
        let addr = match bytes.strip_prefix(b"@") {
            Some(abstract_name) => {
                <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(abstract_name)
            }
            None => SocketAddr::from_pathname(std::path::Path::new(&name)),
        };
        match addr {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::warn!(error = %e, "NOTIFY_SOCKET is not a usable socket address; not notifying systemd");
                None
            }
        }
    });
}

/// Sends `state` (newline-separated `KEY=VALUE` pairs) to systemd, if it listens.
fn send(state: &str) {
    let Some(Some(addr)) = SOCKET.get() else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), addr));
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The server is ready: every worker of the initial set accepts requests.
pub(crate) fn ready(workers: usize) {
    send(&format!(
        "READY=1\nMAINPID={}\nSTATUS=serving with {workers} workers",
        std::process::id()
    ));
}

/// A reload started (SIGHUP); [`ready`] follows once it is done.
pub(crate) fn reloading() {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0);
    send(&format!(
        "RELOADING=1\nMONOTONIC_USEC={now}\nSTATUS=reloading"
    ));
}

/// The server is stopping.
pub(crate) fn stopping() {
    send("STOPPING=1\nSTATUS=stopping");
}
