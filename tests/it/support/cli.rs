//! Running the binary to completion (for start-up errors) and collecting
//! its exit status and output.

use super::{drain_into, no_inherited_fds, wait_for, BIN};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Output of a run of the binary that is expected to exit by itself.
#[derive(Debug)]
pub struct CliRun {
    pub args: Vec<String>,
    /// None if it had to be killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tcpbridge ARGS...`, waits up to `within` for it to exit by itself
/// (killing it at the deadline: `status` is then None), and collects output.
pub fn run_cli(args: &[&str], within: Duration) -> CliRun {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    no_inherited_fds(&mut cmd);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {BIN} {args:?}: {e}"));
    let out = Arc::new(Mutex::new(String::new()));
    let err = Arc::new(Mutex::new(String::new()));
    let t_out = {
        let (pipe, buf) = (child.stdout.take().expect("stdout"), Arc::clone(&out));
        thread::spawn(move || drain_into(pipe, buf))
    };
    let t_err = {
        let (pipe, buf) = (child.stderr.take().expect("stderr"), Arc::clone(&err));
        thread::spawn(move || drain_into(pipe, buf))
    };
    let mut status = None;
    wait_for(within, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = t_out.join();
    let _ = t_err.join();
    let get = |b: &Arc<Mutex<String>>| b.lock().map(|s| s.clone()).unwrap_or_default();
    CliRun {
        args: args.iter().map(|s| s.to_string()).collect(),
        status,
        stdout: get(&out),
        stderr: get(&err),
    }
}
