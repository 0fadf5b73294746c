//! Whether a `muster run` worker waits for connections, observed from `/proc`.
//!
//! A worker is *accepting* when some process of its process group holds one of the
//! application's listening sockets and one of its threads sleeps in a system call
//! that waits for that socket: `accept`/`accept4` on it, `epoll_wait` on an epoll
//! set that contains it (`/proc/<pid>/fdinfo/<epfd>` lists each target's inode),
//! or `poll`/`select` with it among the descriptors (read from `/proc/<pid>/mem`).
//! A process that only holds the socket does not count: a gunicorn master holds it
//! while it sleeps in `select` on its own pipe, and an asyncio loop holds it while
//! the application's startup runs, before the socket is registered. A process that
//! holds a connection accepted on a listening socket (`/proc/net/tcp`, `tcp6`,
//! `unix`: the listener's address, not listening) counts too: under load a worker
//! is seldom caught waiting.
//!
//! Reading another process's `/proc/<pid>/syscall` and `mem` needs the right to
//! trace it, which the supervisor has over its descendants (same user, no
//! `ptrace_scope` above 1). When it does not, the answer is
//! [`Observation::Unobservable`].

use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use crate::listeners::Listener;

/// What the supervisor could see of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observation {
    /// A process of the worker waits for connections on a listening socket.
    Accepting,
    /// Nothing waits for connections yet.
    NotYet,
    /// A process holds a listening socket, but what it waits for cannot be read.
    Unobservable,
}

/// The application's sockets, as `/proc` shows them now.
#[derive(Debug, Default)]
pub(crate) struct Sockets {
    /// Inodes of the listening sockets.
    listening: HashSet<u64>,
    /// Inodes of connections accepted on them.
    accepted: HashSet<u64>,
}

impl Sockets {
    /// Reads the listeners' inodes and the connections accepted on them.
    pub(crate) fn of(listeners: &[Listener]) -> Sockets {
        let listening = listeners
            .iter()
            .filter_map(|l| nix::sys::stat::fstat(l.as_fd()).ok())
            .map(|st| st.st_ino)
            .collect();
        let ports: HashSet<u16> = listeners
            .iter()
            .filter_map(|l| l.tcp_addr())
            .map(|a| a.port())
            .collect();
        let paths: HashSet<String> = listeners
            .iter()
            .filter_map(|l| match l {
                Listener::Unix { path: Some(p), .. } => Some(p.display().to_string()),
                _ => None,
            })
            .collect();
        let mut accepted = HashSet::new();
        if !ports.is_empty() {
            for table in tcp_tables() {
                accepted.extend(accepted_tcp(&table, &ports));
            }
        }
        if !paths.is_empty() {
            accepted.extend(accepted_unix(
                &std::fs::read_to_string("/proc/net/unix").unwrap_or_default(),
                &paths,
            ));
        }
        Sockets {
            listening,
            accepted,
        }
    }
}

/// The kernel's TCP socket tables, IPv4 and IPv6 (empty when unreadable).
fn tcp_tables() -> [String; 2] {
    ["/proc/net/tcp", "/proc/net/tcp6"].map(|t| std::fs::read_to_string(t).unwrap_or_default())
}

/// One socket of a `/proc/net/tcp` (or `tcp6`) table.
struct TcpRow<'t> {
    /// The local address as the table prints it (see [`table_ip`]).
    ip: &'t str,
    port: u16,
    listening: bool,
    inode: u64,
}

/// The sockets of a `/proc/net/tcp` (or `tcp6`) table.
fn tcp_rows(table: &str) -> impl Iterator<Item = TcpRow<'_>> {
    table.lines().skip(1).filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (ip, port) = f.get(1)?.split_once(':')?;
        Some(TcpRow {
            ip,
            port: u16::from_str_radix(port, 16).ok()?,
            listening: *f.get(3)? == "0A",
            inode: f.get(9)?.parse().ok()?,
        })
    })
}

/// Inodes of TCP sockets (a `/proc/net/tcp` table) on one of `ports` that are not
/// listening: connections accepted on a listener of that port.
fn accepted_tcp(table: &str, ports: &HashSet<u16>) -> Vec<u64> {
    tcp_rows(table)
        .filter(|r| ports.contains(&r.port) && !r.listening && r.inode != 0)
        .map(|r| r.inode)
        .collect()
}

/// Inodes of connected Unix sockets (`/proc/net/unix`, state 03) bound to one of
/// `paths`: connections accepted on a listener at that path.
fn accepted_unix(table: &str, paths: &HashSet<String>) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let connected = *f.get(5)? == "03";
            let inode: u64 = f.get(6)?.parse().ok()?;
            (connected && paths.contains(*f.get(7)?)).then_some(inode)
        })
        .collect()
}

/// Looks at every process of a worker's process group (`members`).
pub(crate) fn observe(members: &[i32], sockets: &Sockets) -> Observation {
    let mut seen = Observation::NotYet;
    for &pid in members {
        match observe_process(pid, sockets) {
            Observation::Accepting => return Observation::Accepting,
            Observation::Unobservable => seen = Observation::Unobservable,
            Observation::NotYet => {}
        }
    }
    seen
}

/// The sockets `pid` holds: descriptor and inode of each.
fn socket_fds(pid: i32) -> Vec<(i32, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            let ino = target
                .to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()?;
            Some((fd, ino))
        })
        .collect()
}

/// The descriptors of `pid` that are listening sockets, with their inodes; `None`
/// when it holds an accepted connection.
fn listening_fds(pid: i32, sockets: &Sockets) -> Option<HashMap<i32, u64>> {
    let mut out = HashMap::new();
    for (fd, ino) in socket_fds(pid) {
        if sockets.accepted.contains(&ino) {
            return None;
        }
        if sockets.listening.contains(&ino) {
            out.insert(fd, ino);
        }
    }
    Some(out)
}

/// The TCP addresses processes of a worker's group (`members`) listen on other
/// than the application's sockets: a command that opened a port of its own
/// instead of serving the socket it was given.
pub(crate) fn own_listening_addresses(members: &[i32], sockets: &Sockets) -> Vec<String> {
    let inodes: HashSet<u64> = members
        .iter()
        .flat_map(|&pid| socket_fds(pid))
        .map(|(_, ino)| ino)
        .filter(|ino| !sockets.listening.contains(ino))
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<String> = tcp_tables()
        .iter()
        .flat_map(|table| listening_tcp(table, &inodes))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The addresses of the listening sockets of a `/proc/net/tcp` table (or `tcp6`)
/// whose inode is in `inodes`.
fn listening_tcp(table: &str, inodes: &HashSet<u64>) -> Vec<String> {
    tcp_rows(table)
        .filter(|r| r.listening && inodes.contains(&r.inode))
        .filter_map(|r| Some(std::net::SocketAddr::new(table_ip(r.ip)?, r.port).to_string()))
        .collect()
}

/// An address as `/proc/net/tcp` prints it: the network-order bytes in 32-bit
/// words of host byte order, in hex.
fn table_ip(hex: &str) -> Option<std::net::IpAddr> {
    let mut bytes = Vec::with_capacity(16);
    for i in (0..hex.len()).step_by(8) {
        let word = u32::from_str_radix(hex.get(i..i + 8)?, 16).ok()?;
        bytes.extend_from_slice(&word.to_ne_bytes());
    }
    match bytes.len() {
        4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

fn observe_process(pid: i32, sockets: &Sockets) -> Observation {
    let Some(fds) = listening_fds(pid, sockets) else {
        return Observation::Accepting;
    };
    let inodes = &sockets.listening;
    if fds.is_empty() {
        return Observation::NotYet;
    }
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Observation::NotYet;
    };
    let mut unobservable = false;
    for task in tasks.flatten() {
        match std::fs::read_to_string(task.path().join("syscall")) {
            Ok(text) => {
                if let Some(call) = Syscall::parse(&text) {
                    if waits_for_listener(pid, &call, &fds, inodes) {
                        return Observation::Accepting;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => unobservable = true,
            Err(_) => {}
        }
    }
    if unobservable {
        Observation::Unobservable
    } else {
        Observation::NotYet
    }
}

/// A thread's system call in progress (`/proc/<pid>/task/<tid>/syscall`).
#[derive(Debug, PartialEq, Eq)]
struct Syscall {
    nr: i64,
    args: [u64; 6],
}

impl Syscall {
    /// `None` for a running thread (`running`) or one not in a system call (`-1 ...`).
    fn parse(text: &str) -> Option<Syscall> {
        let mut words = text.split_whitespace();
        let nr: i64 = words.next()?.parse().ok()?;
        if nr < 0 {
            return None;
        }
        let mut args = [0u64; 6];
        for a in &mut args {
            *a = u64::from_str_radix(words.next()?.trim_start_matches("0x"), 16).ok()?;
        }
        Some(Syscall { nr, args })
    }
}

/// How a waiting system call names the descriptors it waits for.
enum Waits {
    /// `accept(fd, ...)`.
    Accept,
    /// `epoll_wait(epfd, ...)`.
    Epoll,
    /// `poll(fds, nfds, ...)`.
    Poll,
    /// `select(nfds, readfds, ...)`.
    Select,
}

fn waits_of(nr: i64) -> Option<Waits> {
    #[cfg(target_arch = "x86_64")]
    {
        if nr == libc::SYS_select {
            return Some(Waits::Select);
        }
        if nr == libc::SYS_poll {
            return Some(Waits::Poll);
        }
        if nr == libc::SYS_epoll_wait {
            return Some(Waits::Epoll);
        }
    }
    match nr {
        n if n == libc::SYS_accept || n == libc::SYS_accept4 => Some(Waits::Accept),
        n if n == libc::SYS_epoll_pwait || n == libc::SYS_epoll_pwait2 => Some(Waits::Epoll),
        n if n == libc::SYS_ppoll => Some(Waits::Poll),
        n if n == libc::SYS_pselect6 => Some(Waits::Select),
        _ => None,
    }
}

/// Most descriptors read from a `poll` array or `select` set.
const MAX_FDS: u64 = 65_536;

fn waits_for_listener(
    pid: i32,
    call: &Syscall,
    fds: &HashMap<i32, u64>,
    inodes: &HashSet<u64>,
) -> bool {
    match waits_of(call.nr) {
        None => false,
        Some(Waits::Accept) => fds.contains_key(&(call.args[0] as i32)),
        Some(Waits::Epoll) => epoll_targets(pid, call.args[0] as i32)
            .iter()
            .any(|ino| inodes.contains(ino)),
        Some(Waits::Poll) => {
            let n = call.args[1].min(MAX_FDS);
            let Some(bytes) = read_memory(pid, call.args[0], n as usize * 8) else {
                return false;
            };
            bytes.chunks_exact(8).any(|p| {
                let fd = i32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
                let events = i16::from_ne_bytes([p[4], p[5]]);
                events & libc::POLLIN != 0 && fds.contains_key(&fd)
            })
        }
        Some(Waits::Select) => {
            let nfds = call.args[0].min(MAX_FDS);
            if call.args[1] == 0 {
                return false;
            }
            let words = nfds.div_ceil(64) as usize;
            let Some(bytes) = read_memory(pid, call.args[1], words * 8) else {
                return false;
            };
            fds.keys().any(|&fd| {
                let fd = fd as u64;
                fd < nfds
                    && bytes
                        .get((fd / 8) as usize)
                        .is_some_and(|b| b & (1 << (fd % 8)) != 0)
            })
        }
    }
}

/// The inodes of the files an epoll set watches (`tfd: ... ino:<hex>` lines).
fn epoll_targets(pid: i32, epfd: i32) -> Vec<u64> {
    let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{epfd}")) else {
        return Vec::new();
    };
    info.lines()
        .filter(|l| l.starts_with("tfd:"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("ino:"))
                .and_then(|h| u64::from_str_radix(h, 16).ok())
        })
        .collect()
}

/// `len` bytes of `pid`'s memory at `addr`.
fn read_memory(pid: i32, addr: u64, len: usize) -> Option<Vec<u8>> {
    let file = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, addr).ok()?;
    Some(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_syscall_lines() {
        let c =
            Syscall::parse("270 0x4 0x7ffef8fb4ba0 0x0 0x0 0x0 0x0 0x7ffe 0x7fd5").expect("a call");
        assert_eq!(c.nr, 270);
        assert_eq!(c.args[0], 4);
        assert_eq!(c.args[1], 0x7ffef8fb4ba0);
        assert_eq!(Syscall::parse("running"), None);
        assert_eq!(Syscall::parse("-1 0x7ffe 0x7fd5"), None);
    }

    #[test]
    fn a_thread_blocked_in_accept_is_seen_accepting() {
        // Only this test's thread blocks in accept; the test process is its own
        // observer (reading /proc/self is allowed).
        let listener = Listener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.tcp_addr().expect("addr");
        let sockets = Sockets::of(std::slice::from_ref(&listener));
        let me = std::process::id() as i32;
        assert_eq!(observe_process(me, &sockets), Observation::NotYet);
        let Listener::Tcp(tcp) = &listener else {
            unreachable!("bound a TCP address")
        };
        let tcp = tcp.try_clone().expect("clone");
        tcp.set_nonblocking(false).expect("blocking");
        let waiter = std::thread::spawn(move || tcp.accept().map(|_| ()));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while observe_process(me, &sockets) != Observation::Accepting {
            assert!(
                std::time::Instant::now() < deadline,
                "the thread in accept(2) was never observed"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let client = std::net::TcpStream::connect(addr).expect("connect");
        waiter.join().expect("join").expect("accepted");
        drop(client);
    }

    #[test]
    fn a_process_holding_an_accepted_connection_is_accepting() {
        let listener = Listener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.tcp_addr().expect("addr");
        let me = std::process::id() as i32;
        let Listener::Tcp(tcp) = &listener else {
            unreachable!("bound a TCP address")
        };
        let _client = std::net::TcpStream::connect(addr).expect("connect");
        let (_conn, _) = tcp.accept().expect("accept");
        let sockets = Sockets::of(std::slice::from_ref(&listener));
        assert_eq!(sockets.accepted.len(), 1, "{sockets:?}");
        assert_eq!(observe_process(me, &sockets), Observation::Accepting);
    }

    #[test]
    fn reads_listening_addresses_of_proc_net_tables() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1
   1: 0100007F:1F41 00000000:0000 01 00000000:00000000 00:00000000 00000000     0        0 4243 1";
        let v6 = "  sl  local_address rem_address st tx_queue rx_queue tr tm->when retrnsmt uid timeout inode
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 77 1";
        let inodes: HashSet<u64> = [4242, 4243, 77].into();
        assert_eq!(listening_tcp(v4, &inodes), ["127.0.0.1:8000"]);
        assert_eq!(listening_tcp(v6, &inodes), ["[::1]:80"]);
        assert!(listening_tcp(v4, &[1].into()).is_empty());
    }

    #[test]
    fn reads_proc_net_tables() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1\n\
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 222 1\n\
   2: 0100007F:D431 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 333 1\n";
        assert_eq!(accepted_tcp(tcp, &HashSet::from([8080])), vec![222]);
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path\n\
0000: 00000002 00000000 00010000 0001 01 444 /run/app.sock\n\
0000: 00000003 00000000 00000000 0001 03 555 /run/app.sock\n\
0000: 00000003 00000000 00000000 0001 03 666\n";
        assert_eq!(
            accepted_unix(unix, &HashSet::from(["/run/app.sock".to_string()])),
            vec![555]
        );
    }
}
