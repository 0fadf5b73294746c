//! Listening sockets, bound by the supervisor before any fork (or inherited from
//! systemd through `LISTEN_FDS`), shared by every worker.

use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd};

use nix::sys::socket::{
    bind, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag, SockType,
    SockaddrStorage,
};

use crate::ServerError;

const BACKLOG: i32 = 2048;
const SD_LISTEN_FDS_START: i32 = 3;

/// Resolves `addr` (`host:port`) and binds a listening TCP socket with `SO_REUSEADDR`.
pub fn bind_addr(addr: &str) -> Result<TcpListener, ServerError> {
    let bind_err = |reason: String| ServerError::Bind {
        addr: addr.to_string(),
        reason,
    };
    let mut addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| bind_err(format!("cannot resolve: {e}")))?
        .collect();
    addrs.dedup();
    let mut last = String::from("no address");
    for sa in addrs {
        match bind_one(sa) {
            Ok(l) => return Ok(l),
            Err(e) => last = e.to_string(),
        }
    }
    Err(bind_err(last))
}

fn bind_one(sa: SocketAddr) -> nix::Result<TcpListener> {
    let family = match sa {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    let storage = SockaddrStorage::from(sa);
    {
        use std::os::fd::AsRawFd;
        bind(fd.as_raw_fd(), &storage)?;
    }
    listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))?;
    Ok(TcpListener::from(fd))
}

/// The sockets systemd passed (`LISTEN_PID` = our pid, `LISTEN_FDS` = count, fds
/// from 3), or `None` when not socket-activated. The variables are removed so that
/// nothing else picks the descriptors up again.
pub fn from_systemd() -> Result<Option<Vec<TcpListener>>, ServerError> {
    let pid = match std::env::var("LISTEN_PID") {
        Ok(p) => p,
        Err(_) => return Ok(None),
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0 && *n < 1024)
        .ok_or_else(|| {
            ServerError::Config("LISTEN_PID is set but LISTEN_FDS is not a count".into())
        })?;
    // The supervisor is single-threaded here (checked by `run`), so changing the
    // environment cannot race with another thread.
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    let mut out = Vec::new();
    for fd in SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + n {
        // Check it is a listening stream socket before taking ownership.
        let is_listener = nix::sys::socket::getsockopt(
            // SAFETY: only borrowed for the duration of this call.
            &unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            sockopt::AcceptConn,
        )
        .unwrap_or(false);
        if !is_listener {
            return Err(ServerError::Config(format!(
                "LISTEN_FDS: descriptor {fd} is not a listening socket"
            )));
        }
        let _ = nix::fcntl::fcntl(
            // SAFETY: as above.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
        // SAFETY: systemd hands these descriptors to us; nothing else owns them.
        out.push(unsafe { TcpListener::from_raw_fd(fd) });
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_ephemeral_and_reports_bad_addresses() {
        let l = bind_addr("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        assert!(port > 0);
        let e = bind_addr("not an address").expect_err("bad");
        assert!(e.to_string().contains("not an address"), "{e}");
        let e = bind_addr(&format!("127.0.0.1:{port}")).expect_err("in use");
        assert!(
            e.to_string().contains("in use") || e.to_string().contains("EADDRINUSE"),
            "{e}"
        );
    }
}
