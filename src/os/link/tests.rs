//! Link tests: a plain link is its connection (bytes, peek, addresses); a TLS link
//! refuses to peek at ciphertext.

use std::io::{IoSlice, IoSliceMut, Write};

use mio::net::TcpStream;

use super::*;
#[cfg(feature = "tls")]
use crate::os::tls::{RelayTls, TlsStream};

/// A connected loopback pair: (the link's blocking peer, the link).
fn pair() -> (std::net::TcpStream, Conn) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let peer = std::net::TcpStream::connect(addr).expect("connect");
    let (ours, _) = listener.accept().expect("accept");
    ours.set_nonblocking(false).expect("blocking");
    (peer, Conn::accepted(TcpStream::from_std(ours), None))
}

#[test]
fn a_plain_link_moves_bytes_and_peeks_like_its_connection() {
    let (mut peer, conn) = pair();
    let local = conn.local_addr().expect("addr");
    let mut link = Link::from(conn);
    assert!(!link.is_tls());
    assert_eq!(link.local_addr().expect("addr"), local);
    peer.write_all(b"marker").expect("write");
    let mut first = [0u8; 6];
    assert_eq!(link.peek(&mut first).expect("peek"), 6);
    let mut got = [0u8; 6];
    let n = link
        .read_vectored(&mut [IoSliceMut::new(&mut got)])
        .expect("read");
    assert_eq!((&got[..n], &first[..]), (&b"marker"[..], &b"marker"[..]));
    let sent = link
        .write_vectored(&[IoSlice::new(b"back")])
        .expect("write");
    assert_eq!(sent, 4);
    assert!(link.splice_fd().is_some());
    assert!(matches!(link.connect_status(), ConnectStatus::Connected));
}

#[cfg(feature = "tls")]
#[test]
fn a_tls_link_does_not_peek_or_splice() {
    let (_peer, conn) = pair();
    let relay = RelayTls::generate().expect("key");
    let link = Link::from(TlsStream::server(conn, &relay));
    assert!(link.is_tls());
    let mut buf = [0u8; 4];
    let e = link.peek(&mut buf).expect_err("no peek");
    assert_eq!(e.kind(), io::ErrorKind::Unsupported);
    assert!(link.splice_fd().is_none());
    assert!(link.local_addr().is_ok());
}
