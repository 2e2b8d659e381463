//! Logging: human lines or JSON objects, rate-limited.
