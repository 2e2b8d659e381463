//! The `tcpbridge` command: parses the command line into a configuration, sets up
//! logging, binds, and runs the event loop (which prints the READY line). Exit codes:
//! 0 after a signal, 1 on a runtime error (bind failure, lost relay with
//! `--exit-on-disconnect`...), 2 on a usage error.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use log::{error, info, warn, LevelFilter};

use tcpbridge::config::defaults;
use tcpbridge::config::{
    self as cfg, human_size, Agent, Config, ConfigError, Forward, Global, Listener, Mode, Relay,
    Source,
};
use tcpbridge::core::session::Policy;
use tcpbridge::core::tunnel::TunnelPolicy;
use tcpbridge::net;
use tcpbridge::server::{self, Server, Stopped};

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
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Listen, connect to an upstream for each client, relay both ways.
    Forward(ForwardArgs),
    /// NAT traversal, public side: pair public clients with agents' idle tunnels.
    Relay(RelayArgs),
    /// NAT traversal, NAT side: keep idle tunnels to a relay, dial local services.
    Agent(AgentArgs),
    /// Print a fresh random secret (64 hex characters) for --secret-file.
    GenSecret,
    /// Run every listener of a config file (TOML).
    Run(FileArgs),
    /// Validate a config file; print the effective configuration and the memory bound.
    Check(FileArgs),
}

#[derive(Debug, Args)]
struct FileArgs {
    /// The config file (TOML; see docs/examples/tcpbridge.toml).
    #[arg(long, value_name = "FILE", required = true)]
    config: std::path::PathBuf,
}

#[derive(Debug, Args)]
struct ForwardArgs {
    /// Address to listen on, HOST:PORT (port 0: any free port). May repeat.
    #[arg(long, value_name = "ADDR", required = true)]
    listen: Vec<String>,
    /// Upstream address, HOST:PORT. May repeat: tried in order when a connect fails.
    #[arg(long, value_name = "ADDR", required = true)]
    upstream: Vec<String>,
    #[command(flatten)]
    session: SessionArgs,
}

#[derive(Debug, Args)]
struct RelayArgs {
    /// Where agents connect, HOST:PORT.
    #[arg(long, value_name = "ADDR", required = true)]
    tunnel_listen: String,
    /// A public listener for a service, NAME=HOST:PORT. May repeat.
    #[arg(long, value_name = "NAME=ADDR", required = true)]
    public: Vec<String>,
    /// File holding the pre-shared secret (at least 32 bytes).
    #[arg(long, value_name = "PATH", required = true)]
    secret_file: String,
    /// How long a public client waits for an idle tunnel.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = defaults::PAIR_TIMEOUT,
        allow_hyphen_values = true
    )]
    pair_timeout: String,
    /// Most public clients waiting per service.
    #[arg(
        long,
        value_name = "N",
        default_value = defaults::MAX_WAITING,
        allow_hyphen_values = true
    )]
    max_waiting: String,
    /// Most idle tunnels per service.
    #[arg(
        long,
        value_name = "N",
        default_value = defaults::MAX_IDLE_TUNNELS,
        allow_hyphen_values = true
    )]
    max_idle_tunnels: String,
    /// Most tunnel connections in the handshake at once.
    #[arg(
        long,
        value_name = "N",
        default_value = defaults::MAX_HANDSHAKES,
        allow_hyphen_values = true
    )]
    max_handshakes: String,
    #[command(flatten)]
    tunnel: TunnelArgs,
    #[command(flatten)]
    session: SessionArgs,
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// The relay's tunnel address, HOST:PORT (the name is resolved again on reconnect).
    #[arg(long, value_name = "ADDR", required = true)]
    relay: String,
    /// A local service, NAME=HOST:PORT. May repeat.
    #[arg(long, value_name = "NAME=ADDR", required = true)]
    service: Vec<String>,
    /// File holding the pre-shared secret (at least 32 bytes).
    #[arg(long, value_name = "PATH", required = true)]
    secret_file: String,
    /// Idle tunnels kept open per service.
    #[arg(
        long,
        value_name = "N",
        default_value = defaults::POOL,
        allow_hyphen_values = true
    )]
    pool: String,
    /// Exit (code 1) when a tunnel to the relay is lost or cannot be opened.
    #[arg(long)]
    exit_on_disconnect: bool,
    /// Cap of the reconnect backoff (exponential from 100ms, with jitter).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = defaults::BACKOFF_MAX,
        allow_hyphen_values = true
    )]
    backoff_max: String,
    #[command(flatten)]
    tunnel: TunnelArgs,
    #[command(flatten)]
    session: SessionArgs,
}

#[derive(Debug, Args)]
struct TunnelArgs {
    /// Absolute bound on a tunnel handshake.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = defaults::HANDSHAKE_TIMEOUT,
        allow_hyphen_values = true
    )]
    handshake_timeout: String,
    /// An idle tunnel sends a heartbeat after this long without sending.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = defaults::HEARTBEAT_INTERVAL,
        allow_hyphen_values = true
    )]
    heartbeat_interval: String,
    /// An idle tunnel that heard nothing for this long is dead.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = defaults::HEARTBEAT_TIMEOUT,
        allow_hyphen_values = true
    )]
    heartbeat_timeout: String,
}

#[derive(Debug, Args)]
struct SessionArgs {
    /// Ring buffer per direction (B, KiB, MiB).
    #[arg(
        long,
        value_name = "SIZE",
        default_value = defaults::BUFFER_SIZE,
        allow_hyphen_values = true
    )]
    buffer_size: String,
    /// Most sessions alive at once; more clients wait in the listen backlog.
    #[arg(
        long,
        value_name = "N",
        default_value = defaults::MAX_SESSIONS,
        allow_hyphen_values = true
    )]
    max_sessions: String,
    /// Most ring-buffer memory lent at once [default: 2 x max-sessions x buffer-size].
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pool_budget: Option<String>,
    /// Bound on one upstream connect attempt (relay: on the agent's answer).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = defaults::CONNECT_TIMEOUT,
        allow_hyphen_values = true
    )]
    connect_timeout: String,
    /// Close a session when no byte has moved either way for this long.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = defaults::IDLE_TIMEOUT,
        allow_hyphen_values = true
    )]
    idle_timeout: String,
    /// Inactivity limit once one direction has finished (FIN forwarded).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = defaults::HALF_CLOSE_TIMEOUT,
        allow_hyphen_values = true
    )]
    half_close_timeout: String,
    /// On SIGINT/SIGTERM, how long live sessions may take to finish.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = defaults::DRAIN_TIMEOUT,
        allow_hyphen_values = true
    )]
    drain_timeout: String,
    /// What the other side gets when one side resets: mirror (RST) or fin.
    #[arg(
        long,
        value_name = "POLICY",
        default_value = defaults::RESET_POLICY,
        allow_hyphen_values = true
    )]
    reset_policy: String,
    /// Serve /metrics, /sessions and /healthz over HTTP on this address, HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Log format: human (one line per event) or json (one object per line).
    #[arg(
        long,
        value_name = "FORMAT",
        default_value = defaults::LOG_FORMAT,
        allow_hyphen_values = true
    )]
    log_format: String,
    /// Log lines per second before lines are dropped and counted (0: no limit).
    #[arg(
        long,
        value_name = "N",
        default_value = defaults::LOG_RATE,
        allow_hyphen_values = true
    )]
    log_rate: String,
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
    let config = match cli.command {
        Command::GenSecret => return gen_secret(),
        Command::Check(a) => return check(&a.config),
        Command::Run(a) => match cfg::file::load(&a.config) {
            Ok(c) => Ok(c),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        Command::Forward(a) => forward_config(&a),
        Command::Relay(a) => relay_config(&a),
        Command::Agent(a) => agent_config(&a),
    };
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    run(config, level)
}

/// `check`: the effective configuration and the memory bound on stdout (exit 0), or the
/// file's error on stderr (exit 2).
fn check(path: &std::path::Path) -> ExitCode {
    match cfg::file::load(path) {
        Ok(config) => {
            print!("{}", cfg::file::render(&config));
            let g = &config.global;
            println!(
                "# memory bound: {} of buffers ({} x {}) + {} of session state ({} sessions)",
                human_size(g.buffer_bound()),
                g.pool_buffers,
                human_size(g.buffer_size),
                human_size(g.max_sessions.saturating_mul(Server::session_overhead())),
                g.max_sessions,
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn gen_secret() -> ExitCode {
    let mut bytes = [0u8; 32];
    match net::Random::open().and_then(|mut r| r.fill(&mut bytes)) {
        Ok(()) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            println!("{hex}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: no random bytes: {}", net::describe(&e));
            ExitCode::from(1)
        }
    }
}

/// The process-wide settings of a subcommand.
fn global(a: &SessionArgs) -> Result<Global, ConfigError> {
    let buffer_size = cfg::parse_size("--buffer-size", &a.buffer_size, cfg::MAX_BUFFER)?;
    let max_sessions = cfg::parse_count("--max-sessions", &a.max_sessions, cfg::MAX_SESSIONS)?;
    let pool_buffers = match &a.pool_budget {
        None => 2 * max_sessions,
        Some(text) => (cfg::parse_size("--pool-budget", text, usize::MAX)? / buffer_size).max(1),
    };
    let metrics_listen = match &a.metrics_listen {
        None => None,
        Some(text) => Some(cfg::parse_address("--metrics-listen", text, true)?[0]),
    };
    Ok(Global {
        buffer_size,
        max_sessions,
        pool_buffers,
        drain_timeout: cfg::parse_duration("--drain-timeout", &a.drain_timeout)?,
        metrics_listen,
        log_format: cfg::parse_log_format("--log-format", &a.log_format)?,
        log_rate: cfg::parse_rate("--log-rate", &a.log_rate)?,
    })
}

/// The session options of a subcommand's one listener.
fn policy(a: &SessionArgs) -> Result<Policy, ConfigError> {
    Ok(Policy {
        connect_timeout: cfg::parse_duration("--connect-timeout", &a.connect_timeout)?,
        idle_timeout: cfg::parse_duration("--idle-timeout", &a.idle_timeout)?,
        half_close_timeout: cfg::parse_duration("--half-close-timeout", &a.half_close_timeout)?,
        reset_flush_timeout: cfg::RESET_FLUSH_TIMEOUT,
        reset_policy: cfg::parse_reset_policy("--reset-policy", &a.reset_policy)?,
    })
}

/// A subcommand's configuration: one listener named after its mode.
fn one_listener(a: &SessionArgs, mode: Mode) -> Result<Config, ConfigError> {
    Ok(Config {
        global: global(a)?,
        listeners: vec![Listener {
            name: mode.word().to_string(),
            policy: policy(a)?,
            max_sessions: None,
            mode,
        }],
        source: Source::Flags,
    })
}

fn tunnel_policy(a: &TunnelArgs) -> Result<TunnelPolicy, ConfigError> {
    let p = TunnelPolicy {
        handshake_timeout: cfg::parse_duration("--handshake-timeout", &a.handshake_timeout)?,
        heartbeat_interval: cfg::parse_duration("--heartbeat-interval", &a.heartbeat_interval)?,
        heartbeat_timeout: cfg::parse_duration("--heartbeat-timeout", &a.heartbeat_timeout)?,
    };
    if p.heartbeat_timeout <= p.heartbeat_interval {
        return Err(ConfigError {
            flag: "--heartbeat-timeout".into(),
            value: a.heartbeat_timeout.clone(),
            problem: format!(
                "must be longer than --heartbeat-interval ({})",
                a.heartbeat_interval
            ),
        });
    }
    Ok(p)
}

fn forward_config(a: &ForwardArgs) -> Result<Config, ConfigError> {
    let mut listen = Vec::new();
    for text in &a.listen {
        listen.extend(cfg::parse_address("--listen", text, true)?);
    }
    let mut upstreams = Vec::new();
    for text in &a.upstream {
        upstreams.extend(cfg::parse_address("--upstream", text, false)?);
    }
    one_listener(&a.session, Mode::Forward(Forward { listen, upstreams }))
}

fn relay_config(a: &RelayArgs) -> Result<Config, ConfigError> {
    let tunnel_listen = cfg::parse_address("--tunnel-listen", &a.tunnel_listen, true)?[0];
    let mut public = Vec::new();
    for text in &a.public {
        let s = cfg::parse_service("--public", text, true)?;
        if public.iter().any(|p: &cfg::Service| p.name == s.name) {
            return Err(ConfigError {
                flag: "--public".into(),
                value: text.clone(),
                problem: format!("service '{}' is given twice", s.name),
            });
        }
        public.push(s);
    }
    let relay = Relay {
        tunnel_listen,
        public,
        secret: cfg::read_secret("--secret-file", &a.secret_file)?,
        secret_file: a.secret_file.clone(),
        pair_timeout: cfg::parse_duration("--pair-timeout", &a.pair_timeout)?,
        max_waiting: cfg::parse_count("--max-waiting", &a.max_waiting, cfg::MAX_SESSIONS)?,
        max_idle_tunnels: cfg::parse_count(
            "--max-idle-tunnels",
            &a.max_idle_tunnels,
            cfg::MAX_SESSIONS,
        )?,
        max_handshakes: cfg::parse_count("--max-handshakes", &a.max_handshakes, cfg::MAX_SESSIONS)?,
        tunnel: tunnel_policy(&a.tunnel)?,
    };
    one_listener(&a.session, Mode::Relay(relay))
}

fn agent_config(a: &AgentArgs) -> Result<Config, ConfigError> {
    cfg::check_host_port("--relay", &a.relay, false)?;
    let mut services = Vec::new();
    for text in &a.service {
        let s = cfg::parse_service("--service", text, false)?;
        if services.iter().any(|p: &cfg::Service| p.name == s.name) {
            return Err(ConfigError {
                flag: "--service".into(),
                value: text.clone(),
                problem: format!("service '{}' is given twice", s.name),
            });
        }
        services.push(s);
    }
    let agent = Agent {
        relay: a.relay.trim().to_string(),
        services,
        secret: cfg::read_secret("--secret-file", &a.secret_file)?,
        secret_file: a.secret_file.clone(),
        pool: cfg::parse_count("--pool", &a.pool, 1024)?,
        exit_on_disconnect: a.exit_on_disconnect,
        backoff_max: cfg::parse_duration("--backoff-max", &a.backoff_max)?,
        tunnel: tunnel_policy(&a.tunnel)?,
    };
    one_listener(&a.session, Mode::Agent(agent))
}

/// Sets up logging, binds, and runs the loop until it stops.
fn run(config: Config, level: LevelFilter) -> ExitCode {
    let g = &config.global;
    let log = match tcpbridge::logging::init(level, g.log_format, g.log_rate) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("error: cannot start logging: {e}");
            return ExitCode::from(1);
        }
    };
    net::ignore_sigpipe();
    // Sockets besides sessions': a relay's idle tunnels and handshakes, an agent's pools.
    let extra: usize = config
        .listeners
        .iter()
        .map(|l| match &l.mode {
            Mode::Forward(_) => 0,
            Mode::Relay(r) => r.public.len() * r.max_idle_tunnels + r.max_handshakes,
            Mode::Agent(a) => a.services.len() * a.pool,
        })
        .sum();
    let max_sessions = effective_max_sessions(config.global.max_sessions, extra);
    let mut inherited = match tcpbridge::systemd::take_listeners() {
        Ok(sockets) => sockets,
        Err(e) => {
            eprintln!("error: socket activation: {}", net::describe(&e));
            return ExitCode::from(1);
        }
    };
    let bound = match server::bind(&config, &mut inherited) {
        Ok(b) => b,
        Err((addr, e)) => {
            eprintln!("error: cannot bind {addr}: {}", net::describe(&e));
            return ExitCode::from(1);
        }
    };
    for socket in inherited {
        let addr = socket
            .local_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        warn!("inherited socket {addr} matches no configured address: closed");
    }
    for (n, l) in config.listeners.iter().enumerate() {
        info!(
            "listener {} ({}): {}",
            l.name,
            l.mode.word(),
            describe(l, &bound.addresses(n))
        );
    }
    let c = &config.global;
    info!(
        "max {} sessions; memory bound {} of buffers ({} x {}) + {} of session state",
        max_sessions,
        human_size(c.buffer_bound()),
        c.pool_buffers,
        human_size(c.buffer_size),
        human_size(max_sessions * Server::session_overhead()),
    );
    let server = match Server::new(config, bound, max_sessions, Some(log)) {
        Ok(s) => s,
        Err(e) => {
            error!("cannot start the event loop: {}", net::describe(&e));
            return ExitCode::from(1);
        }
    };
    match server.run() {
        Ok(Stopped::Drained | Stopped::Forced) => ExitCode::SUCCESS,
        Ok(Stopped::Disconnected) => ExitCode::from(1),
        Err(e) => {
            error!("event loop failed: {}", net::describe(&e));
            ExitCode::from(1)
        }
    }
}

/// What a listener does, for the start-up log.
fn describe(l: &Listener, bound: &[std::net::SocketAddr]) -> String {
    match &l.mode {
        Mode::Forward(f) => format!("{} -> {}", join(bound), join(&f.upstreams)),
        Mode::Relay(r) => {
            let services: Vec<String> = r.public.iter().map(|s| s.name.clone()).collect();
            format!(
                "tunnels and public {} on {}",
                services.join(", "),
                join(bound)
            )
        }
        Mode::Agent(a) => {
            let services: Vec<String> = a
                .services
                .iter()
                .map(|s| format!("{}={}", s.name, s.addr))
                .collect();
            format!(
                "relay {}; services {}; pool {}",
                a.relay,
                services.join(" "),
                a.pool
            )
        }
    }
}

/// Raises the open-files limit toward what `wanted` sessions need (two sockets each) plus
/// `extra` sockets, and lowers the session limit to what the limit allows, as HAProxy
/// derives maxconn.
fn effective_max_sessions(wanted: usize, extra: usize) -> usize {
    const SPARE: usize = 16;
    let in_use = net::open_descriptors().unwrap_or(SPARE) + extra;
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
