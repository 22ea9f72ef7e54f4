//! GraphQL over HTTP against a running Mailgate, by URL and token, as any client calls
//! it: one operation, a tenant with settings, batches of notifications, the delivery
//! counts and Message-IDs a test checks. The `try_` forms return errors (for the
//! benchmarks); the others panic on the first surprise (for the tests).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::settings::SettingsInput;

/// What went wrong talking to the server.
#[derive(Debug)]
pub struct ApiError(String);

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ApiError {}

impl From<reqwest::Error> for ApiError {
    fn from(e: reqwest::Error) -> Self {
        Self(e.to_string())
    }
}

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

const SAVE_SETTINGS: &str =
    "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ version } }";
const COUNTS: &str = "query($id:ID!){ tenant(id:$id){ deliveries(first:1){ counts { status count } } } }";
const MESSAGE_IDS: &str = "query($id:ID!,$a:String,$s:DeliveryStatus){ tenant(id:$id){ deliveries(status:$s, first:100, after:$a){ edges { node { messageId } } pageInfo { hasNextPage endCursor } } } }";
const ENQUEUE: &str = "mutation($i:NotificationInput!){ enqueueNotification(input:$i){ id } }";

/// One operation as `token`: the whole response body.
pub async fn try_call(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    query: &str,
    variables: Value,
) -> Result<Value> {
    Ok(client
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await?
        .json()
        .await?)
}

/// One operation as `token`: the whole response body.
pub async fn call(url: &str, token: &str, query: &str, variables: Value) -> Value {
    try_call(&reqwest::Client::new(), url, token, query, variables)
        .await
        .unwrap_or_else(|e| panic!("request: {e}"))
}

/// The tenant's deliveries by status (`SENT` → 500, …), as an operator reads them.
pub async fn try_counts(
    client: &reqwest::Client,
    url: &str,
    operator: &str,
    tenant: &str,
) -> Result<BTreeMap<String, i64>> {
    let d = try_call(client, url, operator, COUNTS, json!({ "id": tenant })).await?;
    Ok(d["data"]["tenant"]["deliveries"]["counts"]
        .as_array()
        .ok_or_else(|| ApiError(format!("counts: {d}")))?
        .iter()
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_owned(),
                c["count"].as_i64().unwrap_or(0),
            )
        })
        .collect())
}

/// The tenant's deliveries by status (`SENT` → 500, …), as an operator reads them.
pub async fn counts(url: &str, operator: &str, tenant: &str) -> BTreeMap<String, i64> {
    try_counts(&reqwest::Client::new(), url, operator, tenant)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The Message-IDs of all the tenant's deliveries.
pub async fn all_message_ids(url: &str, operator: &str, tenant: &str) -> Vec<String> {
    message_ids(url, operator, tenant, None).await
}

/// The Message-IDs of a tenant's deliveries (of one status, if given), page by page.
pub async fn message_ids(url: &str, operator: &str, tenant: &str, status: Option<&str>) -> Vec<String> {
    let mut ids = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let d = call(
            url,
            operator,
            MESSAGE_IDS,
            json!({ "id": tenant, "a": after, "s": status }),
        )
        .await;
        let conn = &d["data"]["tenant"]["deliveries"];
        ids.extend(
            conn["edges"]
                .as_array()
                .expect("edges")
                .iter()
                .map(|e| e["node"]["messageId"].as_str().unwrap_or("").to_owned()),
        );
        if conn["pageInfo"]["hasNextPage"] != true {
            return ids;
        }
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
}

/// Creates a SHARE tenant named `name` with these mail settings; returns its id.
pub async fn try_setup_tenant(
    client: &reqwest::Client,
    url: &str,
    operator: &str,
    name: &str,
    settings: &SettingsInput,
) -> Result<String> {
    let t = try_call(
        client,
        url,
        operator,
        "mutation($n:String!){ createTenant(name:$n, plan:SHARE){ id } }",
        json!({ "n": name }),
    )
    .await?;
    let tenant = t["data"]["createTenant"]["id"]
        .as_str()
        .ok_or_else(|| ApiError(format!("tenant: {t}")))?
        .to_owned();
    let s = try_call(
        client,
        url,
        operator,
        SAVE_SETTINGS,
        json!({ "t": tenant, "i": settings.json() }),
    )
    .await?;
    if s.get("errors").is_some() {
        return Err(ApiError(format!("settings: {s}")));
    }
    Ok(tenant)
}

/// A tenant ("Crashy", SHARE) that sends through the plain SMTP server on `port`.
pub async fn setup_tenant(url: &str, operator: &str, port: u16) -> String {
    try_setup_tenant(
        &reqwest::Client::new(),
        url,
        operator,
        "Crashy",
        &SettingsInput::plain(port),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Enqueues `n` custom notifications for `tenant` as `service`, in batches of ten
/// operations per request, each with its own idempotency key (`k0`, `k1`, …).
pub async fn enqueue_many(url: &str, service: &str, tenant: &str, n: usize) {
    let client = reqwest::Client::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({ "query": ENQUEUE,
                    "variables": { "i": { "tenantId": tenant, "kind": "CUSTOM", "to": "a@example.net", "subject": format!("n{i}"), "text": "t", "idempotencyKey": format!("k{i}") } } })
            })
            .collect();
        let resp: Value = client
            .post(url)
            .bearer_auth(service)
            .json(&batch)
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        assert!(
            resp.as_array()
                .is_some_and(|a| a.iter().all(|r| r.get("errors").is_none())),
            "{resp}"
        );
    }
}
