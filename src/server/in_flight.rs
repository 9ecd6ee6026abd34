//! Requests in flight per connection: a count each request holds a share of until its response
//! body is finished (for a stream, until the stream ends), so "idle" means no request at all,
//! not just no bytes on the wire.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::http::HeaderMap;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// Requests in flight on one connection.
#[derive(Debug, Default)]
pub struct Activity {
    in_flight: AtomicUsize,
    changed: Notify,
}

impl Activity {
    /// Counts a request in flight until the guard is dropped. Only the change from idle to busy
    /// (and back, in the guard's drop) is signalled: the idle watcher cares for nothing else, and
    /// concurrent requests on one connection then take no lock and wake no task.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.changed.notify_waiters();
        }
        InFlight(Arc::clone(self))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Completes when the count next turns from 0 or to 0 (call `enable` before checking it).
    pub fn changed(&self) -> Notified<'_> {
        self.changed.notified()
    }
}

/// One request in flight (see [`Activity::begin`]).
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.changed.notify_waiters();
        }
    }
}

/// A response body that keeps its request counted in flight until it ends (or is dropped), and
/// can rewrite its trailers on the way out.
pub struct TrackedBody<B> {
    inner: B,
    in_flight: Option<InFlight>,
    trailers: Option<fn(&mut HeaderMap)>,
}

impl<B> TrackedBody<B> {
    pub fn new(inner: B, in_flight: Option<InFlight>) -> Self {
        Self {
            inner,
            in_flight,
            trailers: None,
        }
    }

    /// Applies `f` to the trailers, if the body has any.
    #[must_use]
    pub fn map_trailers(mut self, f: fn(&mut HeaderMap)) -> Self {
        self.trailers = Some(f);
        self
    }
}

impl<B> Body for TrackedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match polled {
            Poll::Ready(Some(Ok(mut frame))) => {
                if let (Some(f), Some(t)) = (self.trailers, frame.trailers_mut()) {
                    f(t);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                self.in_flight = None;
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
