//! The PROXY protocol header a session's upstream connection starts with: built from the
//! endpoints the session announces (the client, as seen or as a trusted header told it,
//! and the address it connected to) in the version the upstream asks for.

use std::borrow::Cow;
use std::net::SocketAddr;

use crate::config::ProxyProtocol;
use crate::core::pipe::Bytes;
use crate::proto::proxy;

/// The endpoints a session announces upstream: `(client, where it connected)`. Boxed in
/// the session's slab entry, where most sessions carry none.
pub(in crate::server) type Ends = (SocketAddr, SocketAddr);

/// The header for `ends` in `version`; `None` when the upstream takes none.
pub(in crate::server) fn header(
    version: Option<ProxyProtocol>,
    ends: Option<&Ends>,
) -> Option<Bytes> {
    let (version, &(src, dst)) = version.zip(ends)?;
    let bytes = match version {
        ProxyProtocol::V1 => proxy::v1(src, dst),
        ProxyProtocol::V2 => proxy::v2(src, dst),
    };
    Some(Cow::Owned(bytes))
}
