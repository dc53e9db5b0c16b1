//! CPU time: the engine's from `/proc/<pid>/stat` (or the stat files of
//! some of its threads), the generator's own from `getrusage`; and the
//! engine's resident memory from `/proc/<pid>/status`.

use std::io;
use std::time::Duration;

/// Whose CPU time counts as the engine's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineCpu {
    /// Not measured.
    None,
    /// The whole process `pid` (utime + stime of `/proc/<pid>/stat`).
    Process(u32),
    /// The threads of process `pid` whose name starts with the prefix
    /// (`/proc/<pid>/task/*/stat`), for an engine that runs in-process.
    Threads { pid: u32, prefix: String },
}

/// Whose CPU time counts as the generator's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfCpu {
    /// `getrusage(RUSAGE_SELF)`: the whole process.
    Process,
    /// `getrusage(RUSAGE_THREAD)`: the thread that runs the generator
    /// (for an in-process engine).
    Thread,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// `(comm, utime + stime in ticks)` from the text of a `stat` file. The
/// command name is in parentheses and may itself contain spaces and
/// parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<(&str, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?;
    let mut fields = text.get(close + 1..)?.split_ascii_whitespace();
    // After the comm: state (3), ppid (4), … utime is field 14, stime 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

fn stat_ticks(path: &str) -> io::Result<(String, u64)> {
    let text = std::fs::read_to_string(path)?;
    parse_stat(&text)
        .map(|(c, t)| (c.to_owned(), t))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: unreadable stat line")))
}

/// The `VmRSS` of a `/proc/<pid>/status` text, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let mut parts = line.split_ascii_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    let unit = match parts.next() {
        Some("kB") => 1024,
        Some("mB" | "MB") => 1024 * 1024,
        Some("B") | None => 1,
        Some(_) => return None,
    };
    value.checked_mul(unit)
}

/// Resident memory of process `pid` (`VmRSS` of `/proc/<pid>/status`), in
/// bytes; `None` when it cannot be read.
pub fn vm_rss(pid: u32) -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

impl EngineCpu {
    /// The engine's process id, when it is measured.
    pub fn pid(&self) -> Option<u32> {
        match self {
            EngineCpu::None => None,
            EngineCpu::Process(pid) | EngineCpu::Threads { pid, .. } => Some(*pid),
        }
    }

    /// CPU seconds used so far, or `None` when not measured.
    pub fn read(&self) -> io::Result<Option<Duration>> {
        let ticks = match self {
            EngineCpu::None => return Ok(None),
            EngineCpu::Process(pid) => stat_ticks(&format!("/proc/{pid}/stat"))?.1,
            EngineCpu::Threads { pid, prefix } => {
                let mut sum = 0;
                for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
                    let entry = entry?;
                    let path = format!("{}/stat", entry.path().display());
                    // A thread may end between the listing and the read.
                    if let Ok((comm, t)) = stat_ticks(&path)
                        && comm.starts_with(prefix.as_str())
                    {
                        sum += t;
                    }
                }
                sum
            }
        };
        Ok(Some(Duration::from_secs_f64(ticks as f64 / clock_ticks())))
    }
}

impl SelfCpu {
    /// User + system CPU time used so far.
    pub fn read(self) -> Duration {
        let who = match self {
            SelfCpu::Process => libc::RUSAGE_SELF,
            SelfCpu::Thread => libc::RUSAGE_THREAD,
        };
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage for the whole call.
        let rc = unsafe { libc::getrusage(who, &mut ru) };
        if rc != 0 {
            return Duration::ZERO;
        }
        let tv = |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.clamp(0, 999_999) as u32) * 1000);
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_odd_comm() {
        let line = "1234 (sipark (w) 0) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_stat(line), Some(("sipark (w) 0", 287)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tsipark\nVmPeak:\t  900 kB\nVmRSS:\t  123456 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(123_456 * 1024));
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), None, "kernel threads have no VmRSS");
        assert_eq!(parse_vm_rss("VmRSS:\tlots kB\n"), None);
        assert_eq!(parse_vm_rss("VmRSS:\t1 parsecs\n"), None);
        let own = vm_rss(std::process::id()).unwrap_or_else(|| panic!("no VmRSS for this process"));
        assert!(own > 1 << 20, "a test process uses more than 1 MiB: {own}");
        assert_eq!(EngineCpu::Threads { pid: 7, prefix: "x".into() }.pid(), Some(7));
        assert_eq!(EngineCpu::None.pid(), None);
    }

    #[test]
    fn own_process_is_readable_and_grows() {
        let pid = std::process::id();
        let cpu = EngineCpu::Process(pid);
        let a = cpu.read().unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}")).unwrap_or_default();
        let t0 = SelfCpu::Thread.read();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(150) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let b = cpu.read().unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}")).unwrap_or_default();
        let t1 = SelfCpu::Thread.read();
        assert!(b >= a, "process CPU went backwards: {a:?} -> {b:?}");
        assert!(t1 > t0, "thread CPU did not grow while spinning: {t0:?} -> {t1:?}");
        assert!(SelfCpu::Process.read() >= t1 - t0, "process CPU below one thread's");
        assert_eq!(EngineCpu::None.read().ok().flatten(), None);
    }
}
