//! What a document costs before anything runs: its depth (our own fields and
//! introspection counted apart), the number of selections once every fragment is
//! expanded, how deep fragments nest, and whether they form a cycle — all found in one
//! pass that costs time linear in the document's size, whatever its fragments expand to.
//!
//! The engine's own checks (its depth and complexity visitors, its validation rules)
//! expand every fragment spread where it stands, so a 1 KB document of fragments that
//! each spread the next one twice costs them 2^n. Here each fragment is walked once
//! (its cost kept), a document that expands beyond `max_selections` or nests fragments
//! beyond `max_fragment_nesting` is refused, and a fragment cycle is refused, all before
//! the engine sees the document (the HTTP layer holds every document it hands the
//! engine to these limits), so its visitors only ever expand what is small.
//!
//! Depth: the engine's own limit counts every field, so the standard introspection query
//! of graphql-js (what GraphiQL, Apollo, graphql-codegen, Altair and Postman send:
//! `args { type { ofType { … } } }`) is deeper than any sensible limit for our own types.
//! Here our own fields count against `max_depth`, and a `__schema` / `__type` subtree
//! against its own, larger limit.

use std::collections::HashMap;

use async_graphql::parser::types::{Directive, ExecutableDocument, Selection, SelectionSet};
use async_graphql::{Name, Positioned, Value, Variables};
use async_graphql_value::Value as Literal;

/// Introspection subtrees may nest this deep (graphql-js 16's query is 13 levels deep,
/// graphql-core's the same; 17's adds two).
pub const INTROSPECTION_DEPTH: usize = 20;

/// Selections a document may expand to (every field, inline fragment and spread, each
/// fragment counted wherever it is spread, and every fragment definition's own
/// expansion). The standard introspection query expands to about 400.
pub const MAX_SELECTIONS: usize = 10_000;

/// What an anonymous caller's document may expand to.
pub const ANONYMOUS_MAX_SELECTIONS: usize = 1_000;

/// Fragments spread inside fragments at most this deep (a real client nests a handful).
pub const MAX_FRAGMENT_NESTING: usize = 32;

/// The engine's words for a refusal of depth; ours for the others.
pub const TOO_DEEP: &str = "Query is nested too deep.";
pub const TOO_LARGE: &str = "Query expands to too many selections.";
pub const FRAGMENT_CYCLE: &str = "Query's fragments spread themselves.";
pub const VARIABLES_TOO_LARGE: &str = "Query repeats its variables' values too often.";

/// What the engine may copy of the variables' values into arguments, at most: it copies
/// a variable's value (given, or its default) into an argument once per use, when it
/// validates and when it runs, so `[$v, $v, …]` of a 30 KB `$v` in a 64 KiB body would
/// make it copy hundreds of megabytes. Counted as every use (fragments counted wherever
/// they are spread) times the largest value, and allowed up to 1 MiB, or up to
/// [`USES_ALWAYS_ALLOWED`] times all the values together: a request that passes each
/// value a few times is never refused, however large its values.
pub const MAX_VARIABLE_BYTES_PASSED: usize = 1024 * 1024;

/// See [`MAX_VARIABLE_BYTES_PASSED`].
pub const USES_ALWAYS_ALLOWED: usize = 32;

/// The refusal of a request whose document passes its variables' values more often than
/// [`MAX_VARIABLE_BYTES_PASSED`] allows (found in time linear in the values).
pub fn variables_refusal(shape: &Shape, variables: &Variables) -> Option<&'static str> {
    if shape.variable_uses == 0 {
        return None;
    }
    let (mut total, mut largest) = (shape.largest_default, shape.largest_default);
    for value in variables.values() {
        let size = value_size(value);
        total = total.saturating_add(size);
        largest = largest.max(size);
    }
    let allowed = MAX_VARIABLE_BYTES_PASSED.max(total.saturating_mul(USES_ALWAYS_ALLOWED));
    (shape.variable_uses.saturating_mul(largest) > allowed).then_some(VARIABLES_TOO_LARGE)
}

/// About the bytes a value takes: its strings' lengths and a few per item.
fn value_size(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len().saturating_add(2),
        Value::Binary(b) => b.len(),
        Value::Enum(e) => e.len(),
        Value::List(items) => items.iter().map(value_size).fold(2, usize::saturating_add),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| value_size(v).saturating_add(k.len()).saturating_add(2))
            .fold(2, usize::saturating_add),
        Value::Null | Value::Number(_) | Value::Boolean(_) => 8,
    }
}

/// How many variables an argument's literal value takes (each use counted).
fn uses_in(value: &Literal) -> usize {
    match value {
        Literal::Variable(_) => 1,
        Literal::List(items) => items.iter().map(uses_in).fold(0, usize::saturating_add),
        Literal::Object(fields) => fields.values().map(uses_in).fold(0, usize::saturating_add),
        _ => 0,
    }
}

/// How many variables a list of arguments takes.
fn uses_in_arguments(arguments: &[(Positioned<Name>, Positioned<Literal>)]) -> usize {
    arguments
        .iter()
        .map(|(_, v)| uses_in(&v.node))
        .fold(0, usize::saturating_add)
}

/// How many variables a list of directives takes.
fn uses_in_directives(directives: &[Positioned<Directive>]) -> usize {
    directives
        .iter()
        .map(|d| uses_in_arguments(&d.node.arguments))
        .fold(0, usize::saturating_add)
}

/// The limits a document is held to.
#[derive(Debug, Clone, Copy)]
pub struct DocumentLimits {
    pub max_depth: usize,
    pub introspection_depth: usize,
    pub max_selections: usize,
    pub max_fragment_nesting: usize,
}

impl DocumentLimits {
    /// The limits for our own fields' depth `max_depth`, the rest at their defaults.
    pub fn with_depth(max_depth: usize) -> Self {
        Self {
            max_depth,
            introspection_depth: INTROSPECTION_DEPTH.max(max_depth),
            max_selections: MAX_SELECTIONS,
            max_fragment_nesting: MAX_FRAGMENT_NESTING,
        }
    }

    /// The same limits for an anonymous caller: fewer selections.
    pub fn anonymous(self) -> Self {
        Self {
            max_selections: self.max_selections.min(ANONYMOUS_MAX_SELECTIONS),
            ..self
        }
    }

    /// The refusal of a document of this shape, if any (its message).
    pub fn refusal(&self, shape: &Shape) -> Option<&'static str> {
        if shape.fragment_cycle {
            Some(FRAGMENT_CYCLE)
        } else if shape.selections > self.max_selections {
            Some(TOO_LARGE)
        } else if shape.own_depth > self.max_depth
            || shape.introspection_depth > self.introspection_depth
            || shape.fragment_nesting > self.max_fragment_nesting
        {
            Some(TOO_DEEP)
        } else {
            None
        }
    }
}

/// What a document costs (see the module's documentation). Counts saturate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// The deepest nesting of our own fields.
    pub own_depth: usize,
    /// The deepest nesting inside a `__schema` / `__type` subtree.
    pub introspection_depth: usize,
    /// Selections after every fragment is expanded, over all operations and fragment
    /// definitions.
    pub selections: usize,
    /// Fragments spread inside fragments, at the deepest.
    pub fragment_nesting: usize,
    /// A fragment spreads itself, directly or through others.
    pub fragment_cycle: bool,
    /// Uses of variables in arguments after every fragment is expanded (counted like
    /// `selections`).
    pub variable_uses: usize,
    /// The size of the largest default value of a variable (what a use copies when the
    /// request gives none).
    pub largest_default: usize,
}

impl Shape {
    /// The shape of `doc`, in time linear in its size: each fragment is walked at most
    /// twice (outside and inside introspection) and its cost kept.
    pub fn of(doc: &ExecutableDocument) -> Self {
        let mut walk = Walk {
            doc,
            known: HashMap::new(),
            open: Vec::new(),
            cycle: false,
            nesting: 0,
        };
        let mut shape = Shape::default();
        for (_, op) in doc.operations.iter() {
            let cost = walk.set(&op.node.selection_set, false);
            shape.own_depth = shape.own_depth.max(cost.own);
            shape.introspection_depth = shape.introspection_depth.max(cost.intro);
            shape.selections = shape.selections.saturating_add(cost.count);
            shape.variable_uses = shape
                .variable_uses
                .saturating_add(cost.variables)
                .saturating_add(uses_in_directives(&op.node.directives));
            for definition in &op.node.variable_definitions {
                if let Some(default) = &definition.node.default_value {
                    shape.largest_default = shape.largest_default.max(value_size(&default.node));
                }
            }
        }
        // Fragment definitions are validated (and expanded by the engine) on their own too.
        for (name, fragment) in &doc.fragments {
            let cost = walk.fragment(name, &fragment.node.selection_set, false);
            shape.selections = shape.selections.saturating_add(cost.count);
            shape.variable_uses = shape
                .variable_uses
                .saturating_add(cost.variables)
                .saturating_add(uses_in_directives(&fragment.node.directives));
        }
        shape.fragment_nesting = walk.nesting;
        shape.fragment_cycle = walk.cycle;
        shape
    }
}

/// The cost of a selection set: the deepest own fields below it, the deepest
/// introspection below it (relative when inside introspection, from its `__schema` /
/// `__type` otherwise), the selections it expands to, and the fragments nested below it.
#[derive(Debug, Clone, Copy, Default)]
struct Cost {
    own: usize,
    intro: usize,
    count: usize,
    nesting: usize,
    /// Uses of variables in arguments below, expanded.
    variables: usize,
}

impl Cost {
    fn merge(&mut self, other: Cost) {
        self.own = self.own.max(other.own);
        self.intro = self.intro.max(other.intro);
        self.count = self.count.saturating_add(other.count);
        self.nesting = self.nesting.max(other.nesting);
        self.variables = self.variables.saturating_add(other.variables);
    }
}

struct Walk<'a> {
    doc: &'a ExecutableDocument,
    /// Each fragment's cost, outside (`false`) and inside (`true`) introspection.
    known: HashMap<(&'a str, bool), Cost>,
    /// Fragments being walked on the current path (at most `MAX_FRAGMENT_NESTING` + 1
    /// are walked into, so a linear scan is cheap).
    open: Vec<(&'a str, bool)>,
    cycle: bool,
    nesting: usize,
}

impl<'a> Walk<'a> {
    fn set(&mut self, set: &'a Positioned<SelectionSet>, intro: bool) -> Cost {
        let mut cost = Cost::default();
        for item in &set.node.items {
            match &item.node {
                Selection::Field(field) => {
                    let name = field.node.name.node.as_str();
                    let starts_intro = !intro && (name == "__schema" || name == "__type");
                    let below = self.set(&field.node.selection_set, intro || starts_intro);
                    let mut here = Cost {
                        count: below.count.saturating_add(1),
                        nesting: below.nesting,
                        variables: below
                            .variables
                            .saturating_add(uses_in_arguments(&field.node.arguments))
                            .saturating_add(uses_in_directives(&field.node.directives)),
                        ..Cost::default()
                    };
                    if intro || starts_intro {
                        here.intro = below.intro + 1;
                    } else {
                        here.own = below.own + 1;
                        here.intro = below.intro;
                    }
                    cost.merge(here);
                }
                Selection::InlineFragment(f) => {
                    let below = self.set(&f.node.selection_set, intro);
                    cost.merge(Cost {
                        count: below.count.saturating_add(1),
                        variables: below.variables.saturating_add(uses_in_directives(&f.node.directives)),
                        ..below
                    });
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    let below = match self.doc.fragments.get(name) {
                        Some(fragment) => {
                            let below = self.fragment(name, &fragment.node.selection_set, intro);
                            Cost {
                                nesting: below.nesting + 1,
                                ..below
                            }
                        }
                        // Unknown: the engine reports it.
                        None => Cost::default(),
                    };
                    cost.merge(Cost {
                        count: below.count.saturating_add(1),
                        variables: below
                            .variables
                            .saturating_add(uses_in_directives(&spread.node.directives)),
                        ..below
                    });
                }
            }
        }
        cost
    }

    fn fragment(&mut self, name: &'a Name, set: &'a Positioned<SelectionSet>, intro: bool) -> Cost {
        let key = (name.as_str(), intro);
        if let Some(cost) = self.known.get(&key) {
            return *cost;
        }
        if self.open.iter().any(|k| k.0 == key.0) {
            self.cycle = true;
            return Cost::default();
        }
        if self.open.len() > MAX_FRAGMENT_NESTING {
            // Deeper than any limit: counted as nested too deep, not walked further.
            self.nesting = self.nesting.max(self.open.len() + 1);
            return Cost::default();
        }
        self.open.push(key);
        let cost = self.set(set, intro);
        self.open.pop();
        self.nesting = self.nesting.max(cost.nesting + self.open.len());
        self.known.insert(key, cost);
        cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(q: &str) -> Shape {
        Shape::of(&async_graphql::parser::parse_query(q).expect("parses"))
    }

    fn depths(q: &str) -> (usize, usize) {
        let s = of(q);
        (s.own_depth, s.introspection_depth)
    }

    /// `query { __typename ...F0 } fragment F0 on Query { ...F1 ...F1 } … fragment
    /// F{n} on Query { __typename }`: 2^n selections in a few bytes per level.
    pub(crate) fn fan_out(levels: usize) -> String {
        let mut q = String::from("query { __typename ...F0 }");
        for i in 0..levels {
            q.push_str(&format!(" fragment F{i} on Query {{ ...F{n} ...F{n} }}", n = i + 1));
        }
        q.push_str(&format!(" fragment F{levels} on Query {{ __typename }}"));
        q
    }

    #[test]
    fn own_fields_and_introspection_count_apart() {
        assert_eq!(depths("{ viewer { tenant { name } } }"), (3, 0));
        assert_eq!(depths("{ viewer { __typename tenant { __typename } } }"), (3, 0));
        assert_eq!(depths("{ __schema { types { fields { name } } } }"), (0, 4));
        assert_eq!(
            depths("{ viewer { ...V } } fragment V on Viewer { tenant { ...T } } fragment T on Tenant { name }"),
            (3, 0)
        );
        // A fragment used inside and outside introspection counts for each.
        assert_eq!(
            depths("{ viewer { ...N } __type(name: \"Tenant\") { ...N } } fragment N on Viewer { name { name } }"),
            (3, 3)
        );
    }

    #[test]
    fn variable_uses_count_every_expansion_and_bound_what_the_values_add_up_to() {
        assert_eq!(of("query($a: ID!) { tenant(id: $a) { name } }").variable_uses, 1);
        assert_eq!(
            of("query($a: ID!, $f: Boolean!) @skip(if: $f) { tenant(id: $a) @include(if: $f) { ... @skip(if: $f) { name } } }")
                .variable_uses,
            4
        );
        // A fragment counts wherever it is spread, and once on its own.
        let spread = "query($a: ID!) { ...F ...F x: __typename } fragment F on Query { tenant(id: $a) { name } }";
        assert_eq!(of(spread).variable_uses, 3);
        assert_eq!(of("query($a: [ID!]) { x(ids: [$a, $a, { k: $a }]) }").variable_uses, 3);

        let vars = |json: serde_json::Value| Variables::from_json(json);
        let small = of("query($a: ID!) { tenant(id: $a) { name } }");
        assert_eq!(
            variables_refusal(&small, &vars(serde_json::json!({ "a": "x".repeat(60_000) }))),
            None
        );
        let repeated = format!("query($a: ID!) {{ tenant(id: [{}]) {{ name }} }}", "$a,".repeat(10_000));
        let shape = of(&repeated);
        assert_eq!(shape.variable_uses, 10_000);
        assert_eq!(variables_refusal(&shape, &vars(serde_json::json!({ "a": "x" }))), None);
        assert_eq!(
            variables_refusal(&shape, &vars(serde_json::json!({ "a": "x".repeat(30_000) }))),
            Some(VARIABLES_TOO_LARGE)
        );
        assert_eq!(
            variables_refusal(
                &of("{ plans { code } }"),
                &vars(serde_json::json!({ "a": "x".repeat(30_000) }))
            ),
            None
        );
        // A default value is what a use copies when the request gives none.
        let defaulted = format!(
            "query($a: ID = \"{}\") {{ tenant(id: [{}]) {{ name }} }}",
            "x".repeat(30_000),
            "$a,".repeat(10_000)
        );
        assert_eq!(
            variables_refusal(&of(&defaulted), &vars(serde_json::json!({}))),
            Some(VARIABLES_TOO_LARGE)
        );
        // Each value passed a few times is never refused, however large.
        let flags = format!(
            "query($i: NotificationInput!, $f: Boolean!) {{ enqueueNotification(input: $i) {{ id {} }} }}",
            (0..20)
                .map(|n| format!("s{n}: status @include(if: $f)"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let big = vars(serde_json::json!({ "i": { "html": "x".repeat(900_000) }, "f": true }));
        assert_eq!(of(&flags).variable_uses, 21);
        assert_eq!(variables_refusal(&of(&flags), &big), None);
    }

    #[test]
    fn a_cycle_is_found_and_does_not_loop() {
        let s = of("{ viewer { ...A } } fragment A on Viewer { ...B tenant { name } } fragment B on Viewer { ...A }");
        assert!(s.fragment_cycle);
        assert_eq!(DocumentLimits::with_depth(12).refusal(&s), Some(FRAGMENT_CYCLE));
        assert!(!of("{ viewer { ...A ...A } } fragment A on Viewer { name }").fragment_cycle);
    }

    #[test]
    fn selections_count_every_expansion() {
        // viewer, spread, name ×1 in the operation; the definition itself: name.
        assert_eq!(of("{ viewer { ...A } } fragment A on Viewer { name }").selections, 4);
        assert_eq!(of("{ a: viewer { name } b: viewer { name } }").selections, 4);
        // 2 + 2·… : each level doubles.
        assert!(of(&fan_out(10)).selections > 2_000);
    }

    #[test]
    fn fan_out_documents_are_refused_whatever_their_levels() {
        let limits = DocumentLimits::with_depth(12);
        for levels in [24, 30, 60, 200] {
            let shape = of(&fan_out(levels));
            assert!(shape.selections > MAX_SELECTIONS, "{levels}: {shape:?}");
            assert!(limits.refusal(&shape).is_some(), "{levels}");
        }
        // A handful of levels is an ordinary document.
        assert_eq!(limits.refusal(&of(&fan_out(4))), None);
        assert_eq!(limits.anonymous().refusal(&of(&fan_out(9))), Some(TOO_LARGE));
        assert_eq!(limits.refusal(&of(&fan_out(9))), None);
    }

    #[test]
    fn fragments_nested_too_deep_are_refused() {
        let chain = |n: usize| {
            let mut q = String::from("{ ...C0 }");
            for i in 0..n {
                q.push_str(&format!(" fragment C{i} on Query {{ ...C{} }}", i + 1));
            }
            q.push_str(&format!(" fragment C{n} on Query {{ __typename }}"));
            q
        };
        let limits = DocumentLimits::with_depth(12);
        assert_eq!(limits.refusal(&of(&chain(5))), None);
        assert_eq!(limits.refusal(&of(&chain(MAX_FRAGMENT_NESTING + 5))), Some(TOO_DEEP));
        // A long chain is walked no deeper than the limit (no stack overflow), and refused.
        let long = of(&chain(5_000));
        assert!(long.fragment_nesting > MAX_FRAGMENT_NESTING, "{long:?}");
        assert!(limits.refusal(&long).is_some());
    }
}
