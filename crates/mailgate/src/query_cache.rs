//! The bounded cache of parsed GraphQL documents, with their shape and whether they
//! passed the engine's strict validation, that the HTTP layer consults before executing
//! a request.

use std::sync::Arc;

use async_graphql::parser::types::ExecutableDocument;
use graphql_api::{Shape, Verdict};

/// A request with its document parsed, the document's shape (`None` when the text
/// does not parse: the engine reports the error), and, for a cached text, its verdict.
#[derive(Debug)]
pub struct Prepared {
    pub request: async_graphql::Request,
    pub shape: Option<Shape>,
    pub verdict: Option<Arc<Verdict>>,
}

/// A cached text: its parse, its shape, its verdict.
type Entry = (ExecutableDocument, Shape, Arc<Verdict>);

/// Parsed GraphQL documents, their shapes and verdicts by query text. A frontend sends a
/// handful of distinct queries; parsing was the largest cost of a request (about 10 µs
/// of 26), so each text is parsed and measured once; the strict validation rules run
/// until a request of the text passes them (`graphql_api::validated`).
/// Bounded: once full, new texts are parsed per request as before (nothing is evicted,
/// so a flood of distinct queries cannot grow it or push out the real ones).
#[derive(Debug, Default)]
pub struct QueryCache {
    docs: std::sync::RwLock<std::collections::HashMap<String, Entry>>,
}

impl QueryCache {
    /// Distinct query texts kept at most.
    pub const MAX_ENTRIES: usize = 512;
    /// Longer texts are not cached.
    pub const MAX_QUERY_BYTES: usize = 16 * 1024;

    /// Whether the request's text is already parsed (then preparing it costs a lookup).
    pub fn knows(&self, request: &async_graphql::Request) -> bool {
        self.docs.read().is_ok_and(|docs| docs.contains_key(&request.query))
    }

    /// Attaches the parse of the request's query (cached, or parsed now and cached if
    /// small enough) and its shape. Parsing and measuring cost time linear in the text.
    pub fn prepare(&self, mut request: async_graphql::Request) -> Prepared {
        let cacheable = request.query.len() <= Self::MAX_QUERY_BYTES;
        if cacheable {
            let cached = self.docs.read().ok().and_then(|docs| docs.get(&request.query).cloned());
            if let Some((doc, shape, verdict)) = cached {
                request.set_parsed_query(doc);
                return Prepared {
                    request,
                    shape: Some(shape),
                    verdict: Some(verdict),
                };
            }
        }
        let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
            return Prepared {
                request,
                shape: None,
                verdict: None,
            };
        };
        let shape = Shape::of(&doc);
        let mut verdict = None;
        if cacheable
            && let Ok(mut docs) = self.docs.write()
            && docs.len() < Self::MAX_ENTRIES
        {
            // Another request of the same text may have put it there meanwhile: one verdict.
            let entry = docs
                .entry(request.query.clone())
                .or_insert_with(|| (doc.clone(), shape, Arc::default()));
            verdict = Some(entry.2.clone());
        }
        request.set_parsed_query(doc);
        Prepared {
            request,
            shape: Some(shape),
            verdict,
        }
    }
}
