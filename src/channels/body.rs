//! Request bodies for every channel: content-type check and a size-limited
//! read. Headers and body are untrusted; every failure is an `AppError`.

use actix_web::http::header::{self, HeaderMap};
use actix_web::web;
use bytes::BytesMut;
use futures_util::StreamExt;

use crate::error::AppError;

/// How long a client may take to send its body once the headers are in.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Only the `expected` media type, in UTF-8 if a charset is named.
pub fn check_content_type(headers: &HeaderMap, expected: &str) -> Result<(), AppError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or(AppError::UnsupportedContentType)?;
    let mut parts = value.split(';').map(str::trim);
    let essence = parts.next().unwrap_or_default();
    if !essence.eq_ignore_ascii_case(expected) {
        return Err(AppError::UnsupportedContentType);
    }
    for param in parts {
        if let Some((name, val)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("charset")
            && !val.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
        {
            return Err(AppError::UnsupportedContentType);
        }
    }
    Ok(())
}

/// Reads the whole body, refusing more than `limit` bytes (before reading,
/// when Content-Length says so) and a body shorter than announced.
pub async fn read_body(
    headers: &HeaderMap,
    mut payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, AppError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(AppError::BodyTooLarge);
    }
    // Grow as bytes arrive rather than trust the declared length up front.
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(8192));
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(AppError::from)?;
            if body.len() + chunk.len() > limit {
                return Err(AppError::BodyTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    // actix's request timeout covers the headers only; a client trickling its
    // body must not hold a connection and a buffer for ever.
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .map_err(|_| AppError::BodyTimeout)??;
    Ok(body)
}
