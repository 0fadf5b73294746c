//! This process's resource usage, read from `/proc/self`.

/// A snapshot of this process's resources.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcStats {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub open_fds: f64,
}

/// Reads `/proc/self/stat` and `/proc/self/fd`; `None` where unavailable.
pub(crate) fn read() -> Option<ProcStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
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
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1) as f64) // minus the directory handle itself
        .unwrap_or(0.0);
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
}
