//! The web console: a small single-page app served at `/console`, its assets compiled
//! into the binary (no CDN, nothing fetched at run time).
//!
//! The pages talk only to the management API (`/api/v1/*`) with the session cookie and
//! CSRF token from login; nothing here reads the store. Every console response carries a
//! strict Content-Security-Policy (`default-src 'self'`, no inline script or style), so
//! the app builds its DOM with `textContent` and never parses strings as HTML.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::app::AppState;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("console/assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Everything the console serves; `index.html` answers `/console/`.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("chart.js", JS),
    asset!("dashboard.js", JS),
    asset!("keys.js", JS),
    asset!("keypage.js", JS),
    asset!("connect.js", JS),
    asset!("billing.js", JS),
    asset!("security.js", JS),
    asset!("alerts.js", JS),
    asset!("account.js", JS),
    asset!("operator.js", JS),
    asset!("privacy.js", JS),
];

/// The policy on every console response: only our own origin, no inline code, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(|| async { serve("index.html") }))
        .route(
            "/console/{file}",
            get(|Path(file): Path<String>| async move { serve(&file) }),
        )
}

fn serve(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return secured((StatusCode::NOT_FOUND, "not found").into_response());
    };
    let mut response = asset.body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    secured(response)
}

/// Adds the browser hardening headers to a console response.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_the_pages_import_is_embedded() {
        for asset in ASSETS.iter().filter(|a| a.content_type == JS) {
            let text = std::str::from_utf8(asset.body).unwrap();
            // Module imports only: a snippet shown to users may start a line with `import`.
            let imports = text
                .lines()
                .filter(|l| l.starts_with("import ") && l.contains(" from \"./"));
            for line in imports {
                let file = line
                    .rsplit_once("\"./")
                    .map(|(_, f)| f.trim_end_matches(['"', ';']))
                    .unwrap();
                assert!(
                    ASSETS.iter().any(|a| a.name == file),
                    "{} imports {file}, which is not embedded",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn no_asset_uses_inline_script_style_or_remote_origins() {
        for asset in ASSETS {
            let text = String::from_utf8_lossy(asset.body);
            assert!(!text.contains("innerHTML"), "{} uses innerHTML", asset.name);
            assert!(
                !text.contains("style=\""),
                "{} has inline style",
                asset.name
            );
            let remote = text
                .match_indices("://")
                .any(|(i, _)| !text[i..].starts_with("://www.w3.org/2000/svg"));
            assert!(!remote, "{} names a remote origin", asset.name);
        }
    }
}
