//! Pagination, once for every list: the page size argument, opaque cursors, `PageInfo`,
//! and turning a domain page into edges.

use std::str::FromStr;

use async_graphql::SimpleObject;
use base64::Engine as _;
use domain::Locale;
use domain::error::FieldCode;
use domain::services::Page;

use crate::catalogue::Text;
use crate::error::validation_error;

#[derive(SimpleObject, Debug)]
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// What a page of `first` (default `default`) costs in the complexity limit: each of its
/// fields once per row it may return (the largest page for a value out of range, which
/// the resolver refuses anyway), so a wide page or many aliased pages reach the limit.
pub(crate) fn page_complexity(first: Option<i32>, default: i32, child_complexity: usize) -> usize {
    let rows = usize::try_from(first.unwrap_or(default).clamp(1, 100)).unwrap_or(100);
    rows.saturating_mul(child_complexity).saturating_add(1)
}

/// The `first` argument: 1–100, `default` when absent.
pub(crate) fn page_size(first: Option<i32>, default: i32, l: Locale) -> async_graphql::Result<u64> {
    let first = first.unwrap_or(default);
    if (1..=100).contains(&first) {
        Ok(u64::try_from(first).unwrap_or(1))
    } else {
        Err(validation_error(
            "first",
            FieldCode::OutOfRange,
            Text::PageSizeOutOfRange,
            l,
        ))
    }
}

/// The `after` argument: a cursor this API handed out for a key of type `K`.
pub(crate) fn after<K: FromStr>(after: Option<String>, l: Locale) -> async_graphql::Result<Option<K>> {
    let Some(cursor) = after else {
        return Ok(None);
    };
    decode_cursor(&cursor)
        .and_then(|raw| K::from_str(&raw).ok())
        .map(Some)
        .ok_or_else(|| validation_error("after", FieldCode::InvalidFormat, Text::CursorInvalid, l))
}

/// A domain page as `(cursor, node)` edges and its `PageInfo`; `key` gives the value
/// the cursor stands for.
pub(crate) fn edges<T, N, K: ToString>(
    page: Page<T>,
    key: impl Fn(&T) -> K,
    node: impl Fn(T) -> N,
) -> (Vec<(String, N)>, PageInfo) {
    let edges: Vec<(String, N)> = page
        .items
        .into_iter()
        .map(|item| (encode_cursor(&key(&item).to_string()), node(item)))
        .collect();
    let info = PageInfo {
        has_next_page: page.has_next_page,
        end_cursor: edges.last().map(|(cursor, _)| cursor.clone()),
    };
    (edges, info)
}

/// Opaque pagination cursor.
fn encode_cursor(raw: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok()
}
