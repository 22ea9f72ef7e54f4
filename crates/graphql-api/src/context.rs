//! What each request carries into the resolvers: the authenticated caller (if any) and
//! the language to answer in.

use domain::{Caller, Locale};

/// Per-request data, attached with `Request::data`.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub caller: Option<Caller>,
    pub locale: Locale,
}

impl RequestContext {
    /// The caller, or `UNAUTHENTICATED`.
    pub fn caller(&self) -> domain::Result<&Caller> {
        self.caller.as_ref().ok_or(domain::Error::Unauthenticated)
    }
}
