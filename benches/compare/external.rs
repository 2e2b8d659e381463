//! Command lines and configuration files of the third-party proxies (HAProxy,
//! nginx stream, socat, rinetd) and of the nginx HTTP server the cross-check uses.
//!
//! Common settings, wherever the program has the knob:
//! - one thread / one worker process;
//! - 16 KiB buffers (HAProxy `tune.bufsize`, nginx `proxy_buffer_size`, socat `-b`;
//!   rinetd's is compiled in at 16 KiB);
//! - TCP_NODELAY on both legs (HAProxy sets it itself; nginx `tcp_nodelay on`,
//!   socat `nodelay`; rinetd has no knob and leaves Nagle on);
//! - a session limit of `max_sessions` and enough file descriptors for it;
//! - no access log; connect timeout 5 s, idle timeout 5 min.

use std::net::SocketAddr;
use std::path::Path;

/// Where Debian's nginx-core keeps the dynamic stream module.
pub const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// HAProxy `mode tcp`, one thread.
pub fn haproxy_config(
    listen: SocketAddr,
    upstream: SocketAddr,
    max_sessions: u64,
    splice: bool,
) -> String {
    // `haproxy-splice`: kernel pipes of 256 KiB both ways (HAProxy's own zero-copy path).
    // Its pipes need descriptors too (two each, HAProxy's default `maxpipes` is
    // maxconn/4): the session limit gives way so the total stays within the same
    // RLIMIT_NOFILE (2.5 x maxconn <= 2 x max_sessions).
    let (max_sessions, pipes, options) = if splice {
        let conns = max_sessions * 4 / 5;
        (
            conns,
            format!("    tune.pipesize 262144\n    maxpipes {}\n", conns / 4),
            "    option splice-request\n    option splice-response\n",
        )
    } else {
        (max_sessions, String::new(), "")
    };
    format!(
        "global
    nbthread 1
    maxconn {max_sessions}
    tune.bufsize 16384
{pipes}
defaults
    mode tcp
    timeout connect 5s
    timeout client 5m
    timeout server 5m
{options}
frontend bench
    bind {listen}
    maxconn {max_sessions}
    default_backend upstream

backend upstream
    server backend1 {upstream} maxconn {max_sessions}
"
    )
}

/// The top of every nginx configuration: one worker, files in `dir`.
fn nginx_main(dir: &Path, worker_connections: u64) -> String {
    let dir = dir.display();
    format!(
        "worker_processes 1;
worker_rlimit_nofile {nofile};
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{
    worker_connections {worker_connections};
}}
",
        nofile = worker_connections + 64,
    )
}

/// nginx `stream` proxy, one worker. nginx counts both legs of a session as
/// connections, hence twice `max_sessions`.
pub fn nginx_stream_config(
    dir: &Path,
    listen: SocketAddr,
    upstream: SocketAddr,
    max_sessions: u64,
) -> String {
    format!(
        "load_module {NGINX_STREAM_MODULE};
{main}
stream {{
    server {{
        listen {listen} backlog=4096;
        proxy_pass {upstream};
        proxy_buffer_size 16k;
        proxy_connect_timeout 5s;
        proxy_timeout 5m;
        tcp_nodelay on;
    }}
}}
",
        main = nginx_main(dir, 2 * max_sessions + 16),
    )
}

/// nginx as a tiny HTTP server (the cross-check's wrk backend): one worker,
/// a fixed 13-byte body, keep-alive without a request limit.
pub fn nginx_http_config(dir: &Path, listen: SocketAddr) -> String {
    let temp = dir.display();
    format!(
        "{main}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests 100000000;
    tcp_nodelay on;
    server {{
        listen {listen} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 \"hello, world\\n\";
        }}
    }}
}}
",
        main = nginx_main(dir, 4096),
    )
}

/// The nginx command line for a configuration written to `config`.
pub fn nginx_args(dir: &Path, config: &Path) -> Vec<String> {
    vec![
        "-p".into(),
        dir.display().to_string(),
        "-e".into(),
        dir.join("nginx-error.log").display().to_string(),
        "-c".into(),
        config.display().to_string(),
    ]
}

/// socat forking one process per session, with 16 KiB buffers.
pub fn socat_args(listen: SocketAddr, upstream: SocketAddr) -> Vec<String> {
    vec![
        "-b".into(),
        "16384".into(),
        format!(
            "TCP4-LISTEN:{},bind={},reuseaddr,fork,backlog=4096,nodelay",
            listen.port(),
            listen.ip()
        ),
        format!("TCP4:{upstream},nodelay"),
    ]
}

/// rinetd forwarding one port (it has no buffer, Nagle or limit options).
pub fn rinetd_config(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    format!(
        "pidlogfile {dir}/rinetd.pid
{} {} {} {}
",
        listen.ip(),
        listen.port(),
        upstream.ip(),
        upstream.port(),
        dir = dir.display(),
    )
}
