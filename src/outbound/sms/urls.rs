//! The provider URLs the operator configures: parsed and checked once (https,
//! or http to a loopback stand-in; no credentials, query or fragment), and
//! extended by percent-encoded path segments. Trusted as configured.

use std::net::IpAddr;

use reqwest::Url;

use super::SendError;

pub(super) fn config_error(what: &str) -> SendError {
    SendError::Permanent(format!("invalid configuration: {what}"))
}

/// Parses a base URL. Plain http is allowed only to a loopback host, which is
/// where the test stand-ins live; anything else would put credentials on the
/// wire in clear.
pub(super) fn parse_base(raw: &str, name: &str) -> Result<Url, SendError> {
    let url = Url::parse(raw).map_err(|_| config_error(&format!("{name} is not a URL")))?;
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(config_error(&format!("{name} has no host")));
    }
    if has_userinfo(&url) || url.query().is_some() || url.fragment().is_some() {
        return Err(config_error(&format!(
            "{name} must not carry credentials, a query or a fragment"
        )));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err(config_error(&format!(
            "{name} must use https (plain http only to a loopback stand-in)"
        ))),
    }
}

pub(super) fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn has_userinfo(url: &Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// Appends path segments to a base URL; `path_segments_mut` percent-encodes
/// them, so no configured value can change the path's shape.
pub(super) fn with_segments(base: &Url, segments: &[&str], name: &str) -> Result<Url, SendError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| config_error(&format!("{name} has no host")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

pub(super) fn path_segments(url: &Url) -> Vec<String> {
    url.path_segments()
        .map(|segments| {
            segments
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}
