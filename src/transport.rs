//! A connection's byte stream: plain TCP or TLS over TCP. hyper serves `TokioIo<Transport>`
//! (so the upgrade hands either kind to the session), and the session reads and writes through
//! the three `poll_*` methods below.
//!
//! Plain TCP keeps the session's fast path as it was: readiness, then `try_read` into the
//! worker thread's buffer and `try_write_vectored` straight from the shared frames; the enum
//! costs one branch and no bytes (a `TcpStream` has a niche for the tag). TLS goes through
//! tokio-rustls: its writes may leave encrypted records in rustls's buffer when the socket is
//! full, so the session flushes (`poll_flush`) before it counts anything as sent, and every
//! `Pending` comes from the socket itself, which keeps the session's waker.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub enum Transport {
    Plain(TcpStream),
    /// Boxed: rustls's connection state is about a kilobyte, and plain connections must not
    /// carry its size.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Transport {
    /// Reads what is there into `buf`. Ready(Ok(0)): the client is gone (TCP end, or for TLS
    /// its close_notify, or a TCP end without one: browsers often just close the socket, and the
    /// WebSocket close handshake already says whether anything was cut off).
    pub fn poll_read_into(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self {
            Transport::Plain(s) => loop {
                ready!(s.poll_read_ready(cx))?;
                match s.try_read(buf) {
                    // Readiness was stale: tokio cleared it, so the next poll registers the waker.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    r => return Poll::Ready(r),
                }
            },
            Transport::Tls(s) => {
                let mut rb = ReadBuf::new(buf);
                match ready!(Pin::new(&mut **s).poll_read(cx, &mut rb)) {
                    Ok(()) => Poll::Ready(Ok(rb.filled().len())),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(0)),
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
        }
    }

    /// Writes as much of `bufs` as the connection takes now. Plain TCP: Pending without a
    /// waker (the caller asks `poll_write_ready`); TLS: Pending with the waker registered.
    pub fn poll_write_bufs(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        match self {
            Transport::Plain(s) => match s.try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
                r => Poll::Ready(r),
            },
            Transport::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    /// Everything written is on the socket. Plain TCP: always (nothing is buffered here);
    /// TLS: the records rustls still holds are written, Pending (waker registered) until then.
    pub fn poll_send_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(_) => Poll::Ready(Ok(())),
            Transport::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    /// Registers the waker for writability after `poll_write_bufs` or `poll_send_buffered`
    /// returned Pending. TLS registered it already then, so it is simply Pending.
    pub fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Transport::Plain(s) => s.poll_write_ready(cx),
            Transport::Tls(_) => Poll::Pending,
        }
    }

    /// The connection is about to be dropped: for TLS, a close_notify goes out if the socket
    /// takes it now (no waiting: the WebSocket close handshake already ended the conversation,
    /// and a client that does not read must not keep the connection).
    pub fn close_now(&mut self, cx: &mut Context<'_>) {
        if let Transport::Tls(s) = self {
            s.get_mut().1.send_close_notify();
            let _ = Pin::new(&mut **s).poll_flush(cx);
        }
    }
}

// For hyper (the HTTP side before an upgrade): plain delegation.
impl AsyncRead for Transport {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Transport::Tls(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(s) => s.is_write_vectored(),
            Transport::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_connection_carries_no_tls_bytes() {
        // The tag fits in a niche of the TcpStream: plain connections pay nothing for TLS.
        assert_eq!(std::mem::size_of::<Transport>(), std::mem::size_of::<TcpStream>());
    }
}
