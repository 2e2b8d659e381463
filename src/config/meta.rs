//! What describes one option, independent of its type: its key (the flag is the key with
//! `-` for `_`), where it applies, how its value is written and bounded, its default, its
//! help text, and why listeners of other modes do not have it (when that needs saying).
//! The table of options (`options`) is made of these; the command line, the file's key
//! checks, `check`'s rendering, the reload's restart list and the docs' option tables are
//! driven by or checked against them.

/// Where an option applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Process-wide: a top-level key; a flag of every subcommand.
    Global,
    /// Every listener; may be set in `[defaults]`.
    Listener,
    /// Relay and agent listeners; may be set in `[defaults]`.
    Tunnel,
    /// Only in the tables of these modes (and on their subcommands).
    Own(&'static [&'static str]),
}

impl Scope {
    /// Whether `[defaults]` may hold it.
    pub fn in_defaults(self) -> bool {
        matches!(self, Scope::Listener | Scope::Tunnel)
    }

    /// Whether a listener of `mode` has it.
    pub fn applies_to(self, mode: &str) -> bool {
        match self {
            Scope::Global => false,
            Scope::Listener => true,
            Scope::Tunnel => mode == "relay" || mode == "agent",
            Scope::Own(modes) => modes.contains(&mode),
        }
    }
}

/// The upper bound of a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// A fixed number.
    Fixed(usize),
    /// The process-wide `max_sessions` (a listener's own cap fits within it).
    Sessions,
}

/// How a value is written, read and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `500ms`, `30s`, `5m`, `2h`, `1d`.
    Duration,
    /// A duration or `off`.
    DurationOrOff,
    /// `IDLE:INTERVAL:COUNT` TCP keepalive probes, or `off`.
    Keepalive,
    /// `16KiB` or a number of bytes, from 1 B to `max`.
    Size {
        /// Largest accepted.
        max: usize,
    },
    /// A whole number from 1.
    Count {
        /// Largest accepted.
        max: Bound,
    },
    /// A whole number from 0 (no limit) to 1,000,000.
    Rate,
    /// One of these words.
    Word(&'static [&'static str]),
    /// On or off: a flag without a value, `true`/`false` in a file.
    Switch,
    /// `HOST:PORT`, resolved; the first address is used. `listen`: port 0 is allowed
    /// and no address may be listened on twice.
    Address {
        /// A listening address.
        listen: bool,
    },
    /// One or more `HOST:PORT`, each resolved (a flag repeats; a file gives a string
    /// or an array).
    Addresses {
        /// Listening addresses.
        listen: bool,
    },
    /// Named addresses: `NAME=HOST:PORT` (a flag repeats) or `{ NAME = "HOST:PORT" }`.
    Services {
        /// Listening addresses.
        listen: bool,
    },
    /// `HOST:PORT`, checked but not resolved (resolved again at each use).
    HostPort,
    /// One or more CIDR blocks (`10.0.0.0/8`, `::1`): a flag repeats; a file gives a
    /// string or an array.
    Blocks,
    /// A path to a secret file, read at once (relative to the config file's directory).
    SecretFile,
    /// A path to a PEM file, read at once (relative to the config file's directory).
    PemFile,
    /// A SHA-256 fingerprint: `sha256:` and 64 hexadecimal digits.
    Fingerprint,
    /// A DNS name a certificate must carry.
    ServerName,
    /// One or more destination rules (`10.0.0.0/8`, `*.example.com:443`, `[::1]:22`): a
    /// flag repeats; a file gives a string or an array.
    Rules,
    /// A path to a credentials file (`user:password` lines), read at once like a secret
    /// file and refused when others may read it.
    CredentialsFile,
    /// A listener's name: 1-64 characters of `[A-Za-z0-9._-]` (files only).
    Name,
}

/// What a value is when it is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// This text, read by the option's parser like a value the user gave.
    Value(&'static str),
    /// Nothing: the option is off or unset.
    Absent,
    /// Computed from other options, as this text says.
    Derived(&'static str),
    /// It must be given.
    Required,
}

/// One option, whatever its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// The key in config files; the flag is `--` and the key with `-` for `_`.
    pub key: &'static str,
    /// Whether the command line has it (a listener's name and its own `max_sessions`
    /// exist in files only).
    pub flag: bool,
    /// The long flag without its dashes: the key with `-` for `_` (written out, so the
    /// command line needs no allocated names; a test checks it matches the key).
    pub long: &'static str,
    /// Where it applies.
    pub scope: Scope,
    /// How it is written and bounded.
    pub kind: Kind,
    /// Its value when not given.
    pub fallback: Fallback,
    /// The placeholder in help texts: `DURATION`, `SIZE`, `ADDR`...
    pub value_name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Why listeners of other modes do not have it, as (mode, reason): said when it is
    /// given to one of them (on its subcommand or in its table).
    pub why_not: &'static [(&'static str, &'static str)],
}

impl Meta {
    /// An option of both front ends.
    pub const fn new(
        key: &'static str,
        long: &'static str,
        scope: Scope,
        kind: Kind,
        fallback: Fallback,
        value_name: &'static str,
        help: &'static str,
    ) -> Meta {
        Meta {
            key,
            flag: true,
            long,
            scope,
            kind,
            fallback,
            value_name,
            help,
            why_not: &[],
        }
    }

    /// A duration option with a default (`DURATION` in help texts).
    pub const fn duration(
        key: &'static str,
        long: &'static str,
        scope: Scope,
        default: &'static str,
        help: &'static str,
    ) -> Meta {
        Meta::new(
            key,
            long,
            scope,
            Kind::Duration,
            Fallback::Value(default),
            "DURATION",
            help,
        )
    }

    /// The same option, in config files only.
    pub const fn file_only(self) -> Meta {
        Meta {
            flag: false,
            ..self
        }
    }

    /// The same option, with the reasons listeners of other modes do not have it.
    pub const fn not_in(self, why_not: &'static [(&'static str, &'static str)]) -> Meta {
        Meta { why_not, ..self }
    }

    /// Why a listener of `mode` does not have it, if the table says.
    pub fn reason_not_in(&self, mode: &str) -> Option<&'static str> {
        self.why_not
            .iter()
            .find(|(m, _)| *m == mode)
            .map(|(_, why)| *why)
    }

    /// The command-line flag: `--idle-timeout`.
    pub fn flag_name(&self) -> String {
        format!("--{}", self.long)
    }

    /// The default as help texts show it, if there is one to show.
    pub fn shown_default(&self) -> Option<&'static str> {
        match self.fallback {
            Fallback::Value(text) if self.kind != Kind::Switch => Some(text),
            Fallback::Derived(text) => Some(text),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_keys_with_dashes() {
        let m = Meta::new(
            "half_close_timeout",
            "half-close-timeout",
            Scope::Listener,
            Kind::Duration,
            Fallback::Value("60s"),
            "DURATION",
            "help",
        );
        assert_eq!(m.flag_name(), "--half-close-timeout");
        assert!(m.flag && !m.file_only().flag);
        assert_eq!(m.shown_default(), Some("60s"));
    }

    #[test]
    fn scopes_say_where_an_option_applies() {
        assert!(Scope::Tunnel.applies_to("relay") && !Scope::Tunnel.applies_to("forward"));
        assert!(!Scope::Tunnel.applies_to("connect") && !Scope::Tunnel.applies_to("socks"));
        assert!(Scope::Listener.applies_to("forward"));
        assert!(!Scope::Global.applies_to("agent"));
        assert!(Scope::Own(&["agent"]).applies_to("agent"));
        assert!(!Scope::Own(&["agent"]).in_defaults() && Scope::Tunnel.in_defaults());
    }
}
