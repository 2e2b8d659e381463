//! Bounded HTTP/1.1 requests for the metrics endpoint.
