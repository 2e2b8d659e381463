//! The `tcpbridge` command: parses the command line into a configuration, sets up
//! logging, binds, prints the READY line and runs the event loop. Exit codes: 0 after a
//! signal, 1 on a runtime error (bind failure...), 2 on a usage error.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use log::{error, info, warn, LevelFilter};

use tcpbridge::config::{self, human_size, ConfigError, ForwardConfig};
use tcpbridge::core::session::Policy;
use tcpbridge::net;
use tcpbridge::server::{self, Server};

/// A small, fast, correct TCP proxy.
#[derive(Debug, Parser)]
#[command(name = "tcpbridge", version, about)]
struct Cli {
    /// More logging (debug).
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    verbose: bool,
    /// Less logging (warnings and errors only).
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Listen, connect to an upstream for each client, relay both ways.
    Forward(ForwardArgs),
}

#[derive(Debug, Args)]
struct ForwardArgs {
    /// Address to listen on, HOST:PORT (port 0: any free port). May repeat.
    #[arg(long, value_name = "ADDR", required = true)]
    listen: Vec<String>,
    /// Upstream address, HOST:PORT. May repeat: tried in order when a connect fails.
    #[arg(long, value_name = "ADDR", required = true)]
    upstream: Vec<String>,
    /// Ring buffer per direction (B, KiB, MiB).
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "16KiB",
        allow_hyphen_values = true
    )]
    buffer_size: String,
    /// Most sessions alive at once; more clients wait in the listen backlog.
    #[arg(
        long,
        value_name = "N",
        default_value = "1024",
        allow_hyphen_values = true
    )]
    max_sessions: String,
    /// Most ring-buffer memory lent at once [default: 2 x max-sessions x buffer-size].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pool_budget: Option<String>,
    /// Bound on one upstream connect attempt.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5s",
        allow_hyphen_values = true
    )]
    connect_timeout: String,
    /// Close a session when no byte has moved either way for this long.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5m",
        allow_hyphen_values = true
    )]
    idle_timeout: String,
    /// Inactivity limit once one direction has finished (FIN forwarded).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "60s",
        allow_hyphen_values = true
    )]
    half_close_timeout: String,
    /// On SIGINT/SIGTERM, how long live sessions may take to finish.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        allow_hyphen_values = true
    )]
    drain_timeout: String,
    /// What the other side gets when one side resets: mirror (RST) or fin.
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "mirror",
        allow_hyphen_values = true
    )]
    reset_policy: String,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", one_line(&e.render().to_string()));
            return ExitCode::from(2);
        }
    };
    let level = match (cli.verbose, cli.quiet) {
        (true, _) => LevelFilter::Debug,
        (_, true) => LevelFilter::Warn,
        _ => LevelFilter::Info,
    };
    let Mode::Forward(args) = cli.mode;
    let cfg = match forward_config(&args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = simple_logger::SimpleLogger::new().with_level(level).init() {
        eprintln!("error: cannot start logging: {e}");
        return ExitCode::from(1);
    }
    run_forward(cfg)
}

fn forward_config(a: &ForwardArgs) -> Result<ForwardConfig, ConfigError> {
    let mut listen = Vec::new();
    for text in &a.listen {
        listen.extend(config::parse_address("--listen", text, true)?);
    }
    let mut upstreams = Vec::new();
    for text in &a.upstream {
        upstreams.extend(config::parse_address("--upstream", text, false)?);
    }
    let buffer_size = config::parse_size("--buffer-size", &a.buffer_size, config::MAX_BUFFER)?;
    let max_sessions =
        config::parse_count("--max-sessions", &a.max_sessions, config::MAX_SESSIONS)?;
    let pool_buffers = match &a.pool_budget {
        None => 2 * max_sessions,
        Some(text) => {
            let bytes = config::parse_size("--pool-budget", text, usize::MAX)?;
            (bytes / buffer_size).max(1)
        }
    };
    let policy = Policy {
        connect_timeout: config::parse_duration("--connect-timeout", &a.connect_timeout)?,
        idle_timeout: config::parse_duration("--idle-timeout", &a.idle_timeout)?,
        half_close_timeout: config::parse_duration("--half-close-timeout", &a.half_close_timeout)?,
        reset_flush_timeout: config::RESET_FLUSH_TIMEOUT,
        reset_policy: config::parse_reset_policy("--reset-policy", &a.reset_policy)?,
    };
    Ok(ForwardConfig {
        listen,
        upstreams,
        buffer_size,
        max_sessions,
        pool_buffers,
        drain_timeout: config::parse_duration("--drain-timeout", &a.drain_timeout)?,
        policy,
    })
}

fn run_forward(cfg: ForwardConfig) -> ExitCode {
    net::ignore_sigpipe();
    let max_sessions = effective_max_sessions(cfg.max_sessions);
    let bound = match server::bind(&cfg) {
        Ok(b) => b,
        Err((addr, e)) => {
            eprintln!("error: cannot bind {addr}: {}", net::describe(&e));
            return ExitCode::from(1);
        }
    };
    let addresses = bound.addresses();
    info!(
        "forward: {} -> {}; max {} sessions; memory bound {} of buffers ({} x {}) + {} of session state",
        join(&addresses),
        join(&cfg.upstreams),
        max_sessions,
        human_size(cfg.buffer_bound()),
        cfg.pool_buffers,
        human_size(cfg.buffer_size),
        human_size(max_sessions * Server::session_overhead()),
    );
    let server = match Server::new(cfg, bound, max_sessions) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot start the event loop: {}", net::describe(&e));
            return ExitCode::from(1);
        }
    };
    let ready: Vec<String> = addresses.iter().map(|a| format!("listen={a}")).collect();
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "READY {}", ready.join(" "))
        .and_then(|()| stdout.flush())
        .is_err()
    {
        warn!("cannot write the READY line to stdout");
    }
    drop(stdout);
    match server.run() {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            error!("event loop failed: {}", net::describe(&e));
            ExitCode::from(1)
        }
    }
}

/// Raises the open-files limit toward what `wanted` sessions need (two sockets each), and
/// lowers the session limit to what the limit allows, as HAProxy derives maxconn.
fn effective_max_sessions(wanted: usize) -> usize {
    const SPARE: usize = 16;
    let in_use = net::open_descriptors().unwrap_or(SPARE);
    let need = (2 * wanted + in_use + SPARE) as u64;
    let Ok((soft, _hard)) = net::raise_nofile(need) else {
        return wanted;
    };
    let affordable = usize::try_from(soft)
        .unwrap_or(usize::MAX)
        .saturating_sub(in_use + SPARE)
        / 2;
    if affordable < wanted {
        warn!(
            "open-files limit {soft} allows {affordable} sessions: --max-sessions {wanted} lowered"
        );
        affordable.max(1)
    } else {
        wanted
    }
}

/// Clap's error without the usage block, on one line: `error: ... (see --help)`.
fn one_line(rendered: &str) -> String {
    let message = rendered.split("\n\nUsage:").next().unwrap_or(rendered);
    let words: Vec<&str> = message.split_whitespace().collect();
    format!("{} (see 'tcpbridge --help')", words.join(" "))
}

fn join(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
