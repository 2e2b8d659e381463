//! systemd integration (placeholder).

/// Sends a state to the service manager.
pub fn notify(_state: &str) -> std::io::Result<bool> {
    Ok(false)
}

/// CLOCK_MONOTONIC in microseconds.
pub fn monotonic_usec() -> u64 {
    0
}

/// Listening sockets passed by the service manager (placeholder).
pub fn take_listeners() -> std::io::Result<Vec<std::net::TcpListener>> {
    Ok(Vec::new())
}
