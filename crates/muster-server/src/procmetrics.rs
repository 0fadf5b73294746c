//! Resource usage of this process, or of a worker's process tree, read from `/proc`.

use std::collections::HashMap;

/// A snapshot of this process's resources.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcStats {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub open_fds: f64,
}

/// Reads `/proc/self/stat` and `/proc/self/fd`; `None` where unavailable.
pub(crate) fn read() -> Option<ProcStats> {
    read_proc("self")
}

/// The summed resources of `leader` and, when `group`, of every process of the
/// process group it leads (a `muster run` worker: the command and what it forked);
/// `None` when `leader` is gone.
pub(crate) fn read_tree(leader: i32, group: bool) -> Option<ProcStats> {
    let members = if group {
        process_groups().remove(&leader).unwrap_or_default()
    } else {
        Vec::new()
    };
    read_group(leader, &members)
}

/// The summed resources of `leader` and of `members` (other processes of its
/// group); `None` when `leader` is gone.
pub(crate) fn read_group(leader: i32, members: &[i32]) -> Option<ProcStats> {
    let mut total = read_proc(&leader.to_string())?;
    for pid in members.iter().filter(|p| **p != leader) {
        if let Some(s) = read_proc(&pid.to_string()) {
            total.cpu_seconds += s.cpu_seconds;
            total.resident_bytes += s.resident_bytes;
            total.open_fds += s.open_fds;
        }
    }
    Some(total)
}

/// Every process group with its processes, from one scan of `/proc`.
pub(crate) fn process_groups() -> HashMap<i32, Vec<i32>> {
    let mut groups: HashMap<i32, Vec<i32>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return groups;
    };
    for pid in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        if let Some(f) = stat_fields(&pid.to_string()) {
            groups.entry(f.pgrp).or_default().push(pid);
        }
    }
    groups
}

/// The fields of `/proc/<pid>/stat` used here.
struct StatFields {
    pgrp: i32,
    state: char,
}

fn stat_fields(pid: &str) -> Option<StatFields> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(StatFields { pgrp, state })
}

/// Whether `pid` is alive and not a zombie.
pub(crate) fn is_running(pid: i32) -> bool {
    stat_fields(&pid.to_string()).is_some_and(|f| f.state != 'Z' && f.state != 'X')
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/fd` (`pid` may be `self`).
fn read_proc(pid: &str) -> Option<ProcStats> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime = field 14, stime = 15, rss = 24.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let rss_pages: f64 = fields.get(21)?.parse().ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .unwrap_or(100) as f64;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .filter(|t| *t > 0)
        .unwrap_or(4096) as f64;
    let open_fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            let n = d.count();
            // Reading our own directory holds one descriptor for the listing itself.
            if pid == "self" {
                n.saturating_sub(1)
            } else {
                n
            }
        })
        .unwrap_or(0) as f64;
    Some(ProcStats {
        cpu_seconds: (utime + stime) / ticks,
        resident_bytes: rss_pages * page,
        open_fds,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_stats() {
        let s = super::read().expect("linux /proc");
        assert!(s.resident_bytes > 0.0);
        assert!(s.open_fds >= 3.0);
        assert!(s.cpu_seconds >= 0.0);
    }

    #[test]
    fn reads_a_process_group() {
        let me = std::process::id() as i32;
        let pgrp = nix::unistd::getpgrp().as_raw();
        assert!(super::process_groups()
            .get(&pgrp)
            .is_some_and(|m| m.contains(&me)));
        let tree = super::read_tree(me, false).expect("own stats");
        assert!(tree.resident_bytes > 0.0);
        assert!(super::is_running(me));
        assert!(super::read_tree(i32::MAX, true).is_none());
    }
}
