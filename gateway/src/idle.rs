//! Idle connections are closed: a connection with no call in progress and none started for
//! `GATEWAY_IDLE_TIMEOUT` is ended, however many HTTP/2 keepalive PINGs it answers (a PING
//! proves the peer is there, not that it needs the connection).
//!
//! Each accepted connection has an [`Activity`], shared by two sides:
//! - the [`TrackLayer`] in front of every service counts the connection's calls in progress
//!   (from the request's arrival until its response body is finished or dropped) and when
//!   the last one started or ended; it finds the `Activity` in the request's connect info
//!   ([`crate::listener::ConnInfo`], which tonic puts into every request's extensions);
//! - the connection's IO ([`crate::listener::Counted`]) asks its [`IdleTimer`] on every
//!   read; once the connection has been idle for the timeout, reads end (EOF) and hyper
//!   closes the connection. The timer's wakeup is what makes an otherwise silent
//!   connection's task poll its read again.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http_body::Frame;
use tokio::time::{Instant, Sleep};
use tonic::{Status, body::Body};

/// One connection's calls in progress and when one last started or ended.
#[derive(Debug)]
pub struct Activity {
    /// When the connection was accepted; `last` counts from here.
    origin: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `origin` at which a call last started or ended.
    last: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        self.touch_at(Instant::now());
    }

    fn touch_at(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.origin).as_millis() as u64;
        self.last.fetch_max(ms, Ordering::Relaxed);
    }

    /// Counts a call in progress until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        Busy(self.clone())
    }

    /// When to look again whether the connection has been idle for `timeout`, as of `now`;
    /// `None` when it has.
    fn look_again(&self, timeout: Duration, now: Instant) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            // busy: it cannot be idle long enough before a timeout from now
            return Some(now + timeout);
        }
        let idle_until =
            self.origin + Duration::from_millis(self.last.load(Ordering::Relaxed)) + timeout;
        (idle_until > now).then_some(idle_until)
    }
}

/// A call in progress on a connection; ends when dropped.
#[derive(Debug)]
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The idle deadline of one connection, polled by its reads.
pub struct IdleTimer {
    activity: Arc<Activity>,
    timeout: Duration,
    /// Fires no later than the connection could first be idle for `timeout`; then the
    /// activity is looked at again.
    sleep: Pin<Box<Sleep>>,
    expired: bool,
}

impl IdleTimer {
    pub fn new(activity: Arc<Activity>, timeout: Duration) -> IdleTimer {
        let sleep = Box::pin(tokio::time::sleep(timeout));
        IdleTimer {
            activity,
            timeout,
            sleep,
            expired: false,
        }
    }

    /// Ready once the connection has been idle for the timeout (and from then on);
    /// otherwise pending, with a wakeup armed for the earliest moment it could be.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.expired {
            ready!(self.sleep.as_mut().poll(cx));
            match self.activity.look_again(self.timeout, Instant::now()) {
                Some(then) => self.sleep.as_mut().reset(then),
                None => {
                    self.expired = true;
                    metrics::counter!("gateway_connections_idle_closed_total").increment(1);
                }
            }
        }
        Poll::Ready(())
    }
}

/// The layer that counts every call on its connection's [`Activity`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TrackLayer;

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track { inner }
    }
}

/// See [`TrackLayer`].
#[derive(Clone, Debug)]
pub struct Track<S> {
    inner: S,
}

impl<S> tower::Service<http::Request<Body>> for Track<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let busy =
            crate::listener::ConnInfo::activity_of(request.extensions()).map(Activity::begin);
        Tracked {
            inner: self.inner.call(request),
            busy,
        }
    }
}

pin_project_lite::pin_project! {
    /// A call's response future, holding its [`Busy`] until the response body takes it.
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        busy: Option<Busy>,
    }
}

impl<F, E> Future for Tracked<F>
where
    F: Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let response = ready!(this.inner.poll(cx));
        Poll::Ready(response.map(|response| match this.busy.take() {
            Some(busy) => response.map(|body| {
                Body::new(BusyBody {
                    inner: body,
                    _busy: busy,
                })
            }),
            None => response,
        }))
    }
}

/// A response body that keeps its call counted until it is finished or dropped.
struct BusyBody {
    inner: Body,
    _busy: Busy,
}

impl http_body::Body for BusyBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_idle_only_after_the_timeout_without_a_call() {
        let activity = Activity::new();
        let t0 = activity.origin;
        let timeout = Duration::from_secs(10);
        let s = Duration::from_secs;
        assert_eq!(activity.look_again(timeout, t0 + s(6)), Some(t0 + s(10)));
        let busy = activity.begin();
        // a call in progress for far longer than the timeout keeps it open
        assert_eq!(activity.look_again(timeout, t0 + s(66)), Some(t0 + s(76)));
        drop(busy);
        // the call ended at 66 s
        activity.touch_at(t0 + s(66));
        assert_eq!(activity.look_again(timeout, t0 + s(75)), Some(t0 + s(76)));
        assert_eq!(activity.look_again(timeout, t0 + s(77)), None);
    }
}
