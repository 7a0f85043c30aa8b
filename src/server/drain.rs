//! Graceful shutdown that never leaves a tip half-done. actix drains HTTP/1
//! connections on stop but not HTTP/2 ones: at the shutdown timeout it drops
//! them, cancelling requests whose tip may already be in Redis. So before the
//! server is stopped, new requests are refused (503 `shutting-down`) and the
//! ones in flight are awaited; only then does the server stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{ResponseError, web};

use crate::error::AppError;

#[derive(Clone, Default)]
pub struct Drain {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
    /// Woken when draining starts: long-lived responses (alert streams) end
    /// then, instead of holding the stop until the shutdown timeout.
    stopping: tokio::sync::Notify,
}

/// Counts a request as in flight until it completes or is cancelled.
struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Drain {
    /// Refuses new requests, waits up to `timeout` for those in flight, then
    /// stops the server (which closes the now idle connections).
    pub async fn stop(&self, handle: ServerHandle, timeout: Duration) {
        self.inner.draining.store(true, Ordering::SeqCst);
        self.inner.stopping.notify_waiters();
        let deadline = tokio::time::Instant::now() + timeout;
        while self.inner.in_flight.load(Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            // Re-check on a short tick too: a wakeup can fall between the load and the wait.
            let _ =
                tokio::time::timeout(Duration::from_millis(10), self.inner.idle.notified()).await;
        }
        let left = self.inner.in_flight.load(Ordering::SeqCst);
        if left > 0 {
            tracing::warn!(
                in_flight = left,
                "shutdown timeout reached with requests still running"
            );
        }
        handle.stop(true).await;
    }

    /// Completes once the gateway starts stopping (at once if it has).
    pub async fn draining(&self) {
        loop {
            let notified = self.inner.stopping.notified();
            tokio::pin!(notified);
            // Registered before the check, so a stop in between is not missed.
            notified.as_mut().enable();
            if self.inner.draining.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::SeqCst)
    }
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(drain) = req.app_data::<web::Data<Drain>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    // Count first, then look at the flag: a stop that sees zero in flight has
    // set the flag before, so this request will see it and be refused.
    drain.inner.in_flight.fetch_add(1, Ordering::SeqCst);
    let guard = InFlight(drain.inner.clone());
    if drain.inner.draining.load(Ordering::SeqCst) {
        drop(guard);
        let mut response = AppError::ShuttingDown.error_response();
        response
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
        return Ok(req.into_response(response).map_into_right_body());
    }
    let response = next.call(req).await;
    drop(guard);
    response.map(ServiceResponse::map_into_left_body)
}
