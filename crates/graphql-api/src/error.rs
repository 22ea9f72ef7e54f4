//! The one place where errors become GraphQL errors. Every error carries a stable
//! `extensions.code`; messages are in the caller's language. Internal details go to the
//! log under a correlation id, and only the id reaches the client.

use std::borrow::Cow;

use async_graphql::{BatchResponse, ErrorExtensionValues, ServerError, Value};
use domain::error::FieldCode;
use domain::{Error, Locale};

use crate::catalogue::{Text, say};

/// Stable error codes of the contract.
pub mod code {
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const PLAN_FORBIDS_CUSTOM_SENDER: &str = "PLAN_FORBIDS_CUSTOM_SENDER";
    pub const VALIDATION_FAILED: &str = "VALIDATION_FAILED";
    pub const VERSION_CONFLICT: &str = "VERSION_CONFLICT";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    pub const SETTINGS_UNREADABLE: &str = "SETTINGS_UNREADABLE";
    /// The idempotency key names another notification (`extensions.deliveryId`).
    pub const IDEMPOTENCY_KEY_REUSED: &str = "IDEMPOTENCY_KEY_REUSED";
    /// Too many requests in flight on this server: try again shortly (`Retry-After`).
    pub const OVERLOADED: &str = "OVERLOADED";
    /// The request ran past the server's deadline. A mutation may or may not have taken
    /// effect: read before repeating it (or repeat it with the same idempotency key or
    /// `expectedVersion`).
    pub const TIMEOUT: &str = "TIMEOUT";
    pub const INTERNAL: &str = "INTERNAL";
}

/// The message for an error code that carries no detail of its own.
pub fn message(code: &str, locale: Locale) -> Cow<'static, str> {
    let text = match code {
        code::UNAUTHENTICATED => Text::Unauthenticated,
        code::FORBIDDEN => Text::Forbidden,
        code::NOT_FOUND => Text::NotFound,
        code::VALIDATION_FAILED => Text::ValidationFailed,
        code::VERSION_CONFLICT => Text::VersionConflict,
        code::RATE_LIMITED => Text::RateLimited,
        code::SETTINGS_UNREADABLE => Text::SettingsUnreadable,
        code::OVERLOADED => Text::Overloaded,
        code::IDEMPOTENCY_KEY_REUSED => Text::IdempotencyKeyReused,
        code::TIMEOUT => Text::Timeout,
        _ => Text::Internal,
    };
    say(text, locale)
}

/// The JSON body of an error answered outside GraphQL execution (bad content type,
/// body too large, a bad token), shaped like a GraphQL response with one error.
pub fn http_error_body(code: &str, text: Text<'_>, locale: Locale) -> String {
    serde_json::json!({ "errors": [ { "message": say(text, locale), "extensions": { "code": code } } ] }).to_string()
}

fn with_code(
    message: String,
    code: &'static str,
    extend: impl FnOnce(&mut ErrorExtensionValues),
) -> async_graphql::Error {
    let mut err = async_graphql::Error::new(message);
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", code);
    extend(&mut ext);
    err.extensions = Some(ext);
    err
}

/// A `VALIDATION_FAILED` error for one field that the API itself checks.
pub(crate) fn validation_error(
    field: &str,
    field_code: FieldCode,
    text: Text<'_>,
    locale: Locale,
) -> async_graphql::Error {
    with_code(
        message(code::VALIDATION_FAILED, locale).into_owned(),
        code::VALIDATION_FAILED,
        |ext| {
            ext.set(
                "fields",
                Value::List(vec![field_entry(
                    field,
                    field_code.code(),
                    say(text, locale).into_owned(),
                )]),
            );
        },
    )
}

fn field_entry(field: &str, code: &str, message: String) -> Value {
    let mut obj = async_graphql::indexmap::IndexMap::new();
    obj.insert(async_graphql::Name::new("field"), Value::from(field));
    obj.insert(async_graphql::Name::new("code"), Value::from(code));
    obj.insert(async_graphql::Name::new("message"), Value::from(message));
    Value::Object(obj)
}

/// Converts a domain error for a client speaking `locale`.
pub fn to_graphql(err: Error, locale: Locale) -> async_graphql::Error {
    match err {
        Error::Unauthenticated => with_code(
            message(code::UNAUTHENTICATED, locale).into_owned(),
            code::UNAUTHENTICATED,
            |_| {},
        ),
        Error::Forbidden => with_code(message(code::FORBIDDEN, locale).into_owned(), code::FORBIDDEN, |_| {}),
        Error::NotFound => with_code(message(code::NOT_FOUND, locale).into_owned(), code::NOT_FOUND, |_| {}),
        Error::PlanForbidsCustomSender(plan) => with_code(
            say(Text::PlanForbidsCustomSender(plan), locale).into_owned(),
            code::PLAN_FORBIDS_CUSTOM_SENDER,
            |ext| ext.set("plan", plan.code()),
        ),
        Error::Validation(fields) => {
            let list = fields
                .iter()
                .map(|f| field_entry(f.field, f.code.code(), say(Text::Field(f), locale).into_owned()))
                .collect();
            with_code(
                message(code::VALIDATION_FAILED, locale).into_owned(),
                code::VALIDATION_FAILED,
                |ext| {
                    ext.set("fields", Value::List(list));
                },
            )
        }
        Error::VersionConflict { current } => with_code(
            message(code::VERSION_CONFLICT, locale).into_owned(),
            code::VERSION_CONFLICT,
            |ext| {
                ext.set("currentVersion", current);
            },
        ),
        Error::RateLimited => with_code(
            message(code::RATE_LIMITED, locale).into_owned(),
            code::RATE_LIMITED,
            |_| {},
        ),
        Error::TimedOut => with_code(message(code::TIMEOUT, locale).into_owned(), code::TIMEOUT, |_| {}),
        Error::QuotaExceeded { retry_after_secs } => with_code(
            message(code::RATE_LIMITED, locale).into_owned(),
            code::RATE_LIMITED,
            |ext| {
                ext.set("retryAfterSeconds", i64::try_from(retry_after_secs).unwrap_or(i64::MAX));
            },
        ),
        Error::IdempotencyKeyReused { existing } => with_code(
            message(code::IDEMPOTENCY_KEY_REUSED, locale).into_owned(),
            code::IDEMPOTENCY_KEY_REUSED,
            |ext| {
                ext.set("deliveryId", existing.to_string());
                ext.set(
                    "fields",
                    Value::List(vec![field_entry(
                        "idempotencyKey",
                        code::IDEMPOTENCY_KEY_REUSED,
                        message(code::IDEMPOTENCY_KEY_REUSED, locale).into_owned(),
                    )]),
                );
            },
        ),
        Error::SettingsUnreadable { version } => with_code(
            message(code::SETTINGS_UNREADABLE, locale).into_owned(),
            code::SETTINGS_UNREADABLE,
            |ext| {
                ext.set("currentVersion", version);
            },
        ),
        Error::Internal(store) => internal(&store, locale),
    }
}

/// Logs an internal failure with a new correlation id and returns the client's view of it.
pub fn internal(err: &(dyn std::error::Error + 'static), locale: Locale) -> async_graphql::Error {
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    tracing::error!(correlation_id = %correlation_id, error = %chain, "internal error");
    let msg = say(Text::InternalReference(&correlation_id), locale).into_owned();
    with_code(msg, code::INTERNAL, |ext| {
        ext.set("correlationId", correlation_id.clone());
    })
}

/// Extension for domain results inside resolvers.
pub(crate) trait ResultExt<T> {
    fn gql(self, locale: Locale) -> async_graphql::Result<T>;
}

impl<T> ResultExt<T> for domain::Result<T> {
    fn gql(self, locale: Locale) -> async_graphql::Result<T> {
        self.map_err(|e| to_graphql(e, locale))
    }
}

/// Errors raised by the GraphQL engine itself (syntax, unknown fields, wrong argument
/// types, limits) carry no code; they are the client's mistakes, so they get
/// `VALIDATION_FAILED`, with the argument named when the engine names one. (The engine
/// reports the argument only in its message text, as `argument "name"`; that text is
/// the engine's own, never a foreign server's.)
pub fn with_engine_error_codes(response: BatchResponse) -> BatchResponse {
    match response {
        BatchResponse::Single(mut r) => {
            r.errors.iter_mut().for_each(add_code);
            BatchResponse::Single(r)
        }
        BatchResponse::Batch(list) => BatchResponse::Batch(
            list.into_iter()
                .map(|mut r| {
                    r.errors.iter_mut().for_each(add_code);
                    r
                })
                .collect(),
        ),
    }
}

fn add_code(err: &mut ServerError) {
    let ext = err.extensions.get_or_insert_with(Default::default);
    if ext.get("code").is_some() {
        return;
    }
    ext.set("code", code::VALIDATION_FAILED);
    let field = err
        .message
        .split_once("argument \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(name, _)| name.to_owned());
    if let Some(field) = field {
        ext.set(
            "fields",
            Value::List(vec![field_entry(
                &field,
                FieldCode::InvalidType.code(),
                err.message.clone(),
            )]),
        );
    }
}
