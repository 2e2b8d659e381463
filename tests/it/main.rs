//! The integration tests of tcpbridge, in one test binary (`it`) so the shared
//! harness in [`support`] is compiled once. Each module is one area of the
//! binary's behaviour; a test's path names its area, e.g.
//! `faults_close::half_open_upstream_is_closed_on_the_next_write`.
//!
//! - `cli`, `config_file`, `lifecycle`: start-up, command line, config files,
//!   shutdown on signals;
//! - `forward_*`: forward mode (data, close, timeouts, upstreams, limits,
//!   memory, faults, churn, a port shared by processes);
//! - `upstream_*`: upstream groups (balancing, health, warm connections,
//!   names looked up again);
//! - `nat_*`: the relay -> agent bridge (data, lifecycle, authentication);
//! - `connect_mode`, `socks_mode`, `dynamic_*`: `connect` and `socks` listeners
//!   (curl as the client, the protocols on raw sockets, handshake limits, names
//!   with several addresses, leaks);
//! - `operate_*`, `stats_format`: running it (config reloads, systemd,
//!   metrics);
//! - `faults_*`: the fault matrix of `docs/reliability.md`, one test per
//!   scenario, each ending with the common invariants.
//!
//! A test whose outcome can depend on the data path (any that moves bytes
//! through a session) is written once and run on both
//! ([`support::both_paths!`]): `NAME::copy` (`--splice off`, readv/writev
//! through rings) and `NAME::splice` (`--splice always`, splice(2) through
//! kernel pipes from the first byte). The others run once, on the default
//! (`auto`).
//!
//! The test filter matches module paths, so a part runs on its own:
//!
//! ```text
//! cargo test --test it                   # all integration tests
//! cargo test --test it forward_          # forward mode
//! cargo test --test it faults_           # the fault suite
//! cargo test --test it faults_close::    # one module
//! cargo test --test it ::splice          # every test on the splice path
//! CI=true cargo test --test it faults_   # fail instead of skipping without root or tools
//! ```
//!
//! All tests of the binary run on parallel threads of one process, so a test
//! keeps what it changes to itself: network faults (iptables, `ss -K`,
//! sysctls, fixed ports) only in a private network namespace entered by its
//! own thread ([`support::enter_private_netns`]), files in a directory of its
//! own (e.g. [`support::SecretDir`]), listeners on port 0 otherwise. The one
//! process-wide change, `faults_scale`'s raise of the soft open-files limit to
//! the hard one for 4,000 sessions, changes no other test's outcome (see
//! there).

mod support;

mod cli;
mod config_file;
mod connect_mode;
mod dynamic_failures;
mod dynamic_leak;
mod dynamic_limits;
mod dynamic_names;
mod faults_close;
mod faults_data;
mod faults_handshake;
mod faults_keepalive;
mod faults_lifecycle;
mod faults_nat;
mod faults_nat_limits;
mod faults_resources;
mod faults_scale;
mod faults_timeouts;
mod forward_churn;
mod forward_close;
mod forward_data;
mod forward_faults;
mod forward_keepalive;
mod forward_limits;
mod forward_memory;
mod forward_reuse_port;
mod forward_timeouts;
mod forward_upstream;
mod lifecycle;
mod nat_auth;
mod nat_data;
mod nat_failures;
mod nat_keepalive;
mod nat_lifecycle;
#[cfg(feature = "tls")]
mod nat_tls;
mod operate_config;
mod operate_metrics;
mod operate_reload_nat;
mod proxy_accept;
mod proxy_send;
mod socks_mode;
mod stats_format;
mod upstream_balance;
mod upstream_dns;
mod upstream_health;
mod upstream_warm;
