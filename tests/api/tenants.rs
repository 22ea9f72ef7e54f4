//! Tenants and plans: creating, listing with cursors and a plan filter, plan changes
//! with their effect on the effective sender, plans and presets, the audit trail.

use serde_json::{Value, json};

use crate::support::*;

crate::backend_tests!(
    create_and_read_tenant,
    list_tenants_with_cursor_and_plan_filter,
    downgrade_keeps_settings_inactive_and_upgrade_reactivates,
    plans_and_presets,
    audit_trail_records_who_and_what,
    audit_trail_pages_newest_first_and_reads_in_words,
    operators_find_tenants_by_name,
    create_tenant_rejects_bad_names,
);

async fn create_and_read_tenant(app: &TestApp) {
    let id = app.create_tenant("Sakura Bakery", "BASIC").await;
    let t = app.tenant(&id).await;
    assert_eq!(t["name"], "Sakura Bakery");
    assert_eq!(t["plan"], "BASIC");
    assert_eq!(t["canOverrideSender"], false);
    assert_eq!(t["mailSettings"], serde_json::Value::Null);
    assert_eq!(t["effectiveSender"]["address"], "noreply@platform.example");
    assert_eq!(t["effectiveSender"]["name"], "Platform");
    assert_eq!(t["effectiveSender"]["source"], "PLATFORM_DEFAULT");
    assert_eq!(
        t["effectiveSender"]["reason"],
        "the Basic plan does not allow a custom sender"
    );

    let share = app.create_tenant("Share site", "SHARE").await;
    let t = app.tenant(&share).await;
    assert_eq!(t["canOverrideSender"], true);
    assert_eq!(t["effectiveSender"]["reason"], "no settings saved");

    // Unknown and malformed ids answer null.
    let body = app
        .gql(
            &app.operator(),
            TENANT_QUERY,
            json!({ "id": "0191a2b3-0000-7000-8000-000000000000" }),
        )
        .await;
    assert_eq!(body["data"]["tenant"], serde_json::Value::Null);
    let body = app
        .gql(&app.operator(), TENANT_QUERY, json!({ "id": "not-an-id" }))
        .await;
    assert_eq!(body["data"]["tenant"], serde_json::Value::Null);
}

async fn list_tenants_with_cursor_and_plan_filter(app: &TestApp) {
    let mut ids = Vec::new();
    for (i, plan) in ["SHARE", "BASIC", "SHARE", "BIZ", "SHARE"].iter().enumerate() {
        ids.push(app.create_tenant(&format!("T{i}"), plan).await);
    }
    let q = "query($f:Int,$a:String,$p:Plan){ tenants(first:$f, after:$a, plan:$p){ edges { cursor node { id plan } } pageInfo { hasNextPage endCursor } } }";
    let op = app.operator();
    let page1 = app.ok(&op, q, json!({ "f": 2 })).await;
    let edges = page1["tenants"]["edges"].as_array().unwrap().clone();
    assert_eq!(edges.len(), 2);
    assert_eq!(edges[0]["node"]["id"], ids[0].as_str());
    assert_eq!(edges[1]["node"]["id"], ids[1].as_str());
    assert_eq!(page1["tenants"]["pageInfo"]["hasNextPage"], true);
    let cursor = page1["tenants"]["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
    let page2 = app.ok(&op, q, json!({ "f": 10, "a": cursor })).await;
    let rest: Vec<_> = page2["tenants"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].clone())
        .collect();
    assert_eq!(rest, vec![json!(ids[2]), json!(ids[3]), json!(ids[4])]);
    assert_eq!(page2["tenants"]["pageInfo"]["hasNextPage"], false);

    let shares = app.ok(&op, q, json!({ "f": 10, "p": "SHARE" })).await;
    let got: Vec<_> = shares["tenants"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["id"].clone())
        .collect();
    assert_eq!(got, vec![json!(ids[0]), json!(ids[2]), json!(ids[4])]);

    let bad = app.gql(&op, q, json!({ "f": 0 })).await;
    assert_eq!(code(&bad), "VALIDATION_FAILED");
    assert_eq!(fields(&bad), vec![("first".to_owned(), "OUT_OF_RANGE".to_owned())]);
    let bad = app.gql(&op, q, json!({ "f": 5, "a": "garbage!" })).await;
    assert_eq!(fields(&bad), vec![("after".to_owned(), "INVALID_FORMAT".to_owned())]);
}

async fn downgrade_keeps_settings_inactive_and_upgrade_reactivates(app: &TestApp) {
    let id = app.create_tenant("Mover", "SHARE").await;
    app.ok(&app.admin(&id), UPDATE, json!({ "t": id, "i": valid_input() }))
        .await;
    let t = app.tenant(&id).await;
    assert_eq!(t["effectiveSender"]["source"], "CUSTOM");
    assert_eq!(t["effectiveSender"]["address"], "info@shop.example.com");
    assert_eq!(t["mailSettings"]["active"], true);

    let change = "mutation($t:ID!,$p:Plan!){ changeTenantPlan(tenantId:$t, plan:$p){ plan canOverrideSender mailSettings { active host } effectiveSender { source address reason } } }";
    for plan in ["ECONOMY", "BASIC", "PRO"] {
        let d = app.ok(&app.operator(), change, json!({ "t": id, "p": plan })).await;
        let t = &d["changeTenantPlan"];
        assert_eq!(t["plan"], plan);
        assert_eq!(t["canOverrideSender"], false);
        assert_eq!(t["mailSettings"]["active"], false);
        assert_eq!(t["mailSettings"]["host"], "smtp.example.com");
        assert_eq!(t["effectiveSender"]["source"], "PLATFORM_DEFAULT");
        assert_eq!(t["effectiveSender"]["address"], "noreply@platform.example");
        assert_eq!(
            t["effectiveSender"]["reason"],
            format!(
                "the {} plan does not allow a custom sender; the saved settings are inactive",
                domain::Plan::from_code(plan).unwrap().display_name()
            )
        );
        // A fresh read (not the mutation's answer) agrees at once.
        assert_eq!(app.tenant(&id).await["effectiveSender"]["source"], "PLATFORM_DEFAULT");
    }
    let d = app.ok(&app.operator(), change, json!({ "t": id, "p": "BIZ" })).await;
    assert_eq!(d["changeTenantPlan"]["mailSettings"]["active"], true);
    assert_eq!(d["changeTenantPlan"]["effectiveSender"]["source"], "CUSTOM");
    assert_eq!(
        app.tenant(&id).await["effectiveSender"]["address"],
        "info@shop.example.com"
    );

    // Operators only.
    let denied = app.gql(&app.admin(&id), change, json!({ "t": id, "p": "SHARE" })).await;
    assert_eq!(code(&denied), "FORBIDDEN");
    assert_eq!(app.tenant(&id).await["plan"], "BIZ");
    let missing = app
        .gql(
            &app.operator(),
            change,
            json!({ "t": "0191a2b3-0000-7000-8000-000000000000", "p": "SHARE" }),
        )
        .await;
    assert_eq!(code(&missing), "NOT_FOUND");
}

async fn plans_and_presets(app: &TestApp) {
    let d = app
        .ok(
            &app.service(),
            "{ plans { code name canOverrideSender } mailServerPresets { kind host port encryption smtpAuth } }",
            json!({}),
        )
        .await;
    let allowed: Vec<_> = d["plans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["canOverrideSender"] == true)
        .map(|p| p["code"].clone())
        .collect();
    assert_eq!(allowed, vec![json!("SHARE"), json!("BIZ")]);
    assert_eq!(d["plans"].as_array().unwrap().len(), 5);
    // Gmail first, as before; every other preset is checked in `assistant.rs`.
    assert_eq!(
        d["mailServerPresets"][0],
        json!({ "kind": "GMAIL", "host": "smtp.gmail.com", "port": 587, "encryption": "STARTTLS", "smtpAuth": true })
    );
    assert_eq!(
        d["mailServerPresets"].as_array().unwrap().len(),
        domain::providers::PROVIDERS.len()
    );
}

async fn audit_trail_records_who_and_what(app: &TestApp) {
    let id = app.create_tenant("Audited", "SHARE").await;
    let admin = app.admin(&id);
    app.ok(&admin, UPDATE, json!({ "t": id, "i": valid_input() })).await;
    let mut changed = valid_input();
    changed["port"] = json!(465);
    changed["encryption"] = json!("SSL");
    changed["password"] = json!("another-Secret-9");
    app.ok(&admin, UPDATE, json!({ "t": id, "i": changed })).await;
    app.ok(
        &app.operator(),
        "mutation($t:ID!){ changeTenantPlan(tenantId:$t, plan:BASIC){ id } }",
        json!({ "t": id }),
    )
    .await;
    app.ok(
        &admin,
        "mutation($t:ID!){ clearMailSettings(tenantId:$t){ id } }",
        json!({ "t": id }),
    )
    .await;

    let q = "query($id:ID!,$a:String){ tenant(id:$id){ auditTrail(first:10, after:$a){ edges { cursor node { action actorSubject actorRole at changes { field before after secret } } } pageInfo { hasNextPage endCursor } } } }";
    let d = app.ok(&admin, q, json!({ "id": id })).await;
    let edges = d["tenant"]["auditTrail"]["edges"].as_array().unwrap();
    let actions: Vec<_> = edges.iter().map(|e| e["node"]["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "TENANT_CREATED",
            "MAIL_SETTINGS_SAVED",
            "MAIL_SETTINGS_SAVED",
            "PLAN_CHANGED",
            "MAIL_SETTINGS_CLEARED"
        ]
    );
    assert_eq!(edges[0]["node"]["actorRole"], "OPERATOR");
    assert_eq!(edges[1]["node"]["actorRole"], "TENANT_ADMIN");
    assert_eq!(edges[1]["node"]["actorSubject"], "tenant_admin-subject");
    let second = edges[2]["node"]["changes"].as_array().unwrap();
    assert!(
        second.contains(&json!({ "field": "port", "before": "587", "after": "465", "secret": false })),
        "{second:?}"
    );
    assert!(second.contains(&json!({ "field": "encryption", "before": "STARTTLS", "after": "SSL", "secret": false })));
    assert!(second.contains(&json!({ "field": "password", "before": null, "after": null, "secret": true })));
    assert!(
        edges[3]["node"]["changes"]
            .as_array()
            .unwrap()
            .contains(&json!({ "field": "plan", "before": "SHARE", "after": "BASIC", "secret": false }))
    );
    let text = d.to_string();
    assert!(
        !text.contains("s3cret-Passw0rd") && !text.contains("another-Secret-9"),
        "no secret in the trail"
    );

    // Paging.
    let d = app
        .ok(&admin, q.replace("first:10", "first:2").as_str(), json!({ "id": id }))
        .await;
    assert_eq!(d["tenant"]["auditTrail"]["pageInfo"]["hasNextPage"], true);
    let after = d["tenant"]["auditTrail"]["pageInfo"]["endCursor"].clone();
    let d = app.ok(&admin, q, json!({ "id": id, "a": after })).await;
    assert_eq!(d["tenant"]["auditTrail"]["edges"].as_array().unwrap().len(), 3);

    // Services do not read the trail.
    let denied = app.gql(&app.service(), q, json!({ "id": id })).await;
    assert_eq!(code(&denied), "FORBIDDEN");
}

async fn audit_trail_pages_newest_first_and_reads_in_words(app: &TestApp) {
    let id = app.create_tenant("Worded", "SHARE").await;
    let admin = app.admin(&id);
    app.ok(&admin, UPDATE, json!({ "t": id, "i": valid_input() })).await;
    let mut changed = valid_input();
    changed["smtpAuth"] = json!(false);
    changed["encryption"] = json!("NONE");
    changed["port"] = json!(25);
    changed["sendIntervalMs"] = json!(60000);
    app.ok(&admin, UPDATE, json!({ "t": id, "i": changed })).await;
    app.ok(
        &app.operator(),
        "mutation($t:ID!){ changeTenantPlan(tenantId:$t, plan:BASIC){ id } }",
        json!({ "t": id }),
    )
    .await;

    let q = "query($id:ID!,$a:String,$n:Int){ tenant(id:$id){ auditTrail(first:$n, after:$a, order:NEWEST_FIRST){ \
        edges { node { action description actorLabel changes { field label before after beforeText afterText } } } \
        pageInfo { hasNextPage endCursor } } } }";
    let page = |lang: &'static str, after: Value, n: i64| {
        let body = json!({ "query": q, "variables": { "id": id, "a": after, "n": n } });
        let admin = admin.clone();
        async move {
            let (_, body) = app.post(Some(&admin), Some(lang), &body).await;
            assert!(body.get("errors").is_none(), "{body}");
            body["data"]["tenant"]["auditTrail"].clone()
        }
    };
    let actions = |conn: &Value| -> Vec<String> {
        conn["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["action"].as_str().unwrap().to_owned())
            .collect()
    };
    // Newest first, and "more" goes on to the older ones.
    let first = page("ja", Value::Null, 2).await;
    assert_eq!(actions(&first), ["PLAN_CHANGED", "MAIL_SETTINGS_SAVED"]);
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    let rest = page("ja", first["pageInfo"]["endCursor"].clone(), 10).await;
    assert_eq!(actions(&rest), ["MAIL_SETTINGS_SAVED", "TENANT_CREATED"]);
    assert_eq!(rest["pageInfo"]["hasNextPage"], false);

    // Codes stay for programs; people read words, in their language.
    let plan = &first["edges"][0]["node"];
    assert_eq!(plan["description"], "プランを変更しました");
    assert_eq!(plan["actorLabel"], "オペレーター（operator-subject）");
    assert_eq!(
        plan["changes"][0],
        json!({ "field": "plan", "label": "プラン", "before": "SHARE", "after": "BASIC", "beforeText": "シェアプラン", "afterText": "ベーシックプラン" })
    );
    let saved = first["edges"][1]["node"]["changes"].as_array().unwrap().clone();
    let words = |field: &str| -> (Value, Value) {
        let c = saved
            .iter()
            .find(|c| c["field"] == field)
            .unwrap_or_else(|| panic!("{field} in {saved:?}"));
        (c["beforeText"].clone(), c["afterText"].clone())
    };
    assert_eq!(words("smtpAuth"), (json!("オン"), json!("オフ")));
    assert_eq!(words("encryption"), (json!("TLS（STARTTLS）"), json!("なし")));
    assert_eq!(words("port"), (json!("587"), json!("25")));
    assert_eq!(words("sendIntervalMs"), (json!("5秒"), json!("1分")));
    let created = &rest["edges"][1]["node"];
    assert_eq!(
        created["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["field"] == "name")
            .unwrap()["afterText"],
        "Worded",
        "what was typed stays as typed"
    );
    let english = page("en", Value::Null, 1).await;
    let plan = &english["edges"][0]["node"];
    assert_eq!(plan["actorLabel"], "operator (operator-subject)");
    assert_eq!(plan["changes"][0]["afterText"], "Basic plan");

    // No Japanese word of the trail is a raw code or an English name.
    let all = page("ja", Value::Null, 10).await.to_string();
    for code in [
        "\"beforeText\":\"SHARE",
        "\"afterText\":\"BASIC",
        "\"afterText\":\"false",
        "\"afterText\":\"NONE",
    ] {
        assert!(!all.contains(code), "{code} in {all}");
    }
}

async fn operators_find_tenants_by_name(app: &TestApp) {
    let bakery = app.create_tenant("Sakura Bakery 100%", "SHARE").await;
    let flowers = app.create_tenant("さくら花店", "BASIC").await;
    let cafe = app.create_tenant("ＣＡＦＥ ｻｸﾗ", "BIZ").await;
    let q = "query($n:String,$p:Plan){ tenants(first:100, nameContains:$n, plan:$p){ edges { node { id name } } } }";
    let mine = [bakery.clone(), flowers.clone(), cafe.clone()];
    let mine = &mine;
    let found = |name: &'static str, plan: Option<&'static str>| async move {
        let d = app.ok(&app.operator(), q, json!({ "n": name, "p": plan })).await;
        d["tenants"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
            .filter(|id| mine.contains(id))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        found("sakura BAKERY", None).await,
        [bakery.as_str()],
        "A–Z in either case"
    );
    assert_eq!(found("花店", None).await, [flowers.as_str()]);
    assert_eq!(
        found("ＳＡＫＵＲＡ ｂａｋｅｒｙ", None).await,
        [bakery.as_str()],
        "full-width letters find their ASCII forms"
    );
    assert_eq!(found("100%", None).await, [bakery.as_str()], "% is matched as itself");
    assert_eq!(found("1_0", None).await, Vec::<String>::new(), "_ is matched as itself");
    assert_eq!(
        found("さくら", Some("SHARE")).await,
        Vec::<String>::new(),
        "with the plan filter"
    );
    assert_eq!(
        found("cafe サクラ", None).await,
        [cafe.as_str()],
        "case and width: a full-width name is found by its ASCII and half-width kana by full"
    );
    assert_eq!(
        found(" ", None).await,
        [bakery.clone(), flowers.clone(), cafe.clone()],
        "blank: every tenant"
    );
    let too_long = "x".repeat(201);
    let body = app.gql(&app.operator(), q, json!({ "n": too_long })).await;
    assert_eq!(fields(&body), vec![("nameContains".to_owned(), "TOO_LONG".to_owned())]);
    let denied = app.gql(&app.admin(&bakery), q, json!({ "n": "Sakura" })).await;
    assert_eq!(code(&denied), "FORBIDDEN");
}

async fn create_tenant_rejects_bad_names(app: &TestApp) {
    let q = "mutation($n:String!){ createTenant(name:$n, plan:SHARE){ id } }";
    for (name, why) in [("", "REQUIRED"), ("   ", "REQUIRED"), ("a\nb", "CONTROL_CHARACTERS")] {
        let body = app.gql(&app.operator(), q, json!({ "n": name })).await;
        assert_eq!(code(&body), "VALIDATION_FAILED");
        assert_eq!(fields(&body), vec![("name".to_owned(), why.to_owned())]);
    }
    let long = "x".repeat(201);
    let body = app.gql(&app.operator(), q, json!({ "n": long })).await;
    assert_eq!(fields(&body), vec![("name".to_owned(), "TOO_LONG".to_owned())]);
    let body = app
        .gql(
            &app.operator(),
            "mutation{ createTenant(name:\"x\", plan:GOLD){ id } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&body), "VALIDATION_FAILED");
    let list = app
        .ok(
            &app.operator(),
            "{ tenants(first:100){ edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        list["tenants"]["edges"].as_array().unwrap().len(),
        0,
        "nothing was created"
    );
}
