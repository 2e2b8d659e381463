//! Facts about this host shared by the `compare` and `nat` benches: clock ticks, the
//! machine's busy and steal time from `/proc/stat`, and the open-files limit.

use std::fs;
use std::time::Duration;

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).unwrap_or(100).max(1)
}

/// Kernel clock ticks (`/proc/*/stat` units) as a duration.
pub fn ticks_to_duration(ticks: u64) -> Duration {
    let per_second = clock_ticks_per_second();
    Duration::from_secs(ticks / per_second)
        + Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second)
}

/// A `getrusage` time value as a duration.
pub fn timeval(t: libc::timeval) -> Duration {
    let micros =
        u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0);
    Duration::from_micros(micros)
}

/// CPU time the whole machine has spent busy since boot (user, nice, system, irq,
/// softirq) and the time the hypervisor took away from it (steal), from the first line
/// of `/proc/stat`.
pub fn machine_busy_and_steal() -> (Duration, Duration) {
    let text = fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    let field = |i: usize| ticks.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal ...
    let busy = field(0) + field(1) + field(2) + field(5) + field(6);
    (ticks_to_duration(busy), ticks_to_duration(field(7)))
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit; children started
/// afterwards inherit it. Returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we hand them.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur
    }
}
