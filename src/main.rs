//! The `tcpbridge` command: reads the command line (or a config file) into a
//! configuration, sets up logging, binds, and runs the event loop (which prints the READY
//! line). Exit codes: 0 after a signal, 1 on a runtime error (bind failure, lost relay
//! with `--exit-on-disconnect`...), 2 on a usage error.

mod cli;

use std::process::ExitCode;

use log::{error, info, warn, LevelFilter};

use cli::Task;
use tcpbridge::config::{self, sizing, Config};
use tcpbridge::core::pool::Classes;
use tcpbridge::os::{self, net};
use tcpbridge::server::{self, Server, Stopped};

fn main() -> ExitCode {
    let matches = match cli::command().try_get_matches() {
        Ok(m) => m,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let argv: Vec<String> = std::env::args().collect();
            match cli::misplaced(&e, &argv) {
                Some(line) => eprintln!("error: {line}"),
                None => eprintln!("{}", cli::one_line(&e.render().to_string())),
            }
            return ExitCode::from(2);
        }
    };
    let level = match (matches.get_flag("verbose"), matches.get_flag("quiet")) {
        (true, _) => LevelFilter::Debug,
        (_, true) => LevelFilter::Warn,
        _ => LevelFilter::Info,
    };
    let loaded = match cli::task(&matches) {
        Ok(Task::GenSecret) => return gen_secret(),
        Ok(Task::Check(path)) => {
            return check(config::file::load(&path).map_err(|e| e.to_string()))
        }
        Ok(Task::CheckFlags(config)) => return check(Ok(config)),
        Ok(Task::RunFile(path)) => config::file::load(&path).map_err(|e| e.to_string()),
        Ok(Task::Run(config)) => Ok(config),
        Err(why) => Err(why),
    };
    match loaded {
        Ok(config) => run(config, level),
        Err(why) => {
            eprintln!("error: {why}");
            ExitCode::from(2)
        }
    }
}

/// `check`: the effective configuration (of a file or a mode's flags) and the memory
/// bound on stdout (exit 0), or the error on stderr (exit 2). The bound is the one `run`
/// would log: the open-files limit `run` would raise itself to is taken into account.
fn check(loaded: Result<Config, String>) -> ExitCode {
    let config = match loaded {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut out = config::file::render(&config);
    for line in config::groups::describe(&config) {
        out.push_str(&format!("# {line}\n"));
    }
    let open_now = os::open_descriptors().unwrap_or(0);
    let wanted = sizing::descriptors_wanted(&config, open_now);
    let soft = os::nofile().ok().map(|l| l.after_raise(wanted));
    let sizes = sizing::sessions(&config, open_now, soft);
    if let Some(line) = sizes.lowered_line() {
        out.push_str(&format!("# {line}\n"));
    }
    let memory = sizes.memory_line(&config, server::session_overhead());
    out.push_str(&format!("# {memory}\n"));
    emit(&out)
}

/// Writes `text` to stdout. A reader that stops early (`check | head`) is no error; any
/// other failure is one line and exit 1 (`print!` would panic on either).
fn emit(text: &str) -> ExitCode {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

fn gen_secret() -> ExitCode {
    let mut bytes = [0u8; 32];
    match os::random::fill(&mut bytes) {
        Ok(()) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            emit(&format!("{hex}\n"))
        }
        Err(e) => {
            eprintln!("error: no random bytes: {}", net::describe(&e));
            ExitCode::from(1)
        }
    }
}

/// Sets up logging, sizes the session limit, binds, and runs the loop until it stops.
fn run(config: Config, level: LevelFilter) -> ExitCode {
    let g = &config.global;
    let log = match tcpbridge::logging::init(level, g.log_format, g.log_rate) {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("error: cannot start logging: {e}");
            return ExitCode::from(1);
        }
    };
    os::ignore_sigpipe();
    let classes = Classes::new(g.buffer_size, g.buffer_max);
    if let Some(&large) = classes.sizes().get(1) {
        os::map_large_blocks(large);
    }
    let open_now = os::open_descriptors().unwrap_or(0);
    let wanted = sizing::descriptors_wanted(&config, open_now);
    let soft = os::raise_nofile(wanted).ok();
    let sizes = sizing::sessions(&config, open_now, soft);
    let mut inherited = match tcpbridge::os::systemd::take_listeners() {
        Ok(sockets) => sockets,
        Err(e) => {
            eprintln!("error: socket activation: {}", net::describe(&e));
            return ExitCode::from(1);
        }
    };
    let bound = match server::bind(&config, &mut inherited) {
        Ok(b) => b,
        Err((addr, e)) => {
            let shared = config.listeners.iter().any(|l| match &l.mode {
                config::Mode::Forward(f) => f.reuse_port && f.listen.contains(&addr),
                _ => false,
            });
            let hint = match e.kind() {
                std::io::ErrorKind::AddrInUse if shared => {
                    " (every process sharing a port needs --reuse-port, and the same user)"
                }
                _ => "",
            };
            eprintln!("error: cannot bind {addr}: {}{hint}", net::describe(&e));
            return ExitCode::from(1);
        }
    };
    for socket in inherited {
        let addr = socket
            .local_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        warn!("inherited socket {addr} matches no configured address: closed");
    }
    for line in server::describe(&config, &bound) {
        info!("{line}");
    }
    if let Some(line) = sizes.lowered_line() {
        warn!("{line}");
    }
    info!("{}", sizes.memory_line(&config, server::session_overhead()));
    let server = match Server::new(config, bound, sizes, Some(log)) {
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
