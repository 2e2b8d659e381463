//! How an option of the table is read from a front end and written back.
//!
//! A front end (the command line, a config file) answers [`Values::get`] for an option's
//! [`Meta`] with what the user wrote, where, and at which layer; an [`Opt`] reads that
//! through its value type's [`Typed::parse`] (or its fallback when nothing was written)
//! and stores it in its target struct with its setter. [`Setting`] is the same, with the
//! value type erased, so lists of options of one target can be walked generically: to
//! load, to render (`check`), to compare (reload).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use super::meta::{Fallback, Meta};
use super::{ConfigError, Global};

/// A byte range of a config file (`0..0` on the command line).
pub type Span = Range<usize>;

/// A problem at a place (made `FILE:LINE:COL: problem` or `error: problem` by the front
/// end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Where: the offending value or key.
    pub span: Span,
    /// What is wrong, on one line.
    pub problem: String,
}

impl Located {
    /// A problem at `span`.
    pub fn new(span: Span, problem: impl Into<String>) -> Located {
        Located {
            span,
            problem: problem.into(),
        }
    }
}

/// Results of building a configuration.
pub type Result<T> = std::result::Result<T, Located>;

/// Places a parser's error at `span`.
pub fn located(span: &Span) -> impl FnOnce(ConfigError) -> Located + '_ {
    move |e| Located::new(span.clone(), e.to_string())
}

/// Which layer a value came from, nearest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// The option's fallback.
    Builtin,
    /// A config file's `[defaults]`.
    Defaults,
    /// The listener's own table, or a flag.
    Own,
}

/// One piece of text the user wrote, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// The text as written (a TOML integer as its digits).
    pub text: String,
    /// Where.
    pub span: Span,
}

/// One named address as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The service name.
    pub name: Text,
    /// The address.
    pub addr: Text,
    /// The whole item as written (`ssh=127.0.0.1:22` on the command line), for errors.
    pub whole: String,
}

/// A value as written, shaped by its option's [`Kind`](super::meta::Kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raw {
    /// One value.
    One(Text),
    /// A repeated flag, or a string or array in a file.
    Many(Vec<Text>),
    /// Named addresses.
    Pairs(Vec<Pair>),
    /// A switch.
    Switch(bool),
}

/// What a front end has for one option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    /// The value.
    pub raw: Raw,
    /// Where the whole value is.
    pub span: Span,
    /// Which layer gave it.
    pub origin: Origin,
}

/// A front end: what the user wrote for each option.
pub trait Values {
    /// The value written for `meta`, if any.
    fn get(&self, meta: &Meta) -> Result<Option<Given>>;
    /// How errors name the option: `--idle-timeout` or `idle_timeout`.
    fn name(&self, meta: &Meta) -> String;
    /// How errors name one item of a list: `--service` or `service.ssh`.
    fn item(&self, meta: &Meta, item: &str) -> String;
    /// The error for a required option that is missing.
    fn missing(&self, meta: &Meta) -> Located;
    /// Where a built-in default is reported (a file's table header).
    fn here(&self) -> Span;
    /// Where an earlier value was written, for "already used ..." errors.
    fn place(&self, meta: &Meta, span: &Span) -> String;
    /// A path written in a value, as the process will open it.
    fn path(&self, written: &str) -> PathBuf;
}

/// Listen addresses seen so far, to refuse one used twice (port 0 excepted).
#[derive(Debug, Default)]
pub struct Taken {
    seen: HashMap<SocketAddr, String>,
}

impl Taken {
    /// Records `addr` (written at `span` for `meta`); refuses it if already recorded.
    pub fn add(
        &mut self,
        addr: SocketAddr,
        values: &dyn Values,
        meta: &Meta,
        span: &Span,
    ) -> Result<()> {
        if addr.port() == 0 {
            return Ok(());
        }
        if let Some(first) = self.seen.get(&addr) {
            return Err(Located::new(
                span.clone(),
                format!("address {addr} is already used {first}"),
            ));
        }
        self.seen.insert(addr, values.place(meta, span));
        Ok(())
    }
}

/// What parsing a value may need besides the value.
pub struct Cx<'v> {
    /// The front end, for names, places and paths.
    pub values: &'v dyn Values,
    /// The process-wide settings, once read (a listener's cap is bounded by them).
    pub global: Option<&'v Global>,
    /// Listen addresses seen so far.
    pub taken: &'v mut Taken,
}

impl std::fmt::Debug for Cx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cx").finish_non_exhaustive()
    }
}

/// A value type of options: parsed from what was written, rendered back as TOML.
pub trait Typed: Sized {
    /// Reads the value written for `meta`.
    fn parse(meta: &Meta, given: &Given, cx: &mut Cx<'_>) -> Result<Self>;
    /// The value as a TOML value (`"5m"`, `1024`, `["a", "b"]`...).
    fn render(&self, meta: &Meta) -> String;
}

/// One option of target struct `T`, with values of type `V`.
#[derive(Debug)]
pub struct Opt<T: 'static, V: 'static> {
    /// What describes it.
    pub meta: Meta,
    /// Its value in a target, `None` when unset (rendered as absent).
    pub get: fn(&T) -> Option<V>,
    /// Stores a value (setters may read options listed before them).
    pub set: fn(&mut T, V),
}

/// An option of target `T`, its value type erased.
pub trait Setting<T>: Sync {
    /// What describes it.
    fn meta(&self) -> &Meta;
    /// Reads it from `cx.values` (or its fallback) into `target`.
    fn load(&self, cx: &mut Cx<'_>, target: &mut T) -> Result<()>;
    /// Its value in `target` as TOML, `None` when unset.
    fn show(&self, target: &T) -> Option<String>;
}

impl<T, V: Typed> Setting<T> for Opt<T, V> {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn load(&self, cx: &mut Cx<'_>, target: &mut T) -> Result<()> {
        if let Some(given) = given_or_fallback(&self.meta, cx)? {
            let value = V::parse(&self.meta, &given, cx)?;
            (self.set)(target, value);
        }
        Ok(())
    }

    fn show(&self, target: &T) -> Option<String> {
        (self.get)(target).map(|v| v.render(&self.meta))
    }
}

/// What the front end has for `meta`, else its fallback as if written (`None`: absent,
/// nothing to set). One function for every option type: the typed part is only the
/// parse.
fn given_or_fallback(meta: &Meta, cx: &Cx<'_>) -> Result<Option<Given>> {
    if let Some(given) = cx.values.get(meta)? {
        return Ok(Some(given));
    }
    match meta.fallback {
        Fallback::Value(text) => Ok(Some(Given {
            raw: Raw::One(Text {
                text: text.to_string(),
                span: cx.values.here(),
            }),
            span: cx.values.here(),
            origin: Origin::Builtin,
        })),
        Fallback::Required => Err(cx.values.missing(meta)),
        Fallback::Absent | Fallback::Derived(_) => Ok(None),
    }
}

/// Loads every option of `list` that `keep` accepts into `target`, in list order.
pub fn load_all<T>(
    list: &[&dyn Setting<T>],
    keep: impl Fn(&Meta) -> bool,
    cx: &mut Cx<'_>,
    target: &mut T,
) -> Result<()> {
    for setting in list.iter().filter(|s| keep(s.meta())) {
        setting.load(cx, target)?;
    }
    Ok(())
}
