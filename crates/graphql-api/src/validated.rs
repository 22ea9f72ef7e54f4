//! Documents validated once. The engine's strict validation (every rule of the GraphQL
//! specification) was the largest cost of a request after parsing: about a third of
//! what Mailgate adds to a bare HTTP endpoint. All its rules but one depend on the
//! document alone; `ArgumentsOfCorrectType` also reads the request's variables.
//!
//! So a document (the HTTP layer's cache keeps one [`Verdict`] per query text) runs on
//! the strict schema until one request of it passes every rule. From then on the same
//! text runs on the fast schema: the engine's fast validation (fragment cycles, depth,
//! complexity — the limits still hold, complexity still reads the variables), after
//! the one check that depends on the request, here: every variable the selected
//! operation and the fragments pass to an argument has a value of the argument's type.
//! That check walks the document once, each fragment once, in time linear in the
//! document and in the values the variables put into its arguments (which the HTTP layer
//! bounds: `depth::MAX_VARIABLE_BYTES_PASSED`). A refusal reads as the engine's
//! (`Invalid value for argument "input.to", …`), so the error mapping names the argument
//! the same way.
//!
//! The fast schema has no extension: with none, the engine resolves each field without
//! looking its type up again or boxing a future per extension. It has the federation
//! flag on: without it the engine scans every type of the schema for federation keys
//! on each root field of each request (`Registry::has_entities`, about 3,400
//! instructions, as much as the rest of a small query's root field). What the flag adds
//! (`_service`, `_entities`, and their types) is out of reach there: every document that
//! runs on the fast schema passed the strict one, which has none of them, and a document
//! that asks for the schema itself (`__schema`, `__type`), where the added types would
//! show, runs on the strict schema every time ([`Runs`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{
    Directive, ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::registry::{MetaInputValue, MetaType, MetaTypeName, Registry};
use async_graphql::{
    EmptySubscription, Name, Positioned, Schema, SchemaBuilder, SchemaEnv, ServerError, ServerResult, ValidationMode,
    ValidationResult, Variables,
};
use async_graphql_value::{ConstValue, Value};
use domain::services::TenantService;
use domain::services::assistant::AssistantService;
use domain::services::connections::ConnectionService;
use domain::services::deliveries::DeliveryService;
use domain::services::webhooks::WebhookService;

use crate::schema::{MailgateSchema, MutationRoot, QueryRoot, SchemaLimits};

/// Whether a document's text passed the strict rules once (kept beside its parse).
#[derive(Debug, Default)]
pub struct Verdict(AtomicBool);

impl Verdict {
    pub fn passed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    fn pass(&self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The same schema twice: validating every rule, and validating only what depends on
/// the request (see the module's documentation).
#[derive(Clone)]
pub struct Schemas {
    strict: MailgateSchema,
    fast: MailgateSchema,
    /// The types the argument check reads, as the strict schema's first pass found them
    /// (the engine hands them out only to an extension).
    env: Arc<OnceLock<SchemaEnv>>,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schemas").finish_non_exhaustive()
    }
}

impl Schemas {
    /// Both schemas from the same settings (`builder` makes a fresh builder each time).
    pub fn new(builder: impl Fn() -> SchemaBuilder<QueryRoot, MutationRoot, EmptySubscription>) -> Self {
        let env = Arc::new(OnceLock::new());
        Self {
            strict: builder()
                .extension(ValidatedOnce { env: env.clone() })
                .validation_mode(ValidationMode::Strict)
                .finish(),
            fast: builder()
                .validation_mode(ValidationMode::Fast)
                .enable_federation()
                .finish(),
            env,
        }
    }

    /// Runs `request` (its document parsed): on the fast schema when its document's
    /// `verdict` says it passed the strict rules before and its variables fit, strictly
    /// otherwise; a strict pass is written to the verdict.
    pub async fn execute(
        &self,
        mut request: async_graphql::Request,
        verdict: Option<Arc<Verdict>>,
    ) -> async_graphql::Response {
        match (verdict, self.env.get()) {
            (Some(v), Some(env)) if v.passed() => {
                let variables = std::mem::take(&mut request.variables);
                let operation = request.operation_name.take();
                let checked = request
                    .parsed_query()
                    .and_then(|doc| check_arguments(&env.registry, doc, operation.as_deref(), &variables));
                request.variables = variables;
                request.operation_name = operation;
                match checked {
                    Ok(Runs::Fast) => self.fast.execute(request).await,
                    Ok(Runs::Strict) => self.strict.execute(request).await,
                    Err(refusal) => async_graphql::Response::from_errors(vec![refusal]),
                }
            }
            (Some(v), _) => self.strict.execute(request.data(Proving(v))).await,
            (None, _) => self.strict.execute(request).await,
        }
    }
}

/// The schema with the services it calls, twice: validating every rule, and validating
/// what depends on the request once its document passed every rule
/// ([`crate::validated`]).
pub fn build_schema(
    service: TenantService,
    deliveries: DeliveryService,
    assistant: AssistantService,
    webhooks: WebhookService,
    connections: ConnectionService,
    limits: SchemaLimits,
) -> Schemas {
    Schemas::new(|| {
        let builder = Schema::build(QueryRoot, MutationRoot, EmptySubscription)
            .data(service.clone())
            .data(connections.clone())
            .data(deliveries.clone())
            .data(assistant.clone())
            .data(webhooks.clone())
            .limit_complexity(limits.max_complexity);
        if limits.introspection {
            builder
        } else {
            builder.disable_introspection()
        }
    })
}

/// Request data on the strict schema: where to write a pass.
struct Proving(Arc<Verdict>);

/// The strict schema's one extension: writes a pass of every rule to the request's
/// verdict, and keeps the schema's types for the argument check.
struct ValidatedOnce {
    env: Arc<OnceLock<SchemaEnv>>,
}

impl ExtensionFactory for ValidatedOnce {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ValidatedOnce { env: self.env.clone() })
    }
}

#[async_trait::async_trait]
impl Extension for ValidatedOnce {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await;
        if result.is_ok()
            && let Some(Proving(verdict)) = ctx.data_opt::<Proving>()
        {
            self.env.get_or_init(|| ctx.schema_env.clone());
            verdict.pass();
        }
        result
    }
}

/// Where a known document runs once its arguments are checked: on the fast schema,
/// unless it asks for the schema itself (`__schema`, `__type`), which the fast schema's
/// federation flag makes show more than the strict one (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runs {
    Fast,
    Strict,
}

/// What the engine's `ArgumentsOfCorrectType` checks of the request: every argument that
/// takes a variable, in every fragment and in the operations the request selects (all
/// when it names none), with the variables put in, must be a value of the argument's
/// type — literal parts included, since a strict pass that lacked a variable, or
/// selected another operation, did not check them. An argument with a variable the
/// request does not give is not checked (as the engine does: running it fails). The
/// order is the engine's, so the first refusal is the one it would give. Arguments
/// without variables passed the strict rules with the document. On its way it notes
/// where the document runs ([`Runs`]).
fn check_arguments(
    registry: &Registry,
    doc: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
) -> ServerResult<Runs> {
    let mut walk = ArgumentWalk {
        registry,
        variables,
        selected: true,
        runs: Runs::Fast,
    };
    for fragment in doc.fragments.values() {
        let fragment = &fragment.node;
        let on = Lazy::new(On::Named(fragment.type_condition.node.on.node.as_str()));
        walk.directives(&fragment.directives)?;
        walk.selection_set(&on, &fragment.selection_set.node)?;
    }
    for (name, op) in doc.operations.iter() {
        walk.selected = operation_name
            .zip(name)
            .is_none_or(|(wanted, this)| wanted == this.as_str());
        walk.operation(&op.node)?;
    }
    Ok(walk.runs)
}

/// The walk: every selection set once, where it stands (named fragments from the
/// document's list, never from a spread), so its cost is linear in the document and
/// in the values it checks. A type is looked up only on the way to an argument that
/// takes a variable ([`Lazy`]): most selections take none.
struct ArgumentWalk<'a> {
    registry: &'a Registry,
    variables: &'a Variables,
    /// Whether the operation walked is one the request selects (fragments count as
    /// selected).
    selected: bool,
    /// `Strict` once a field asks for the schema.
    runs: Runs,
}

impl<'a> ArgumentWalk<'a> {
    fn operation(&mut self, op: &'a OperationDefinition) -> ServerResult<()> {
        let root = match op.ty {
            OperationType::Query => Some(self.registry.query_type.as_str()),
            OperationType::Mutation => self.registry.mutation_type.as_deref(),
            OperationType::Subscription => self.registry.subscription_type.as_deref(),
        };
        let Some(root) = root else {
            return Ok(());
        };
        self.directives(&op.directives)?;
        self.selection_set(&Lazy::new(On::Named(root)), &op.selection_set.node)
    }

    fn selection_set(&mut self, parent: &Lazy<'a, '_>, set: &'a SelectionSet) -> ServerResult<()> {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) if field.node.name.node == "__typename" => {}
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    if name == "__schema" || name == "__type" {
                        self.runs = Runs::Strict;
                    }
                    if takes_any_variable(&field.arguments)
                        && let Some(meta) = parent.get(self.registry).and_then(|p| p.field_by_name(name))
                    {
                        self.arguments(&meta.args, &field.arguments)?;
                    }
                    self.directives(&field.directives)?;
                    self.selection_set(&Lazy::new(On::FieldOf(parent, name)), &field.selection_set.node)?;
                }
                Selection::FragmentSpread(spread) => self.directives(&spread.node.directives)?,
                Selection::InlineFragment(inline) => {
                    let inline = &inline.node;
                    self.directives(&inline.directives)?;
                    match &inline.type_condition {
                        Some(condition) => self.selection_set(
                            &Lazy::new(On::Named(condition.node.on.node.as_str())),
                            &inline.selection_set.node,
                        )?,
                        None => self.selection_set(parent, &inline.selection_set.node)?,
                    }
                }
            }
        }
        Ok(())
    }

    fn directives(&mut self, directives: &'a [Positioned<Directive>]) -> ServerResult<()> {
        for directive in directives {
            if takes_any_variable(&directive.node.arguments)
                && let Some(meta) = self.registry.directives.get(directive.node.name.node.as_str())
            {
                self.arguments(&meta.args, &directive.node.arguments)?;
            }
        }
        Ok(())
    }

    fn arguments(
        &mut self,
        declared: &'a IndexMap<String, MetaInputValue>,
        given: &'a [(Positioned<Name>, Positioned<Value>)],
    ) -> ServerResult<()> {
        for (name, value) in given {
            let Some(arg) = declared.get(name.node.as_str()) else {
                continue;
            };
            if !takes_variable(&value.node) {
                continue;
            }
            let put_in = value.node.clone().into_const_with(|variable| {
                self.selected
                    .then(|| self.variables.get(&variable).cloned())
                    .flatten()
                    .ok_or(())
            });
            let Ok(value) = put_in else {
                continue;
            };
            let mut path = vec![Segment::Name(&arg.name)];
            if let Some(reason) = valid_input(self.registry, &arg.ty, &value, &mut path) {
                return Err(ServerError::new(
                    format!("Invalid value for argument {reason}"),
                    Some(name.pos),
                ));
            }
        }
        Ok(())
    }
}

/// The type a selection set selects on, looked up when first asked (an argument inside
/// it takes a variable), and then once: the walk asks each level at most once per
/// set, so the lookups stay linear in the document.
struct Lazy<'a, 'p> {
    on: On<'a, 'p>,
    found: std::cell::OnceCell<Option<&'a MetaType>>,
}

enum On<'a, 'p> {
    /// The type of this name.
    Named(&'a str),
    /// The type of this field of the enclosing set's type.
    FieldOf(&'p Lazy<'a, 'p>, &'a str),
}

impl<'a, 'p> Lazy<'a, 'p> {
    fn new(on: On<'a, 'p>) -> Self {
        Self {
            on,
            found: std::cell::OnceCell::new(),
        }
    }

    fn get(&self, registry: &'a Registry) -> Option<&'a MetaType> {
        *self.found.get_or_init(|| match self.on {
            On::Named(name) => registry.types.get(name),
            On::FieldOf(outer, field) => outer
                .get(registry)
                .and_then(|t| t.field_by_name(field))
                .and_then(|f| registry.types.get(MetaTypeName::concrete_typename(&f.ty))),
        })
    }
}

/// Whether any of the arguments takes a variable.
fn takes_any_variable(arguments: &[(Positioned<Name>, Positioned<Value>)]) -> bool {
    arguments.iter().any(|(_, v)| takes_variable(&v.node))
}

/// Whether a literal value takes a variable anywhere inside it.
fn takes_variable(value: &Value) -> bool {
    match value {
        Value::Variable(_) => true,
        Value::List(items) => items.iter().any(takes_variable),
        Value::Object(fields) => fields.values().any(takes_variable),
        _ => false,
    }
}

/// A place inside an argument's value, for the refusal's wording.
enum Segment<'a> {
    Name(&'a str),
    Index(usize),
}

/// Whether `value` (a variable's) fits type `ty`; why not, in the engine's words.
fn valid_input<'a>(
    registry: &'a Registry,
    ty: &'a str,
    value: &ConstValue,
    path: &mut Vec<Segment<'a>>,
) -> Option<String> {
    match MetaTypeName::create(ty) {
        MetaTypeName::NonNull(inner) => match value {
            ConstValue::Null => Some(refusal(path, &format!("expected type \"{inner}\""))),
            _ => valid_input(registry, inner, value, path),
        },
        MetaTypeName::List(element) => match value {
            ConstValue::List(items) => items.iter().enumerate().find_map(|(i, item)| {
                path.push(Segment::Index(i));
                let reason = valid_input(registry, element, item, path);
                path.pop();
                reason
            }),
            ConstValue::Null => None,
            _ => valid_input(registry, element, value, path),
        },
        MetaTypeName::Named(name) => {
            if matches!(value, ConstValue::Null) {
                return None;
            }
            match registry.types.get(name)? {
                MetaType::Scalar {
                    is_valid: Some(is_valid),
                    ..
                } => (!is_valid(value)).then(|| refusal(path, &format!("expected type \"{name}\""))),
                MetaType::Enum {
                    enum_values,
                    name: enum_name,
                    ..
                } => {
                    let given = match value {
                        ConstValue::Enum(v) => Some(v.as_str()),
                        ConstValue::String(v) => Some(v.as_str()),
                        _ => None,
                    };
                    match given {
                        Some(v) if enum_values.contains_key(v) => None,
                        Some(v) => Some(refusal(
                            path,
                            &format!("enumeration type \"{enum_name}\" does not contain the value \"{v}\""),
                        )),
                        None => Some(refusal(path, &format!("expected type \"{name}\""))),
                    }
                }
                MetaType::InputObject {
                    input_fields,
                    name: object_name,
                    oneof,
                    ..
                } => {
                    let ConstValue::Object(given) = value else {
                        return None;
                    };
                    if *oneof && given.len() != 1 {
                        return Some(refusal(path, "Oneof input objects requires have exactly one field"));
                    }
                    if *oneof && given.values().any(|v| matches!(v, ConstValue::Null)) {
                        return Some(refusal(
                            path,
                            "Oneof Input Objects require that exactly one field must be supplied and that field must not be null",
                        ));
                    }
                    for field in input_fields.values() {
                        match given.get(field.name.as_str()) {
                            Some(v) => {
                                path.push(Segment::Name(&field.name));
                                let reason = valid_input(registry, &field.ty, v, path);
                                path.pop();
                                if reason.is_some() {
                                    return reason;
                                }
                            }
                            None if MetaTypeName::create(&field.ty).is_non_null() && field.default_value.is_none() => {
                                return Some(refusal(
                                    path,
                                    &format!(
                                        "field \"{}\" of type \"{}\" is required but not provided",
                                        field.name, field.ty
                                    ),
                                ));
                            }
                            None => {}
                        }
                    }
                    given
                        .keys()
                        .find(|k| !input_fields.contains_key(k.as_str()))
                        .map(|unknown| refusal(path, &format!("unknown field \"{unknown}\" of type \"{object_name}\"")))
                }
                _ => None,
            }
        }
    }
}

/// `"input.to", expected type "String"`: the place, then why.
fn refusal(path: &[Segment<'_>], why: &str) -> String {
    let mut place = String::new();
    for (i, segment) in path.iter().enumerate() {
        if i > 0 {
            place.push('.');
        }
        match segment {
            Segment::Name(name) => place.push_str(name),
            Segment::Index(index) => place.push_str(&index.to_string()),
        }
    }
    format!("\"{place}\", {why}")
}

#[cfg(test)]
mod tests {
    use async_graphql::{EmptySubscription, Request, Response, Schema};
    use serde_json::{Value as Json, json};

    use super::*;

    /// The two schemas with nothing behind the resolvers (every request here is refused
    /// before one runs, or fails there for want of a service).
    fn schemas() -> Schemas {
        Schemas::new(|| Schema::build(QueryRoot, MutationRoot, EmptySubscription))
    }

    fn request(query: &str, variables: Json) -> Request {
        Request::new(query).variables(Variables::from_json(variables))
    }

    fn errors(response: &Response) -> Json {
        serde_json::to_value(&response.errors).expect("errors serialise")
    }

    /// A verdict as if its document had passed before.
    fn passed() -> Arc<Verdict> {
        let verdict = Arc::new(Verdict::default());
        verdict.pass();
        verdict
    }

    /// The schemas after one strict pass (which hands the argument check its types).
    async fn primed() -> Schemas {
        let s = schemas();
        let verdict = Arc::new(Verdict::default());
        let _ = s
            .execute(request(TENANT, json!({ "id": "t" })), Some(verdict.clone()))
            .await;
        assert!(verdict.passed());
        s
    }

    #[tokio::test]
    async fn a_known_document_skips_the_rules_that_read_the_document_alone() {
        let unknown_field = "query($id: ID!) { tenant(id: $id) { nope } }";
        let strict = schemas()
            .strict
            .execute(request(unknown_field, json!({ "id": "t" })))
            .await;
        assert!(strict.errors[0].message.contains("nope"), "{:?}", strict.errors);
        // Before any strict pass the types are not at hand: a known document runs strictly.
        let unprimed = schemas()
            .execute(request(unknown_field, json!({ "id": "t" })), Some(passed()))
            .await;
        assert_eq!(errors(&unprimed), errors(&strict));
        // After one, it runs on the fast schema, which does not look for unknown fields
        // (that this document passed the strict rules is forged here).
        let fast = primed()
            .await
            .execute(request(unknown_field, json!({ "id": "t" })), Some(passed()))
            .await;
        assert_ne!(errors(&fast), errors(&strict), "{:?}", fast.errors);
    }

    const TENANT: &str = "query($id: ID!) { tenant(id: $id) { name } }";
    const ENQUEUE: &str = "mutation($i: NotificationInput!) { enqueueNotification(input: $i) { id } }";

    #[tokio::test]
    async fn a_strict_pass_is_written_to_the_verdict_and_a_refusal_is_not() {
        let s = schemas();
        let verdict = Arc::new(Verdict::default());
        let refused = s
            .execute(request(TENANT, json!({ "id": null })), Some(verdict.clone()))
            .await;
        assert!(!refused.errors.is_empty());
        assert!(!verdict.passed(), "bad variables: the document is not known yet");
        // Valid: the resolver then fails for want of a service, after validation passed.
        let _ = s
            .execute(request(TENANT, json!({ "id": "t" })), Some(verdict.clone()))
            .await;
        assert!(verdict.passed());
        let unknown_field = "{ tenant(id: \"t\") { nope } }";
        let other = Arc::new(Verdict::default());
        let _ = s.execute(request(unknown_field, json!({})), Some(other.clone())).await;
        assert!(!other.passed(), "a document the rules refuse never passes");
    }

    #[tokio::test]
    async fn a_pass_that_skipped_an_argument_does_not_let_its_literal_parts_through() {
        let s = schemas();
        let bad_literal = "mutation($t: ID!) { enqueueNotification(input: { tenantId: $t, kind: NOPE, to: \"a@b.example\" }) { id } }";
        // Without `t` the engine skips the argument and the rules pass (running it fails).
        let verdict = Arc::new(Verdict::default());
        let _ = s.execute(request(bad_literal, json!({})), Some(verdict.clone())).await;
        assert!(
            verdict.passed(),
            "the strict rules let the document through without `t`"
        );
        let strict = s.strict.execute(request(bad_literal, json!({ "t": "x" }))).await;
        let known = s
            .execute(request(bad_literal, json!({ "t": "x" })), Some(verdict.clone()))
            .await;
        assert!(strict.errors[0].message.contains("NOPE"), "{:?}", strict.errors);
        assert_eq!(errors(&known)[0], errors(&strict)[0]);
        assert_eq!(known.data, async_graphql::Value::Null);

        // A pass that selected the other operation did not check this one's arguments.
        let two = "mutation A($t: ID!) { enqueueNotification(input: { tenantId: $t, kind: NOPE, to: \"a@b.example\" }) { id } } query B { tenant(id: \"x\") { name } }";
        let verdict = Arc::new(Verdict::default());
        let _ = s
            .execute(
                request(two, json!({ "t": "x" })).operation_name("B"),
                Some(verdict.clone()),
            )
            .await;
        assert!(verdict.passed(), "the strict rules let the document through for B");
        let strict = s
            .strict
            .execute(request(two, json!({ "t": "x" })).operation_name("A"))
            .await;
        let known = s
            .execute(request(two, json!({ "t": "x" })).operation_name("A"), Some(verdict))
            .await;
        assert!(strict.errors[0].message.contains("NOPE"), "{:?}", strict.errors);
        assert_eq!(errors(&known)[0], errors(&strict)[0]);
        assert_eq!(known.data, async_graphql::Value::Null);
    }

    fn with_operation(r: Request, operation: Option<&str>) -> Request {
        match operation {
            Some(name) => r.operation_name(name),
            None => r,
        }
    }

    #[tokio::test]
    async fn known_documents_refuse_bad_variables_exactly_as_the_strict_rules_do() {
        let s = primed().await;
        let cases = [
            (TENANT, None, json!({ "id": null })),
            (TENANT, None, json!({ "id": { "a": 1 } })),
            (TENANT, None, json!({ "id": [true] })),
            (
                ENQUEUE,
                None,
                json!({ "i": { "tenantId": "t", "kind": "NOPE", "to": "a@b.example" } }),
            ),
            (ENQUEUE, None, json!({ "i": { "kind": "CUSTOM", "to": "a@b.example" } })),
            (
                ENQUEUE,
                None,
                json!({ "i": { "tenantId": "t", "kind": "CUSTOM", "to": "a@b.example", "bcc": "x" } }),
            ),
            (
                ENQUEUE,
                None,
                json!({ "i": { "tenantId": "t", "kind": "CUSTOM", "to": 5 } }),
            ),
            (
                "mutation($k: NotificationKind!) { enqueueNotification(input: { tenantId: \"t\", kind: $k, to: \"a@b.example\" }) { id } }",
                None,
                json!({ "k": "NOPE" }),
            ),
            (
                "query($n: Int) { tenants(first: $n) { edges { node { id } } } }",
                None,
                json!({ "n": "ten" }),
            ),
            (
                "query($f: Boolean!, $id: ID!) { tenant(id: $id) @include(if: $f) { name } }",
                None,
                json!({ "f": "yes", "id": "t" }),
            ),
            (
                "query($id: ID!) { ...T } fragment T on Query { tenant(id: $id) { name } }",
                None,
                json!({ "id": false }),
            ),
            // A variable deep inside: every type on the way is looked up.
            (
                "query($n: Int) { tenant(id: \"t\") { name ... on Tenant { deliveries(first: $n) { edges { node { id } } } } } }",
                None,
                json!({ "n": "ten" }),
            ),
            (
                "query($n: Int) { ...T } fragment T on Query { tenant(id: \"t\") { deliveries(first: $n) { edges { node { id } } } } }",
                None,
                json!({ "n": [1] }),
            ),
            (
                "query A($id: ID!) { tenant(id: $id) { name } } query B { tenant(id: \"x\") { name } }",
                Some("A"),
                json!({ "id": null }),
            ),
            // Two bad values: the first refusal is the engine's first (fragments before
            // operations, a field's arguments before its directives).
            (
                "query($id: ID!, $f: Boolean!) { tenant(id: $id) @include(if: $f) { name } ...T } fragment T on Query { t2: tenant(id: $id) { name } }",
                None,
                json!({ "id": null, "f": "yes" }),
            ),
            (
                "query($id: ID!, $f: Boolean!) { tenant(id: $id) @include(if: $f) { name } }",
                None,
                json!({ "id": null, "f": "yes" }),
            ),
        ];
        for (query, operation, variables) in cases {
            let strict = s
                .strict
                .execute(with_operation(request(query, variables.clone()), operation))
                .await;
            assert!(
                !strict.errors.is_empty() && strict.data == async_graphql::Value::Null,
                "the strict rules refuse {variables} for {query}: {:?}",
                strict.errors
            );
            let known = s
                .execute(
                    with_operation(request(query, variables.clone()), operation),
                    Some(passed()),
                )
                .await;
            // The same first refusal (the strict run may go on to say more about the same
            // value: its complexity count parses `first` again).
            assert_eq!(known.errors.len(), 1, "{query}: {:?}", known.errors);
            assert_eq!(errors(&known)[0], errors(&strict)[0], "{query} with {variables}");
            assert_eq!(known.data, async_graphql::Value::Null, "nothing ran: {query}");
            // Without the check, the fast rules alone let the request reach the resolvers.
            let unchecked = s
                .fast
                .execute(with_operation(request(query, variables.clone()), operation))
                .await;
            assert_ne!(
                errors(&unchecked),
                errors(&strict),
                "the check is what refuses {variables} for {query}"
            );
        }
    }

    #[tokio::test]
    async fn known_documents_take_good_variables_as_the_strict_rules_do() {
        let s = primed().await;
        let good = [
            (TENANT, json!({ "id": "t" })),
            (TENANT, json!({ "id": 7 })),
            (
                ENQUEUE,
                json!({ "i": { "tenantId": "t", "kind": "CUSTOM", "to": "a@b.example", "subject": null } }),
            ),
            (
                "query($n: Int) { tenants(first: $n) { edges { node { id } } } }",
                json!({}),
            ),
        ];
        for (query, variables) in good {
            let strict = s.strict.execute(request(query, variables.clone())).await;
            let known = s.execute(request(query, variables.clone()), Some(passed())).await;
            // Both reach the resolvers (which fail here for want of a service).
            assert_eq!(errors(&known), errors(&strict), "{query} with {variables}");
            assert!(
                known.errors.iter().all(|e| !e.message.starts_with("Invalid value")),
                "{query}: {:?}",
                known.errors
            );
        }
    }

    /// What the argument check says of where a (primed) document runs.
    fn runs(s: &Schemas, query: &str, variables: Json) -> Runs {
        let env = s.env.get().expect("primed");
        let doc = async_graphql::parser::parse_query(query).expect("parses");
        check_arguments(&env.registry, &doc, None, &Variables::from_json(variables)).expect("good variables")
    }

    #[tokio::test]
    async fn a_known_document_that_asks_for_the_schema_runs_strictly() {
        let s = primed().await;
        let fast = [
            TENANT,
            "{ __typename tenants(first: 5) { edges { node { id __typename } } } }",
        ];
        for query in fast {
            assert_eq!(runs(&s, query, json!({ "id": "t" })), Runs::Fast, "{query}");
        }
        let strict = [
            "{ __schema { queryType { name } } }",
            "{ tenant(id: \"t\") { name } __type(name: \"Tenant\") { name } }",
            "query($t: String!) { ...T } fragment T on Query { __type(name: $t) { name } }",
            "{ ... on Query { __schema { types { name } } } }",
        ];
        for query in strict {
            assert_eq!(runs(&s, query, json!({ "t": "Tenant" })), Runs::Strict, "{query}");
        }
    }

    #[tokio::test]
    async fn a_known_document_answers_as_it_did_when_it_passed_the_strict_rules() {
        let s = primed().await;
        let cases = [
            (TENANT, json!({ "id": "t" })),
            ("{ tenants(first: 5) { edges { node { id } } } }", json!({})),
            ("{ __typename }", json!({})),
            // The fast schema's federation flag adds `_service`, which the strict schema
            // does not have: asking for the schema must not show it.
            ("{ __schema { queryType { fields { name } } } }", json!({})),
            ("{ __type(name: \"Query\") { fields { name } } }", json!({})),
        ];
        for (query, variables) in cases {
            let verdict = Arc::new(Verdict::default());
            let first = s
                .execute(request(query, variables.clone()), Some(verdict.clone()))
                .await;
            assert!(verdict.passed(), "{query}: {:?}", first.errors);
            let known = s.execute(request(query, variables.clone()), Some(verdict)).await;
            assert_eq!(
                serde_json::to_value(&known).expect("serialises"),
                serde_json::to_value(&first).expect("serialises"),
                "{query}"
            );
        }
        // A federation field never runs: the strict rules refuse it before it is known.
        let verdict = Arc::new(Verdict::default());
        let service = s
            .execute(request("{ _service { sdl } }", json!({})), Some(verdict.clone()))
            .await;
        assert!(
            !verdict.passed() && service.data == async_graphql::Value::Null,
            "{:?}",
            service.errors
        );
    }

    #[tokio::test]
    async fn a_known_document_whose_page_size_is_a_variable_is_measured_again_each_time() {
        let s = Schemas::new(|| Schema::build(QueryRoot, MutationRoot, EmptySubscription).limit_complexity(100));
        let query = "query($n: Int) { tenants(first: $n) { edges { node { id name } } } }";
        let verdict = Arc::new(Verdict::default());
        let small = s
            .execute(request(query, json!({ "n": 2 })), Some(verdict.clone()))
            .await;
        assert!(verdict.passed(), "{:?}", small.errors);
        let again = s
            .execute(request(query, json!({ "n": 2 })), Some(verdict.clone()))
            .await;
        assert_eq!(errors(&again), errors(&small));
        let large = s.execute(request(query, json!({ "n": 100 })), Some(verdict)).await;
        assert_eq!(
            errors(&large),
            json!([{ "message": "Query is too complex." }]),
            "a small page's pass does not let a large one through"
        );
    }
}
