//! Serves the mediator app: `/m` redirects to `/m/`, `/m/` is the app's page,
//! `/m/<file>` its script, stylesheet, service worker, manifest and icons.
//!
//! The files are the build of `web/mediator/` (`scripts/build-web.sh`),
//! embedded at compile time by `build.rs`: nothing is read from disk and no
//! third party serves a byte of the page that holds the device's keys.
//! Files with a content hash in their name (`app.<hash>.js`) are cached for a
//! year; the page, the service worker and the manifest keep fixed names and
//! are revalidated every time (`no-cache` with an ETag), so a new build
//! reaches phones on their next visit.
//!
//! Every answer here carries [`APP_CONTENT_SECURITY_POLICY`]: scripts,
//! styles, fetches, the manifest and the service worker from this origin
//! only, nothing inline. The gateway's global headers come from actix-web's
//! `DefaultHeaders`, which adds a header only when the response does not
//! already have it (actix-web 4, `middleware/default_headers.rs`), so this
//! policy is the one browsers get, once; a test below composes both and
//! checks it.
//!
//! Untrusted: the requested file name, only ever compared with the embedded
//! names, and `If-None-Match`, only ever compared with an ETag.

use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use sha2::{Digest, Sha256};

use crate::error::AppError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/mediator_assets.rs"));
}

/// The mediator app's Content-Security-Policy.
///
/// `img-src blob:`: a tip's image attachments are decrypted on the phone and
/// shown from `blob:` URLs the page makes itself (`URL.createObjectURL` in
/// `alerts.js`); a `blob:` URL can only come from this origin's own scripts,
/// so this lets no outside image in.
pub const APP_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; manifest-src 'self'; \
     worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const REVALIDATE: &str = "no-cache";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// An embedded file, ready to serve.
struct Asset {
    name: &'static str,
    body: &'static [u8],
    content_type: &'static str,
    cache_control: &'static str,
    etag: String,
}

fn content_type(name: &str) -> Option<&'static str> {
    let (_, extension) = name.rsplit_once('.')?;
    Some(match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "webmanifest" => "application/manifest+json",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => return None,
    })
}

/// Whether the name carries build.mjs's content hash: `stem.<10 hex>.ext`.
fn is_hashed(name: &str) -> bool {
    let mut parts = name.rsplit('.');
    let (_, hash, stem) = (parts.next(), parts.next(), parts.next());
    stem.is_some_and(|s| !s.is_empty())
        && hash.is_some_and(|h| {
            h.len() == 10
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    embedded::EMBEDDED
        .iter()
        .filter_map(|&(name, body)| {
            let content_type = content_type(name)?;
            let digest = Sha256::digest(body);
            Some(Asset {
                name,
                body,
                content_type,
                cache_control: if is_hashed(name) {
                    IMMUTABLE
                } else {
                    REVALIDATE
                },
                etag: format!("\"{}\"", hex::encode(digest.get(..12).unwrap_or_default())),
            })
        })
        .collect()
});

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/m")
            .route(web::get().to(to_app))
            .route(web::head().to(to_app))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/m/")
            .route(web::get().to(page))
            .route(web::head().to(page))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/m/{file}")
            .route(web::get().to(file))
            .route(web::head().to(file))
            .default_service(web::to(method_not_allowed)),
    );
}

async fn method_not_allowed() -> Result<HttpResponse, AppError> {
    Err(AppError::MethodNotAllowed)
}

/// `/m` → `/m/`: the service worker's scope and every relative URL assume the
/// slash. The browser keeps the `#invite=` fragment across the redirect.
async fn to_app() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/m/"))
        .insert_header((header::CONTENT_SECURITY_POLICY, APP_CONTENT_SECURITY_POLICY))
        .finish()
}

async fn page(req: HttpRequest) -> Result<HttpResponse, AppError> {
    serve(&req, "index.html")
}

async fn file(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, AppError> {
    serve(&req, &name)
}

fn serve(req: &HttpRequest, name: &str) -> Result<HttpResponse, AppError> {
    let asset = find(name).ok_or(AppError::NotFound)?;
    let fresh = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == asset.etag || tag.trim() == "*");
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CONTENT_SECURITY_POLICY, APP_CONTENT_SECURITY_POLICY))
        .insert_header((header::CACHE_CONTROL, asset.cache_control))
        .insert_header((header::ETAG, asset.etag.as_str()));
    if fresh {
        return Ok(response.finish());
    }
    Ok(response
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        ))
        .body(asset.body))
}

#[cfg(test)]
mod tests {
    use actix_web::App;
    use actix_web::middleware::DefaultHeaders;
    use actix_web::test as actix_test;

    use super::*;

    async fn get(path: &str, headers: &[(&str, &str)]) -> actix_web::dev::ServiceResponse {
        // As the gateway composes it: the global headers around these routes.
        let app = actix_test::init_service(
            App::new()
                .wrap(DefaultHeaders::new().add((
                    header::CONTENT_SECURITY_POLICY,
                    crate::server::CONTENT_SECURITY_POLICY,
                )))
                .configure(routes),
        )
        .await;
        let mut req = actix_test::TestRequest::get().uri(path);
        for &(name, value) in headers {
            req = req.insert_header((name, value));
        }
        actix_test::call_service(&app, req.to_request()).await
    }

    fn header<'a>(res: &'a actix_web::dev::ServiceResponse, name: &str) -> Vec<&'a str> {
        res.headers()
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    fn hashed(prefix: &str, suffix: &str) -> &'static str {
        ASSETS
            .iter()
            .find(|a| a.name.starts_with(prefix) && a.name.ends_with(suffix))
            .map(|a| a.name)
            .unwrap()
    }

    #[actix_web::test]
    async fn the_app_page_gets_the_app_policy_once_not_the_global_one() {
        let res = get("/m/", &[]).await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            header(&res, "content-security-policy"),
            [APP_CONTENT_SECURITY_POLICY]
        );
        assert_eq!(header(&res, "content-type"), ["text/html; charset=utf-8"]);
        assert_eq!(header(&res, "cache-control"), ["no-cache"]);
        let body = actix_test::read_body(res).await;
        let html = std::str::from_utf8(&body).unwrap();
        assert!(
            html.contains("<script type=\"module\" src=\"/m/app."),
            "{html}"
        );
        // Nothing inline: the policy would block it, so the page must not need it.
        assert!(!html.contains("<style"));
        assert!(!html.contains(" style="));
        assert_eq!(html.matches("<script").count(), 1);
    }

    #[actix_web::test]
    async fn every_file_has_its_type_and_hashed_files_are_kept_for_a_year() {
        for (path, content_type, cache) in [
            (
                format!("/m/{}", hashed("app.", ".js")),
                "text/javascript; charset=utf-8",
                IMMUTABLE,
            ),
            (
                format!("/m/{}", hashed("app.", ".css")),
                "text/css; charset=utf-8",
                IMMUTABLE,
            ),
            (
                format!("/m/{}", hashed("icon-192.", ".png")),
                "image/png",
                IMMUTABLE,
            ),
            (
                format!("/m/{}", hashed("icon-512.", ".png")),
                "image/png",
                IMMUTABLE,
            ),
            (
                "/m/sw.js".to_owned(),
                "text/javascript; charset=utf-8",
                REVALIDATE,
            ),
            (
                "/m/manifest.webmanifest".to_owned(),
                "application/manifest+json",
                REVALIDATE,
            ),
        ] {
            let res = get(&path, &[]).await;
            assert_eq!(res.status(), 200, "{path}");
            assert_eq!(header(&res, "content-type"), [content_type], "{path}");
            assert_eq!(header(&res, "cache-control"), [cache], "{path}");
            assert_eq!(
                header(&res, "content-security-policy"),
                [APP_CONTENT_SECURITY_POLICY],
                "{path}"
            );
        }
    }

    #[actix_web::test]
    async fn the_manifest_names_the_app_scope_and_icons_that_exist() {
        let res = get("/m/manifest.webmanifest", &[]).await;
        let manifest: serde_json::Value =
            serde_json::from_slice(&actix_test::read_body(res).await).unwrap();
        assert_eq!(manifest["start_url"], "/m/");
        assert_eq!(manifest["scope"], "/m/");
        assert_eq!(manifest["display"], "standalone");
        for icon in manifest["icons"].as_array().unwrap() {
            let src = icon["src"].as_str().unwrap();
            let res = get(src, &[]).await;
            assert_eq!(res.status(), 200, "{src}");
            let body = actix_test::read_body(res).await;
            assert!(body.starts_with(b"\x89PNG\r\n\x1a\n"), "{src}");
        }
    }

    #[actix_web::test]
    async fn a_known_etag_gets_not_modified() {
        let res = get("/m/sw.js", &[]).await;
        let etag = header(&res, "etag")[0].to_owned();
        let res = get("/m/sw.js", &[("if-none-match", &etag)]).await;
        assert_eq!(res.status(), 304);
        assert!(actix_test::read_body(res).await.is_empty());
        let res = get("/m/sw.js", &[("if-none-match", "\"other\"")]).await;
        assert_eq!(res.status(), 200);
    }

    #[actix_web::test]
    async fn the_bare_path_redirects_to_the_app() {
        let res = get("/m", &[]).await;
        assert_eq!(res.status(), 308);
        assert_eq!(header(&res, "location"), ["/m/"]);
    }

    #[actix_web::test]
    async fn unknown_or_unsafe_names_are_not_found() {
        for path in [
            "/m/nope.js",
            "/m/..%2Fbuild.rs",
            "/m/app.js",
            "/m/%2e%2e",
            "/m/index.html%00",
        ] {
            assert_eq!(get(path, &[]).await.status(), 404, "{path}");
        }
    }

    #[test]
    fn hashed_names_are_recognised_and_fixed_names_are_not() {
        assert!(is_hashed("app.0123456789.js"));
        assert!(is_hashed("icon-192.abcdef0123.png"));
        for name in [
            "sw.js",
            "index.html",
            "manifest.webmanifest",
            "app.js",
            ".0123456789.js",
            "app.0123456789",
            "app.ABCDEF0123.js",
        ] {
            assert!(!is_hashed(name), "{name}");
        }
    }

    #[test]
    fn the_policy_lets_in_the_apps_own_blob_images_and_nothing_from_elsewhere() {
        let directive = |name: &str| {
            APP_CONTENT_SECURITY_POLICY
                .split(';')
                .map(str::trim)
                .find_map(|d| d.strip_prefix(name)?.strip_prefix(' '))
                .map(|v| v.split(' ').collect::<Vec<_>>())
        };
        assert_eq!(directive("img-src").unwrap(), ["'self'", "data:", "blob:"]);
        // blob: for images only: never for scripts, workers or fetches.
        for name in [
            "default-src",
            "script-src",
            "worker-src",
            "connect-src",
            "style-src",
        ] {
            let sources = directive(name).unwrap();
            assert!(!sources.contains(&"blob:"), "{name}: {sources:?}");
            assert!(
                !sources.iter().any(|s| s.contains("://") || *s == "*"),
                "{name}: {sources:?}"
            );
        }
    }
}
