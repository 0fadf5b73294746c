//! Listening sockets, bound by the supervisor before any fork (or inherited), shared
//! by every worker.
//!
//! A `--bind` address is one of (gunicorn's forms):
//!
//! - `HOST:PORT` (`127.0.0.1:8000`, `[::]:8000`, `localhost:8000`): TCP, with
//!   `SO_REUSEADDR` and a backlog of 2048;
//! - `unix:PATH`: a Unix stream socket at PATH (a stale socket file left by an earlier
//!   run is replaced; any other file there is an error); removed at exit;
//! - `fd://N`: an already listening socket inherited as descriptor N (TCP or Unix).
//!
//! Under systemd socket activation (`LISTEN_PID` = our pid, `LISTEN_FDS` = count) the
//! inherited descriptors 3.. are used instead of `--bind`, TCP and Unix alike.

use std::fmt;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{
    bind, getsockname, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag,
    SockType, SockaddrLike, SockaddrStorage,
};

use crate::ServerError;

const BACKLOG: i32 = 2048;
const SD_LISTEN_FDS_START: RawFd = 3;

/// One listening socket.
#[derive(Debug)]
pub enum Listener {
    /// A TCP socket.
    Tcp(TcpListener),
    /// A Unix stream socket; `path` is removed at drop when this process bound it.
    Unix {
        /// The socket.
        listener: UnixListener,
        /// Its path, if it has one.
        path: Option<PathBuf>,
        /// The pid of the process that created the path: it removes the path when
        /// it drops the listener (forked workers, which share it, do not).
        owner: Option<u32>,
    },
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => write!(f, "{a}"),
                Err(_) => write!(f, "tcp:?"),
            },
            Listener::Unix { path: Some(p), .. } => write!(f, "unix:{}", p.display()),
            Listener::Unix { path: None, .. } => write!(f, "unix:(unnamed)"),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix {
            path: Some(p),
            owner: Some(pid),
            ..
        } = self
        {
            if *pid == std::process::id() {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix { listener, .. } => listener.as_fd(),
        }
    }
}

impl Listener {
    /// Binds (or adopts) the socket `spec` names: `HOST:PORT`, `unix:PATH` or `fd://N`.
    pub fn bind(spec: &str) -> Result<Listener, ServerError> {
        let bind_err = |reason: String| ServerError::Bind {
            addr: spec.to_string(),
            reason,
        };
        if let Some(path) = spec.strip_prefix("unix:") {
            return bind_unix(Path::new(path)).map_err(bind_err);
        }
        if let Some(n) = spec.strip_prefix("fd://") {
            let fd: RawFd = n
                .parse()
                .ok()
                .filter(|fd| *fd >= 0)
                .ok_or_else(|| bind_err("fd:// needs a descriptor number".into()))?;
            return adopt_fd(fd).map_err(bind_err);
        }
        bind_tcp(spec).map(Listener::Tcp).map_err(bind_err)
    }

    /// The TCP address, for TCP listeners.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix { .. } => None,
        }
    }
}

/// The application's listeners: systemd's, or one per `--bind`.
pub(crate) fn open_app(bind: &[String]) -> Result<(Vec<Listener>, bool), ServerError> {
    match from_systemd()? {
        Some(l) => Ok((l, true)),
        None => Ok((
            bind.iter()
                .map(|a| Listener::bind(a))
                .collect::<Result<_, _>>()?,
            false,
        )),
    }
}

fn bind_tcp(addr: &str) -> Result<TcpListener, String> {
    let mut addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve: {e} (expected HOST:PORT, unix:PATH or fd://N)"))?
        .collect();
    addrs.dedup();
    let mut last = String::from("no address");
    for sa in addrs {
        match bind_one(sa) {
            Ok(l) => return Ok(l),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

fn bind_one(sa: SocketAddr) -> nix::Result<TcpListener> {
    let family = match sa {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd: OwnedFd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    bind(fd.as_raw_fd(), &SockaddrStorage::from(sa))?;
    listen(&fd, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))?;
    Ok(TcpListener::from(fd))
}

fn bind_unix(path: &Path) -> Result<Listener, String> {
    use std::os::unix::fs::FileTypeExt;
    if path.as_os_str().is_empty() {
        return Err("unix: needs a path".into());
    }
    match std::fs::symlink_metadata(path) {
        // A socket file left by an earlier run: nobody can be listening on it if we can
        // connect to nothing; gunicorn replaces it the same way.
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!("{} is in use by another process", path.display()));
            }
            std::fs::remove_file(path)
                .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?;
        }
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            ))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(|e| e.to_string())?;
    // std's backlog is 128; use ours.
    listen(&listener, Backlog::new(BACKLOG).unwrap_or(Backlog::MAXCONN))
        .map_err(|e| e.to_string())?;
    Ok(Listener::Unix {
        listener,
        path: Some(path.to_path_buf()),
        owner: Some(std::process::id()),
    })
}

/// Takes over descriptor `fd`, which must be a listening stream socket (TCP or Unix).
fn adopt_fd(fd: RawFd) -> Result<Listener, String> {
    // SAFETY: only borrowed for these checks; ownership is taken below.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let listening = nix::sys::socket::getsockopt(&borrowed, sockopt::AcceptConn)
        .map_err(|e| format!("descriptor {fd} is not a socket: {e}"))?;
    if !listening {
        return Err(format!("descriptor {fd} is not a listening socket"));
    }
    let kind = nix::sys::socket::getsockopt(&borrowed, sockopt::SockType)
        .map_err(|e| format!("descriptor {fd}: {e}"))?;
    if kind != SockType::Stream {
        return Err(format!("descriptor {fd} is not a stream socket"));
    }
    let _ = nix::fcntl::fcntl(
        borrowed,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    let addr: SockaddrStorage = getsockname(fd).map_err(|e| format!("descriptor {fd}: {e}"))?;
    match addr.family() {
        Some(AddressFamily::Inet | AddressFamily::Inet6) => {
            // SAFETY: a listening socket handed to us; nothing else owns it.
            Ok(Listener::Tcp(unsafe { TcpListener::from_raw_fd(fd) }))
        }
        Some(AddressFamily::Unix) => {
            let path = addr
                .as_unix_addr()
                .and_then(|u| u.path())
                .map(Path::to_path_buf);
            Ok(Listener::Unix {
                // SAFETY: as above.
                listener: unsafe { UnixListener::from_raw_fd(fd) },
                path,
                owner: None,
            })
        }
        other => Err(format!(
            "descriptor {fd} has an unsupported address family {other:?}"
        )),
    }
}

/// The sockets systemd passed (`LISTEN_PID` = our pid, `LISTEN_FDS` = count, fds
/// from 3), or `None` when not socket-activated. The variables are removed so that
/// nothing else picks the descriptors up again.
pub fn from_systemd() -> Result<Option<Vec<Listener>>, ServerError> {
    let pid = match std::env::var("LISTEN_PID") {
        Ok(p) => p,
        Err(_) => return Ok(None),
    };
    if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
        return Ok(None);
    }
    let n: RawFd = std::env::var("LISTEN_FDS")
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
    (SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + n)
        .map(|fd| {
            adopt_fd(fd).map_err(|reason| ServerError::Config(format!("LISTEN_FDS: {reason}")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_ephemeral_and_reports_bad_addresses() {
        let l = Listener::bind("127.0.0.1:0").expect("bind");
        let port = l.tcp_addr().expect("addr").port();
        assert!(port > 0);
        let e = Listener::bind("not an address").expect_err("bad");
        assert!(e.to_string().contains("not an address"), "{e}");
        let e = Listener::bind(&format!("127.0.0.1:{port}")).expect_err("in use");
        assert!(
            e.to_string().contains("in use") || e.to_string().contains("EADDRINUSE"),
            "{e}"
        );
    }

    #[test]
    fn unix_sockets_replace_stale_files_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.sock");
        let spec = format!("unix:{}", path.display());
        let l = Listener::bind(&spec).expect("bind");
        assert_eq!(l.to_string(), spec);
        // In use: refused.
        let e = Listener::bind(&spec).expect_err("in use");
        assert!(e.to_string().contains("in use"), "{e}");
        drop(l);
        assert!(!path.exists(), "socket file removed at drop");
        // Stale (its listener is gone but the file stays): replaced.
        drop(UnixListener::bind(&path).expect("stale"));
        assert!(path.exists());
        let l = Listener::bind(&spec).expect("stale socket replaced");
        drop(l);
        // Not a socket: refused, and left alone.
        std::fs::write(&path, b"data").expect("file");
        let e = Listener::bind(&spec).expect_err("regular file");
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert_eq!(std::fs::read(&path).expect("kept"), b"data");
    }

    #[test]
    fn fd_urls_adopt_listening_sockets_only() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let fd = std::os::fd::IntoRawFd::into_raw_fd(tcp);
        let l = Listener::bind(&format!("fd://{fd}")).expect("adopt");
        assert_eq!(l.tcp_addr(), Some(addr));
        let file = std::fs::File::open("/proc/self/status").expect("file");
        let e = Listener::bind(&format!("fd://{}", file.as_raw_fd())).expect_err("file");
        assert!(e.to_string().contains("not a socket"), "{e}");
        let e = Listener::bind("fd://x").expect_err("not a number");
        assert!(e.to_string().contains("descriptor number"), "{e}");
    }
}
