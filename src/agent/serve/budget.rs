//! The response budget: how many bytes of response bodies the agent holds for its clients at once.
//!
//! A client that sends a request and never reads the answer keeps that answer in the agent's memory
//! until the connection ends. Every response larger than a small size takes its length from one
//! shared budget and gives it back only when its last byte has been handed to the connection, which
//! buffers at most a few KiB more. When the budget is spent, the response is replaced by a short
//! `503` with `Retry-After`, so no number of such clients can push the agent past its memory limit;
//! small answers (`/healthz`, a ready `/readyz`) never wait for the budget.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::metrics::HttpMetrics;

/// The shared budget (cheap to clone).
#[derive(Clone, Debug)]
pub struct Budget {
    permits: Arc<Semaphore>,
    total: usize,
    small: usize,
    chunk: usize,
    metrics: HttpMetrics,
}

impl Budget {
    /// `total` bytes in all; bodies of at most `small` bytes skip the budget; bodies are handed to the
    /// connection `chunk` bytes at a time.
    pub fn new(total: usize, small: usize, chunk: usize, metrics: HttpMetrics) -> Budget {
        let total = total.min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
        Budget { permits: Arc::new(Semaphore::new(total)), total, small, chunk: chunk.max(1), metrics }
    }

    /// Bytes of the budget not held by a response now.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Wraps `response` so that its body holds its share of the budget, or sheds it.
    pub async fn hold(&self, response: Response) -> Response {
        let (parts, body) = response.into_parts();
        let most = self.total.max(self.small);
        let size = http_body::Body::size_hint(&body).lower();
        if size > most as u64 {
            tracing::warn!(bytes = size, budget = self.total, "response larger than the whole response budget");
            return self.shed();
        }
        // The agent's handlers build whole bodies, so this takes the one buffer without copying.
        let Ok(data) = axum::body::to_bytes(body, most).await else { return self.shed() };
        if data.len() <= self.small {
            return Response::from_parts(parts, Body::from(data));
        }
        let Ok(permit) = self.permits.clone().try_acquire_many_owned(data.len() as u32) else { return self.shed() };
        Response::from_parts(parts, Body::new(Paced { data, chunk: self.chunk, permit: Some(permit) }))
    }

    fn shed(&self) -> Response {
        self.metrics.response_shed();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "the agent is busy sending other large responses; retry shortly\n",
        )
            .into_response()
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn layer(State(budget): State<Budget>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    budget.hold(response).await
}

/// A body handed out `chunk` bytes at a time, each a fresh copy: the connection's buffer then holds
/// only copies of a few chunks, and the whole body (with its share of the budget) is released the
/// moment the last chunk has been taken.
struct Paced {
    data: Bytes,
    chunk: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for Paced {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        if this.data.is_empty() {
            this.permit = None;
            return Poll::Ready(None);
        }
        let n = this.chunk.min(this.data.len());
        let piece = Bytes::copy_from_slice(&this.data[..n]);
        this.data.advance(n);
        if this.data.is_empty() {
            // An empty slice still keeps the whole allocation alive: let it go now.
            this.data = Bytes::new();
            this.permit = None;
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn budget(total: usize) -> Budget {
        Budget::new(total, 16, 10, HttpMetrics::unregistered())
    }

    fn response(len: usize) -> Response {
        Response::new(Body::from(vec![b'x'; len]))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn small_responses_skip_the_budget() {
        let b = budget(0);
        let r = b.hold(response(16)).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.into_body().collect().await.unwrap().to_bytes().len(), 16);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_body_holds_its_share_until_its_last_chunk_is_taken() {
        let b = budget(100);
        let r = b.hold(response(35)).await;
        assert_eq!((r.status(), b.available()), (StatusCode::OK, 65));
        let mut body = r.into_body();
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(35), "the length is known: Content-Length");
        let mut sizes = Vec::new();
        while let Some(frame) = body.frame().await {
            sizes.push(frame.unwrap().into_data().unwrap().len());
            if sizes.len() < 4 {
                assert_eq!(b.available(), 65, "held while chunks remain");
            }
        }
        assert_eq!(sizes, [10, 10, 10, 5]);
        assert_eq!(b.available(), 100);
        // A client that goes away early (the body is dropped) gives the share back too.
        let r = b.hold(response(50)).await;
        assert_eq!(b.available(), 50);
        drop(r);
        assert_eq!(b.available(), 100);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_spent_budget_sheds_with_503_and_retry_after() {
        let b = budget(100);
        let held = b.hold(response(80)).await;
        let shed = b.hold(response(30)).await;
        assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
        assert_eq!(b.hold(response(20)).await.status(), StatusCode::OK, "what still fits is served");
        assert_eq!(b.hold(response(1000)).await.status(), StatusCode::SERVICE_UNAVAILABLE, "larger than the budget");
        assert_eq!(b.metrics.shed_count(), 2);
        drop(held);
    }
}
