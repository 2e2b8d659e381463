//! Config files: TOML into a [`Config`](super::Config), with errors that name file, line and column.
