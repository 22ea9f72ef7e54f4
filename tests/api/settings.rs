//! Mail settings: saving and reading, the plan gate for each plan, clearing both ways,
//! every validation rule (code, field, nothing stored), optimistic concurrency, the
//! write-only password, presets and warnings.

use serde_json::{Value, json};
use testkit::settings::SettingsInput;

use crate::support::*;

crate::backend_tests!(
    save_and_read_back,
    every_plan_trying_to_save,
    clear_with_mutation_and_with_empty_form,
    bad_inputs_are_refused_and_change_nothing,
    version_conflict_changes_nothing,
    stored_password_needs_reentry_for_another_server,
    password_never_leaves_the_server,
    gmail_preset_and_warnings,
    pop_before_smtp_round_trip,
    internal_hosts_are_refused_on_save_and_unresolvable_ones_saved_with_a_warning,
);

async fn save_and_read_back(app: &TestApp) {
    let id = app.create_tenant("Shop", "SHARE").await;
    let d = app
        .ok(&app.admin(&id), UPDATE, json!({ "t": id, "i": valid_input() }))
        .await;
    let s = &d["updateMailSettings"];
    assert_eq!(s["serverKind"], "CUSTOM");
    assert_eq!(s["host"], "smtp.example.com");
    assert_eq!(s["port"], 587);
    assert_eq!(s["fromAddress"], "info@shop.example.com");
    assert_eq!(s["fromName"], "ショップ通知");
    assert_eq!(s["smtpAuth"], true);
    assert_eq!(s["username"], "info@shop.example.com");
    assert_eq!(s["hasPassword"], true);
    assert_eq!(s["encryption"], "STARTTLS");
    assert_eq!(s["popBeforeSmtp"], Value::Null);
    assert_eq!(s["sendIntervalMs"], 5000);
    assert_eq!(s["active"], true);
    assert_eq!(s["version"], 1);
    assert!(chrono::DateTime::parse_from_rfc3339(s["updatedAt"].as_str().unwrap()).is_ok());

    let t = app.tenant(&id).await;
    // The save alone says that the host did not resolve at the time and that the sender
    // domain publishes no SPF/DMARC (the tests' DNS knows neither); everything else reads
    // back as saved.
    let mut saved = s.clone();
    let save_warnings = saved["warnings"].take();
    assert!(
        save_warnings
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["code"].as_str().unwrap())
            .collect::<Vec<_>>()
            == ["HOST_NOT_RESOLVED", "SENDER_DOMAIN_AT_RISK"],
        "{save_warnings}"
    );
    let mut read = t["mailSettings"].clone();
    assert_eq!(read["warnings"].take(), json!([]));
    assert_eq!(read, saved);
    assert_eq!(
        t["effectiveSender"],
        json!({
            "address": "info@shop.example.com", "name": "ショップ通知", "source": "CUSTOM",
            "reason": "the tenant's own mail server is used (Share plan)"
        })
    );
    // Japanese by Accept-Language.
    let (_, body) = app
        .post(
            Some(&app.operator()),
            Some("ja,en;q=0.5"),
            &json!({ "query": TENANT_QUERY, "variables": { "id": id } }),
        )
        .await;
    assert_eq!(
        body["data"]["tenant"]["effectiveSender"]["reason"],
        "テナント独自のメールサーバーを使用しています（シェアプラン）"
    );

    // Saving what is saved writes nothing: same version, same state.
    let mut same = valid_input();
    same["expectedVersion"] = json!(1);
    same["password"] = Value::Null;
    let d = app.ok(&app.admin(&id), UPDATE, json!({ "t": id, "i": same })).await;
    assert_eq!(d["updateMailSettings"]["version"], 1);

    // A second save with a change bumps the version.
    let mut next = valid_input();
    next["expectedVersion"] = json!(1);
    next["password"] = Value::Null;
    next["fromName"] = json!("ショップ通知（本店）");
    let d = app.ok(&app.admin(&id), UPDATE, json!({ "t": id, "i": next })).await;
    assert_eq!(d["updateMailSettings"]["version"], 2);
    assert_eq!(
        d["updateMailSettings"]["hasPassword"], true,
        "absent password keeps the stored one"
    );
}

async fn every_plan_trying_to_save(app: &TestApp) {
    for plan in ["ECONOMY", "BASIC", "PRO", "SHARE", "BIZ"] {
        let id = app.create_tenant(plan, plan).await;
        let body = app
            .gql(&app.admin(&id), UPDATE, json!({ "t": id, "i": valid_input() }))
            .await;
        let t = app.tenant(&id).await;
        if plan == "SHARE" || plan == "BIZ" {
            assert!(body.get("errors").is_none(), "{plan}: {body}");
            assert_eq!(t["mailSettings"]["host"], "smtp.example.com");
            assert_eq!(t["effectiveSender"]["source"], "CUSTOM");
        } else {
            assert_eq!(code(&body), "PLAN_FORBIDS_CUSTOM_SENDER", "{plan}");
            assert_eq!(body["errors"][0]["extensions"]["plan"], plan);
            assert_eq!(body["data"]["updateMailSettings"], Value::Null);
            assert_eq!(t["mailSettings"], Value::Null, "{plan}: nothing stored");
            assert_eq!(t["effectiveSender"]["source"], "PLATFORM_DEFAULT");
            // The operator is refused the same way.
            let body = app
                .gql(&app.operator(), UPDATE, json!({ "t": id, "i": valid_input() }))
                .await;
            assert_eq!(code(&body), "PLAN_FORBIDS_CUSTOM_SENDER");
            // Japanese message.
            let (_, ja) = app
                .post(
                    Some(&app.admin(&id)),
                    Some("ja"),
                    &json!({ "query": UPDATE, "variables": { "t": id, "i": valid_input() } }),
                )
                .await;
            assert!(
                ja["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("送信元メールアドレスを変更できません"),
                "{ja}"
            );
            // The plans that may are named from the plan gate, in the seed's words.
            assert!(
                ja["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .ends_with("できるのはシェアプランとSHARE info Biz（法人向け専用サーバープラン）のみです。"),
                "{ja}"
            );
        }
    }
}

async fn clear_with_mutation_and_with_empty_form(app: &TestApp) {
    let id = app.create_tenant("Clearer", "BIZ").await;
    let admin = app.admin(&id);
    app.ok(&admin, UPDATE, json!({ "t": id, "i": valid_input() })).await;
    let d = app
        .ok(&admin, "mutation($t:ID!){ clearMailSettings(tenantId:$t){ mailSettings { host } effectiveSender { source address } } }", json!({ "t": id }))
        .await;
    assert_eq!(d["clearMailSettings"]["mailSettings"], Value::Null);
    assert_eq!(
        d["clearMailSettings"]["effectiveSender"],
        json!({ "source": "PLATFORM_DEFAULT", "address": "noreply@platform.example" })
    );
    assert_eq!(app.tenant(&id).await["mailSettings"], Value::Null);

    // The seed page's way: erase every field and save.
    app.ok(&admin, UPDATE, json!({ "t": id, "i": valid_input() })).await;
    let erased = json!({ "host": "", "fromAddress": "", "fromName": "", "username": "", "password": "", "localHostname": "", "port": 587, "smtpAuth": true });
    let d = app.ok(&admin, UPDATE, json!({ "t": id, "i": erased })).await;
    assert_eq!(d["updateMailSettings"], Value::Null);
    let t = app.tenant(&id).await;
    assert_eq!(t["mailSettings"], Value::Null);
    assert_eq!(t["effectiveSender"]["source"], "PLATFORM_DEFAULT");
    assert_eq!(t["effectiveSender"]["reason"], "no settings saved");

    // A version never comes back after a clear: saves and clears so far were versions
    // 1 (save), 2 (clear), 3 (save), 4 (clear), so the next save is 5, not 1.
    let d = app.ok(&admin, UPDATE, json!({ "t": id, "i": valid_input() })).await;
    assert_eq!(d["updateMailSettings"]["version"], 5);

    // Clearing works on a plan that forbids overriding, too (settings kept inactive, then removed).
    app.ok(
        &app.operator(),
        "mutation($t:ID!){ changeTenantPlan(tenantId:$t, plan:PRO){ id } }",
        json!({ "t": id }),
    )
    .await;
    app.ok(
        &admin,
        "mutation($t:ID!){ clearMailSettings(tenantId:$t){ id } }",
        json!({ "t": id }),
    )
    .await;
    app.ok(
        &app.operator(),
        "mutation($t:ID!){ changeTenantPlan(tenantId:$t, plan:BIZ){ id } }",
        json!({ "t": id }),
    )
    .await;
    assert_eq!(
        app.tenant(&id).await["mailSettings"],
        Value::Null,
        "moving back does not resurrect cleared settings"
    );
}

/// One bad input per rule: `(what to change, field, code)`.
fn bad_inputs() -> Vec<(Value, &'static str, &'static str)> {
    let with = |k: &str, v: Value| {
        let mut i = valid_input();
        i[k] = v;
        i
    };
    let without = |k: &str| {
        let mut i = valid_input();
        i.as_object_mut().unwrap().remove(k);
        i
    };
    let pop = |p: Value| with("popBeforeSmtp", p);
    let good_pop = json!({ "host": "pop.example.com", "port": 110, "username": "u", "password": "p", "tls": false });
    let pop_with = |k: &str, v: Value| {
        let mut p = good_pop.clone();
        p[k] = v;
        pop(p)
    };
    vec![
        (without("fromAddress"), "fromAddress", "REQUIRED"),
        (
            with("fromAddress", json!("not-an-address")),
            "fromAddress",
            "INVALID_FORMAT",
        ),
        (with("fromAddress", json!("a@b")), "fromAddress", "INVALID_FORMAT"),
        (
            with("fromAddress", json!("a..b@example.com")),
            "fromAddress",
            "INVALID_FORMAT",
        ),
        (
            with("fromAddress", json!(format!("{}@example.com", "a".repeat(65)))),
            "fromAddress",
            "INVALID_FORMAT",
        ),
        (
            with(
                "fromAddress",
                json!(format!("a@{}.com", vec!["b".repeat(60); 5].join("."))),
            ),
            "fromAddress",
            "TOO_LONG",
        ),
        (
            with("fromAddress", json!("info@example.com\r\nBcc: x@evil.example")),
            "fromAddress",
            "CONTROL_CHARACTERS",
        ),
        (with("fromName", json!("x".repeat(101))), "fromName", "TOO_LONG"),
        (
            with("fromName", json!("Shop\r\nBcc: x@evil.example")),
            "fromName",
            "CONTROL_CHARACTERS",
        ),
        (with("fromName", json!("tab\there")), "fromName", "CONTROL_CHARACTERS"),
        (with("fromName", json!("nul\u{0}")), "fromName", "CONTROL_CHARACTERS"),
        (without("host"), "host", "REQUIRED"),
        (with("host", json!("smtp://smtp.example.com")), "host", "INVALID_FORMAT"),
        (with("host", json!("smtp.example.com:587")), "host", "INVALID_FORMAT"),
        (with("host", json!("smtp.example.com/path")), "host", "INVALID_FORMAT"),
        (with("host", json!("smtp example.com")), "host", "INVALID_FORMAT"),
        (with("host", json!("smtp.example.com\n")), "host", "CONTROL_CHARACTERS"),
        (
            with("host", json!("smtp\u{7}.example.com")),
            "host",
            "CONTROL_CHARACTERS",
        ),
        (
            with("host", json!(format!("{}.com", vec!["a".repeat(60); 5].join(".")))),
            "host",
            "TOO_LONG",
        ),
        (without("port"), "port", "REQUIRED"),
        (with("port", json!(0)), "port", "OUT_OF_RANGE"),
        (with("port", json!(65536)), "port", "OUT_OF_RANGE"),
        (with("port", json!(-25)), "port", "OUT_OF_RANGE"),
        (without("username"), "username", "REQUIRED"),
        (without("password"), "password", "REQUIRED"),
        (
            with("password", json!("pass\r\nword")),
            "password",
            "CONTROL_CHARACTERS",
        ),
        (with("username", json!("user\nname")), "username", "CONTROL_CHARACTERS"),
        (
            with("localHostname", json!("localhost")),
            "localHostname",
            "INVALID_FORMAT",
        ),
        (
            with("localHostname", json!("mail.example.com\r\nMAIL FROM:<x@evil.example>")),
            "localHostname",
            "CONTROL_CHARACTERS",
        ),
        (
            with("localHostname", json!("[999.1.1.1]")),
            "localHostname",
            "INVALID_FORMAT",
        ),
        (
            with("localHostname", json!("has space.example.com")),
            "localHostname",
            "INVALID_FORMAT",
        ),
        (with("sendIntervalMs", json!(-1)), "sendIntervalMs", "OUT_OF_RANGE"),
        (
            with("sendIntervalMs", json!(3_600_001)),
            "sendIntervalMs",
            "OUT_OF_RANGE",
        ),
        (pop_with("host", json!("")), "popBeforeSmtp.host", "REQUIRED"),
        (
            pop_with("host", json!("pop3://pop.example.com")),
            "popBeforeSmtp.host",
            "INVALID_FORMAT",
        ),
        (pop_with("port", json!(70000)), "popBeforeSmtp.port", "OUT_OF_RANGE"),
        (pop_with("username", json!("")), "popBeforeSmtp.username", "REQUIRED"),
        (pop_with("password", Value::Null), "popBeforeSmtp.password", "REQUIRED"),
        (
            pop_with("password", json!("a\nb")),
            "popBeforeSmtp.password",
            "CONTROL_CHARACTERS",
        ),
        // A form that sends back the mask it showed (as Keycloak's did for years).
        (with("password", json!("********")), "password", "MASKED_PASSWORD"),
        (with("password", json!("●●●●●●")), "password", "MASKED_PASSWORD"),
        (
            pop_with("password", json!("••••")),
            "popBeforeSmtp.password",
            "MASKED_PASSWORD",
        ),
        // A sender whose domain is an IP address.
        (
            with("fromAddress", json!("shop@[127.0.0.1]")),
            "fromAddress",
            "ADDRESS_LITERAL",
        ),
        (
            with("fromAddress", json!("shop@10.0.0.1")),
            "fromAddress",
            "ADDRESS_LITERAL",
        ),
    ]
}

async fn bad_inputs_are_refused_and_change_nothing(app: &TestApp) {
    let id = app.create_tenant("Validated", "SHARE").await;
    let admin = app.admin(&id);
    // Something is stored, so "nothing changed" is a real check.
    // (without a password, so a missing one is REQUIRED rather than reused).
    let mut first = valid_input();
    first["host"] = json!("smtp.first.example");
    first["smtpAuth"] = json!(false);
    first.as_object_mut().unwrap().remove("password");
    first.as_object_mut().unwrap().remove("username");
    app.ok(&admin, UPDATE, json!({ "t": id, "i": first })).await;
    let before = app.tenant(&id).await;
    for (input, field, why) in bad_inputs() {
        let body = app.gql(&admin, UPDATE, json!({ "t": id, "i": input })).await;
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "VALIDATION_FAILED",
            "{field}/{why}: {body}"
        );
        assert!(
            fields(&body).contains(&(field.to_owned(), why.to_owned())),
            "{field}/{why}: {body}"
        );
        let message = body["errors"][0]["extensions"]["fields"][0]["message"]
            .as_str()
            .unwrap_or("");
        assert!(!message.is_empty(), "each field error has a message");
        assert_eq!(app.tenant(&id).await, before, "{field}/{why}: nothing changed");
    }
    // Wrong GraphQL types are refused by the engine with the same code.
    let body = app
        .gql(&admin, UPDATE, json!({ "t": id, "i": { "port": "abc" } }))
        .await;
    assert_eq!(code(&body), "VALIDATION_FAILED");
    let body = app
        .gql(&admin, UPDATE, json!({ "t": id, "i": { "encryption": "TLS" } }))
        .await;
    assert_eq!(code(&body), "VALIDATION_FAILED");
    assert_eq!(app.tenant(&id).await, before);
    // Errors in Japanese.
    let mut bad = valid_input();
    bad["port"] = json!(0);
    let (_, ja) = app
        .post(
            Some(&admin),
            Some("ja"),
            &json!({ "query": UPDATE, "variables": { "t": id, "i": bad } }),
        )
        .await;
    assert_eq!(ja["errors"][0]["message"], "入力内容に誤りがあります。");
    assert_eq!(
        ja["errors"][0]["extensions"]["fields"][0]["message"],
        "サーバーのポートが範囲外です。"
    );
    // Every field is named in Japanese in Japanese messages (the API's name stays in
    // `field`, for programs).
    for (input, field, why) in bad_inputs() {
        let (_, ja) = app
            .post(
                Some(&admin),
                Some("ja"),
                &json!({ "query": UPDATE, "variables": { "t": id, "i": input } }),
            )
            .await;
        for error in ja["errors"][0]["extensions"]["fields"].as_array().into_iter().flatten() {
            let (name, message) = (
                error["field"].as_str().unwrap_or(""),
                error["message"].as_str().unwrap_or(""),
            );
            let last = name.rsplit('.').next().unwrap_or(name);
            assert!(
                !message.contains(name) && !message.contains(last) && !message.is_ascii(),
                "{field}/{why}: the Japanese message names the field by its API name: {message}"
            );
        }
    }
}

async fn version_conflict_changes_nothing(app: &TestApp) {
    let id = app.create_tenant("Racy", "SHARE").await;
    let admin = app.admin(&id);
    let mut i = valid_input();
    i["expectedVersion"] = json!(0);
    app.ok(&admin, UPDATE, json!({ "t": id, "i": i })).await;
    // Someone else saved version 1 -> 2.
    let mut other = valid_input();
    other["fromName"] = json!("Other editor");
    app.ok(&admin, UPDATE, json!({ "t": id, "i": other })).await;
    let before = app.tenant(&id).await;
    let mut stale = valid_input();
    stale["expectedVersion"] = json!(1);
    stale["fromName"] = json!("Stale editor");
    let body = app.gql(&admin, UPDATE, json!({ "t": id, "i": stale })).await;
    assert_eq!(code(&body), "VERSION_CONFLICT");
    assert_eq!(body["errors"][0]["extensions"]["currentVersion"], 2);
    assert_eq!(app.tenant(&id).await, before);
    // Expecting "nothing saved" when something is.
    let mut create = valid_input();
    create["expectedVersion"] = json!(0);
    assert_eq!(
        code(&app.gql(&admin, UPDATE, json!({ "t": id, "i": create })).await),
        "VERSION_CONFLICT"
    );
    // Clearing with a stale version.
    let body = app
        .gql(
            &admin,
            "mutation($t:ID!){ clearMailSettings(tenantId:$t, expectedVersion:1){ id } }",
            json!({ "t": id }),
        )
        .await;
    assert_eq!(code(&body), "VERSION_CONFLICT");
    assert_eq!(app.tenant(&id).await, before);
}

async fn stored_password_needs_reentry_for_another_server(app: &TestApp) {
    let id = app.create_tenant("Reentry", "SHARE").await;
    let admin = app.admin(&id);
    app.ok(&admin, UPDATE, json!({ "t": id, "i": valid_input() })).await;
    let before = app.tenant(&id).await;
    for (k, v) in [
        ("host", json!("smtp.attacker.example")),
        ("port", json!(2525)),
        ("username", json!("other")),
        ("encryption", json!("SSL")),
    ] {
        let mut i = valid_input();
        i.as_object_mut().unwrap().remove("password");
        i[k] = v;
        let body = app.gql(&admin, UPDATE, json!({ "t": id, "i": i })).await;
        assert_eq!(code(&body), "VALIDATION_FAILED", "{k}");
        assert_eq!(
            fields(&body),
            vec![("password".to_owned(), "PASSWORD_REENTRY_REQUIRED".to_owned())],
            "{k}"
        );
        assert_eq!(app.tenant(&id).await, before);
    }
    // With the password entered again it saves.
    let mut i = valid_input();
    i["host"] = json!("smtp.new.example");
    i["password"] = json!("new-password-1");
    let d = app.ok(&admin, UPDATE, json!({ "t": id, "i": i })).await;
    assert_eq!(d["updateMailSettings"]["host"], "smtp.new.example");
}

async fn password_never_leaves_the_server(app: &TestApp) {
    let id = app.create_tenant("Secretive", "BIZ").await;
    let admin = app.admin(&id);
    let secret = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let pop_secret = format!("pop-{}", uuid::Uuid::new_v4().simple());
    let mut i = valid_input();
    i["password"] = json!(secret);
    i["popBeforeSmtp"] =
        json!({ "host": "pop.example.com", "port": 995, "username": "popper", "password": pop_secret, "tls": true });
    let saved = app.gql(&admin, UPDATE, json!({ "t": id, "i": i })).await;
    let read = app.gql(&admin, TENANT_QUERY, json!({ "id": id })).await;
    let listed = app
        .gql(
            &app.operator(),
            "{ tenants(first:100){ edges { node { mailSettings { hasPassword popBeforeSmtp { hasPassword } } } } } }",
            json!({}),
        )
        .await;
    let trail = app.gql(&admin, "query($id:ID!){ tenant(id:$id){ auditTrail { edges { node { changes { field before after secret } } } } } }", json!({ "id": id })).await;
    // A failing save that carries the password must not echo it either.
    let mut bad = valid_input();
    bad["password"] = json!(secret);
    bad["port"] = json!(0);
    let refused = app.gql(&admin, UPDATE, json!({ "t": id, "i": bad })).await;
    for body in [&saved, &read, &listed, &trail, &refused] {
        let text = body.to_string();
        assert!(
            !text.contains(&secret) && !text.contains(&pop_secret),
            "secret leaked: {text}"
        );
    }
    assert_eq!(read["data"]["tenant"]["mailSettings"]["hasPassword"], true);
    assert_eq!(
        read["data"]["tenant"]["mailSettings"]["popBeforeSmtp"]["hasPassword"],
        true
    );
    // Nor the database in plain text.
    let rows = sea_orm::ConnectionTrait::query_all_raw(
        &app.app.db,
        sea_orm::Statement::from_string(app.app.db.get_database_backend(), "SELECT * FROM mail_settings"),
    )
    .await
    .expect("raw select");
    let dump = format!("{rows:?}");
    assert!(
        !dump.contains(&secret) && !dump.contains(&pop_secret),
        "password stored in plain text"
    );
    flush();
    let logs = logs();
    assert!(!logs.is_empty(), "logs were captured");
    assert!(
        !logs.contains(&secret) && !logs.contains(&pop_secret),
        "secret in the logs"
    );
}

async fn gmail_preset_and_warnings(app: &TestApp) {
    let id = app.create_tenant("Gmail user", "SHARE").await;
    let admin = app.admin(&id);
    let i = SettingsInput::preset("GMAIL", "me@gmail.com")
        .login("me@gmail.com", "abcd efgh ijkl mnop")
        .json();
    let d = app.ok(&admin, UPDATE, json!({ "t": id, "i": i })).await;
    let s = &d["updateMailSettings"];
    assert_eq!(
        (
            s["serverKind"].clone(),
            s["host"].clone(),
            s["port"].clone(),
            s["encryption"].clone(),
            s["smtpAuth"].clone()
        ),
        (
            json!("GMAIL"),
            json!("smtp.gmail.com"),
            json!(587),
            json!("STARTTLS"),
            json!(true)
        )
    );
    // The tests' DNS knows neither smtp.gmail.com nor the sender domain's records; what
    // the preset is about is that it needs no encryption warning.
    let warnings: Vec<&Value> = s["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["code"] != "HOST_NOT_RESOLVED" && w["code"] != "SENDER_DOMAIN_AT_RISK")
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");

    let cases = [
        (465, "STARTTLS", "PORT_465_WITH_STARTTLS"),
        (587, "SSL", "PORT_587_WITH_SSL"),
        (25, "NONE", "PASSWORD_WITHOUT_ENCRYPTION"),
    ];
    for (port, enc, warning) in cases {
        let mut i = valid_input();
        i["port"] = json!(port);
        i["encryption"] = json!(enc);
        let d = app.ok(&admin, UPDATE, json!({ "t": id, "i": i })).await;
        let codes: Vec<_> = d["updateMailSettings"]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["code"].clone())
            .filter(|c| c != "HOST_NOT_RESOLVED")
            .collect();
        // The host does not resolve and the domain has no records in the tests' DNS.
        assert_eq!(
            codes,
            vec![json!(warning), json!("SENDER_DOMAIN_AT_RISK")],
            "{port}/{enc}"
        );
    }
}

async fn pop_before_smtp_round_trip(app: &TestApp) {
    let id = app.create_tenant("Pop user", "SHARE").await;
    let admin = app.admin(&id);
    let mut i = valid_input();
    i["popBeforeSmtp"] =
        json!({ "host": "pop.example.com", "username": "popper", "password": "pop-pass", "tls": true });
    i["localHostname"] = json!("web01.shop.example.com");
    let d = app.ok(&admin, UPDATE, json!({ "t": id, "i": i.clone() })).await;
    assert_eq!(
        d["updateMailSettings"]["popBeforeSmtp"],
        json!({ "host": "pop.example.com", "port": 995, "username": "popper", "hasPassword": true, "tls": true })
    );
    assert_eq!(d["updateMailSettings"]["localHostname"], "web01.shop.example.com");
    // Same POP server without the password keeps it; another POP host needs it again.
    i["popBeforeSmtp"]["password"] = Value::Null;
    i["password"] = Value::Null;
    app.ok(&admin, UPDATE, json!({ "t": id, "i": i.clone() })).await;
    i["popBeforeSmtp"]["host"] = json!("pop.other.example");
    let body = app.gql(&admin, UPDATE, json!({ "t": id, "i": i.clone() })).await;
    assert_eq!(
        fields(&body),
        vec![(
            "popBeforeSmtp.password".to_owned(),
            "PASSWORD_REENTRY_REQUIRED".to_owned()
        )]
    );
    // Turning POP off.
    i.as_object_mut().unwrap().remove("popBeforeSmtp");
    let d = app.ok(&admin, UPDATE, json!({ "t": id, "i": i })).await;
    assert_eq!(d["updateMailSettings"]["popBeforeSmtp"], Value::Null);
}

async fn internal_hosts_are_refused_on_save_and_unresolvable_ones_saved_with_a_warning(app: &TestApp) {
    let id = app.create_tenant("Prober", "BIZ").await;
    let admin = app.admin(&id);
    for host in [
        "127.0.0.1",
        "::1",
        "10.0.0.1",
        "169.254.169.254",
        "localhost",
        "mail.localhost",
    ] {
        let mut i = valid_input();
        i["host"] = json!(host);
        let body = app.gql(&admin, UPDATE, json!({ "t": id, "i": i })).await;
        assert_eq!(code(&body), "VALIDATION_FAILED", "{host}: {body}");
        assert_eq!(
            fields(&body),
            vec![("host".to_owned(), "FORBIDDEN_ADDRESS".to_owned())],
            "{host}"
        );
    }
    // Both hosts at once, each named.
    let mut i = valid_input();
    i["host"] = json!("192.168.0.10");
    i["popBeforeSmtp"] = json!({ "host": "127.0.0.1", "username": "popper", "password": "pop-pass", "tls": true });
    let body = app.gql(&admin, UPDATE, json!({ "t": id, "i": i })).await;
    let mut got = fields(&body);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("host".to_owned(), "FORBIDDEN_ADDRESS".to_owned()),
            ("popBeforeSmtp.host".to_owned(), "FORBIDDEN_ADDRESS".to_owned())
        ]
    );
    let t = stored_and_audit(app, &id).await;
    assert_eq!(t["mailSettings"], Value::Null, "nothing stored: {t}");
    assert!(
        t["auditTrail"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["node"]["action"] != "MAIL_SETTINGS_SAVED"),
        "{t}"
    );
    // A name that does not resolve (now) is saved, with a warning on the field.
    let mut i = valid_input();
    i["host"] = json!("smtp.not-yet-delegated.invalid");
    i["popBeforeSmtp"] =
        json!({ "host": "pop.not-yet-delegated.invalid", "username": "popper", "password": "pop-pass", "tls": true });
    let d = app.ok(&admin, UPDATE, json!({ "t": id, "i": i })).await;
    let warnings: Vec<(String, String)> = d["updateMailSettings"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["code"].as_str().unwrap().to_owned(),
                w["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        warnings,
        vec![
            ("HOST_NOT_RESOLVED".to_owned(), "host".to_owned()),
            ("POP_HOST_NOT_RESOLVED".to_owned(), "popBeforeSmtp.host".to_owned()),
            ("SENDER_DOMAIN_AT_RISK".to_owned(), "fromAddress".to_owned())
        ]
    );
    assert_eq!(
        stored_and_audit(app, &id).await["mailSettings"]["host"],
        "smtp.not-yet-delegated.invalid"
    );
}

/// The tenant's saved settings (host) and its audit actions.
async fn stored_and_audit(app: &TestApp, id: &str) -> Value {
    app.ok(
        &app.operator(),
        "query($t:ID!){ tenant(id:$t){ mailSettings { host } auditTrail(first:50){ edges { node { action } } } } }",
        json!({ "t": id }),
    )
    .await["tenant"]
        .clone()
}
