//! systemd integration without a dependency: readiness notification and socket activation.
