//! The command line: built from the table of options, and read through the same builder
//! as config files. Each mode's subcommand (`forward`, `relay`, `agent`, `connect`,
//! `socks`) is a one-listener configuration named after the mode; `run` and `check`
//! take a file, and `check MODE [OPTIONS]` checks a subcommand's configuration.
//!
//! The flags of a subcommand are the table's options that apply to its mode (and every
//! process-wide setting), each `--key-with-dashes`. Defaults are not clap's: the
//! builder applies the table's, so a flag and a file key cannot disagree.

use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

use tcpbridge::config::build;
use tcpbridge::config::meta::{Fallback, Kind, Meta};
use tcpbridge::config::options;
use tcpbridge::config::setting::{Given, Located, Origin, Pair, Raw, Span, Taken, Text, Values};
use tcpbridge::config::{Config, Source, MODES};

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Task {
    /// Run this configuration.
    Run(Config),
    /// Run the configuration in this file.
    RunFile(PathBuf),
    /// Check the configuration in this file.
    Check(PathBuf),
    /// Check this configuration, from a mode's flags.
    CheckFlags(Config),
    /// Print a fresh secret.
    GenSecret,
}

/// What `--version` prints: the version, and whether TLS tunnels are built in (the
/// `tls` cargo feature).
#[cfg(feature = "tls")]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (tls)");
/// What `--version` prints: the version, and whether TLS tunnels are built in (the
/// `tls` cargo feature).
#[cfg(not(feature = "tls"))]
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (no tls)");

/// The whole command line.
pub(crate) fn command() -> Command {
    let file = || {
        Arg::new("config")
            .long("config")
            .value_name("FILE")
            .required(true)
            .help("The config file (TOML; see docs/examples/tcpbridge.toml)")
    };
    let mut cmd = Command::new("tcpbridge")
        .version(VERSION)
        .about(env!("CARGO_PKG_DESCRIPTION"))
        .override_usage("tcpbridge [-v | -q] <COMMAND>")
        .subcommand_required(true)
        .arg(
            Arg::new("verbose")
                .short('v')
                .long("verbose")
                .global(true)
                .action(ArgAction::SetTrue)
                .conflicts_with("quiet")
                .help("More logging (debug)"),
        )
        .arg(
            Arg::new("quiet")
                .short('q')
                .long("quiet")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Less logging (warnings and errors only)"),
        );
    let about = [
        "Listen, connect to an upstream for each client, relay both ways",
        "NAT traversal, public side: pair public clients with agents' idle tunnels",
        "NAT traversal, NAT side: keep idle tunnels to a relay, dial its services",
        "HTTP CONNECT proxy: tunnels to destinations clients name, checked against a policy",
        "SOCKS5 proxy: tunnels to destinations clients name, checked against a policy",
    ];
    let mut check = Command::new("check")
        .about("Validate a config file (or a mode's flags); print the effective configuration and the memory bound")
        .override_usage("tcpbridge check --config <FILE>\n       tcpbridge check <MODE> [OPTIONS]")
        .arg(file())
        .subcommand_negates_reqs(true)
        .args_conflicts_with_subcommands(true);
    for (mode, about) in MODES.into_iter().zip(about) {
        let sub = |prefix: &str| {
            let flags = flags_of(mode).into_iter().map(arg);
            Command::new(mode)
                .about(about)
                .override_usage(usage(prefix, mode))
                .args(flags)
        };
        cmd = cmd.subcommand(sub("tcpbridge"));
        check = check.subcommand(sub("tcpbridge check"));
    }
    cmd.subcommand(
        Command::new("gen-secret")
            .about("Print a fresh random secret (64 hex characters) for --secret-file")
            .override_usage("tcpbridge gen-secret"),
    )
    .subcommand(
        Command::new("run")
            .about("Run every listener of a config file (TOML)")
            .override_usage("tcpbridge run --config <FILE>")
            .arg(file()),
    )
    .subcommand(check)
}

/// A mode's usage line, from the table: its required flags, then `[OPTIONS]`. (Written
/// here rather than by clap's `usage` feature, which costs 25 KiB of binary.)
fn usage(prefix: &str, mode: &str) -> String {
    let mut line = format!("{prefix} {mode}");
    let required = flags_of(mode)
        .into_iter()
        .filter(|m| m.fallback == Fallback::Required);
    for meta in required {
        let many = matches!(
            meta.kind,
            Kind::Addresses { .. } | Kind::Services { .. } | Kind::Blocks | Kind::Rules
        );
        let dots = if many { "..." } else { "" };
        line.push_str(&format!(
            " {} <{}>{dots}",
            meta.flag_name(),
            meta.value_name
        ));
    }
    line.push_str(" [OPTIONS]");
    line
}

/// The table's options that are flags of `mode`'s subcommand: its own, its sessions',
/// its tunnels', then the process-wide settings.
pub(crate) fn flags_of(mode: &str) -> Vec<&'static Meta> {
    let global = options::GLOBAL.iter().map(|s| s.meta());
    options::of_mode(mode)
        .into_iter()
        .chain(global)
        .filter(|m| m.flag)
        .collect()
}

/// One flag from its description.
fn arg(meta: &'static Meta) -> Arg {
    let help = match meta.shown_default() {
        Some(default) => format!("{} [default: {default}]", meta.help),
        None => meta.help.to_string(),
    };
    let a = Arg::new(meta.key).long(meta.long).help(help);
    match meta.kind {
        Kind::Switch => a.action(ArgAction::SetTrue),
        kind => {
            let many = matches!(
                kind,
                Kind::Addresses { .. } | Kind::Services { .. } | Kind::Blocks | Kind::Rules
            );
            a.value_name(meta.value_name)
                .allow_hyphen_values(true)
                .required(meta.fallback == Fallback::Required)
                .action(if many {
                    ArgAction::Append
                } else {
                    ArgAction::Set
                })
        }
    }
}

/// What the parsed command line asks for; a bad value is one line naming the flag.
pub(crate) fn task(matches: &ArgMatches) -> Result<Task, String> {
    let Some((name, sub)) = matches.subcommand() else {
        return Err("no subcommand (see 'tcpbridge --help')".into());
    };
    let file = || PathBuf::from(sub.get_one::<String>("config").cloned().unwrap_or_default());
    match name {
        "gen-secret" => Ok(Task::GenSecret),
        "run" => Ok(Task::RunFile(file())),
        "check" => match sub.subcommand() {
            Some((mode, flags)) => config(mode, flags)
                .map(Task::CheckFlags)
                .map_err(|e| e.problem),
            None => Ok(Task::Check(file())),
        },
        mode => config(mode, sub).map(Task::Run).map_err(|e| e.problem),
    }
}

/// A subcommand's configuration: one listener named after its mode.
fn config(mode: &str, matches: &ArgMatches) -> Result<Config, Located> {
    let values = Flags(matches);
    let mut taken = Taken::default();
    let global = build::global(&values, &mut taken)?;
    let listener = build::listener(mode, mode.to_string(), &values, &global, &mut taken)?;
    Ok(Config {
        global,
        listeners: vec![listener],
        source: Source::Flags,
    })
}

/// Parsed flags as a front end of the builder.
struct Flags<'m>(&'m ArgMatches);

/// A value written on the command line (no position).
fn text(text: &str) -> Text {
    Text {
        text: text.to_string(),
        span: Span::default(),
    }
}

impl Values for Flags<'_> {
    fn get(&self, meta: &Meta) -> Result<Option<Given>, Located> {
        let m = self.0;
        let given = meta.flag
            && m.try_contains_id(meta.key).unwrap_or(false)
            && m.value_source(meta.key) == Some(ValueSource::CommandLine);
        if !given {
            return Ok(None);
        }
        let texts = || -> Vec<&String> {
            m.get_many::<String>(meta.key)
                .map(Iterator::collect)
                .unwrap_or_default()
        };
        let raw = match meta.kind {
            Kind::Switch => Raw::Switch(m.get_flag(meta.key)),
            Kind::Addresses { .. } | Kind::Blocks | Kind::Rules => {
                Raw::Many(texts().into_iter().map(|t| text(t)).collect())
            }
            Kind::Services { .. } => Raw::Pairs(
                texts()
                    .into_iter()
                    .map(|t| pair(meta, t))
                    .collect::<Result<_, _>>()?,
            ),
            _ => match m.get_one::<String>(meta.key) {
                Some(t) => Raw::One(text(t)),
                None => return Ok(None),
            },
        };
        Ok(Some(Given {
            raw,
            span: Span::default(),
            origin: Origin::Own,
        }))
    }

    fn name(&self, meta: &Meta) -> String {
        meta.flag_name()
    }

    fn item(&self, meta: &Meta, _: &str) -> String {
        meta.flag_name()
    }

    fn missing(&self, meta: &Meta) -> Located {
        Located::new(Span::default(), format!("missing {}", meta.flag_name()))
    }

    fn here(&self) -> Span {
        Span::default()
    }

    fn place(&self, meta: &Meta, _: &Span) -> String {
        format!("by an earlier {}", meta.flag_name())
    }

    fn path(&self, written: &str) -> PathBuf {
        PathBuf::from(written)
    }
}

/// `NAME=HOST:PORT`.
fn pair(meta: &Meta, whole: &str) -> Result<Pair, Located> {
    match whole.split_once('=') {
        Some((name, addr)) => Ok(Pair {
            name: text(name),
            addr: text(addr),
            whole: whole.to_string(),
        }),
        None => Err(Located::new(
            Span::default(),
            format!(
                "invalid value '{whole}' for {}: expected NAME=HOST:PORT",
                meta.flag_name()
            ),
        )),
    }
}

/// A flag of another mode given to `argv`'s subcommand, as one line saying which mode
/// has it (and why this one does not, when the table says): `--reuse-port is for forward
/// mode: ...`. `None` for any other error.
pub(crate) fn misplaced(e: &clap::Error, argv: &[String]) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::UnknownArgument {
        return None;
    }
    let Some(ContextValue::String(given)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    // Before the subcommand there are only flags without values (-v, -q).
    // `check MODE ...` checks the mode's flags.
    let mut words = argv.iter().skip(1).filter(|a| !a.starts_with('-'));
    let mode = match words.next()? {
        check if check == "check" => words.next()?,
        mode => mode,
    };
    let long = given.strip_prefix("--")?.split('=').next()?;
    let meta = options::all()
        .into_iter()
        .find(|m| m.flag && m.long == long && !m.scope.applies_to(mode))?;
    let modes = options::modes_having(meta.key);
    let owners = match modes.as_slice() {
        [] => return None,
        [one] => format!("{one} mode"),
        [first @ .., last] => format!("{} and {last} modes", first.join(", ")),
    };
    Some(match meta.reason_not_in(mode) {
        Some(why) => format!("{} is for {owners}: {why}", meta.flag_name()),
        None => format!(
            "{} is for {owners}, not {mode} (see 'tcpbridge {mode} --help')",
            meta.flag_name()
        ),
    })
}

/// Clap's error without the usage block, on one line: `error: ... (see --help)`.
pub(crate) fn one_line(rendered: &str) -> String {
    let message = rendered.split("\n\nUsage:").next().unwrap_or(rendered);
    let message = message
        .split("\n\nFor more information")
        .next()
        .unwrap_or(message);
    let words: Vec<&str> = message.split_whitespace().collect();
    format!("{} (see 'tcpbridge --help')", words.join(" "))
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_dynamic;
