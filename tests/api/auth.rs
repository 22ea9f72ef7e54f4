//! Authentication and access: every malformed, forged, expired or misdirected bearer
//! token is refused with HTTP 401 before anything runs; the algorithm is pinned by
//! configuration (HS256, RS256, EdDSA); each role sees and changes only what it may; a
//! tenant admin asking about another tenant gets exactly what a nonexistent id gets.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mailgate::config::JwtAlgorithm;
use serde_json::{Value, json};

use crate::support::*;

crate::backend_tests!(
    rejected_tokens_get_401_and_run_nothing,
    no_token_reads_public_data_only,
    viewer_describes_each_role,
    service_reads_tenants_but_changes_nothing,
    tenant_admin_cannot_manage_tenants,
    other_tenant_answers_like_a_nonexistent_one,
);

/// A well-formed tenant id that names no tenant.
const NONEXISTENT: &str = "0191a2b3-0000-7000-8000-000000000000";

const CREATE: &str = r#"mutation { createTenant(name: "Intruder", plan: SHARE) { id } }"#;
const VIEWER: &str = "{ viewer { role subject tenant { id name } } }";
const TENANTS: &str = "{ tenants(first: 100) { edges { node { id name plan } } } }";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Claims the test server accepts (issuer and audience are the defaults).
fn claims(role: &str, tenant_id: Option<&str>) -> Value {
    let mut c = json!({
        "sub": format!("{role}-hand-built"),
        "role": role,
        "exp": now() + 600,
        "iat": now(),
        "iss": "mailgate",
        "aud": "mailgate",
    });
    if let Some(t) = tenant_id {
        c["tenant_id"] = json!(t);
    }
    c
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).expect("token signs")
}

fn hs256(claims: &Value, secret: &str) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(secret.as_bytes()), claims)
}

/// POSTs `query` with a raw `Authorization` header value.
async fn post_with_authorization(app: &TestApp, authorization: &str, query: &str) -> (u16, Value) {
    let resp = app
        .client
        .post(&app.url)
        .header("Authorization", authorization)
        .json(&json!({ "query": query }))
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body, got {status}: {text}")),
    )
}

/// Asserts the answer every refused token gets: 401, UNAUTHENTICATED, no data at all.
fn assert_refused(label: &str, status: u16, body: &Value) {
    assert_eq!(status, 401, "{label}: {body}");
    assert_eq!(code(body), "UNAUTHENTICATED", "{label}: {body}");
    assert!(
        body.get("data").is_none(),
        "{label}: nothing was executed, so no data: {body}"
    );
    assert_eq!(
        body["errors"][0]["message"], "Authentication required: send a valid bearer token.",
        "{label}: the message says what to do and nothing about why the token failed"
    );
}

/// A fresh directory for key files, removed by the caller.
fn key_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mailgate-keys-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("key directory");
    dir
}

fn openssl(args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl CLI runs");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Generates a key pair with the `openssl` CLI; returns (private PEM, public key file).
fn key_pair(dir: &Path, name: &str, genpkey_args: &[&str]) -> (Vec<u8>, PathBuf) {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub.pem"));
    let private_s = private.to_str().expect("utf-8 path");
    let public_s = public.to_str().expect("utf-8 path");
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey_args);
    args.extend_from_slice(&["-out", private_s]);
    openssl(&args);
    openssl(&["pkey", "-in", private_s, "-pubout", "-out", public_s]);
    (std::fs::read(&private).expect("private key"), public)
}

fn ed25519_pair(dir: &Path, name: &str) -> (Vec<u8>, PathBuf) {
    key_pair(dir, name, &["-algorithm", "ed25519"])
}

fn rsa_pair(dir: &Path, name: &str) -> (Vec<u8>, PathBuf) {
    key_pair(dir, name, &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
}

async fn tenant_names(app: &TestApp) -> Vec<String> {
    let d = app.ok(&app.operator(), TENANTS, json!({})).await;
    d["tenants"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["name"].as_str().expect("name").to_owned())
        .collect()
}

async fn rejected_tokens_get_401_and_run_nothing(app: &TestApp) {
    // The hand-built tokens are right in every respect but the one each case breaks:
    // a correct one is accepted.
    let (status, body) = post_with_authorization(
        app,
        &format!("Bearer {}", hs256(&claims("operator", None), JWT_SECRET)),
        VIEWER,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["viewer"]["role"], "OPERATOR", "{body}");

    let dir = key_dir();
    let (rsa_private, _) = rsa_pair(&dir, "rsa");

    let operator = claims("operator", None);
    let without = |field: &str| {
        let mut c = operator.clone();
        c.as_object_mut().expect("object").remove(field);
        c
    };
    let with = |field: &str, value: Value| {
        let mut c = operator.clone();
        c[field] = value;
        c
    };

    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(operator.to_string().as_bytes())
    );
    // A service token (which may not create tenants) whose payload is rewritten to
    // say "operator", keeping the service token's signature.
    let service = hs256(&claims("service", None), JWT_SECRET);
    let parts: Vec<&str> = service.split('.').collect();
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .expect("payload"),
    )
    .expect("payload JSON");
    assert_eq!(payload["role"], "service");
    let mut forged = payload.clone();
    forged["role"] = json!("operator");
    let tampered = format!("{}.{}.{}", parts[0], b64(forged.to_string().as_bytes()), parts[2]);

    let cases: Vec<(&str, String)> = vec![
        ("alg none", format!("Bearer {alg_none}")),
        (
            "wrong HS256 secret",
            format!(
                "Bearer {}",
                hs256(&operator, "another-secret-that-is-also-32-bytes-long")
            ),
        ),
        (
            "expired beyond the leeway",
            format!("Bearer {}", hs256(&with("exp", json!(now() - 120)), JWT_SECRET)),
        ),
        ("no exp", format!("Bearer {}", hs256(&without("exp"), JWT_SECRET))),
        (
            "wrong iss",
            format!("Bearer {}", hs256(&with("iss", json!("someone-else")), JWT_SECRET)),
        ),
        ("no iss", format!("Bearer {}", hs256(&without("iss"), JWT_SECRET))),
        (
            "wrong aud",
            format!("Bearer {}", hs256(&with("aud", json!("another-service")), JWT_SECRET)),
        ),
        ("no sub", format!("Bearer {}", hs256(&without("sub"), JWT_SECRET))),
        ("tampered payload", format!("Bearer {tampered}")),
        (
            "RS256 when HS256 is configured",
            format!(
                "Bearer {}",
                sign(
                    Algorithm::RS256,
                    &EncodingKey::from_rsa_pem(&rsa_private).expect("RSA key"),
                    &operator
                )
            ),
        ),
        ("garbage", "Bearer this-is-not-a-jwt".to_owned()),
        ("empty bearer", "Bearer ".to_owned()),
        (
            "basic auth",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("operator:password")
            ),
        ),
        ("token without a scheme", hs256(&operator, JWT_SECRET)),
        (
            "tenant_admin without tenant_id",
            format!("Bearer {}", hs256(&claims("tenant_admin", None), JWT_SECRET)),
        ),
        (
            "unknown role",
            format!("Bearer {}", hs256(&claims("superuser", None), JWT_SECRET)),
        ),
        (
            "malformed tenant_id",
            format!(
                "Bearer {}",
                hs256(&claims("tenant_admin", Some("tenant-1")), JWT_SECRET)
            ),
        ),
    ];
    std::fs::remove_dir_all(&dir).ok();

    for (label, authorization) in &cases {
        let (status, body) = post_with_authorization(app, authorization, CREATE).await;
        assert_refused(label, status, &body);
    }
    assert_eq!(
        tenant_names(app).await,
        Vec::<String>::new(),
        "no refused request created a tenant"
    );
}

async fn no_token_reads_public_data_only(app: &TestApp) {
    let (status, body) = app.post(None, None, &json!({ "query": VIEWER })).await;
    assert_eq!(
        status, 200,
        "a missing token is a GraphQL error, not an HTTP one: {body}"
    );
    assert_eq!(code(&body), "UNAUTHENTICATED");
    assert_eq!(body["data"], Value::Null, "{body}");

    let (status, body) = app
        .post(None, None, &json!({ "query": "{ plans { code canOverrideSender } }" }))
        .await;
    assert_eq!(status, 200);
    assert!(body.get("errors").is_none(), "{body}");
    let codes: Vec<_> = body["data"]["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .map(|p| p["code"].clone())
        .collect();
    assert_eq!(
        codes,
        vec![
            json!("ECONOMY"),
            json!("BASIC"),
            json!("PRO"),
            json!("SHARE"),
            json!("BIZ")
        ]
    );

    let id = app.create_tenant("Visible only with a token", "SHARE").await;
    let (_, body) = app
        .post(None, None, &json!({ "query": TENANT_QUERY, "variables": { "id": id } }))
        .await;
    assert_eq!(code(&body), "UNAUTHENTICATED");
    assert_eq!(body["data"]["tenant"], Value::Null);

    let (_, body) = app.post(None, None, &json!({ "query": CREATE })).await;
    assert_eq!(code(&body), "UNAUTHENTICATED");
    let (_, body) = app
        .post(
            None,
            None,
            &json!({ "query": UPDATE, "variables": { "t": id, "i": valid_input() } }),
        )
        .await;
    assert_eq!(code(&body), "UNAUTHENTICATED");
    assert_eq!(tenant_names(app).await, vec!["Visible only with a token".to_owned()]);
    assert_eq!(app.tenant(&id).await["mailSettings"], Value::Null);
}

/// A server that verifies `algorithm` tokens with the public key in `public_key`.
async fn spawn_with_public_key(algorithm: JwtAlgorithm, public_key: &Path) -> TestApp {
    let public_key = public_key.to_path_buf();
    spawn_app_with(Backend::Sqlite, move |c| {
        c.jwt_algorithm = algorithm;
        c.jwt_public_key_file = Some(public_key);
        c.jwt_secret = None;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddsa_tokens_are_verified_with_the_public_key() {
    let dir = key_dir();
    let (private, public) = ed25519_pair(&dir, "ed");
    let (other_private, _) = ed25519_pair(&dir, "other");
    let app = spawn_with_public_key(JwtAlgorithm::EdDSA, &public).await;
    let key = EncodingKey::from_ed_pem(&private).expect("Ed25519 key");

    let operator = sign(Algorithm::EdDSA, &key, &claims("operator", None));
    let (status, body) = post_with_authorization(&app, &format!("Bearer {operator}"), VIEWER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["viewer"],
        json!({ "role": "OPERATOR", "subject": "operator-hand-built", "tenant": null })
    );

    // The whole API works with such tokens, tenant admins included.
    let (_, body) = post_with_authorization(
        &app,
        &format!("Bearer {operator}"),
        r#"mutation { createTenant(name: "Ed", plan: BIZ) { id } }"#,
    )
    .await;
    let id = body["data"]["createTenant"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("created: {body}"))
        .to_owned();
    let admin = sign(Algorithm::EdDSA, &key, &claims("tenant_admin", Some(&id)));
    let (_, body) = post_with_authorization(&app, &format!("Bearer {admin}"), VIEWER).await;
    assert_eq!(body["data"]["viewer"]["role"], "TENANT_ADMIN", "{body}");
    assert_eq!(body["data"]["viewer"]["tenant"], json!({ "id": id, "name": "Ed" }));

    // The algorithm is pinned: HS256 tokens are refused whatever the secret, including
    // the public key itself used as an HMAC secret (algorithm confusion).
    let public_pem = std::fs::read_to_string(&public).expect("public key");
    let other = EncodingKey::from_ed_pem(&other_private).expect("Ed25519 key");
    let refused = [
        (
            "HS256 with the test secret",
            hs256(&claims("operator", None), JWT_SECRET),
        ),
        (
            "HS256 with the public key as secret",
            hs256(&claims("operator", None), &public_pem),
        ),
        (
            "EdDSA with another key",
            sign(Algorithm::EdDSA, &other, &claims("operator", None)),
        ),
    ];
    for (label, token) in &refused {
        let (status, body) = post_with_authorization(&app, &format!("Bearer {token}"), CREATE).await;
        assert_refused(label, status, &body);
    }
    let (_, body) = post_with_authorization(&app, &format!("Bearer {operator}"), TENANTS).await;
    let names: Vec<_> = body["data"]["tenants"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("Ed")], "the refused tokens created nothing");
    app.finish().await;
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_are_verified_with_the_public_key() {
    let dir = key_dir();
    let (private, public) = rsa_pair(&dir, "rsa");
    let (ed_private, _) = ed25519_pair(&dir, "ed");
    let app = spawn_with_public_key(JwtAlgorithm::RS256, &public).await;
    let key = EncodingKey::from_rsa_pem(&private).expect("RSA key");

    let service = sign(Algorithm::RS256, &key, &claims("service", None));
    let (status, body) = post_with_authorization(&app, &format!("Bearer {service}"), VIEWER).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["viewer"],
        json!({ "role": "SERVICE", "subject": "service-hand-built", "tenant": null })
    );

    let public_pem = std::fs::read_to_string(&public).expect("public key");
    let ed = EncodingKey::from_ed_pem(&ed_private).expect("Ed25519 key");
    let refused = [
        (
            "HS256 with the test secret",
            hs256(&claims("operator", None), JWT_SECRET),
        ),
        (
            "HS256 with the public key as secret",
            hs256(&claims("operator", None), &public_pem),
        ),
        (
            "EdDSA when RS256 is configured",
            sign(Algorithm::EdDSA, &ed, &claims("operator", None)),
        ),
    ];
    for (label, token) in &refused {
        let (status, body) = post_with_authorization(&app, &format!("Bearer {token}"), CREATE).await;
        assert_refused(label, status, &body);
    }
    let operator = sign(Algorithm::RS256, &key, &claims("operator", None));
    let (_, body) = post_with_authorization(&app, &format!("Bearer {operator}"), TENANTS).await;
    assert_eq!(
        body["data"]["tenants"]["edges"],
        json!([]),
        "the refused tokens created nothing: {body}"
    );
    app.finish().await;
    std::fs::remove_dir_all(&dir).ok();
}

async fn viewer_describes_each_role(app: &TestApp) {
    let id = app.create_tenant("Own site", "BASIC").await;
    let d = app.ok(&app.operator(), VIEWER, json!({})).await;
    assert_eq!(
        d["viewer"],
        json!({ "role": "OPERATOR", "subject": "operator-subject", "tenant": null })
    );
    let d = app.ok(&app.admin(&id), VIEWER, json!({})).await;
    assert_eq!(
        d["viewer"],
        json!({ "role": "TENANT_ADMIN", "subject": "tenant_admin-subject", "tenant": { "id": id, "name": "Own site" } })
    );
    let d = app.ok(&app.service(), VIEWER, json!({})).await;
    assert_eq!(
        d["viewer"],
        json!({ "role": "SERVICE", "subject": "service-subject", "tenant": null })
    );
}

async fn service_reads_tenants_but_changes_nothing(app: &TestApp) {
    let id = app.create_tenant("Shop", "SHARE").await;
    app.ok(&app.admin(&id), UPDATE, json!({ "t": id, "i": valid_input() }))
        .await;
    let before = app.tenant(&id).await;
    let service = app.service();

    let d = app
        .ok(
            &service,
            "query($id:ID!){ tenant(id:$id){ id plan effectiveSender { address name source } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        d["tenant"],
        json!({ "id": id, "plan": "SHARE", "effectiveSender": { "address": "info@shop.example.com", "name": "ショップ通知", "source": "CUSTOM" } })
    );

    let attempts = [
        (
            "updateMailSettings",
            UPDATE.to_owned(),
            json!({ "t": id, "i": valid_input() }),
        ),
        (
            "clearMailSettings",
            "mutation($t:ID!){ clearMailSettings(tenantId:$t){ id } }".to_owned(),
            json!({ "t": id }),
        ),
        ("createTenant", CREATE.to_owned(), json!({})),
        (
            "changeTenantPlan",
            "mutation($t:ID!){ changeTenantPlan(tenantId:$t, plan:BASIC){ id } }".to_owned(),
            json!({ "t": id }),
        ),
        ("tenants", TENANTS.to_owned(), json!({})),
    ];
    for (op, query, variables) in attempts {
        let body = app.gql(&service, &query, variables).await;
        assert_eq!(code(&body), "FORBIDDEN", "service {op}: {body}");
        assert_eq!(body["errors"][0]["path"], json!([op]), "{body}");
        assert_eq!(body["data"], Value::Null, "service {op}: {body}");
    }
    assert_eq!(
        app.tenant(&id).await,
        before,
        "the tenant and its settings are unchanged"
    );
    assert_eq!(tenant_names(app).await, vec!["Shop".to_owned()]);
}

async fn tenant_admin_cannot_manage_tenants(app: &TestApp) {
    let id = app.create_tenant("Own site", "SHARE").await;
    let admin = app.admin(&id);
    let attempts = [
        ("createTenant", CREATE.to_owned(), json!({})),
        (
            "changeTenantPlan",
            "mutation($t:ID!){ changeTenantPlan(tenantId:$t, plan:BIZ){ id plan } }".to_owned(),
            json!({ "t": id }),
        ),
        ("tenants", TENANTS.to_owned(), json!({})),
    ];
    for (op, query, variables) in attempts {
        let body = app.gql(&admin, &query, variables).await;
        assert_eq!(code(&body), "FORBIDDEN", "tenant admin {op}: {body}");
        assert_eq!(body["data"], Value::Null, "tenant admin {op}: {body}");
    }
    assert_eq!(app.tenant(&id).await["plan"], "SHARE", "its own plan is unchanged");
    assert_eq!(tenant_names(app).await, vec!["Own site".to_owned()]);
}

async fn other_tenant_answers_like_a_nonexistent_one(app: &TestApp) {
    let a = app.create_tenant("Tenant A", "SHARE").await;
    let b = app.create_tenant("Tenant B", "SHARE").await;
    app.ok(&app.admin(&b), UPDATE, json!({ "t": b, "i": valid_input() }))
        .await;
    let audit = "query($id:ID!){ tenant(id:$id){ id auditTrail(first:50){ edges { node { action actorSubject changes { field before after } } } } } }";
    let b_before = app.tenant(&b).await;
    let b_audit_before = app.ok(&app.operator(), audit, json!({ "id": b })).await;
    assert_eq!(
        b_audit_before["tenant"]["auditTrail"]["edges"]
            .as_array()
            .expect("edges")
            .len(),
        2
    );

    let admin_a = app.admin(&a);
    // A's admin does see its own tenant: the nulls below are about B.
    assert_eq!(
        app.ok(&admin_a, TENANT_QUERY, json!({ "id": a })).await["tenant"]["name"],
        "Tenant A"
    );
    assert_eq!(
        app.ok(&admin_a, audit, json!({ "id": a })).await["tenant"]["id"],
        a.as_str()
    );

    type Variables = fn(&str) -> Value;
    let operations: [(&str, &str, Variables); 5] = [
        ("tenant", TENANT_QUERY, |id| json!({ "id": id })),
        ("tenant { auditTrail }", audit, |id| json!({ "id": id })),
        (
            "updateMailSettings",
            UPDATE,
            |id| json!({ "t": id, "i": valid_input() }),
        ),
        (
            "clearMailSettings",
            "mutation($t:ID!){ clearMailSettings(tenantId:$t){ id mailSettings { host } } }",
            |id| json!({ "t": id }),
        ),
        (
            "changeTenantPlan",
            "mutation($t:ID!){ changeTenantPlan(tenantId:$t, plan:ECONOMY){ id plan } }",
            |id| json!({ "t": id }),
        ),
    ];
    for (op, query, variables) in operations {
        let on_b = app.gql(&admin_a, query, variables(&b)).await;
        let on_nothing = app.gql(&admin_a, query, variables(NONEXISTENT)).await;
        assert_eq!(
            on_b, on_nothing,
            "{op}: B must answer exactly like a nonexistent tenant"
        );
        match op {
            "tenant" | "tenant { auditTrail }" => {
                assert_eq!(on_b, json!({ "data": { "tenant": null } }), "{op}");
            }
            "updateMailSettings" | "clearMailSettings" => {
                assert_eq!(code(&on_b), "NOT_FOUND", "{op}: {on_b}");
                assert_eq!(on_b["data"], Value::Null, "{op}: {on_b}");
            }
            _ => {
                assert_eq!(
                    code(&on_b),
                    "FORBIDDEN",
                    "{op} is for operators only, whatever the id: {on_b}"
                );
                assert_eq!(on_b["data"], Value::Null, "{op}: {on_b}");
            }
        }
    }
    assert_eq!(app.tenant(&b).await, b_before, "B's plan and settings are unchanged");
    assert_eq!(
        app.ok(&app.operator(), audit, json!({ "id": b })).await,
        b_audit_before,
        "B's audit trail has no new entry"
    );
    assert_eq!(
        app.tenant(&a).await["mailSettings"],
        Value::Null,
        "nothing landed on A either"
    );
}

/// Whether the server takes `token` (200 on `viewer`) or refuses it (401).
async fn accepted(app: &TestApp, token: &str) -> bool {
    let (status, body) = post_with_authorization(app, &format!("Bearer {token}"), VIEWER).await;
    match status {
        200 => true,
        401 => {
            assert_refused("refused token", status, &body);
            false
        }
        other => panic!("{other}: {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbf_is_checked_with_the_same_leeway_as_exp() {
    let app = spawn_app(Backend::Sqlite).await;
    let with_nbf = |nbf: u64| {
        let mut c = claims("operator", None);
        c["nbf"] = json!(nbf);
        hs256(&c, JWT_SECRET)
    };
    assert!(accepted(&app, &with_nbf(now() - 10)).await, "valid since 10 s");
    assert!(
        accepted(&app, &with_nbf(now() + 5)).await,
        "5 s early: within the 30 s leeway"
    );
    assert!(
        !accepted(&app, &with_nbf(now() + 600)).await,
        "not valid for 10 minutes"
    );
    let mut malformed = claims("operator", None);
    malformed["nbf"] = json!("tomorrow");
    assert!(
        !accepted(&app, &hs256(&malformed, JWT_SECRET)).await,
        "nbf that is not a time"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_secrets_rotate_with_old_and_new_accepted_during_the_overlap() {
    let old = "the-old-hs256-secret-that-is-32-bytes-long!";
    let app = spawn_app_with(Backend::Sqlite, move |c| {
        c.jwt_previous_secrets = Some(secrecy::SecretString::from(format!(
            "{old}, another-retired-secret-of-32-bytes-length"
        )));
    })
    .await;
    assert!(
        accepted(&app, &hs256(&claims("operator", None), JWT_SECRET)).await,
        "the current secret"
    );
    assert!(
        accepted(&app, &hs256(&claims("operator", None), old)).await,
        "the previous secret"
    );
    let stranger = "a-secret-this-server-has-never-been-given!!";
    assert!(!accepted(&app, &hs256(&claims("operator", None), stranger)).await);
    let mut expired = claims("operator", None);
    expired["exp"] = json!(now() - 3600);
    assert!(
        !accepted(&app, &hs256(&expired, old)).await,
        "an old key does not revive an expired token"
    );
    app.finish().await;
}

/// A JWKS entry for an RSA public key file, with `kid`.
fn rsa_jwk(public: &Path, kid: &str) -> Value {
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-pubin", "-noout", "-modulus", "-in", public.to_str().unwrap()])
        .output()
        .expect("openssl runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let hex = text.trim().strip_prefix("Modulus=").expect("modulus");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    json!({ "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b64(&bytes), "e": "AQAB" })
}

fn rs256_with_kid(private: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(private).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_keys_rotate_through_a_jwks_by_kid_and_through_a_pem_bundle() {
    let dir = key_dir();
    let (old_private, old_public) = rsa_pair(&dir, "old");
    let (new_private, new_public) = rsa_pair(&dir, "new");
    let (stranger, _) = rsa_pair(&dir, "stranger");
    let jwks = dir.join("jwks.json");
    std::fs::write(
        &jwks,
        json!({ "keys": [rsa_jwk(&old_public, "2026-11"), rsa_jwk(&new_public, "2026-12")] }).to_string(),
    )
    .unwrap();
    let (pem, jwks_path) = (new_public.clone(), jwks.clone());
    let app = spawn_app_with(Backend::Sqlite, move |c| {
        c.jwt_algorithm = JwtAlgorithm::RS256;
        c.jwt_public_key_file = Some(pem);
        c.jwt_jwks_file = Some(jwks_path);
        c.jwt_secret = None;
    })
    .await;
    let op = claims("operator", None);
    assert!(
        accepted(&app, &rs256_with_kid(&old_private, Some("2026-11"), &op)).await,
        "old key, its kid"
    );
    assert!(
        accepted(&app, &rs256_with_kid(&new_private, Some("2026-12"), &op)).await,
        "new key, its kid"
    );
    assert!(
        accepted(&app, &rs256_with_kid(&old_private, None, &op)).await,
        "no kid: every key is tried"
    );
    assert!(
        !accepted(&app, &rs256_with_kid(&old_private, Some("2026-12"), &op)).await,
        "a kid names the one key that may verify it"
    );
    assert!(!accepted(&app, &rs256_with_kid(&stranger, None, &op)).await);
    assert!(!accepted(&app, &rs256_with_kid(&stranger, Some("unknown"), &op)).await);
    app.finish().await;

    // Two PEM keys in one file: both accepted.
    let bundle = dir.join("bundle.pem");
    let mut both = std::fs::read(&old_public).unwrap();
    both.extend(std::fs::read(&new_public).unwrap());
    std::fs::write(&bundle, both).unwrap();
    let app = spawn_with_public_key(JwtAlgorithm::RS256, &bundle).await;
    assert!(accepted(&app, &rs256_with_kid(&old_private, None, &op)).await);
    assert!(accepted(&app, &rs256_with_kid(&new_private, None, &op)).await);
    assert!(!accepted(&app, &rs256_with_kid(&stranger, None, &op)).await);
    app.finish().await;
    std::fs::remove_dir_all(&dir).ok();
}
