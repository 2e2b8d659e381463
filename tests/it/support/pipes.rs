//! The proxy's kernel pipes as `/proc/PID/fd` shows them: `pipe:[N]` links
//! above stderr (stdout and stderr are the harness's pipes). The pool keeps an
//! emptied kernel pipe as a spare and closes the spares nobody used after a
//! quiet second (two trims at most), so an fd baseline counts every descriptor
//! *but* kernel pipes ([`Proxy::steady_fds`]), and a proxy at rest must end
//! with none at all ([`Proxy::assert_pipes_closed`]): one left after the
//! trims is a leak.

use super::{wait_for, Proxy};
use std::time::Duration;

/// How long spare kernel pipes may stay open once the proxy is at rest: two
/// trim intervals of 1 s are expected, with 10x margin.
pub const SPARE_PIPES_CLOSED: Duration = Duration::from_secs(20);

impl Proxy {
    /// (descriptors other than kernel pipes, kernel pipe descriptors), from
    /// one pass over `/proc/PID/fd`.
    pub fn fd_census(&self) -> (usize, usize) {
        let fds = self.fd_list();
        let pipes = fds
            .iter()
            .filter(|l| {
                let (fd, target) = l.split_once(" -> ").unwrap_or_default();
                fd.parse::<u32>().is_ok_and(|n| n > 2) && target.starts_with("pipe:")
            })
            .count();
        (fds.len() - pipes, pipes)
    }

    /// Open descriptors other than kernel pipes: what fd baselines compare.
    pub fn steady_fds(&self) -> usize {
        self.fd_census().0
    }

    /// Kernel pipe descriptors (two per kernel pipe, lent or spare).
    pub fn kernel_pipe_fds(&self) -> usize {
        self.fd_census().1
    }

    /// Waits up to [`SPARE_PIPES_CLOSED`] until the proxy holds no kernel
    /// pipe (every spare trimmed); panics with a dump otherwise.
    pub fn assert_pipes_closed(&self) {
        let closed = wait_for(SPARE_PIPES_CLOSED, || self.kernel_pipe_fds() == 0);
        assert!(
            closed,
            "{} kernel pipe descriptors still open {SPARE_PIPES_CLOSED:?} after the proxy \
             came to rest (spares are closed after a quiet second): a leak\n{}",
            self.kernel_pipe_fds(),
            self.dump()
        );
    }
}
