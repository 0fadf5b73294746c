//! The supervisor's end of the readiness protocol for `muster run` workers: one
//! datagram socket in the abstract namespace, named to every worker in
//! `NOTIFY_SOCKET`, on which workers send `sd_notify` messages (`READY=1`,
//! `WATCHDOG=1`, ...). The kernel attaches each sender's pid (`SO_PASSCRED`), which
//! says which worker spoke: the one whose process group the sender is in.

use std::os::fd::AsRawFd;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags};

/// Most bytes of one message kept (systemd's own limit is larger; the states that
/// matter are short).
const MAX_MESSAGE: usize = 4096;
/// Most messages read per turn of the supervisor's loop: a flood cannot stall it.
const MAX_PER_TURN: usize = 256;

/// A message a worker process sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// The sender's pid, as the kernel reported it.
    pub pid: i32,
    /// The `KEY=VALUE` lines.
    pub text: String,
}

impl Message {
    /// Whether the message holds the assignment `line` (`READY=1`).
    pub(crate) fn says(&self, line: &str) -> bool {
        self.text.lines().any(|l| l.trim() == line)
    }
}

/// The bound socket.
pub(crate) struct NotifySocket {
    socket: UnixDatagram,
    name: String,
}

impl NotifySocket {
    /// Binds a fresh abstract-namespace socket (close-on-exec, non-blocking, passing
    /// credentials).
    pub(crate) fn bind() -> std::io::Result<NotifySocket> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("muster-notify-{}-{nanos:08x}", std::process::id());
        let addr = <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )?;
        let socket = UnixDatagram::bind_addr(&addr)?;
        socket.set_nonblocking(true)?;
        setsockopt(&socket, sockopt::PassCred, &true).map_err(std::io::Error::from)?;
        Ok(NotifySocket { socket, name })
    }

    /// The value of `NOTIFY_SOCKET` for the workers (`@name`).
    pub(crate) fn address(&self) -> String {
        format!("@{}", self.name)
    }

    /// Every message waiting now (at most [`MAX_PER_TURN`]); messages without
    /// credentials are dropped.
    pub(crate) fn receive(&self) -> Vec<Message> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; MAX_MESSAGE];
        while out.len() < MAX_PER_TURN {
            let mut cmsg = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let (bytes, pid) = match recvmsg::<()>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC,
            ) {
                Ok(msg) => {
                    let pid = msg.cmsgs().ok().and_then(|mut c| {
                        c.find_map(|m| match m {
                            ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                            _ => None,
                        })
                    });
                    (msg.bytes.min(MAX_MESSAGE), pid)
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break, // EAGAIN: nothing more
            };
            if let Some(pid) = pid {
                out.push(Message {
                    pid,
                    text: String::from_utf8_lossy(&buf[..bytes]).into_owned(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receives_messages_with_the_senders_pid() {
        let socket = NotifySocket::bind().expect("bind");
        let address = socket.address();
        let name = address.strip_prefix('@').expect("abstract");
        let addr =
            <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name.as_bytes())
                .expect("addr");
        let sender = UnixDatagram::unbound().expect("unbound");
        sender
            .send_to_addr(b"READY=1\nSTATUS=up", &addr)
            .expect("send");
        // A datagram on a local socket is queued when send returns.
        let got = socket.receive();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].pid, std::process::id() as i32);
        assert!(got[0].says("READY=1"));
        assert!(!got[0].says("WATCHDOG=1"));
        assert!(socket.receive().is_empty());
    }
}
