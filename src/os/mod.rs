//! The operating-system layer: sockets as core streams (`net`), TLS over them (`tls`,
//! with the `tls` feature; a pinned key's `fingerprint` is in every build), either of the
//! two as one type (`link`),
//! kernel pipes for splice (`splice`), random bytes (`random`), systemd (`systemd`), and the few process-wide
//! settings here (SIGPIPE, the open-files limit, the allocator's large blocks). The only
//! modules with `unsafe` code, each block with a `SAFETY:` note: the rest of the crate
//! denies it.

use std::io;

pub mod fingerprint;
pub mod link;
pub mod net;
pub mod random;
pub mod splice;
pub mod systemd;
#[cfg(feature = "tls")]
pub mod tls;

/// Asks the allocator to map blocks of `threshold` bytes and more on their own, so that
/// freeing one gives its memory straight back to the OS: the pool's larger ring classes
/// return after a burst. glibc only (and its adaptive threshold, which would otherwise
/// keep such blocks on the heap after the first free, is switched off); musl already maps
/// large blocks.
pub fn map_large_blocks(threshold: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = libc::c_int::try_from(threshold).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets an allocator parameter; it is called once at start-up
        // before any thread is spawned.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, threshold);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = threshold;
}

/// Ignores SIGPIPE for the whole process, so a write to a reset peer returns EPIPE instead
/// of killing us (std ignores it before `main` today, but embedding or build flags can
/// undo that; `writev` has no per-call opt-out).
pub fn ignore_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code and has
    // no memory effects; it is done once at start-up before any thread is spawned.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The open-files limits (RLIMIT_NOFILE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nofile {
    /// What the process may open now.
    pub soft: u64,
    /// What the soft limit may be raised to without privileges.
    pub hard: u64,
}

impl Nofile {
    /// The soft limit after asking for `wanted`: raised toward it, never above the hard
    /// limit, never lowered.
    pub fn after_raise(self, wanted: u64) -> u64 {
        self.soft.max(wanted.min(self.hard))
    }
}

/// The open-files limits now.
pub fn nofile() -> io::Result<Nofile> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct through a pointer to a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Nofile {
        soft: lim.rlim_cur,
        hard: lim.rlim_max,
    })
}

/// Raises the soft open-files limit toward `wanted` (see [`Nofile::after_raise`]);
/// returns the soft limit in force afterwards.
pub fn raise_nofile(wanted: u64) -> io::Result<u64> {
    let now = nofile()?;
    let target = now.after_raise(wanted);
    if target > now.soft {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: now.hard,
        };
        // SAFETY: setrlimit reads one rlimit struct from a pointer to a live local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(target);
        }
    }
    Ok(now.soft)
}

/// Descriptors open in this process now (Linux: `/proc/self/fd`), or `None` if unknown.
pub fn open_descriptors() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_never_lowers_and_stops_at_the_hard_limit() {
        let l = Nofile {
            soft: 1024,
            hard: 4096,
        };
        assert_eq!(l.after_raise(2000), 2000);
        assert_eq!(l.after_raise(10_000), 4096);
        assert_eq!(l.after_raise(10), 1024);
        let now = nofile().expect("getrlimit");
        assert!(now.soft <= now.hard);
    }
}
