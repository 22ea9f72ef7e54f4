//! The one place where errors become GraphQL errors. Every error carries a stable
//! `extensions.code`; messages are in the caller's language. Internal details go to the
//! log under a correlation id, and only the id reaches the client.

use async_graphql::{ErrorExtensionValues, Value};
use domain::{Error, Locale};

/// Stable error codes of the contract.
pub mod code {
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const PLAN_FORBIDS_CUSTOM_SENDER: &str = "PLAN_FORBIDS_CUSTOM_SENDER";
    pub const VALIDATION_FAILED: &str = "VALIDATION_FAILED";
    pub const VERSION_CONFLICT: &str = "VERSION_CONFLICT";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    pub const INTERNAL: &str = "INTERNAL";
}

/// The message for an error code that carries no detail of its own.
pub fn message(code: &str, locale: Locale) -> &'static str {
    match code {
        code::UNAUTHENTICATED => locale.pick(
            "Authentication required: send a valid bearer token.",
            "認証が必要です。有効なトークンを送信してください。",
        ),
        code::FORBIDDEN => locale.pick("You are not allowed to do this.", "この操作を行う権限がありません。"),
        code::NOT_FOUND => locale.pick("Not found.", "見つかりません。"),
        code::VALIDATION_FAILED => locale.pick("Some fields are not valid.", "入力内容に誤りがあります。"),
        code::VERSION_CONFLICT => locale.pick(
            "The settings were changed by someone else. Reload them and try again.",
            "設定が他の人によって変更されました。再読み込みしてからもう一度お試しください。",
        ),
        code::RATE_LIMITED => locale.pick(
            "Too many requests. Try again later.",
            "リクエストが多すぎます。しばらくしてからお試しください。",
        ),
        _ => locale.pick("An internal error occurred.", "内部エラーが発生しました。"),
    }
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

/// A `VALIDATION_FAILED` error for one field.
pub fn validation_error(field: &str, field_code: &str, field_message: String, locale: Locale) -> async_graphql::Error {
    with_code(
        message(code::VALIDATION_FAILED, locale).to_owned(),
        code::VALIDATION_FAILED,
        |ext| {
            ext.set(
                "fields",
                Value::List(vec![field_entry(field, field_code, field_message)]),
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
            message(code::UNAUTHENTICATED, locale).into(),
            code::UNAUTHENTICATED,
            |_| {},
        ),
        Error::Forbidden => with_code(message(code::FORBIDDEN, locale).into(), code::FORBIDDEN, |_| {}),
        Error::NotFound => with_code(message(code::NOT_FOUND, locale).into(), code::NOT_FOUND, |_| {}),
        Error::PlanForbidsCustomSender(plan) => {
            let msg = match locale {
                Locale::En => format!(
                    "Plan {plan} does not allow a custom sender. Only the Share and Biz plans can change the mail server and sender address."
                ),
                Locale::Ja => format!(
                    "プラン {plan} では送信元メールアドレスを変更できません。メールサーバーと送信元を変更できるのはShareプランとBizプランのみです。"
                ),
            };
            with_code(msg, code::PLAN_FORBIDS_CUSTOM_SENDER, |ext| {
                ext.set("plan", plan.code())
            })
        }
        Error::Validation(fields) => {
            let list = fields
                .iter()
                .map(|f| field_entry(f.field, f.code, f.message(locale)))
                .collect();
            with_code(
                message(code::VALIDATION_FAILED, locale).into(),
                code::VALIDATION_FAILED,
                |ext| {
                    ext.set("fields", Value::List(list));
                },
            )
        }
        Error::VersionConflict { current } => with_code(
            message(code::VERSION_CONFLICT, locale).into(),
            code::VERSION_CONFLICT,
            |ext| {
                ext.set("currentVersion", current);
            },
        ),
        Error::RateLimited => with_code(message(code::RATE_LIMITED, locale).into(), code::RATE_LIMITED, |_| {}),
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
    let msg = match locale {
        Locale::En => format!("An internal error occurred (reference {correlation_id})."),
        Locale::Ja => format!("内部エラーが発生しました（参照番号 {correlation_id}）。"),
    };
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
