//! The bounded cache of parsed GraphQL documents that the HTTP layer consults before
//! executing a request.

/// Parsed GraphQL documents by query text. A frontend sends a handful of distinct
/// queries; parsing was the largest cost of a request (about 10 µs of 26), so each text
/// is parsed once. Validation still runs on every request. Bounded: once full, new texts
/// are parsed per request as before (nothing is evicted, so a flood of distinct queries
/// cannot grow it or push out the real ones).
#[derive(Debug, Default)]
pub struct QueryCache {
    docs: std::sync::RwLock<std::collections::HashMap<String, async_graphql::parser::types::ExecutableDocument>>,
}

impl QueryCache {
    /// Distinct query texts kept at most.
    pub const MAX_ENTRIES: usize = 512;
    /// Longer texts are not cached.
    pub const MAX_QUERY_BYTES: usize = 16 * 1024;

    /// Attaches the cached parse of the request's query, parsing and caching it if new.
    /// Texts that do not parse are left to the engine, which reports the error.
    pub fn prepare(&self, mut request: async_graphql::Request) -> async_graphql::Request {
        if request.query.len() > Self::MAX_QUERY_BYTES {
            return request;
        }
        let cached = self.docs.read().ok().and_then(|docs| docs.get(&request.query).cloned());
        if let Some(doc) = cached {
            request.set_parsed_query(doc);
            return request;
        }
        if let Ok(doc) = async_graphql::parser::parse_query(&request.query)
            && let Ok(mut docs) = self.docs.write()
        {
            if docs.len() < Self::MAX_ENTRIES {
                docs.insert(request.query.clone(), doc.clone());
            }
            request.set_parsed_query(doc);
        }
        request
    }
}
