//! What the machine did during a run: this process's CPU time (/proc/self/stat), the broker's CPU time
//! and resident memory (/proc/<pid>/stat and status), and the whole machine's busy time
//! (/proc/stat), so that the share taken by other processes can be stated beside the numbers.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// CPU counters at one instant.
#[derive(Debug, Clone, Copy)]
pub struct CpuSnapshot {
    at: Instant,
    bench: Duration,
    broker: Option<Duration>,
    machine_busy: Option<Duration>,
}

/// CPU used between two snapshots, in seconds; "cores" is seconds of CPU per second of wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuReport {
    pub wall_s: f64,
    pub bench_cpu_s: f64,
    pub bench_cores: f64,
    pub broker_cpu_s: Option<f64>,
    pub broker_cores: Option<f64>,
    /// Busy time of the whole machine less this process and the broker.
    pub other_cores: Option<f64>,
    pub cores: usize,
    /// 1-minute load average when the run ended.
    pub load1: Option<f64>,
}

impl CpuSnapshot {
    pub fn take(broker_pid: Option<u32>) -> CpuSnapshot {
        let ticks = clock_ticks();
        CpuSnapshot {
            at: Instant::now(),
            bench: own_cpu().unwrap_or_default(),
            broker: broker_pid.and_then(|pid| process_cpu(pid, ticks).ok()),
            machine_busy: machine_busy(ticks).ok(),
        }
    }

    /// The CPU used from `self` to `later`.
    pub fn report(&self, later: &CpuSnapshot) -> CpuReport {
        let wall = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let bench = later.bench.saturating_sub(self.bench).as_secs_f64();
        let broker = match (self.broker, later.broker) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a).as_secs_f64()),
            _ => None,
        };
        let other = match (self.machine_busy, later.machine_busy) {
            (Some(a), Some(b)) => {
                let busy = b.saturating_sub(a).as_secs_f64();
                Some(((busy - bench - broker.unwrap_or(0.0)) / wall).max(0.0))
            }
            _ => None,
        };
        CpuReport {
            wall_s: wall,
            bench_cpu_s: bench,
            bench_cores: bench / wall,
            broker_cpu_s: broker,
            broker_cores: broker.map(|b| b / wall),
            other_cores: other,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load1: load_average(),
        }
    }
}

/// User + system CPU time of this process, all threads (10 ms resolution, plenty for runs of
/// seconds). Read from /proc rather than getrusage: a libc binding crate here would change the
/// workspace's feature set for `libc` and make cargo rebuild RocksDB's C++ (~18 minutes).
fn own_cpu() -> anyhow::Result<Duration> {
    let text = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    parse_process_ticks(&text).map(|ticks| ticks_to_duration(ticks, clock_ticks()))
}

/// Clock ticks per second of /proc times: USER_HZ, which Linux fixes at 100 in its user ABI.
fn clock_ticks() -> u64 {
    100
}

fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// utime + stime of a process, all threads, from /proc/<pid>/stat.
fn process_cpu(pid: u32, per_second: u64) -> anyhow::Result<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_process_ticks(&text).map(|ticks| ticks_to_duration(ticks, per_second))
}

/// Fields 14 and 15 (utime, stime) of a /proc/<pid>/stat line; the command name in field 2 may
/// hold spaces and parentheses, so fields are counted after its last ')'.
fn parse_process_ticks(stat: &str) -> anyhow::Result<u64> {
    let after_name = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("no ')' in /proc stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    let (Some(utime), Some(stime)) = (fields.get(11), fields.get(12)) else {
        bail!("short /proc stat line");
    };
    Ok(utime.parse::<u64>()? + stime.parse::<u64>()?)
}

/// Busy time of all CPUs from the first line of /proc/stat.
fn machine_busy(per_second: u64) -> anyhow::Result<Duration> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_machine_busy_ticks(&text).map(|ticks| ticks_to_duration(ticks, per_second))
}

/// user + nice + system + irq + softirq + steal (idle and iowait are not busy; guest time is
/// already inside user).
fn parse_machine_busy_ticks(stat: &str) -> anyhow::Result<u64> {
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("parsing /proc/stat")?;
    let at = |i: usize| values.get(i).copied().unwrap_or(0);
    Ok(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// Resident memory of a process in bytes (VmRSS of /proc/<pid>/status).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (is --broker-pid right?)"))?;
    parse_vm_rss(&text)
}

fn parse_vm_rss(status: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS in /proc status")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("VmRSS without a value")?
        .parse()
        .context("VmRSS value")?;
    Ok(kib * 1024)
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// This process's soft limit on open files, from /proc/self/limits (`bench/compare` raises it
/// with `ulimit -n` before starting the generator).
pub fn raise_open_files_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| parse_open_files_limit(&text))
        .unwrap_or(1024)
}

/// The soft limit in the "Max open files" line of /proc/<pid>/limits.
fn parse_open_files_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The broker's RSS once it has stopped moving: read after `settle`, then every 200 ms until two
/// readings differ by less than 0.5 % (at most 10 more), so that a figure taken after a burst of
/// work is not caught mid-way (e.g. while a store flushes).
pub async fn settled_rss(pid: u32, settle: Duration) -> anyhow::Result<u64> {
    tokio::time::sleep(settle).await;
    let mut last = rss_bytes(pid)?;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = rss_bytes(pid)?;
        let moved = now.abs_diff(last) as f64 / last.max(1) as f64;
        last = now;
        if moved < 0.005 {
            break;
        }
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_ticks_skip_a_command_name_with_spaces_and_parens() {
        let line = "1234 (my (odd) broker) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 0 0";
        assert_eq!(parse_process_ticks(line).unwrap(), 300);
        assert!(parse_process_ticks("1234 (x) S 1").is_err());
    }

    #[test]
    fn open_files_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                20000                files\n";
        assert_eq!(parse_open_files_limit(limits), Some(20000));
    }

    #[test]
    fn machine_busy_excludes_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 30 7 3 2 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 1\n";
        assert_eq!(
            parse_machine_busy_ticks(stat).unwrap(),
            100 + 5 + 50 + 7 + 3 + 2
        );
    }

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let status = "Name:\tmosquitto\nVmPeak:\t  9000 kB\nVmRSS:\t    6144 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status).unwrap(), 6144 * 1024);
        assert!(parse_vm_rss("Name:\tx\n").is_err());
    }

    #[test]
    fn own_process_figures_are_readable() {
        let pid = std::process::id();
        assert!(rss_bytes(pid).unwrap() > 0);
        assert!(process_cpu(pid, clock_ticks()).is_ok());
        let a = CpuSnapshot::take(Some(pid));
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let report = a.report(&CpuSnapshot::take(Some(pid)));
        assert!(report.bench_cpu_s >= 0.0 && report.wall_s > 0.0);
        assert!(report.broker_cpu_s.is_some());
    }
}
