//! Every message the server writes for a person speaks the caller's language: bad input
//! to each kind of mutation and list, asked in Japanese, gets messages that name fields
//! in Japanese words, never by the API's field names (「nameは必須です」 was the bug).
//! The API's field codes stay in `extensions.fields[].field` for programs.

use serde_json::{Value, json};

use crate::support::*;

testkit::each_backend!(japanese_messages_name_no_field_by_its_api_name);

/// Every message of a response: the errors' and their fields'.
fn messages(body: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for e in body["errors"].as_array().into_iter().flatten() {
        out.extend(e["message"].as_str().map(str::to_owned));
        for f in e["extensions"]["fields"].as_array().into_iter().flatten() {
            out.extend(f["message"].as_str().map(str::to_owned));
        }
    }
    out
}

/// The ASCII words of `text` (`fromAddress`, `popBeforeSmtp.host`, `SMTP`).
fn ascii_words(text: &str) -> Vec<&str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
        .map(|w| w.trim_matches('.'))
        .filter(|w| !w.is_empty())
        .collect()
}

async fn japanese_messages_name_no_field_by_its_api_name(backend: Backend) {
    let app = spawn_app(backend).await;
    let op = app.operator();
    let tenant = app.create_tenant("Messages", "SHARE").await;
    let admin = app.admin(&tenant);
    let service = app.service();
    let bad_settings = json!({
        "serverKind": "CUSTOM", "host": "", "port": 1, "fromAddress": "not-an-address",
        "fromName": "x\u{7}", "smtpAuth": true, "username": "", "encryption": "NONE",
        "localHostname": "-bad-", "sendIntervalMs": -5,
        "popBeforeSmtp": { "host": "", "port": 0, "username": "", "tls": false }
    });
    let requests: Vec<(&str, &str, Value)> = vec![
        (
            &op,
            "mutation { createTenant(name: \"\", plan: SHARE, contactEmail: \"nope\") { id } }",
            json!({}),
        ),
        (
            &admin,
            "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ version } }",
            json!({ "t": tenant, "i": bad_settings }),
        ),
        (
            &admin,
            "mutation($t:ID!,$s:MailSettingsInput!){ probeMailServer(tenantId:$t, settings:$s){ summary } }",
            json!({ "t": tenant, "s": bad_settings }),
        ),
        (
            &admin,
            "mutation($t:ID!){ sendTestMail(tenantId:$t, to:\"\"){ ok } }",
            json!({ "t": tenant }),
        ),
        (
            &admin,
            "mutation($t:ID!){ activateMailSettings(tenantId:$t, code:\"\"){ version } }",
            json!({ "t": tenant }),
        ),
        (
            &op,
            "mutation { createWebhookEndpoint(input: { url: \"\", eventTypes: [], tenantId: \"nope\", secret: \"short\" }) { secret } }",
            json!({}),
        ),
        (
            &op,
            "mutation($t:ID!){ setEnqueueQuota(tenantId:$t, perMinute: 0, perDay: -1){ perMinute } }",
            json!({ "t": tenant }),
        ),
        (
            &op,
            "mutation($t:ID!){ setTenantContactEmail(tenantId:$t, contactEmail:\"nope\"){ id } }",
            json!({ "t": tenant }),
        ),
        (
            &service,
            "mutation($t:ID!){ enqueueNotification(input:{ tenantId:$t, kind: PASSWORD_RESET, to:\"\", locale:\"xx\", variables: [] }){ id } }",
            json!({ "t": tenant }),
        ),
        (&op, "{ tenants(first: 100000) { edges { node { id } } } }", json!({})),
        (
            &op,
            "{ tenants(first: 5, after: \"not-a-cursor\") { edges { node { id } } } }",
            json!({}),
        ),
        (
            &admin,
            "query($t:ID!){ discoverMailServer(tenantId:$t, fromAddress:\"nope\"){ domain } }",
            json!({ "t": tenant }),
        ),
    ];
    let mut seen = 0;
    for (token, query, variables) in requests {
        let (_, body) = app
            .post(
                Some(token),
                Some("ja"),
                &json!({ "query": query, "variables": variables }),
            )
            .await;
        let errors = body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("refused: {query} → {body}"));
        assert_eq!(
            errors[0]["extensions"]["code"],
            json!("VALIDATION_FAILED"),
            "{query} → {body}"
        );
        for message in messages(&body) {
            seen += 1;
            assert!(!message.is_ascii(), "not in Japanese: {message:?} ({query})");
            for word in ascii_words(&message) {
                assert!(
                    !graphql_api::catalogue::FIELD_NAMES
                        .iter()
                        .any(|(api, _, _)| *api == word),
                    "{message:?} names the field {word} by its API name ({query})"
                );
            }
        }
    }
    // Every field of the bad settings, and every other request, said something.
    assert!(seen >= 25, "only {seen} messages");
    app.finish().await;
}
