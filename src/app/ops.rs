//! Operations endpoints: liveness, readiness and Prometheus metrics. `/metrics`
//! answers only the configured addresses (the peer address is checked in
//! memory and forgotten); everyone else gets the same 404 as any unknown path.

use actix_web::{HttpRequest, HttpResponse, web};
use ipnet::IpNet;

use crate::bus::{DurabilityWatch, Store};
use crate::error::AppError;
use crate::telemetry::Metrics;

/// Who may read `/metrics`, and whether it answers by the minute
/// (`server.metrics_by_minute`).
pub struct MetricsAccess(pub Vec<IpNet>, pub bool);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/healthz", web::head().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}

/// Ready when Redis answers and keeps what it acknowledges. Durability is
/// asked again only after Redis was unreachable (it may come back replaced
/// or reconfigured); the background task asks every minute. The body names
/// no Redis setting (anyone may read it): the log says which and the fix.
async fn readyz(store: web::Data<Store>, durability: web::Data<DurabilityWatch>) -> HttpResponse {
    let not_ready = |body: &'static str| {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain; charset=utf-8")
            .body(body)
    };
    let checked = match store.ping().await {
        Ok(()) => durability.durable().await,
        Err(e) => {
            durability.forget();
            Err(e)
        }
    };
    match checked {
        Ok(true) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body("ready\n"),
        Ok(false) => not_ready("not ready: redis could lose acknowledged tips (see the log)\n"),
        Err(e) => {
            tracing::warn!(code = "store-unavailable", error = %e, "not ready");
            not_ready("not ready: redis unavailable\n")
        }
    }
}

async fn metrics(
    req: HttpRequest,
    access: web::Data<MetricsAccess>,
    metrics: web::Data<Metrics>,
) -> Result<HttpResponse, AppError> {
    let allowed = req
        .peer_addr()
        .is_some_and(|peer| access.0.iter().any(|net| net.contains(&peer.ip())));
    if !allowed {
        return Err(AppError::NotFound);
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(if access.1 {
            metrics.published()
        } else {
            metrics.render()
        }))
}
