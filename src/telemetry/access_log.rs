//! The access log and error-page middleware. The access log records the route
//! *pattern* (never the raw path or query), method, status and latency: no
//! address, no user agent, no header, no body.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;

use super::Metrics;
use crate::error::{RenderedError, html_error_page, prefers_html};

pub async fn access_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let res = next.call(req).await?;
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = res.status().as_u16();
    if let Some(m) = metrics {
        m.http_responses
            .with_label_values(&[route.as_str(), &status.to_string()])
            .inc();
    }
    tracing::info!(
        target: "tipwire::access",
        method = %method,
        route = %route,
        status,
        ms = started.elapsed().as_secs_f64() * 1000.0,
    );
    Ok(res)
}

/// Renders error responses as plain HTML pages for browsers; programs keep JSON.
pub async fn error_pages(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let html = prefers_html(req.headers().get(header::ACCEPT));
    let res = next.call(req).await?.map_into_boxed_body();
    let rendered = res.response().extensions().get::<RenderedError>().copied();
    match rendered {
        Some(RenderedError(info)) if html => Ok(res.map_body(|head, _| {
            head.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            BoxBody::new(html_error_page(info))
        })),
        _ => Ok(res),
    }
}
