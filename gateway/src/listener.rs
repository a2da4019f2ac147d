//! Accepted connections, at most `GATEWAY_MAX_CONNECTIONS` at once: past it the gateway stops
//! accepting (new connections wait in the kernel's listen backlog) until one closes, so a
//! crowd of idle connections cannot grow its memory without bound. Each one is also closed
//! once idle for `GATEWAY_IDLE_TIMEOUT` ([`crate::idle`]).

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::Stream;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tonic::transport::server::{Connected, TcpConnectInfo, TlsConnectInfo};

use crate::idle::{Activity, IdleTimer};

/// Connections accepted from `listener`, never more than `max` open at once, each closed
/// once idle for `idle_timeout`.
pub fn incoming(
    listener: TcpListener,
    max: usize,
    idle_timeout: Duration,
) -> impl Stream<Item = io::Result<Counted>> {
    let slots = Arc::new(Semaphore::new(max));
    futures::stream::unfold((listener, slots), move |(listener, slots)| async move {
        let slot = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let accepted = listener.accept().await.map(|(tcp, _)| {
            let activity = Activity::new();
            Counted {
                info: ConnInfo {
                    tcp: tcp.connect_info(),
                    activity: activity.clone(),
                },
                tcp,
                idle: IdleTimer::new(activity, idle_timeout),
                _slot: slot,
            }
        });
        Some((accepted, (listener, slots)))
    })
}

/// A connection holding one of the `max` slots until it is dropped.
pub struct Counted {
    tcp: TcpStream,
    info: ConnInfo,
    idle: IdleTimer,
    _slot: OwnedSemaphorePermit,
}

/// What tonic puts into the extensions of every request of a connection: its addresses and
/// its [`Activity`], which the idle tracking counts calls on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub tcp: TcpConnectInfo,
    activity: Arc<Activity>,
}

impl ConnInfo {
    /// The activity of the connection `extensions` came on, with or without TLS.
    pub fn activity_of(extensions: &http::Extensions) -> Option<&Arc<Activity>> {
        extensions
            .get::<ConnInfo>()
            .or_else(|| {
                extensions
                    .get::<TlsConnectInfo<ConnInfo>>()
                    .map(TlsConnectInfo::get_ref)
            })
            .map(|info| &info.activity)
    }
}

impl Connected for Counted {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // idle for the timeout: the end of the stream, on which hyper closes the connection
        if self.idle.poll_expired(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}
