//! Kernel pipes for splice(2) on Linux: the core's [`KernelPipe`], socket → pipe → socket
//! with no copy through user space.
//!
//! A kernel pipe is a `pipe2(O_NONBLOCK | O_CLOEXEC)` pair sized with `F_SETPIPE_SZ` (the
//! kernel may refuse a size over `/proc/sys/fs/pipe-max-size` or the user's pipe pages:
//! the pipe then keeps its default size, read back with `F_GETPIPE_SZ`). Bytes are
//! counted as they go in and out, so the core knows what a pipe holds without asking the
//! kernel. `EINVAL` from splice means the descriptor cannot be spliced: `Unsupported`,
//! and the direction copies. Elsewhere than Linux, opening fails with `Unsupported`.

use std::io;

use crate::core::pool::{KernelPipe, OpenPipe};
#[cfg(target_os = "linux")]
use crate::core::stream::Stream;

/// A way to open kernel pipes of `size` bytes, for the pool.
pub fn opener(size: usize) -> OpenPipe {
    Box::new(move || open(size).map(|p| Box::new(p) as Box<dyn KernelPipe>))
}

#[cfg(target_os = "linux")]
pub use linux::PipePair;

#[cfg(target_os = "linux")]
fn open(size: usize) -> io::Result<PipePair> {
    PipePair::open(size)
}

#[cfg(not(target_os = "linux"))]
fn open(_size: usize) -> io::Result<Unavailable> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Stands in for a kernel pipe where there is no splice: never opened.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub struct Unavailable;

#[cfg(not(target_os = "linux"))]
impl KernelPipe for Unavailable {
    fn len(&self) -> usize {
        0
    }

    fn capacity(&self) -> usize {
        0
    }

    fn fill(&mut self, _: &mut dyn crate::core::stream::Stream, _: usize) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn drain(&mut self, _: &mut dyn crate::core::stream::Stream, _: usize) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::ptr;

    use super::{KernelPipe, Stream};

    /// A pipe(2) lent to one direction of a session: bytes enter at `write`, leave at
    /// `read`.
    #[derive(Debug)]
    pub struct PipePair {
        read: OwnedFd,
        write: OwnedFd,
        len: usize,
        capacity: usize,
    }

    impl PipePair {
        /// A new non-blocking, close-on-exec pipe of (about) `size` bytes.
        pub fn open(size: usize) -> io::Result<PipePair> {
            let mut fds: [RawFd; 2] = [-1, -1];
            let flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
            // SAFETY: pipe2 writes two descriptors into the two-element array it is given.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), flags) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: pipe2 succeeded: both descriptors are open and nothing else owns them.
            let (read, write) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            let wanted = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
            // SAFETY: F_SETPIPE_SZ and F_GETPIPE_SZ take and return an int and touch no
            // memory of ours; the descriptor is open (owned above). A refused size keeps
            // the default one.
            let capacity = unsafe {
                libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, wanted);
                libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
            };
            // Never more than asked for, though the kernel rounds up to whole pages: the
            // pool counts `size` against its budget.
            let capacity = usize::try_from(capacity).unwrap_or(0).clamp(1, size.max(1));
            Ok(PipePair {
                read,
                write,
                len: 0,
                capacity,
            })
        }
    }

    /// One splice(2) between two descriptors, non-blocking.
    fn splice(from: RawFd, to: RawFd, max: usize) -> io::Result<usize> {
        let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
        // SAFETY: null offsets are allowed for pipes and sockets (the file position is
        // used); splice reads and writes no memory of ours. Both descriptors are open:
        // one is owned by the pipe, the other borrowed from a live stream for this call.
        let n = unsafe { libc::splice(from, ptr::null_mut(), to, ptr::null_mut(), max, flags) };
        match usize::try_from(n) {
            Ok(n) => Ok(n),
            Err(_) => {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINVAL | libc::ENOSYS) => Err(io::ErrorKind::Unsupported.into()),
                    _ => Err(e),
                }
            }
        }
    }

    impl KernelPipe for PipePair {
        fn len(&self) -> usize {
            self.len
        }

        fn capacity(&self) -> usize {
            self.capacity
        }

        fn fill(&mut self, source: &mut dyn Stream, max: usize) -> io::Result<usize> {
            let fd = source.splice_fd().ok_or(io::ErrorKind::Unsupported)?;
            let n = splice(fd, self.write.as_raw_fd(), max)?;
            self.len += n;
            Ok(n)
        }

        fn drain(&mut self, destination: &mut dyn Stream, max: usize) -> io::Result<usize> {
            let fd = destination.splice_fd().ok_or(io::ErrorKind::Unsupported)?;
            let n = splice(self.read.as_raw_fd(), fd, max.min(self.len))?;
            self.len -= n.min(self.len);
            Ok(n)
        }
    }
}
