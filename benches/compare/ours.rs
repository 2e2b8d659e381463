//! How the tcpbridge targets are started: the binary under test (or the
//! previous build), its session limit, and the flags each target adds
//! (`--splice off` for `tcpbridge-copy`, `--reuse-port` for `tcpbridge-x2`).

use std::net::SocketAddr;
use std::process::Command;

use crate::proxies::{Context, Kind};

/// tcpbridge's `--max-sessions` for `kind`. Kernel pipes come only from the
/// descriptors the session limit leaves, so a splicing tcpbridge gets what
/// `haproxy-splice` gets (4/5 of the others' limit, the rest for pipes); the copy
/// path keeps the full limit.
pub fn tcpbridge_sessions(ctx: &Context, kind: Kind) -> u64 {
    match kind {
        Kind::TcpbridgeCopy => ctx.tcpbridge_max_sessions,
        _ => ctx.max_sessions * 4 / 5,
    }
}

/// `tcpbridge forward` for `kind`, listening on `listen`: the binary under test
/// (or the previous build), 16 KiB rings at the smallest class, `-q`.
pub fn tcpbridge(ctx: &Context, kind: Kind, upstream: SocketAddr, listen: &str) -> Command {
    let binary = match kind {
        Kind::TcpbridgePrevious => ctx.tcpbridge_previous.clone().unwrap_or_default(),
        _ => ctx.tcpbridge.clone(),
    };
    let mut command = Command::new(binary);
    command.args(["forward", "--listen", listen, "--upstream"]);
    command.arg(upstream.to_string());
    command.args(["--max-sessions", &tcpbridge_sessions(ctx, kind).to_string()]);
    command.args(["--buffer-size", "16KiB", "-q"]);
    match kind {
        Kind::TcpbridgeCopy => {
            command.args(["--splice", "off"]);
        }
        Kind::TcpbridgeX2 => {
            command.arg("--reuse-port");
        }
        _ => {}
    }
    command
}
