//! The web console at `/ui`: static files from `ui/` embedded in the binary (no file is read at
//! run time, nothing comes from another host), served with their content type, an `ETag` and
//! `Cache-Control: no-cache` (the browser revalidates and gets a `304` while the binary is the
//! same), and a content security policy allowing only this origin. A path under `/ui/` that names
//! no file and has no file extension answers the page itself, so the console's own links
//! (`/ui/topics/orders`) can be reloaded and bookmarked.
//!
//! The pages call the same JSON endpoints as any client ([`super::browse`], [`super::history`],
//! [`super::stats`], [`super::rest`]).

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{codes, error_response};

/// One embedded file.
pub struct Asset {
    /// Path under `/ui/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../../ui/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console.
pub static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/chart.js", JS),
    asset!("js/format.js", JS),
    asset!("js/overview.js", JS),
    asset!("js/topics.js", JS),
    asset!("js/topic.js", JS),
    asset!("js/browser.js", JS),
    asset!("js/groups.js", JS),
];

/// The embedded size of the whole console, in bytes.
pub fn total_bytes() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// Each asset's ETag (a hash of its bytes), computed once.
fn etag(i: usize) -> &'static str {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    &TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                // FNV-1a 64: enough to tell two builds' files apart.
                let h = a.body.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                });
                format!("\"{h:016x}-{:x}\"", a.body.len())
            })
            .collect()
    })[i]
}

fn serve(i: usize, req: &HeaderMap) -> Response {
    let a = &ASSETS[i];
    let tag = etag(i);
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, a.content_type)], a.body).into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    resp
}

/// `GET /ui` and `GET /ui/`: the page.
pub async fn index(req: HeaderMap) -> Response {
    serve(0, &req)
}

/// `GET /ui/{*path}`: a file, or the page for a console route.
pub async fn file(Path(path): Path<String>, req: HeaderMap) -> Response {
    if let Some(i) = ASSETS.iter().position(|a| a.path == path) {
        return serve(i, &req);
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    if last.contains('.') {
        return error_response(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            "no such file in the console",
        );
    }
    serve(0, &req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_console_is_under_300_kb() {
        let total = total_bytes();
        assert!(total > 10_000, "assets missing? {total} bytes");
        assert!(total < 300 * 1024, "the console is {total} bytes");
    }

    #[test]
    fn every_file_the_page_links_is_embedded() {
        let index = std::str::from_utf8(ASSETS[0].body).expect("utf-8");
        for a in &ASSETS[1..] {
            assert!(!a.body.is_empty(), "{} is empty", a.path);
        }
        for link in index.split("\"/ui/").skip(1) {
            let path = link.split('"').next().unwrap_or_default();
            // Links to pages (no file extension) are served by the fallback.
            if !path.contains('.') {
                continue;
            }
            assert!(
                ASSETS.iter().any(|a| a.path == path),
                "index.html links /ui/{path}, which is not embedded"
            );
        }
        // Every module import resolves to an embedded file.
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(a.body).expect("utf-8");
            for import in text.split("from './").skip(1) {
                let name = import.split('\'').next().unwrap_or_default();
                let path = format!("js/{name}");
                assert!(
                    ASSETS.iter().any(|x| x.path == path),
                    "{} imports {path}, which is not embedded",
                    a.path
                );
            }
        }
    }
}
