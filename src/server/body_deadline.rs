//! Every request body has a deadline. actix times a request's head
//! (`client_request_timeout`) but not its body: a client that sends a head
//! and then part of a body, or nothing, would hold its connection and its
//! admission slot for as long as it liked on any route that reads a body
//! through an extractor. From the head on, the body has
//! `server.connections.request_body_timeout_ms` to arrive; past it the body
//! reads as an I/O error ([`AppError::BodyTimeout`], 408 `body-timeout`) and
//! the answer closes the connection.
//!
//! Untrusted input: the body's bytes, passed through untouched.

use std::cell::Cell;
use std::future::Future as _;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use futures_util::Stream;

/// How long a request body may take, from its head.
#[derive(Clone, Copy)]
pub struct BodyDeadline(pub Duration);

/// The error a body past its deadline reads as.
pub fn timed_out() -> PayloadError {
    PayloadError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "request body deadline passed",
    ))
}

struct Deadlined {
    inner: Payload,
    timer: Pin<Box<tokio::time::Sleep>>,
    passed: Rc<Cell<bool>>,
}

impl Stream for Deadlined {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        // Once passed, the body stays an error: a reader that went on would
        // otherwise take what came so far for the whole body.
        if this.passed.get() {
            return Poll::Ready(Some(Err(timed_out())));
        }
        if let Poll::Ready(item) = Pin::new(&mut this.inner).poll_next(cx) {
            return Poll::Ready(item);
        }
        if this.timer.as_mut().poll(cx).is_ready() {
            this.passed.set(true);
            return Poll::Ready(Some(Err(timed_out())));
        }
        Poll::Pending
    }
}

/// Puts the request's body (if it has one) under its deadline; when the
/// deadline passed, the answer closes the connection, since what is left of
/// the body would otherwise be read as the next request.
pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let Some(deadline) = req.app_data::<web::Data<BodyDeadline>>().map(|d| d.0) else {
        return next.call(req).await;
    };
    let passed = Rc::new(Cell::new(false));
    match std::mem::replace(req.parts_mut().1, Payload::None) {
        Payload::None => {}
        inner => req.set_payload(Payload::Stream {
            payload: Box::pin(Deadlined {
                inner,
                timer: Box::pin(tokio::time::sleep(deadline)),
                passed: passed.clone(),
            }),
        }),
    }
    let mut response = next.call(req).await?;
    if passed.get() {
        response
            .response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(response)
}
