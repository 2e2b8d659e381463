//! The options of upstream groups: how a forward listener's upstreams, and each of an
//! agent's services, are balanced, checked, kept warm and looked up. Part of the table of
//! options (see the parent module).

use std::time::Duration;

use crate::config::meta::{Bound, Fallback, Kind, Meta, Scope};
use crate::config::setting::{Opt, Setting};
use crate::config::UpstreamOptions;
use crate::core::upstream::{Balance, HealthCheck};

use Fallback::{Derived, Value};

/// Forward's upstreams and an agent's services form groups; a relay's upstreams are the
/// tunnels agents open.
const GROUP: Scope = Scope::Own(&["forward", "agent"]);
const NOT_RELAY: &[(&str, &str)] = &[(
    "relay",
    "a relay's upstreams are the tunnels its agents open; set it on the agent",
)];

/// A count of a group, from 1 to `max`.
const fn count(max: usize) -> Kind {
    Kind::Count {
        max: Bound::Fixed(max),
    }
}

/// A duration of a group, with its default.
const fn duration(
    key: &'static str,
    long: &'static str,
    default: &'static str,
    help: &'static str,
) -> Meta {
    Meta::duration(key, long, GROUP, default, help).not_in(NOT_RELAY)
}

const BALANCE: Opt<UpstreamOptions, Balance> = Opt {
    meta: Meta::new(
        "balance",
        "balance",
        GROUP,
        Kind::Word(&["failover", "round-robin", "least-sessions", "random-two", "source-hash"]),
        Value("failover"),
        "POLICY",
        "Which upstream a new session dials: failover (first up, in order), round-robin, least-sessions, random-two, source-hash.",
    )
    .not_in(NOT_RELAY),
    get: |o| Some(o.balance),
    set: |o, v| o.balance = v,
};

const CONNECT_TRIES: Opt<UpstreamOptions, usize> = Opt {
    meta: Meta::new(
        "connect_tries",
        "connect-tries",
        GROUP,
        count(64),
        Derived("each upstream once"),
        "N",
        "Most connect attempts per session, each to another upstream.",
    )
    .not_in(NOT_RELAY),
    get: |o| (o.connect_tries > 0).then_some(o.connect_tries),
    set: |o, v| o.connect_tries = v,
};

const EJECT_AFTER: Opt<UpstreamOptions, u32> = Opt {
    meta: Meta::new(
        "eject_after",
        "eject-after",
        GROUP,
        Kind::Rate,
        Value("3"),
        "N",
        "Failed connects in a row that take an upstream out for eject-time (0: never).",
    )
    .not_in(NOT_RELAY),
    get: |o| Some(o.eject_after),
    set: |o, v| o.eject_after = v,
};

const EJECT_TIME: Opt<UpstreamOptions, Duration> = Opt {
    meta: duration(
        "eject_time",
        "eject-time",
        "10s",
        "First ejection's length; doubled per ejection in a row, at most 5 minutes.",
    ),
    get: |o| Some(o.eject_time),
    set: |o, v| o.eject_time = v,
};

const HEALTH_CHECK: Opt<UpstreamOptions, HealthCheck> = Opt {
    meta: Meta::new(
        "health_check",
        "health-check",
        GROUP,
        Kind::Word(&["off", "tcp"]),
        Value("off"),
        "CHECK",
        "Active health checks: off, or tcp (a connect every health-interval).",
    )
    .not_in(NOT_RELAY),
    get: |o| Some(o.health_check),
    set: |o, v| o.health_check = v,
};

const HEALTH_INTERVAL: Opt<UpstreamOptions, Duration> = Opt {
    meta: duration(
        "health_interval",
        "health-interval",
        "5s",
        "Time between two health checks of one upstream address.",
    ),
    get: |o| Some(o.health_interval),
    set: |o, v| o.health_interval = v,
};

const HEALTH_FALL: Opt<UpstreamOptions, usize> = Opt {
    meta: Meta::new(
        "health_fall",
        "health-fall",
        GROUP,
        count(100),
        Value("3"),
        "N",
        "Failed health checks in a row that mark an upstream down.",
    )
    .not_in(NOT_RELAY),
    get: |o| Some(o.health_fall as usize),
    set: |o, v| o.health_fall = u32::try_from(v).unwrap_or(u32::MAX),
};

const HEALTH_RISE: Opt<UpstreamOptions, usize> = Opt {
    meta: Meta::new(
        "health_rise",
        "health-rise",
        GROUP,
        count(100),
        Value("2"),
        "N",
        "Passed health checks in a row that mark it up again.",
    )
    .not_in(NOT_RELAY),
    get: |o| Some(o.health_rise as usize),
    set: |o, v| o.health_rise = u32::try_from(v).unwrap_or(u32::MAX),
};

const WARM: Opt<UpstreamOptions, u32> = Opt {
    meta: Meta::new(
        "warm",
        "warm",
        GROUP,
        Kind::Rate,
        Value("0"),
        "N",
        "Idle pre-connected connections kept per upstream address, each lent to one session (0: none).",
    )
    .not_in(NOT_RELAY),
    get: |o| Some(u32::try_from(o.warm).unwrap_or(u32::MAX)),
    set: |o, v| o.warm = v as usize,
};

const WARM_MAX_AGE: Opt<UpstreamOptions, Duration> = Opt {
    meta: duration(
        "warm_max_age",
        "warm-max-age",
        "8s",
        "Oldest a warm connection may be when lent (each one's limit drawn in 0.8-1x of it).",
    ),
    get: |o| Some(o.warm_max_age),
    set: |o, v| o.warm_max_age = v,
};

const DNS_REFRESH: Opt<UpstreamOptions, Duration> = Opt {
    meta: duration(
        "dns_refresh",
        "dns-refresh",
        "30s",
        "How often upstream names are looked up again (a failed look-up keeps the last addresses).",
    ),
    get: |o| Some(o.dns_refresh),
    set: |o, v| o.dns_refresh = v,
};

/// The options of upstream groups (forward and agent listeners).
pub const UPSTREAMS: &[&dyn Setting<UpstreamOptions>] = &[
    &BALANCE,
    &CONNECT_TRIES,
    &EJECT_AFTER,
    &EJECT_TIME,
    &HEALTH_CHECK,
    &HEALTH_INTERVAL,
    &HEALTH_FALL,
    &HEALTH_RISE,
    &WARM,
    &WARM_MAX_AGE,
    &DNS_REFRESH,
];
