//! The one stats model: counters per listener, live views of sessions, and their renderings.
