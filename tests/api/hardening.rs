//! Hardening of the HTTP/GraphQL surface: query depth and complexity limits, batch and
//! body size limits, JSON-only POSTs, no operations over GET, GraphiQL and introspection
//! off unless configured, malformed requests, health and readiness, and internal errors
//! that reach the client only as a code and a correlation id.

use serde_json::{Value, json};
use testkit::settings::SettingsInput;

use crate::support::*;

crate::backend_tests!(
    batches_are_bounded,
    oversized_body_is_refused_and_runs_nothing,
    only_json_posts_are_accepted,
    get_never_runs_an_operation,
    introspection_is_off_by_default,
    malformed_requests_are_validation_errors,
    health_and_readiness,
);

const CREATE: &str = r#"mutation { createTenant(name: "Created", plan: SHARE) { id } }"#;

/// Names of all tenants, as an operator lists them.
async fn tenant_names(app: &TestApp) -> Vec<String> {
    let d = app
        .ok(
            &app.operator(),
            "{ tenants(first: 100) { edges { node { name } } } }",
            json!({}),
        )
        .await;
    d["tenants"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["name"].as_str().expect("name").to_owned())
        .collect()
}

/// Sends a prepared request; returns status, Content-Type and body text.
async fn send(req: reqwest::RequestBuilder) -> (u16, String, String) {
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, content_type, resp.text().await.expect("body"))
}

fn parse(status: u16, text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("JSON body, got {status}: {text}"))
}

/// An engine-level refusal: VALIDATION_FAILED and no data at all.
fn assert_refused_by_engine(body: &Value, what: &str) {
    assert_eq!(code(body), "VALIDATION_FAILED", "{what}: {body}");
    assert!(
        body.get("data").is_none_or(Value::is_null),
        "{what}: nothing is executed when validation fails: {body}"
    );
}

/// The same query text, after one request of it passed every validation rule, runs the
/// engine's fast rules and our own check of its variables: bad variables are refused
/// as they were the first time (same code, same field, same words), and nothing runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_query_text_refuses_bad_variables_as_a_new_one_does() {
    let app = spawn_app(Backend::Sqlite).await;
    let service = app.service();
    let tenant = app.create_tenant("Known", "SHARE").await;
    let enqueue = "mutation($i: NotificationInput!) { enqueueNotification(input: $i) { id } }";
    let good =
        json!({ "i": { "tenantId": tenant, "kind": "CUSTOM", "to": "a@example.net", "subject": "s", "text": "t" } });
    let d = app.ok(&service, enqueue, good).await;
    assert!(d["enqueueNotification"]["id"].is_string(), "{d}");
    let bad = [
        json!({ "i": { "tenantId": tenant, "kind": "NOPE", "to": "a@example.net" } }),
        json!({ "i": { "tenantId": tenant, "kind": "CUSTOM" } }),
        json!({ "i": { "tenantId": tenant, "kind": "CUSTOM", "to": ["a@example.net"] } }),
        json!({ "i": null }),
    ];
    for (n, variables) in bad.into_iter().enumerate() {
        let known = app.gql(&service, enqueue, variables.clone()).await;
        // A text never seen (one more space) runs every rule.
        let new_text = format!("{enqueue}{}", " ".repeat(n + 1));
        let new = app.gql(&service, &new_text, variables.clone()).await;
        assert_refused_by_engine(&known, &format!("known text, {variables}"));
        assert_eq!(known["errors"][0], new["errors"][0], "{variables}");
        assert!(fields(&known)[0].0.starts_with("input"), "the argument named: {known}");
    }
    let listed = app
        .ok(
            &app.operator(),
            "query($t: ID!) { tenant(id: $t) { deliveries(first: 10) { edges { node { id } } } } }",
            json!({ "t": tenant }),
        )
        .await;
    assert_eq!(
        listed["tenant"]["deliveries"]["edges"].as_array().map(Vec::len),
        Some(1),
        "only the good request enqueued: {listed}"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_depth_is_limited() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.max_query_depth = 3).await;
    let op = app.operator();
    let id = app.create_tenant("Depth", "SHARE").await;
    let admin = app.admin(&id);

    // Depth 3 (viewer > tenant > name) is within the limit.
    let d = app.ok(&admin, "{ viewer { tenant { name } } }", json!({})).await;
    assert_eq!(d["viewer"]["tenant"]["name"], "Depth");

    // Depth 5, written out and hidden in fragments.
    let deep = "{ viewer { tenant { mailSettings { popBeforeSmtp { host } } } } }";
    let body = app.gql(&admin, deep, json!({})).await;
    assert_refused_by_engine(&body, "depth 5");
    assert_eq!(body["errors"][0]["message"], "Query is nested too deep.");
    let fragments =
        "{ viewer { ...V } } fragment V on Viewer { tenant { ...T } } fragment T on Tenant { mailSettings { host } }";
    assert_refused_by_engine(
        &app.gql(&admin, fragments, json!({})).await,
        "depth 4 through fragments",
    );

    // A mutation that is too deep is not run.
    let body = app
        .gql(
            &op,
            r#"mutation { createTenant(name: "Too deep", plan: SHARE) { mailSettings { popBeforeSmtp { host } } } }"#,
            json!({}),
        )
        .await;
    assert_refused_by_engine(&body, "deep mutation");
    // (tenants > edges > cursor: depth 3.)
    let d = app
        .ok(&op, "{ tenants(first: 100) { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(
        d["tenants"]["edges"].as_array().expect("edges").len(),
        1,
        "only the first tenant exists"
    );
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_complexity_is_limited() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.max_query_complexity = 5).await;
    let op = app.operator();

    // plans + code = 2: within the limit.
    let d = app.ok(&op, "{ plans { code } }", json!({})).await;
    assert_eq!(d["plans"].as_array().expect("plans").len(), 5);

    let many = "{ plans { code name canOverrideSender } mailServerPresets { kind host port encryption smtpAuth } }";
    let body = app.gql(&op, many, json!({})).await;
    assert_refused_by_engine(&body, "complexity 10");
    assert_eq!(body["errors"][0]["message"], "Query is too complex.");

    // Aliases repeat fields; they count.
    let aliased = "{ a: plans { code } b: plans { code } c: plans { code } }";
    assert_refused_by_engine(&app.gql(&op, aliased, json!({})).await, "aliased fields");

    let body = app
        .gql(
            &op,
            r#"mutation { createTenant(name: "Complex", plan: SHARE) { id name plan canOverrideSender createdAt } }"#,
            json!({}),
        )
        .await;
    assert_refused_by_engine(&body, "complex mutation");
    // (A page of one: its fields count once per row it may return.)
    let d = app
        .ok(&op, "{ tenants(first: 1) { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(d["tenants"]["edges"], json!([]), "the refused mutation created nothing");
    app.finish().await;
}

async fn batches_are_bounded(app: &TestApp) {
    let op = app.operator();
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({ "query": format!(r#"mutation {{ createTenant(name: "Batch {i}", plan: SHARE) {{ id }} }}"#) }))
        .collect();
    let (status, body) = app.post(Some(&op), None, &Value::Array(eleven)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "VALIDATION_FAILED");
    assert!(body.get("data").is_none(), "{body}");
    assert_eq!(
        tenant_names(app).await,
        Vec::<String>::new(),
        "no operation of the refused batch ran"
    );

    // An empty list reaches the engine as one request with no query (serde reads a
    // struct from a sequence), so it is refused as an empty document.
    let (_, body) = app.post(Some(&op), None, &json!([])).await;
    assert_refused_by_engine(&body, "an empty batch");

    let ten: Vec<Value> = (0..10).map(|_| json!({ "query": "{ plans { code } }" })).collect();
    let (status, body) = app.post(Some(&op), None, &Value::Array(ten)).await;
    assert_eq!(status, 200, "ten is the limit, not beyond it: {body}");
    assert_eq!(body.as_array().expect("ten answers").len(), 10);

    // The operations of a batch are independent (they may run concurrently); each gets
    // its own answer, in order.
    let two = json!([
        { "query": CREATE },
        { "query": "{ mailServerPresets { kind host } plans { code } }" },
    ]);
    let (status, body) = app.post(Some(&op), None, &two).await;
    assert_eq!(status, 200, "{body}");
    let answers = body.as_array().unwrap_or_else(|| panic!("a list of answers: {body}"));
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|a| a.get("errors").is_none()), "{body}");
    let id = answers[0]["data"]["createTenant"]["id"].as_str().expect("created id");
    assert_eq!(app.tenant(id).await["name"], "Created");
    assert_eq!(
        answers[1]["data"]["mailServerPresets"][0],
        json!({ "kind": "GMAIL", "host": "smtp.gmail.com" })
    );
    assert_eq!(answers[1]["data"]["plans"].as_array().expect("plans").len(), 5);
    assert_eq!(tenant_names(app).await, vec!["Created".to_owned()]);
}

async fn oversized_body_is_refused_and_runs_nothing(app: &TestApp) {
    let op = app.operator();
    // A GraphQL comment pads the request; the operation itself is valid.
    let padded = |name: &str, pad: usize| json!({ "query": format!("# {}\nmutation {{ createTenant(name: \"{name}\", plan: SHARE) {{ id }} }}", "x".repeat(pad)) });

    let too_big = padded("Too big", 70 * 1024);
    assert!(too_big.to_string().len() > 64 * 1024);
    let (status, body) = app.post(Some(&op), None, &too_big).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(code(&body), "VALIDATION_FAILED");
    assert!(body.get("data").is_none(), "{body}");

    let fits = padded("Just fits", 60 * 1024);
    assert!(fits.to_string().len() < 64 * 1024);
    let (status, body) = app.post(Some(&op), None, &fits).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(
        tenant_names(app).await,
        vec!["Just fits".to_owned()],
        "the oversized request created nothing"
    );
}

async fn only_json_posts_are_accepted(app: &TestApp) {
    let op = app.operator();
    let json_body = json!({ "query": CREATE }).to_string();
    let attempts = [
        ("text/plain", Some("text/plain"), json_body.clone()),
        (
            "text/plain with charset",
            Some("text/plain; charset=utf-8"),
            json_body.clone(),
        ),
        ("no content type", None, json_body.clone()),
        (
            "form",
            Some("application/x-www-form-urlencoded"),
            format!(
                "query={}",
                CREATE
                    .replace(' ', "+")
                    .replace('"', "%22")
                    .replace('{', "%7B")
                    .replace('}', "%7D")
            ),
        ),
        (
            "multipart",
            Some("multipart/form-data; boundary=x"),
            format!("--x\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{json_body}\r\n--x--\r\n"),
        ),
    ];
    for (label, content_type, body) in attempts {
        let mut req = app.client.post(&app.url).bearer_auth(&op).body(body);
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        let (status, _, text) = send(req).await;
        let body = parse(status, &text);
        assert_eq!(status, 415, "{label}: {body}");
        assert_eq!(code(&body), "VALIDATION_FAILED", "{label}");
        assert_eq!(
            body["errors"][0]["message"], "Content-Type must be application/json.",
            "{label}"
        );
        assert!(body.get("data").is_none(), "{label}: {body}");
    }
    assert_eq!(
        tenant_names(app).await,
        Vec::<String>::new(),
        "no refused request created a tenant"
    );

    // application/json with a charset parameter is JSON.
    let req = app
        .client
        .post(&app.url)
        .bearer_auth(&op)
        .header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8")
        .body(json_body);
    let (status, _, text) = send(req).await;
    let body = parse(status, &text);
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(tenant_names(app).await, vec!["Created".to_owned()]);
}

fn get_url(app: &TestApp, query: &str) -> reqwest::Url {
    reqwest::Url::parse_with_params(&app.url, &[("query", query)]).expect("URL")
}

async fn get_never_runs_an_operation(app: &TestApp) {
    let op = app.operator();
    for query in [CREATE, "{ plans { code } }"] {
        let (status, _, text) = send(app.client.get(get_url(app, query)).bearer_auth(&op)).await;
        let body = parse(status, &text);
        assert_eq!(
            status, 405,
            "GraphiQL is off in this configuration, and GET runs nothing: {body}"
        );
        assert_eq!(code(&body), "VALIDATION_FAILED");
        assert!(body.get("data").is_none(), "{body}");
    }
    let (status, _, _) = send(app.client.get(&app.url)).await;
    assert_eq!(status, 405);
    assert_eq!(
        tenant_names(app).await,
        Vec::<String>::new(),
        "the GET mutation created nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_when_enabled_still_runs_nothing_over_get() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.graphiql = Some(true)).await;
    let (status, content_type, text) = send(app.client.get(&app.url)).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(text.to_lowercase().contains("graphiql"), "{text}");

    let op = app.operator();
    let (status, content_type, text) = send(app.client.get(get_url(&app, CREATE)).bearer_auth(&op)).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/html"),
        "the page, not an operation's answer: {content_type}"
    );
    assert!(!text.contains("\"data\""), "no operation result in the page");
    let d = app
        .ok(&op, "{ tenants(first: 100) { edges { node { name } } } }", json!({}))
        .await;
    assert_eq!(d["tenants"]["edges"], json!([]), "the GET mutation created nothing");
    app.finish().await;
}

async fn introspection_is_off_by_default(app: &TestApp) {
    let op = app.operator();
    // With introspection disabled the engine answers the meta-fields with null.
    for (query, field) in [
        ("{ __schema { types { name } } }", "__schema"),
        (r#"{ __type(name: "MailSettings") { name fields { name } } }"#, "__type"),
    ] {
        let (status, body) = app.post(Some(&op), None, &json!({ "query": query })).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"][field], Value::Null, "{query}: no schema data: {body}");
        let text = body.to_string();
        for type_name in ["MailSettings", "Tenant", "Plan"] {
            assert!(!text.contains(type_name), "{query}: {type_name} leaked: {body}");
        }
    }
}

/// The standard introspection query, as graphql-core (the Python port of graphql-js)
/// generates it for GraphiQL-style tools.
fn standard_introspection_query() -> String {
    let out = std::process::Command::new(testkit::servers::python())
        .args([
            "-c",
            "from graphql import get_introspection_query; print(get_introspection_query(descriptions=True))",
        ])
        .output()
        .expect("python3 runs (run tests/mailservers/install.sh)");
    assert!(
        out.status.success(),
        "graphql-core is installed (tests/mailservers/install.sh): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_introspection_query_passes_while_deep_queries_stay_refused() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.introspection = Some(true)).await;
    let op = app.operator();
    let query = standard_introspection_query();
    assert!(query.contains("ofType"), "{query}");
    let (status, body) = app
        .post(
            Some(&op),
            None,
            &json!({ "query": query, "operationName": "IntrospectionQuery" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    let types = body["data"]["__schema"]["types"].as_array().expect("types");
    assert!(types.iter().any(|t| t["name"] == "MailSettingsInput"), "{body}");
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");

    // Our own types keep the limit of 12 (checked before the fields are, so the shape
    // need not be valid) …
    let mut nested = String::from("host");
    // 4 × 4 + 1 = 17 levels: over 12, under the engine's recursion limit of 32.
    for _ in 0..4 {
        nested = format!("viewer {{ tenant {{ mailSettings {{ popBeforeSmtp {{ {nested} }} }} }} }}");
    }
    let body = app.gql(&op, &format!("{{ {nested} }}"), json!({})).await;
    assert_eq!(body["errors"][0]["message"], "Query is nested too deep.", "{body}");
    // … and introspection cannot nest without end either.
    let mut of_type = String::from("name");
    // 3 + 18 + 1 = 22 levels: over the introspection limit of 20, under the engine's
    // recursion limit of 32.
    for _ in 0..18 {
        of_type = format!("ofType {{ {of_type} }}");
    }
    let body = app
        .gql(
            &op,
            &format!(r#"{{ __type(name: "Tenant") {{ fields {{ type {{ {of_type} }} }} }} }}"#),
            json!({}),
        )
        .await;
    assert_eq!(body["errors"][0]["message"], "Query is nested too deep.", "{body}");
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_when_enabled() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.introspection = Some(true)).await;
    let d = app
        .ok(&app.operator(), "{ __schema { types { name } } }", json!({}))
        .await;
    let names: Vec<&str> = d["__schema"]["types"]
        .as_array()
        .expect("types")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for expected in ["Tenant", "MailSettings", "MailSettingsInput", "Plan", "EffectiveSender"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    let d = app
        .ok(
            &app.operator(),
            r#"{ __type(name: "MailSettings") { name fields { name } } }"#,
            json!({}),
        )
        .await;
    assert_eq!(d["__type"]["name"], "MailSettings");
    let fields: Vec<&str> = d["__type"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(
        fields.contains(&"hasPassword") && !fields.contains(&"password"),
        "{fields:?}"
    );
    app.finish().await;
}

async fn malformed_requests_are_validation_errors(app: &TestApp) {
    let op = app.operator();
    let broken = [
        (
            "truncated JSON",
            r#"{"query": "mutation { createTenant(name: \"Created\", plan: SHARE) { id } }""#.to_owned(),
        ),
        (
            "not JSON",
            "mutation { createTenant(name: \"Created\", plan: SHARE) { id } }".to_owned(),
        ),
        ("query is not a string", r#"{"query": 42}"#.to_owned()),
        ("a bare string", r#""{ plans { code } }""#.to_owned()),
    ];
    for (label, raw) in broken {
        let req = app
            .client
            .post(&app.url)
            .bearer_auth(&op)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(raw);
        let (status, _, text) = send(req).await;
        let body = parse(status, &text);
        assert_eq!(status, 400, "{label}: {body}");
        assert_eq!(code(&body), "VALIDATION_FAILED", "{label}");
        assert!(body.get("data").is_none(), "{label}: {body}");
    }

    let syntax = [
        (
            "unclosed selection",
            r#"mutation { createTenant(name: "Created", plan: SHARE) { id }"#,
        ),
        ("stray token", "{ plans { code } } }"),
        ("empty query", ""),
        ("unknown field", "{ plans { code price } }"),
    ];
    for (label, query) in syntax {
        let (status, body) = app.post(Some(&op), None, &json!({ "query": query })).await;
        assert_eq!(status, 200, "{label}: {body}");
        assert_refused_by_engine(&body, label);
    }
    // A wrongly typed argument names the argument.
    let body = app
        .gql(&op, "{ tenants(first: \"ten\") { edges { cursor } } }", json!({}))
        .await;
    assert_refused_by_engine(&body, "wrong argument type");
    assert_eq!(fields(&body), vec![("first".to_owned(), "INVALID_TYPE".to_owned())]);
    assert_eq!(
        tenant_names(app).await,
        Vec::<String>::new(),
        "no malformed request created a tenant"
    );
}

async fn health_and_readiness(app: &TestApp) {
    let base = format!("http://{}", app.addr);
    let (status, _, text) = send(app.client.get(format!("{base}/healthz"))).await;
    assert_eq!((status, text.as_str()), (200, "ok"));
    let (status, _, text) = send(app.client.get(format!("{base}/readyz"))).await;
    assert_eq!((status, text.as_str()), (200, "ready"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_database_is_not_ready_and_leaks_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let op = app.operator();
    let base = format!("http://{}", app.addr);
    app.app.db.close_by_ref().await.expect("pool closes");

    let (status, _, text) = send(app.client.get(format!("{base}/readyz"))).await;
    assert_eq!((status, text.as_str()), (503, "database unavailable"));
    let (status, _, text) = send(app.client.get(format!("{base}/healthz"))).await;
    assert_eq!(
        (status, text.as_str()),
        (200, "ok"),
        "liveness does not depend on the database"
    );

    let (status, body) = app
        .post(
            Some(&op),
            None,
            &json!({ "query": TENANT_QUERY, "variables": { "id": "0191a2b3-0000-7000-8000-000000000000" } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(code(&body), "INTERNAL", "{body}");
    let correlation_id = body["errors"][0]["extensions"]["correlationId"]
        .as_str()
        .unwrap_or_else(|| panic!("a correlation id: {body}"));
    assert_eq!(
        body["errors"][0]["message"],
        format!("An internal error occurred (reference {correlation_id})."),
        "the client gets the code and the reference, nothing else"
    );
    let text = body.to_string().to_lowercase();
    for detail in ["sqlx", "sqlite", "pool", "closed", "select", "database"] {
        assert!(!text.contains(detail), "{detail:?} leaked: {body}");
    }
    assert!(
        logs().contains(correlation_id),
        "the log has the details under the same reference"
    );

    let (_, ja) = app
        .post(
            Some(&op),
            Some("ja"),
            &json!({ "query": TENANT_QUERY, "variables": { "id": "0191a2b3-0000-7000-8000-000000000000" } }),
        )
        .await;
    assert_eq!(code(&ja), "INTERNAL");
    assert!(
        ja["errors"][0]["message"]
            .as_str()
            .expect("message")
            .starts_with("内部エラーが発生しました"),
        "{ja}"
    );
    app.finish().await;
}

/// A page counts once per row it may return, so wide pages and many aliased pages reach
/// the limit (default 5,000) while the pages a console asks for stay well inside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_count_their_rows_in_the_complexity_limit() {
    let app = spawn_app(Backend::Sqlite).await;
    let tenant = app.create_tenant("Aliases", "SHARE").await;
    let admin = app.admin(&tenant);
    let page = |alias: usize, first: u32| {
        format!(
            "d{alias}: deliveries(first: {first}) {{ edges {{ node {{ id status to subject retries createdAt }} }} counts {{ status count }} }}"
        )
    };
    // One full page of 100 with the fields a list shows, and the counts: fine.
    let one = format!("query($t:ID!){{ tenant(id:$t){{ {} }} }}", page(0, 100));
    let d = app.ok(&admin, &one, json!({ "t": tenant })).await;
    assert_eq!(d["tenant"]["d0"]["edges"], json!([]));
    assert!(d["tenant"]["d0"]["counts"].is_array());
    // The same page asked for ten times in one request: refused before anything runs.
    let many: Vec<String> = (0..10).map(|i| page(i, 100)).collect();
    let aliased = format!("query($t:ID!){{ tenant(id:$t){{ {} }} }}", many.join(" "));
    let body = app.gql(&admin, &aliased, json!({ "t": tenant })).await;
    assert_refused_by_engine(&body, "ten aliased pages of 100");
    // Small pages still add up the same way; the default page size (20) counts as 20.
    let small: Vec<String> = (0..10).map(|i| page(i, 5)).collect();
    let fine = format!("query($t:ID!){{ tenant(id:$t){{ {} }} }}", small.join(" "));
    let d = app.ok(&admin, &fine, json!({ "t": tenant })).await;
    assert_eq!(d["tenant"]["d9"]["edges"], json!([]));
    let operator = app.operator();
    let nested = "{ tenants(first: 100) { edges { node { name deliveries(first: 100) { edges { node { id } } } } } } }";
    assert_refused_by_engine(&app.gql(&operator, nested, json!({})).await, "100 pages of 100");
    app.finish().await;
}

/// A server has room for a fixed number of requests at once (more are refused at once
/// with OVERLOADED and Retry-After, not queued) and a deadline for each (TIMEOUT); the
/// room comes back when a request ends, either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_capped_and_each_has_a_deadline() {
    let (silent_port, _silent) = testkit::servers::silent_listener();
    let app = spawn_app_with(Backend::Sqlite, |c| {
        c.max_requests_in_flight = 1;
        c.request_timeout_secs = 2;
        c.allow_private_smtp_hosts = true;
        c.smtp_allowed_ports = vec![silent_port];
        c.smtp_connect_timeout_secs = 10;
        c.smtp_command_timeout_secs = 10;
    })
    .await;
    let tenant = app.create_tenant("Slow", "SHARE").await;
    let admin = app.admin(&tenant);
    let slow = json!({
        "query": "mutation($t:ID!,$s:MailSettingsInput!){ sendTestMail(tenantId:$t, to:\"a@example.net\", settings:$s){ ok } }",
        "variables": { "t": tenant, "s": SettingsInput::plain(silent_port).host("127.0.0.1").without_from_name().json() },
    });
    let started = std::time::Instant::now();
    let first = {
        let (client, url, token, body) = (app.client.clone(), app.url.clone(), admin.clone(), slow.clone());
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("sent")
        })
    };
    // While the test mail waits for a greeting that never comes, the one place is taken.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let resp = app
        .client
        .post(&app.url)
        .bearer_auth(&admin)
        .header("accept-language", "ja")
        .json(&json!({ "query": "{ viewer { role } }" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(
        resp.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(code(&body), "OVERLOADED", "{body}");
    assert!(
        body["errors"][0]["message"].as_str().unwrap().contains("混み合って"),
        "{body}"
    );

    let resp = first.await.expect("first request");
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(code(&body), "TIMEOUT", "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(9),
        "ended by the request deadline, not the SMTP timeouts"
    );
    // The place is free again.
    let d = app.ok(&admin, "{ viewer { role } }", json!({})).await;
    assert_eq!(d["viewer"]["role"], "TENANT_ADMIN");
    // Health stays outside the cap.
    let health = app
        .client
        .get(format!("http://{}/healthz", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    app.finish().await;
}

/// `query { __typename ...F0 } fragment F0 on Query { ...F1 ...F1 } … fragment F{n} on
/// Query { __typename }`: about a kilobyte that the engine's own checks expand 2^n times.
fn fan_out(levels: usize) -> String {
    let mut q = String::from("query { __typename ...F0 }");
    for i in 0..levels {
        q.push_str(&format!(" fragment F{i} on Query {{ ...F{n} ...F{n} }}", n = i + 1));
    }
    q.push_str(&format!(" fragment F{levels} on Query {{ __typename }}"));
    q
}

/// The fan-out documents of a stranger (no token) are refused with the usual typed
/// error, and `/healthz` answers while they are being refused. (Before: 24 levels held a
/// thread for 8–15 s and 30 for minutes; the client's timeout below catches a hang, it
/// is not a speed measurement — `cargo run --release -p bench --bin validation` is.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_documents_are_refused_at_once_while_health_answers() {
    let app = spawn_app(Backend::Sqlite).await;
    let hang = std::time::Duration::from_secs(20);
    let health_url = format!("http://{}/healthz", app.addr);
    for levels in [24, 30, 60] {
        let query = fan_out(levels);
        let stranger = {
            let (client, url) = (app.client.clone(), app.url.clone());
            let body = json!({ "query": query });
            tokio::spawn(async move { client.post(url).json(&body).send().await?.json::<Value>().await })
        };
        let signed_in = {
            let (client, url, token) = (app.client.clone(), app.url.clone(), app.operator());
            let body = json!({ "query": query });
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await?
                    .json::<Value>()
                    .await
            })
        };
        let health = tokio::time::timeout(hang, app.client.get(&health_url).send())
            .await
            .expect("/healthz answers while the documents are refused")
            .expect("health");
        assert_eq!(health.status().as_u16(), 200);
        for (who, task) in [("anonymous", stranger), ("operator", signed_in)] {
            let body = tokio::time::timeout(hang, task)
                .await
                .unwrap_or_else(|_| panic!("{levels} levels ({who}): no answer"))
                .expect("task")
                .expect("JSON answer");
            assert_refused_by_engine(&body, &format!("{levels} levels ({who})"));
            assert_eq!(
                body["errors"][0]["message"], "Query expands to too many selections.",
                "{levels} levels ({who}): {body}"
            );
        }
    }
    // A fragment cycle is refused by the same check (the engine's own expansions would
    // never end), and an ordinary document with fragments still runs.
    let (_, body) = app
        .post(
            None,
            None,
            &json!({ "query": "{ ...A } fragment A on Query { __typename ...B } fragment B on Query { ...A }" }),
        )
        .await;
    assert_refused_by_engine(&body, "fragment cycle");
    let d = app
        .ok(
            &app.operator(),
            "{ ...A } fragment A on Query { plans { ...P } } fragment P on PlanInfo { code }",
            json!({}),
        )
        .await;
    assert_eq!(d["plans"].as_array().expect("plans").len(), 5);
    app.finish().await;
}

/// A stranger's 64 KiB body that passes one 30 KB variable ten thousand times would make
/// the engine copy it into the argument each time (hundreds of megabytes): refused
/// before the engine sees it; the same variable passed once is fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_passed_over_and_over_are_refused_before_the_engine_copies_them() {
    let app = spawn_app(Backend::Sqlite).await;
    let value = "x".repeat(30_000);
    let repeated = format!("query($v: ID) {{ tenant(id: [{}]) {{ name }} }}", "$v,".repeat(10_000));
    let (status, body) = app
        .post(None, None, &json!({ "query": repeated, "variables": { "v": value } }))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_refused_by_engine(&body, "a variable passed 10,000 times");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains(graphql_api::depth::VARIABLES_TOO_LARGE)),
        "{body}"
    );
    // The same, the value given as the variable's default.
    let defaulted = format!(
        "query($v: ID = \"{value}\") {{ tenant(id: [{}]) {{ name }} }}",
        "$v,".repeat(10_000)
    );
    let (_, body) = app.post(None, None, &json!({ "query": defaulted })).await;
    assert_refused_by_engine(&body, "a default passed 10,000 times");
    // Once, the same value reaches the engine, which runs it (a stranger sees no tenant).
    let (_, body) = app
        .post(
            None,
            None,
            &json!({ "query": "query($v: ID!) { tenant(id: $v) { name } }", "variables": { "v": value } }),
        )
        .await;
    assert!(body["data"].is_object(), "{body}");
    app.finish().await;
}

/// Strangers get one operation per request, fewer selections and a capped answer; the
/// same requests signed in are answered in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_callers_get_tighter_limits() {
    let app = spawn_app(Backend::Sqlite).await;
    let op = app.operator();
    let two = json!([{ "query": "{ plans { code } }" }, { "query": "{ plans { code } }" }]);
    let (status, body) = app.post(None, Some("ja"), &two).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(code(&body), "VALIDATION_FAILED");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("サインイン"),
        "{body}"
    );
    let (status, body) = app.post(Some(&op), None, &two).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().expect("two answers").len(), 2);
    // A batch of one is fine.
    let (_, body) = app.post(None, None, &json!([{ "query": "{ plans { code } }" }])).await;
    assert_eq!(body[0]["data"]["plans"].as_array().expect("plans").len(), 5, "{body}");

    // Aliases of every preset with every field they carry: a few hundred selections, an
    // answer far beyond 256 KiB.
    let fields = "name host source hints { message }";
    let one = format!("{{ p: mailServerPresets {{ {fields} }} }}");
    let size = serde_json::to_vec(&app.ok(&op, &one, json!({})).await)
        .expect("JSON")
        .len();
    let aliases = (256 * 1024) / size + 2;
    let query = format!(
        "{{ {} }}",
        (0..aliases)
            .map(|i| format!("p{i}: mailServerPresets {{ {fields} }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(
        aliases * 6 < 1_000,
        "the document stays under the anonymous selection limit ({aliases} aliases)"
    );
    let (status, body) = app.post(None, None, &json!({ "query": query })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(code(&body), "VALIDATION_FAILED", "{body}");
    assert!(body.get("data").is_none(), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("256 KiB"),
        "{body}"
    );
    let (_, body) = app.post(Some(&op), None, &json!({ "query": query })).await;
    assert!(body.get("errors").is_none(), "{}", &body.to_string()[..200]);
    assert_eq!(
        body["data"].as_object().expect("data").len(),
        aliases,
        "an operator gets the whole answer"
    );

    // More selections than a stranger may ask for (but within a signed-in caller's).
    let many = format!(
        "{{ {} }}",
        (0..600)
            .map(|i| format!("c{i}: plans {{ code }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (_, body) = app.post(None, None, &json!({ "query": many })).await;
    assert_refused_by_engine(&body, "1,200 selections anonymously");
    assert_eq!(body["errors"][0]["message"], "Query expands to too many selections.");
    app.finish().await;
}
