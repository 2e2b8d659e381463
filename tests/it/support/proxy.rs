//! The proxy under test as a child process, and what can be observed of it
//! from outside: the READY line, stderr, `/proc/PID/{fd,stat,net/tcp*}`,
//! signals and the exit status.

use super::{
    apply_data_path, drain_into, expect_kernel_pipes, tcp_rows, wait_for, wait_until, DataPath,
    OwnedSocket, TCP_CLOSE_WAIT, TCP_LISTEN, TEST_PIDS,
};
use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the proxy may take to print its READY line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tcpbridge");

/// A running `tcpbridge` child. Dropping it kills and reaps it (by its PID).
pub struct Proxy {
    child: Child,
    /// PID of the child.
    pub pid: u32,
    /// Listen addresses from the READY line, in the order given.
    pub listen: Vec<SocketAddr>,
    /// Every `key=value` token of the READY line, in order (relay and agent
    /// modes print `tunnel=`, `public.NAME=`, `relay=`, `service.NAME=`).
    pub ready: Vec<(String, String)>,
    stderr: Arc<Mutex<String>>,
    /// Every stdout line after the first (RELOADED, RELOAD-FAILED...).
    stdout: Arc<Mutex<Vec<String>>>,
    status: Option<ExitStatus>,
}

impl Proxy {
    /// Spawns `tcpbridge ARGS...` (ARGS excludes the program name) and waits
    /// for its READY line.
    pub fn spawn(args: &[&str]) -> Proxy {
        Self::spawn_inner(args, None)
    }

    /// Like [`Proxy::spawn`], with RLIMIT_NOFILE set to `nofile` (soft = hard)
    /// in the child before exec.
    pub fn spawn_with_nofile(args: &[&str], nofile: u64) -> Proxy {
        Self::spawn_inner(args, Some(nofile))
    }

    /// `tcpbridge forward --listen 127.0.0.1:0 --upstream U... EXTRA...`.
    pub fn forward(upstreams: &[SocketAddr], extra: &[&str]) -> Proxy {
        Self::spawn_strings(&forward_args(upstreams, extra))
    }

    /// [`Proxy::forward`] with RLIMIT_NOFILE set to `nofile`.
    pub fn forward_with_nofile(upstreams: &[SocketAddr], extra: &[&str], nofile: u64) -> Proxy {
        let args = forward_args(upstreams, extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::spawn_with_nofile(&refs, nofile)
    }

    /// [`Proxy::spawn`] taking owned strings.
    pub fn spawn_strings(args: &[String]) -> Proxy {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::spawn(&refs)
    }

    /// Spawns `tcpbridge ARGS...` without waiting for its READY line: the
    /// receiver yields the first stdout line when (if ever) it comes. Pass it
    /// to [`Proxy::await_ready`], or use it to check that no READY comes.
    pub fn launch(args: &[&str]) -> (Proxy, mpsc::Receiver<String>) {
        Self::launch_inner(BIN, args, None, |_| {})
    }

    /// Spawns `tcpbridge ARGS...` after `configure` has set up the command (environment,
    /// descriptors), and waits for its READY line.
    pub fn spawn_configured(args: &[&str], configure: impl FnOnce(&mut Command)) -> Proxy {
        Self::spawn_program(BIN, args, configure)
    }

    /// Like [`Proxy::spawn_configured`], running `program` (e.g. a shell that sets up
    /// the environment and execs the binary, keeping its PID).
    pub fn spawn_program(
        program: &str,
        args: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Proxy {
        let (mut proxy, line_rx) = Self::launch_inner(program, args, None, configure);
        if let Err(why) = proxy.await_ready(&line_rx, READY_TIMEOUT) {
            panic!("tcpbridge {args:?}: {why}");
        }
        proxy
    }

    /// Waits up to `within` for a stdout line after READY that starts with `prefix`
    /// and was not returned before; returns it.
    pub fn wait_stdout(&self, prefix: &str, within: Duration) -> Option<String> {
        let mut found = None;
        wait_for(within, || {
            let mut lines = self.stdout.lock().expect("stdout lines");
            if let Some(n) = lines.iter().position(|l| l.starts_with(prefix)) {
                found = Some(lines.remove(n));
            }
            found.is_some()
        });
        found
    }

    fn spawn_inner(args: &[&str], nofile: Option<u64>) -> Proxy {
        let (mut proxy, line_rx) = Self::launch_inner(BIN, args, nofile, |_| {});
        if let Err(why) = proxy.await_ready(&line_rx, READY_TIMEOUT) {
            panic!("tcpbridge {args:?}: {why}");
        }
        if args.first() == Some(&"forward") && proxy.listen.is_empty() {
            panic!(
                "tcpbridge {args:?}: READY line has no listen=IP:PORT token: {:?}",
                proxy.ready
            );
        }
        proxy
    }

    /// Waits up to `within` for the first stdout line and parses it as the
    /// READY line (filling [`Proxy::listen`] and [`Proxy::ready`]). The error
    /// says what happened instead, with the child's stderr.
    pub fn await_ready(
        &mut self,
        line_rx: &mpsc::Receiver<String>,
        within: Duration,
    ) -> Result<(), String> {
        let first = match line_rx.recv_timeout(within) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let exited = wait_for(Duration::from_secs(2), || self.try_status().is_some());
                let status = if exited {
                    format!("{:?}", self.status)
                } else {
                    "still running".to_string()
                };
                return Err(format!(
                    "closed stdout ({status}) before printing READY; stderr:\n{}",
                    self.stderr()
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "printed no line on stdout within {within:?}; stderr:\n{}",
                    self.stderr()
                ))
            }
        };
        let stderr = Arc::clone(&self.stderr);
        let line = first.clone();
        let bad = move |why: String| {
            let err = stderr.lock().map(|s| s.clone()).unwrap_or_default();
            format!("bad READY line {first:?}: {why}; stderr:\n{err}")
        };
        let fields = parse_ready_fields(&line).map_err(&bad)?;
        let mut listen = Vec::new();
        for (k, v) in &fields {
            if k == "listen" {
                let a = v
                    .parse::<SocketAddr>()
                    .map_err(|e| bad(format!("listen={v}: {e}")))?;
                listen.push(a);
            }
        }
        self.ready = fields;
        self.listen = listen;
        if DataPath::current() == Some(DataPath::Splice) {
            expect_kernel_pipes(self)?;
        }
        Ok(())
    }

    /// The value of `key=` in the READY line (first occurrence).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.ready
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key=` in the READY line as a socket address; panics
    /// (showing the READY fields) if it is missing or not an address.
    pub fn field_addr(&self, key: &str) -> SocketAddr {
        let v = self
            .field(key)
            .unwrap_or_else(|| panic!("READY line has no `{key}=`: {:?}", self.ready));
        v.parse()
            .unwrap_or_else(|e| panic!("READY `{key}={v}` is not an address: {e}"))
    }

    fn launch_inner(
        program: &str,
        args: &[&str],
        nofile: Option<u64>,
        configure: impl FnOnce(&mut Command),
    ) -> (Proxy, mpsc::Receiver<String>) {
        let args = apply_data_path(program, args);
        let mut cmd = Command::new(program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        no_inherited_fds(&mut cmd);
        configure(&mut cmd);
        if let Some(n) = nofile {
            // SAFETY: only async-signal-safe calls (setrlimit) run between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BIN} {args:?}: {e}"));
        let pid = child.id();
        TEST_PIDS.with(|c| {
            if let Some(pids) = c.borrow().as_ref() {
                pids.lock().expect("pid registry").push(pid);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("stderr is piped");
        let err_buf = Arc::clone(&stderr);
        thread::spawn(move || drain_into(err_pipe, err_buf));

        // stdout: the first line is handed over, the rest is kept for `wait_stdout`
        // (the child never blocks on a full pipe).
        let out_pipe = child.stdout.take().expect("stdout is piped");
        let (line_tx, line_rx) = mpsc::channel::<String>();
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let later = Arc::clone(&stdout);
        thread::spawn(move || {
            let mut lines = BufReader::new(out_pipe).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = line_tx.send(first);
            }
            for line in lines.map_while(Result::ok) {
                if let Ok(mut kept) = later.lock() {
                    kept.push(line);
                }
            }
        });

        let proxy = Proxy {
            child,
            pid,
            listen: Vec::new(),
            ready: Vec::new(),
            stderr,
            stdout,
            status: None,
        };
        (proxy, line_rx)
    }

    /// The first listen address.
    pub fn addr(&self) -> SocketAddr {
        self.listen[0]
    }

    /// Everything the proxy wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until stderr contains `needle`; returns whether it did.
    pub fn wait_log(&self, needle: &str, within: Duration) -> bool {
        wait_for(within, || self.stderr().contains(needle))
    }

    /// Sends `sig` to the child (by PID). Panics if it was already reaped.
    pub fn send_signal(&mut self, sig: libc::c_int) {
        assert!(
            self.try_status().is_none(),
            "send_signal: proxy already exited ({:?})",
            self.status
        );
        let rc = unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        assert_eq!(
            rc,
            0,
            "kill({}, {sig}): {}",
            self.pid,
            std::io::Error::last_os_error()
        );
    }

    /// Lowers RLIMIT_NOFILE of the running child (soft = hard = `n`), as
    /// `prlimit --pid PID --nofile=n:n` does.
    pub fn set_nofile(&self, n: u64) {
        self.prlimit_nofile(Some((n, n)));
    }

    /// The RLIMIT_NOFILE value that leaves exactly `free` descriptor numbers
    /// available to the proxy (the limit bounds fd *numbers*, and the table may
    /// have holes, e.g. inherited descriptors with high numbers).
    pub fn limit_leaving_free_fds(&self, free: usize) -> u64 {
        let used: std::collections::HashSet<u64> = self
            .fd_list()
            .iter()
            .filter_map(|l| l.split(' ').next()?.parse().ok())
            .collect();
        let mut left = free;
        let mut fd = 0u64;
        loop {
            if !used.contains(&fd) {
                left -= 1;
                if left == 0 {
                    return fd + 1;
                }
            }
            fd += 1;
        }
    }

    /// The child's RLIMIT_NOFILE as (soft, hard).
    pub fn nofile(&self) -> (u64, u64) {
        self.prlimit_nofile(None)
    }

    /// Sets only the soft RLIMIT_NOFILE, so it can be raised again later (raising
    /// the hard limit needs privileges).
    pub fn set_soft_nofile(&self, soft: u64) {
        let (_, hard) = self.nofile();
        self.prlimit_nofile(Some((soft, hard)));
    }

    /// prlimit(2) on the child's RLIMIT_NOFILE: sets (soft, hard) when given;
    /// returns the limits from before.
    fn prlimit_nofile(&self, new: Option<(u64, u64)>) -> (u64, u64) {
        let new = new.map(|(soft, hard)| libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        });
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let new_ptr = new.as_ref().map_or(std::ptr::null(), |l| l as *const _);
        // SAFETY: both pointers are valid for the call (or null); the pid is our child's.
        let rc = unsafe {
            libc::prlimit(
                self.pid as libc::pid_t,
                libc::RLIMIT_NOFILE,
                new_ptr,
                &mut old,
            )
        };
        assert_eq!(
            rc,
            0,
            "prlimit({}, NOFILE, {new:?}): {}",
            self.pid,
            std::io::Error::last_os_error()
        );
        (old.rlim_cur, old.rlim_max)
    }

    /// The exit status if the child has exited (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
                self.unregister();
            }
        }
        self.status
    }

    /// Waits up to `within` for the child to exit; panics with stderr if it does not.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        if !wait_for(within, || self.try_status().is_some()) {
            panic!(
                "proxy pid {} did not exit within {within:?}; stderr:\n{}",
                self.pid,
                self.stderr()
            );
        }
        self.status.expect("status recorded")
    }

    /// Panics if the child exited or logged a panic.
    pub fn assert_alive(&mut self) {
        if let Some(st) = self.try_status() {
            panic!(
                "proxy exited unexpectedly ({st}); stderr:\n{}",
                self.stderr()
            );
        }
        self.assert_no_panic();
    }

    /// Panics if stderr contains `panicked`.
    pub fn assert_no_panic(&self) {
        let err = self.stderr();
        assert!(!err.contains("panicked"), "proxy panicked; stderr:\n{err}");
    }

    /// `fd -> link target` for every open descriptor, for dumps.
    pub fn fd_list(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(dir) = fs::read_dir(format!("/proc/{}/fd", self.pid)) {
            for entry in dir.flatten() {
                let target = fs::read_link(entry.path()).map(|p| p.display().to_string());
                out.push(format!(
                    "{} -> {}",
                    entry.file_name().to_string_lossy(),
                    target.unwrap_or_default()
                ));
            }
        }
        out.sort();
        out
    }

    /// Inodes of the sockets in the proxy's fd table.
    fn socket_inodes(&self) -> HashSet<u64> {
        self.fd_list()
            .iter()
            .filter_map(|l| l.split("socket:[").nth(1))
            .filter_map(|s| s.trim_end_matches(']').parse().ok())
            .collect()
    }

    /// The TCP sockets owned by the proxy (fd table joined with
    /// `/proc/PID/net/tcp` and `tcp6` on the inode column).
    pub fn owned_tcp(&self) -> Vec<OwnedSocket> {
        let inodes = self.socket_inodes();
        tcp_rows(self.pid)
            .into_iter()
            .filter(|s| inodes.contains(&s.inode))
            .collect()
    }

    /// Owned sockets in CLOSE-WAIT: the peer sent FIN and the proxy never closed.
    pub fn close_wait_owned(&self) -> Vec<OwnedSocket> {
        self.owned_tcp()
            .into_iter()
            .filter(|s| s.state == TCP_CLOSE_WAIT)
            .collect()
    }

    /// Owned TCP sockets that are not listeners.
    pub fn session_sockets(&self) -> Vec<OwnedSocket> {
        self.owned_tcp()
            .into_iter()
            .filter(|s| s.state != TCP_LISTEN)
            .collect()
    }

    /// utime + stime in clock ticks (`/proc/PID/stat` fields 14 and 15).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .unwrap_or_else(|e| panic!("read /proc/{}/stat: {e}", self.pid));
        // Field 2 `(comm)` may contain spaces and parentheses: split after the last ')'.
        let rest = &stat[stat.rfind(')').expect("comm field") + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state), so field N is fields[N - 3].
        let utime: u64 = fields[14 - 3].parse().expect("utime");
        let stime: u64 = fields[15 - 3].parse().expect("stime");
        utime + stime
    }

    /// CPU time (user + system) the proxy used so far.
    pub fn cpu_time(&self) -> Duration {
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_millis(self.cpu_ticks() * 1000 / hz)
    }

    /// A `kB` line of `/proc/PID/status` (`VmRSS`, `VmHWM`...), in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_else(|e| panic!("read /proc/{}/status: {e}", self.pid));
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{field}: N kB` line in /proc/{}/status", self.pid))
    }

    /// Resident set size now, in KiB (`VmRSS`).
    pub fn vm_rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    /// Peak resident set size so far, in KiB (`VmHWM`).
    pub fn vm_hwm_kib(&self) -> u64 {
        self.status_kib("VmHWM")
    }

    /// Waits until the proxy owns no TCP socket except its listeners, then
    /// returns its fd count without kernel pipes ([`Proxy::steady_fds`]): the
    /// baseline for [`Proxy::assert_quiescent`]. Call it after a warm-up
    /// session (e.g. [`super::echo_once`]).
    pub fn baseline(&self) -> usize {
        if !wait_for(Duration::from_secs(5), || self.session_sockets().is_empty()) {
            panic!("no quiet point to take the fd baseline\n{}", self.dump());
        }
        self.steady_fds()
    }

    /// Polls until the fd count without kernel pipes equals `baseline` and no
    /// owned socket is in CLOSE-WAIT, then until no kernel pipe is left
    /// ([`Proxy::assert_pipes_closed`]), then checks the proxy is alive and did
    /// not panic. Panics with a dump (fds, owned TCP rows, stderr) otherwise.
    pub fn assert_quiescent(&mut self, baseline: usize, within: Duration) {
        self.assert_alive();
        let ok = wait_until(Instant::now() + within, || {
            self.steady_fds() == baseline && self.close_wait_owned().is_empty()
        });
        if !ok {
            panic!(
                "proxy not quiescent after {within:?}: fds {} without kernel pipes (baseline {baseline}), CLOSE-WAIT owned {}\n{}",
                self.steady_fds(),
                self.close_wait_owned().len(),
                self.dump()
            );
        }
        self.assert_pipes_closed();
        self.assert_alive();
    }

    /// A human-readable dump of the proxy's state for failure messages.
    pub fn dump(&self) -> String {
        let mut s = format!("--- /proc/{}/fd ---\n", self.pid);
        for l in self.fd_list() {
            s.push_str(&l);
            s.push('\n');
        }
        s.push_str("--- owned TCP sockets (/proc/PID/net/tcp{,6}) ---\n");
        for sock in self.owned_tcp() {
            s.push_str(&sock.row);
            s.push('\n');
        }
        s.push_str("--- stderr ---\n");
        s.push_str(&self.stderr());
        s
    }

    fn unregister(&self) {
        TEST_PIDS.with(|c| {
            if let Some(pids) = c.borrow().as_ref() {
                if let Ok(mut v) = pids.lock() {
                    v.retain(|p| *p != self.pid);
                }
            }
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            // Child::kill signals our own child by its PID; errors mean it is gone.
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.unregister();
        }
    }
}

/// Marks every descriptor above stderr close-on-exec in the child, so the
/// proxy starts with stdin/stdout/stderr only (no descriptor the test process
/// inherited without CLOEXEC, such as cargo's jobserver pipe), which keeps its
/// fd count and fd numbers about the proxy alone.
pub fn no_inherited_fds(cmd: &mut Command) {
    // SAFETY: close_range is a plain syscall, async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let rc = libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if rc != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Builds `forward --listen 127.0.0.1:0 --upstream U... EXTRA...`.
pub fn forward_args(upstreams: &[SocketAddr], extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        "forward".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
    ];
    for u in upstreams {
        v.push("--upstream".into());
        v.push(u.to_string());
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Parses `READY key=value [key=value ...]` into its `key=value` tokens
/// (other tokens are ignored); at least one is required.
pub fn parse_ready_fields(line: &str) -> Result<Vec<(String, String)>, String> {
    let mut tokens = line.split_whitespace();
    if tokens.next() != Some("READY") {
        return Err("does not start with `READY `".into());
    }
    let fields: Vec<(String, String)> = tokens
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if fields.is_empty() {
        return Err("no key=value token".into());
    }
    Ok(fields)
}
