//! Operations endpoints: liveness, readiness and Prometheus metrics. `/metrics`
//! answers only the configured addresses (the peer address is checked in
//! memory and forgotten); everyone else gets the same 404 as any unknown path.

use actix_web::{HttpRequest, HttpResponse, web};
use ipnet::IpNet;

use crate::bus::Store;
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

async fn readyz(store: web::Data<Store>) -> HttpResponse {
    match store.ping().await {
        Ok(()) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body("ready\n"),
        Err(e) => {
            tracing::warn!(code = "store-unavailable", error = %e, "not ready");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain; charset=utf-8")
                .body("not ready: redis unavailable\n")
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
