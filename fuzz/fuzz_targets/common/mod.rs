//! Set-up shared by the config targets: a private network namespace, so that host names
//! in fuzzed addresses fail at once (no route to any name server) instead of sending a
//! lookup per execution; `/etc/hosts` names such as `localhost` still resolve.

/// Moves this process into a new, empty network namespace, or exits (the target needs
/// root, or `unshare -rn` around the command, to run without touching the network).
pub fn isolate_network() {
    // SAFETY: unshare takes a flag word and touches only this process's namespaces.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc != 0 {
        eprintln!(
            "cannot enter a private network namespace ({}): run as root or under `unshare -rn`",
            std::io::Error::last_os_error()
        );
        std::process::exit(2);
    }
}
