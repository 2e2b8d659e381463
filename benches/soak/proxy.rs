//! The tcpbridge process under soak: started with `--metrics-listen`, stopped
//! when dropped, and observed from outside through `/proc/PID` (descriptors,
//! RSS, CPU) and its `/metrics` endpoint (live sessions, accepted and closed).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A running tcpbridge: its listen and metrics addresses.
pub struct Proxy {
    child: Child,
    pub listen: SocketAddr,
    pub metrics: SocketAddr,
}

/// What `/metrics` says at one moment.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub live: u64,
    pub accepted: u64,
    pub closed: u64,
    /// `(reason, count)` of `tcpbridge_sessions_closed_total`, non-zero only.
    pub closed_by_reason: Vec<(String, u64)>,
}

impl Proxy {
    /// Starts `binary forward` in front of `upstream` and waits for its READY line.
    pub fn start(
        binary: &Path,
        upstream: SocketAddr,
        reset_policy: &str,
        log: &Path,
    ) -> Result<Proxy, String> {
        let mut command = Command::new(binary);
        command
            .args(["forward", "--listen", "127.0.0.1:0", "--upstream"])
            .arg(upstream.to_string())
            .args(["--metrics-listen", "127.0.0.1:0", "--max-sessions", "4096"])
            .args(["--reset-policy", reset_policy, "-q"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(log).map_err(|e| format!("{}: {e}", log.display()))?);
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let line = crate::child::first_line(&mut child, Duration::from_secs(10))
            .ok_or("tcpbridge printed no READY line within 10 s")?;
        let field = |key: &str| -> Result<SocketAddr, String> {
            crate::child::ready_field(&line, key)
                .ok_or(format!("READY line without {key}: {:?}", line.trim()))
        };
        Ok(Proxy {
            listen: field("listen=")?,
            metrics: field("metrics=")?,
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// Open file descriptors (`/proc/PID/fd`).
    pub fn fds(&self) -> u64 {
        fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|dir| dir.count() as u64)
            .unwrap_or(0)
    }

    /// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`), in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        let text = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        text.lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// User plus system CPU time so far, in clock ticks (`/proc/PID/stat`).
    pub fn cpu_ticks(&self) -> u64 {
        let text = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the ")" that closes the command name: state is field 3,
        // utime and stime are fields 14 and 15.
        let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)
    }

    /// One `GET /metrics`, summed over listeners.
    pub fn metrics(&self) -> io::Result<Metrics> {
        let mut stream = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")?;
        let mut text = String::new();
        stream.read_to_string(&mut text)?;
        let mut m = Metrics::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value: u64 = value.parse::<f64>().map(|v| v as u64).unwrap_or(0);
            if series.starts_with("tcpbridge_sessions{") {
                m.live += value;
            } else if series.starts_with("tcpbridge_sessions_accepted_total{") {
                m.accepted += value;
            } else if series.starts_with("tcpbridge_sessions_closed_total{") {
                m.closed += value;
                let reason = series
                    .split("reason=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("?");
                if value > 0 {
                    m.closed_by_reason.push((reason.to_string(), value));
                }
            }
        }
        Ok(m)
    }

    /// Waits up to `within` for no live session, `accepted == closed` and the
    /// descriptor count back at `baseline_fds`; the last reading either way.
    pub fn quiesce(&self, baseline_fds: u64, within: Duration) -> (bool, Metrics, u64) {
        let deadline = Instant::now() + within;
        loop {
            // Descriptors first: the previous metrics connection is closed by now.
            let fds = self.fds();
            let m = self.metrics().unwrap_or_default();
            // The metrics connection itself may still be open for a moment.
            let quiet = m.live == 0 && m.accepted == m.closed && fds <= baseline_fds;
            if quiet || Instant::now() > deadline {
                return (quiet, m, fds);
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        crate::child::stop(&mut self.child);
    }
}
