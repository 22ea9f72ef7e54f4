//! The console: a tenant admin's "Settings > Mail server" screen and an operator's
//! tenants-and-plans screen, as plain HTML, CSS and JavaScript modules that call the
//! GraphQL API. Every file is compiled into the binary (`include_bytes!`), so the console
//! works on a closed network and needs no Node toolchain; the Content-Security-Policy
//! lets a page load nothing from, and send nothing to, any other origin.

pub mod graphiql;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// Where the console lives.
pub const BASE: &str = "/console";

/// The policy every console response carries: scripts, styles, images and API calls from
/// this origin only; no inline script or style, no frames, no plugins, no form posts.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One file served from the binary.
pub(crate) struct Asset {
    pub(crate) name: &'static str,
    pub(crate) content_type: &'static str,
    pub(crate) body: &'static [u8],
}

/// A table of [`Asset`]s from a folder beside `src/` (`assets!("assets"; "a.js" => "…")`).
macro_rules! assets {
    ($dir:literal; $($name:literal => $type:literal),* $(,)?) => {
        &[$(crate::Asset { name: $name, content_type: $type, body: include_bytes!(concat!("../", $dir, "/", $name)) }),*]
    };
}
pub(crate) use assets;

/// The file `name` of `table` (or 404), with the headers `secure` gives every response.
pub(crate) fn serve_from(table: &[Asset], name: &str, secure: fn(&mut Response)) -> Response {
    let mut response = match table.iter().find(|a| a.name == name) {
        Some(asset) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type))],
            asset.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    secure(&mut response);
    response
}

const ASSETS: &[Asset] = assets! {"assets";
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "favicon.svg" => "image/svg+xml",
    "app.js" => "text/javascript; charset=utf-8",
    "api.js" => "text/javascript; charset=utf-8",
    "i18n.js" => "text/javascript; charset=utf-8",
    "dom.js" => "text/javascript; charset=utf-8",
    "form.js" => "text/javascript; charset=utf-8",
    "tenant.js" => "text/javascript; charset=utf-8",
    "operator.js" => "text/javascript; charset=utf-8",
    "webhooks.js" => "text/javascript; charset=utf-8",
    "mailbox.js" => "text/javascript; charset=utf-8",
};

/// The names of the files served under [`BASE`].
pub fn asset_names() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.name)
}

/// The console's routes: `/console` (redirects to `/console/`), `/console/` (the page,
/// titled `product`: the name tenants know the service by) and `/console/<file>`.
pub fn router<S: Clone + Send + Sync + 'static>(product: &str) -> Router<S> {
    let page = std::sync::Arc::<str>::from(page(product));
    let index = page.clone();
    Router::new()
        .route(BASE, get(|| async { Redirect::permanent("/console/") }))
        .route("/console/", get(move || async move { serve_page(&index) }))
        .route(
            "/console/{file}",
            get(|Path(file): Path<String>| async move {
                if file == "index.html" {
                    serve_page(&page)
                } else {
                    serve(&file)
                }
            }),
        )
}

/// `index.html` with the service's name as its title, header and `application-name`
/// (which the scripts read), HTML-escaped.
fn page(product: &str) -> String {
    let name = escape(product);
    let text = std::str::from_utf8(ASSETS[0].body).unwrap_or_default();
    text.replace("<title>Mailgate</title>", &format!("<title>{name}</title>"))
        .replace(
            "<span id=\"brand-title\">Mailgate</span>",
            &format!("<span id=\"brand-title\">{name}</span>"),
        )
        .replace(
            "<meta name=\"application-name\" content=\"Mailgate\">",
            &format!("<meta name=\"application-name\" content=\"{name}\">"),
        )
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn serve_page(page: &str) -> Response {
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        page.to_owned(),
    )
        .into_response();
    secure(&mut response);
    response
}

fn serve(name: &str) -> Response {
    serve_from(ASSETS, name, secure)
}

/// The headers every console response carries.
pub(crate) fn secure(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    // The files change with the binary: revalidate each time (a few KiB, on loopback or
    // a LAN), so an upgrade never mixes old and new modules.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_named_once_and_not_empty() {
        let mut names: Vec<_> = asset_names().collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        assert!(ASSETS.iter().all(|a| !a.body.is_empty()));
    }

    #[test]
    fn no_asset_names_another_origin() {
        // A URL of another host in a file would be a request the policy refuses, or a
        // sign that something is loaded from outside.
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).expect("text");
            for scheme in ["http://", "https://", "//cdn", "ws://", "wss://"] {
                let outside = text
                    .match_indices(scheme)
                    .filter(|(i, _)| !text[..*i].ends_with("xmlns=\"") && !text[*i..].starts_with("http://www.w3.org/"))
                    .count();
                assert_eq!(outside, 0, "{} names {scheme}", asset.name);
            }
        }
    }

    #[test]
    fn the_page_carries_the_operators_name_escaped() {
        let page = page("さくら <配信> & \"Co\"");
        let escaped = "さくら &lt;配信&gt; &amp; &quot;Co&quot;";
        assert!(page.contains(&format!("<title>{escaped}</title>")), "{page}");
        assert!(
            page.contains(&format!("<span id=\"brand-title\">{escaped}</span>")),
            "{page}"
        );
        assert!(
            page.contains(&format!("<meta name=\"application-name\" content=\"{escaped}\">")),
            "{page}"
        );
        assert!(!page.contains("Mailgate"), "{page}");
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = std::str::from_utf8(ASSETS[0].body).expect("text");
        assert!(!page.contains("<script>"), "inline script");
        assert!(!page.contains("style="), "inline style");
        assert!(!page.contains("<style"), "inline style block");
        // No inline event handler (` onclick=` and the like).
        let handlers = page.split(char::is_whitespace).filter(|word| {
            word.strip_prefix("on")
                .and_then(|rest| rest.split_once('='))
                .is_some_and(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase()))
        });
        assert_eq!(handlers.count(), 0, "inline event handler");
    }
}
