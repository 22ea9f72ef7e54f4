//! `GET /oauth/{microsoft,google}/callback`: where Microsoft or Google sends the admin's
//! browser after a sign-in. Nothing is exchanged or stored here: the browser is sent on
//! (303) to the page the sign-in started from — the console, or the allow-listed return
//! URL sealed in the `state` — with `state` and `code` in the URL's fragment (never sent
//! to a server, so never in an access log), and that page completes the sign-in with
//! `completeMailboxConnection` under the admin's own token. That binds the sign-in to the
//! caller who started it, which a callback that trusted the `state` alone could not do.
//!
//! Microsoft's admin-consent answer (`admin_consent`, `tenant`) comes here too and goes
//! back to the console as `mailgate-consent=granted` (or the error).

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::app::App;

/// What a provider may put on the callback URL (RFC 6749 §4.1.2, §4.1.2.1; Microsoft's
/// admin consent). Anything else is ignored.
#[derive(Debug, Default, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    admin_consent: Option<String>,
}

/// The longest `code` or `state` passed on (Microsoft's codes are about 1–2 KB).
const MAX_PARAM: usize = 4096;

/// A value passed on only if it is short and made of URL-safe characters.
fn safe(value: Option<&str>) -> Option<&str> {
    value.filter(|v| {
        !v.is_empty()
            && v.len() <= MAX_PARAM
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~*!$'()+,;:@/=".contains(&b))
    })
}

fn fragment(pairs: &[(&str, &str)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    out.extend_pairs(pairs.iter().copied());
    out.finish()
}

pub async fn callback(
    State(app): State<std::sync::Arc<App>>,
    Path(provider): Path<String>,
    query: Result<Query<Callback>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if !matches!(provider.as_str(), "microsoft" | "google") {
        return StatusCode::NOT_FOUND.into_response();
    }
    // A query that does not parse is treated as one without a code: the console says so.
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let console = app.sign_in.console_url.clone();
    let (target, tail) = if let Some(granted) = query.admin_consent.as_deref() {
        let outcome = if granted.eq_ignore_ascii_case("true") {
            "granted"
        } else {
            "refused"
        };
        (console, fragment(&[("mailgate-consent", outcome)]))
    } else {
        let state = safe(query.state.as_deref());
        // Where to go back to: the return URL sealed in the state, if it opens and is
        // still on the list; the console otherwise (which then says what is wrong).
        let target = state
            .and_then(|s| app.state_seal.open_state(s, &app.sign_in.return_urls).ok())
            .and_then(|s| s.return_url().map(|u| u.as_str().to_owned()))
            .unwrap_or(console);
        let error = query.error.as_deref().map(|e| {
            if e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') && e.len() <= 64 {
                e
            } else {
                "invalid_request"
            }
        });
        let mut pairs = vec![("mailgate-sign-in", provider.as_str())];
        pairs.extend(state.map(|s| ("state", s)));
        match (error, safe(query.code.as_deref())) {
            (Some(e), _) => pairs.push(("error", e)),
            (None, Some(code)) => pairs.push(("code", code)),
            (None, None) => pairs.push(("error", "invalid_request")),
        }
        (target, fragment(&pairs))
    };
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, format!("{target}#{tail}")),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
    )
        .into_response()
}
