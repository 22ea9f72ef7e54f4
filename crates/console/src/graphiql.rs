//! GraphiQL, served from the binary like the console: React and GraphiQL taken unchanged
//! from their npm packages (`graphiql/SOURCES` names each file with its version and
//! SHA-384; `graphiql/update.sh` fetches them again), our page and start-up script, under
//! a Content-Security-Policy that lets the page load nothing from, and send nothing to,
//! another origin. Operators paste tokens into this page, so nothing on it comes from a
//! CDN.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::{Asset, assets};

/// Where GraphiQL's files live (the page itself is `GET /graphql`).
pub const BASE: &str = "/graphiql";

/// GraphiQL's policy: the console's, with `data:` fonts (GraphiQL's stylesheet embeds them).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The digests of the packaged files (`name` → `sha384-…`).
pub const SOURCES: &str = include_str!("../graphiql/SOURCES");

const ASSETS: &[Asset] = assets! {"graphiql";
    "graphiql.min.css" => "text/css; charset=utf-8",
    "page.css" => "text/css; charset=utf-8",
    "react.production.min.js" => "text/javascript; charset=utf-8",
    "react-dom.production.min.js" => "text/javascript; charset=utf-8",
    "graphiql.min.js" => "text/javascript; charset=utf-8",
    "init.js" => "text/javascript; charset=utf-8",
};

/// The `integrity` attribute of a packaged file, from `SOURCES` (empty for our own).
fn integrity(name: &str) -> String {
    SOURCES
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace().skip(2);
            Some((parts.next()?, parts.next()?))
        })
        .find(|(n, _)| *n == name)
        .map(|(_, digest)| format!(" integrity=\"{digest}\""))
        .unwrap_or_default()
}

/// The page of `GET /graphql` when GraphiQL is on.
pub fn page() -> Response {
    let style = |name: &str| format!("<link rel=\"stylesheet\" href=\"{BASE}/{name}\"{}>", integrity(name));
    let script = |name: &str| format!("<script src=\"{BASE}/{name}\"{}></script>", integrity(name));
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Mailgate GraphiQL</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\">{}{}</head>\
         <body><div id=\"graphiql\">Loading…</div>{}{}{}{}</body></html>\n",
        style("graphiql.min.css"),
        style("page.css"),
        script("react.production.min.js"),
        script("react-dom.production.min.js"),
        script("graphiql.min.js"),
        script("init.js"),
    );
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    secure(&mut response);
    response
}

/// GraphiQL's files under [`BASE`].
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(
        "/graphiql/{file}",
        get(|Path(file): Path<String>| async move { serve(&file) }),
    )
}

fn serve(name: &str) -> Response {
    crate::serve_from(ASSETS, name, secure)
}

fn secure(response: &mut Response) {
    crate::secure(response);
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use sha2::Digest as _;

    use super::*;

    #[test]
    fn every_packaged_file_matches_its_digest_and_the_page_checks_it() {
        let mut checked = 0;
        for line in SOURCES.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let [package, _, name, digest] = parts[..] else {
                panic!("SOURCES line: {line}");
            };
            assert!(
                package.rsplit_once('@').is_some_and(|(_, v)| v.split('.').count() == 3),
                "{package} is pinned to one version"
            );
            let asset = ASSETS.iter().find(|a| a.name == name).expect("served");
            let got = format!(
                "sha384-{}",
                base64::engine::general_purpose::STANDARD.encode(sha2::Sha384::digest(asset.body))
            );
            assert_eq!(got, digest, "{name}");
            checked += 1;
        }
        assert_eq!(checked, 4);
        let page = page();
        assert!(
            page.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self';")
        );
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_runs_no_inline_script() {
        let body = futures_body(page());
        assert!(!body.contains("://"), "no other origin: {body}");
        assert!(!body.contains("<script>"), "no inline script");
        assert_eq!(body.matches("integrity=\"sha384-").count(), 4, "{body}");
    }

    fn futures_body(response: Response) -> String {
        let rt = tokio_rt();
        rt.block_on(async move {
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            String::from_utf8(bytes.to_vec()).expect("utf-8")
        })
    }

    fn tokio_rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().build().expect("runtime")
    }
}
