//! The depth limit, counted apart for introspection. The engine's own limit counts every
//! field, so the standard introspection query of graphql-js (what GraphiQL, Apollo,
//! graphql-codegen, Altair and Postman send: `args { type { ofType { … } } }`) is deeper
//! than any sensible limit for our own types. Here our own fields count against
//! `max_depth`, and a `__schema` / `__type` subtree against its own, larger limit (the
//! schema bounds what it can return; the complexity limit still applies to both).

use std::collections::HashSet;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, Positioned, ServerError, ServerResult, Variables};

/// Introspection subtrees may nest this deep (graphql-js 16's query is 13 levels deep,
/// graphql-core's the same; 17's adds two).
pub const INTROSPECTION_DEPTH: usize = 20;

/// The extension; `max_depth` for our own types.
#[derive(Debug, Clone, Copy)]
pub struct DepthLimit {
    pub max_depth: usize,
    pub introspection_depth: usize,
}

impl ExtensionFactory for DepthLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

#[async_trait::async_trait]
impl Extension for DepthLimit {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let (own, introspection) = depths(&doc);
        if own > self.max_depth || introspection > self.introspection_depth {
            // The engine's own words for the same refusal.
            return Err(ServerError::new("Query is nested too deep.", None));
        }
        Ok(doc)
    }
}

/// The deepest nesting of our own fields, and of introspection fields, over all
/// operations (fragments inlined; a fragment cycle — refused by validation anyway — is
/// cut where it repeats).
pub fn depths(doc: &ExecutableDocument) -> (usize, usize) {
    let mut walk = Walk {
        doc,
        own: 0,
        introspection: 0,
        open: HashSet::new(),
    };
    for (_, op) in doc.operations.iter() {
        walk.set(&op.node.selection_set, 0, None);
    }
    (walk.own, walk.introspection)
}

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    own: usize,
    introspection: usize,
    /// Fragments being expanded on the current path.
    open: HashSet<&'a Name>,
}

impl<'a> Walk<'a> {
    /// `own`: depth of our own fields above; `intro`: depth inside an introspection
    /// subtree, once in one.
    fn set(&mut self, set: &'a Positioned<SelectionSet>, own: usize, intro: Option<usize>) {
        for item in &set.node.items {
            match &item.node {
                Selection::Field(field) => {
                    let name = field.node.name.node.as_str();
                    let intro = match intro {
                        Some(d) => Some(d + 1),
                        None if name == "__schema" || name == "__type" => Some(1),
                        None => None,
                    };
                    let own = if intro.is_some() { own } else { own + 1 };
                    self.own = self.own.max(own);
                    if let Some(d) = intro {
                        self.introspection = self.introspection.max(d);
                    }
                    self.set(&field.node.selection_set, own, intro);
                }
                Selection::InlineFragment(f) => self.set(&f.node.selection_set, own, intro),
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    if let Some(fragment) = self.doc.fragments.get(name)
                        && self.open.insert(name)
                    {
                        self.set(&fragment.node.selection_set, own, intro);
                        self.open.remove(name);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(q: &str) -> (usize, usize) {
        depths(&async_graphql::parser::parse_query(q).expect("parses"))
    }

    #[test]
    fn own_fields_and_introspection_count_apart() {
        assert_eq!(of("{ viewer { tenant { name } } }"), (3, 0));
        assert_eq!(of("{ viewer { __typename tenant { __typename } } }"), (3, 0));
        assert_eq!(of("{ __schema { types { fields { name } } } }"), (0, 4));
        assert_eq!(
            of("{ viewer { ...V } } fragment V on Viewer { tenant { ...T } } fragment T on Tenant { name }"),
            (3, 0)
        );
        // A cycle does not loop.
        assert_eq!(
            of("{ viewer { ...A } } fragment A on Viewer { ...A tenant { name } }"),
            (3, 0)
        );
    }
}
