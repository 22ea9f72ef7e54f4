//! Durable delivery: enqueue (idempotent, rendered in both languages, validated), the
//! worker sending through the effective sender decided at send time, retries, deferrals,
//! permanent failures, pacing with several workers, retryDelivery, /metrics.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::servers::*;
use testkit::settings::SettingsInput;

use crate::support::deliveries::*;
use crate::support::*;

testkit::each_backend!(
    enqueue_sends_through_the_effective_sender_once_per_key,
    bad_notifications_are_refused_and_store_nothing,
    retries_deferrals_and_permanent_failures,
    a_delivery_that_keeps_failing_expires,
    a_downgrade_between_enqueue_and_send_uses_the_platform_default,
    pacing_holds_with_several_workers,
    tenants_see_their_deliveries_and_operators_see_metrics,
    unreadable_settings_hold_the_mail_until_repaired_through_the_api,
    a_delivery_whose_every_claim_ended_with_its_process_is_failed,
    custom_bodies_reach_the_wire_with_crlf_line_ends_only,
);

async fn enqueue_sends_through_the_effective_sender_once_per_key(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let app = delivery_app(backend, &[smtp.port]).await;
    let tenant = app.create_tenant("Sakura", "SHARE").await;
    app.ok(
        &app.admin(&tenant),
        UPDATE,
        json!({ "t": tenant, "i": SettingsInput::plain(smtp.port).json() }),
    )
    .await;

    // Durable before the call returns: no worker runs yet, and the row is there.
    let first = enqueue(&app, registration(&tenant, "ja", Some("signup-42"))).await;
    assert_eq!(first["status"], "QUEUED");
    assert_eq!(first["subject"], "【Sakura】会員登録が完了しました");
    let again = enqueue(&app, registration(&tenant, "ja", Some("signup-42"))).await;
    assert_eq!(again["id"], first["id"], "same key, same delivery");
    let english = enqueue(&app, registration(&tenant, "en", Some("signup-43"))).await;
    assert_ne!(english["id"], first["id"]);
    assert_eq!(english["subject"], "Welcome to Sakura");

    let worker = RunningWorker::start(&app);
    let d = wait_status(&app, first["id"].as_str().unwrap(), "SENT", Duration::from_secs(10)).await;
    wait_status(&app, english["id"].as_str().unwrap(), "SENT", Duration::from_secs(10)).await;
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(d["attempts"][0]["outcome"], "SENT");
    assert_eq!(d["attempts"][0]["senderSource"], "CUSTOM");
    assert_eq!(d["attempts"][0]["senderAddress"], "shop@example.jp");
    assert_eq!(d["attempts"][0]["smtpCode"], 250);
    assert!(d["sentAt"].is_string());

    // A third enqueue with the old key after sending: still the same delivery, no mail.
    let late = enqueue(&app, registration(&tenant, "ja", Some("signup-42"))).await;
    assert_eq!(late["id"], first["id"]);
    assert_eq!(late["status"], "SENT");
    // Nothing new was stored, so nothing more can be sent.
    let counts = app
        .ok(
            &app.operator(),
            "query($id:ID!){ tenant(id:$id){ deliveries { counts { status count } } } }",
            json!({ "id": tenant }),
        )
        .await;
    let total: i64 = counts["tenant"]["deliveries"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 2, "two keys, two deliveries: {counts}");
    let got = smtp.wait_for(2, Duration::from_secs(5));
    assert_eq!(got.len(), 2, "one mail per key");
    let ja = got
        .iter()
        .find(|r| r.header("Message-ID").as_deref() == first["messageId"].as_str())
        .expect("ja mail");
    assert_eq!(ja.mail_from, "shop@example.jp");
    assert_eq!(ja.rcpt_tos, vec!["member@example.net".to_owned()]);
    assert!(
        ja.header("Subject").unwrap().contains("=?utf-8?"),
        "encoded Japanese subject"
    );
    let en = got
        .iter()
        .find(|r| r.header("Message-ID").as_deref() == english["messageId"].as_str())
        .expect("en mail");
    assert_eq!(en.header("Subject").as_deref(), Some("Welcome to Sakura"));
    assert!(
        en.data.contains("&lt;Yamada &amp; Co&gt;"),
        "escaped in HTML: {}",
        en.data
    );
    assert!(
        en.data.contains("Hello <Yamada & Co>,"),
        "plain text as given: {}",
        en.data
    );
    worker.stop().await;
    app.finish().await;
}

async fn bad_notifications_are_refused_and_store_nothing(backend: Backend) {
    let app = delivery_app(backend, &[25]).await;
    let tenant = app.create_tenant("Strict", "SHARE").await;
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({ "tenantId": tenant, "kind": "REGISTRATION_COMPLETED", "to": "a@example.net", "variables": { "siteName": "S", "loginUrl": "https://s.example" } }),
            "variables.name",
            "REQUIRED",
        ),
        (
            json!({ "tenantId": tenant, "kind": "REGISTRATION_COMPLETED", "to": "a@example.net", "variables": { "name": 5, "siteName": "S", "loginUrl": "https://s.example" } }),
            "variables.name",
            "INVALID_TYPE",
        ),
        (
            json!({ "tenantId": tenant, "kind": "PASSWORD_RESET", "to": "a@example.net", "variables": { "name": "N", "siteName": "S", "resetUrl": "https://s.example/r", "expiresInMinutes": "30" } }),
            "variables.expiresInMinutes",
            "INVALID_TYPE",
        ),
        (
            json!({ "tenantId": tenant, "kind": "PASSWORD_RESET", "to": "a@example.net", "variables": { "name": "N", "siteName": "S", "resetUrl": "javascript:alert(1)", "expiresInMinutes": 30 } }),
            "variables.resetUrl",
            "INVALID_FORMAT",
        ),
        (
            json!({ "tenantId": tenant, "kind": "CUSTOM", "to": "a@example.net", "text": "body" }),
            "subject",
            "REQUIRED",
        ),
        (
            json!({ "tenantId": tenant, "kind": "CUSTOM", "to": "a@example.net", "subject": "Hi\r\nBcc: x@evil.example", "text": "body" }),
            "subject",
            "CONTROL_CHARACTERS",
        ),
        (
            json!({ "tenantId": tenant, "kind": "CUSTOM", "to": "not-an-address", "subject": "s", "text": "t" }),
            "to",
            "INVALID_FORMAT",
        ),
        // Through the platform relay, an address literal would make the operator's own
        // MTA connect to an internal address.
        (
            json!({ "tenantId": tenant, "kind": "CUSTOM", "to": "a@example.net", "subject": "s", "text": "nul\u{0}here" }),
            "text",
            "CONTROL_CHARACTERS",
        ),
        (
            json!({ "tenantId": tenant, "kind": "CUSTOM", "to": "a@example.net", "subject": "s", "text": "t", "html": "<p>\u{1b}[2J</p>" }),
            "html",
            "CONTROL_CHARACTERS",
        ),
        (
            json!({ "tenantId": tenant, "kind": "CUSTOM", "to": "user@[10.0.0.5]", "subject": "s", "text": "t" }),
            "to",
            "ADDRESS_LITERAL",
        ),
        (
            json!({ "tenantId": tenant, "kind": "CUSTOM", "to": "user@169.254.169.254", "subject": "s", "text": "t" }),
            "to",
            "ADDRESS_LITERAL",
        ),
        (
            json!({ "tenantId": tenant, "kind": "CUSTOM", "to": "a@example.net", "subject": "s", "text": "t", "idempotencyKey": "x".repeat(201) }),
            "idempotencyKey",
            "TOO_LONG",
        ),
        (
            json!({ "tenantId": tenant, "kind": "CUSTOM", "to": "a@example.net", "subject": "s", "text": "t", "locale": "fr" }),
            "locale",
            "INVALID_FORMAT",
        ),
        (
            json!({ "tenantId": tenant, "kind": "REGISTRATION_COMPLETED", "to": "a@example.net", "variables": [1, 2] }),
            "variables",
            "INVALID_TYPE",
        ),
    ];
    for (input, field, why) in cases {
        let body = app.gql(&app.service(), ENQUEUE, json!({ "i": input })).await;
        assert_eq!(code(&body), "VALIDATION_FAILED", "{field}: {body}");
        assert!(
            fields(&body).contains(&(field.to_owned(), why.to_owned())),
            "{field}/{why}: {body}"
        );
    }
    let body = app
        .gql(
            &app.admin(&tenant),
            ENQUEUE,
            json!({ "i": registration(&tenant, "en", None) }),
        )
        .await;
    assert_eq!(code(&body), "FORBIDDEN", "tenant admins do not enqueue");
    let body = app
        .gql(
            &app.service(),
            ENQUEUE,
            json!({ "i": registration("0191a2b3-0000-7000-8000-000000000000", "en", None) }),
        )
        .await;
    assert_eq!(code(&body), "NOT_FOUND");
    let counts = app
        .ok(
            &app.operator(),
            "query($id:ID!){ tenant(id:$id){ deliveries { counts { status count } edges { node { id } } } } }",
            json!({ "id": tenant }),
        )
        .await;
    assert_eq!(counts["tenant"]["deliveries"]["edges"], json!([]), "nothing stored");

    // An idempotency key is a contract: the same payload gives the same delivery, any
    // difference is refused, naming the delivery that has the key.
    let first = enqueue(&app, registration(&tenant, "ja", Some("signup-7"))).await;
    assert_eq!(
        enqueue(&app, registration(&tenant, "ja", Some("signup-7"))).await["id"],
        first["id"]
    );
    let mut other_name = registration(&tenant, "ja", Some("signup-7"));
    other_name["variables"]["name"] = json!("Suzuki");
    let mut other_to = registration(&tenant, "ja", Some("signup-7"));
    other_to["to"] = json!("someone-else@example.net");
    let other_kind = json!({ "tenantId": tenant, "kind": "CUSTOM", "to": "member@example.net", "subject": "s", "text": "t", "idempotencyKey": "signup-7" });
    for (what, input) in [
        ("variables", other_name),
        ("recipient", other_to),
        ("locale", registration(&tenant, "en", Some("signup-7"))),
        ("kind", other_kind),
    ] {
        let body = app.gql(&app.service(), ENQUEUE, json!({ "i": input })).await;
        assert_eq!(code(&body), "IDEMPOTENCY_KEY_REUSED", "{what}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["deliveryId"], first["id"],
            "{what}: {body}"
        );
        assert_eq!(
            fields(&body),
            vec![("idempotencyKey".to_owned(), "IDEMPOTENCY_KEY_REUSED".to_owned())],
            "{what}"
        );
    }
    let counts = app
        .ok(
            &app.operator(),
            "query($id:ID!){ tenant(id:$id){ deliveries { edges { node { id } } } } }",
            json!({ "id": tenant }),
        )
        .await;
    assert_eq!(
        counts["tenant"]["deliveries"]["edges"].as_array().unwrap().len(),
        1,
        "one stored"
    );
    app.finish().await;
}

async fn retries_deferrals_and_permanent_failures(backend: Backend) {
    let flaky = SmtpServer::start(SmtpOptions {
        data_reply: Some("451 4.3.0 Temporary local problem".into()),
        data_reply_times: 1,
        ..SmtpOptions::plain()
    });
    let throttled = SmtpServer::start(SmtpOptions {
        data_reply: Some("421 4.7.0 Too many messages, slow down".into()),
        data_reply_times: 2,
        ..SmtpOptions::plain()
    });
    let rejecting = SmtpServer::start(SmtpOptions {
        rcpt_reply: Some("550 5.1.1 <member@example.net>: Recipient address rejected: User unknown".into()),
        ..SmtpOptions::plain()
    });
    let app = delivery_app(backend, &[flaky.port, throttled.port, rejecting.port]).await;
    let mut ids = Vec::new();
    for (name, server) in [("Flaky", &flaky), ("Throttled", &throttled), ("Rejecting", &rejecting)] {
        let tenant = app.create_tenant(name, "BIZ").await;
        app.ok(
            &app.admin(&tenant),
            UPDATE,
            json!({ "t": tenant, "i": SettingsInput::plain(server.port).json() }),
        )
        .await;
        ids.push(
            enqueue(&app, registration(&tenant, "en", None)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let worker = RunningWorker::start(&app);

    let d = wait_status(&app, &ids[0], "SENT", Duration::from_secs(20)).await;
    let outcomes: Vec<_> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].clone())
        .collect();
    assert_eq!(outcomes, vec![json!("RETRY"), json!("SENT")], "{d}");
    assert_eq!(d["attempts"][0]["smtpCode"], 451);
    assert_eq!(d["attempts"][0]["enhancedCode"], "4.3.0");
    assert_eq!(d["retries"], 1);

    let d = wait_status(&app, &ids[1], "SENT", Duration::from_secs(20)).await;
    let outcomes: Vec<_> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].clone())
        .collect();
    assert_eq!(
        outcomes,
        vec![json!("DEFERRED"), json!("DEFERRED"), json!("SENT")],
        "{d}"
    );
    assert_eq!(d["retries"], 0, "deferrals do not use up the retry budget");

    let d = wait_status(&app, &ids[2], "FAILED", Duration::from_secs(10)).await;
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(d["attempts"][0]["stage"], "RCPT_TO");
    assert_eq!(d["attempts"][0]["smtpCode"], 550);
    assert_eq!(d["failureCode"], "REFUSED", "{d}");
    assert!(d["failureDetail"].as_str().unwrap().starts_with("RCPT_TO 550"), "{d}");
    assert_eq!(
        d["failureMessage"].as_str().unwrap(),
        format!(
            "The receiving server refused it: {}",
            d["failureDetail"].as_str().unwrap()
        ),
        "the sentence in the caller's language, then the detail"
    );
    assert_eq!(
        d["failureReason"], d["failureDetail"],
        "the deprecated field answers as before"
    );
    // Never retried: a FAILED delivery is not claimable, not even a day from now.
    let probe = domain::LeaseOwner::parse("probe").unwrap();
    let day_later = chrono::Utc::now() + chrono::Duration::days(1);
    let claimable = app
        .app
        .delivery_queue
        .claim(&probe, day_later, day_later, 100, &[])
        .await
        .unwrap();
    assert!(claimable.is_empty(), "{claimable:?}");

    // Every attempt kept the one Message-ID.
    let got = flaky.wait_for(1, Duration::from_secs(5));
    assert_eq!(
        got[0].header("Message-ID").as_deref(),
        delivery(&app, &ids[0]).await["messageId"].as_str()
    );

    // retryDelivery puts a FAILED one back; not allowed for others.
    let body = app
        .gql(
            &app.operator(),
            "mutation($id:ID!){ retryDelivery(id:$id){ status } }",
            json!({ "id": ids[0] }),
        )
        .await;
    assert_eq!(fields(&body), vec![("id".to_owned(), "NOT_FAILED".to_owned())]);
    let d = app
        .ok(
            &app.operator(),
            "mutation($id:ID!){ retryDelivery(id:$id){ status retries failureReason } }",
            json!({ "id": ids[2] }),
        )
        .await;
    assert_eq!(
        d["retryDelivery"],
        json!({ "status": "QUEUED", "retries": 0, "failureReason": null })
    );
    let d = wait_status(&app, &ids[2], "FAILED", Duration::from_secs(10)).await;
    assert_eq!(d["attempts"].as_array().unwrap().len(), 2);
    worker.stop().await;
    app.finish().await;
}

async fn a_delivery_that_keeps_failing_expires(backend: Backend) {
    // The server answers every DATA with a temporary failure.
    let down = SmtpServer::start(SmtpOptions {
        data_reply: Some("451 4.3.0 Temporary local problem".into()),
        ..SmtpOptions::plain()
    });
    let port = down.port;
    let app = spawn_app_with(backend, move |c| {
        delivery_config(c, vec![port]);
        c.delivery_max_age_secs = 3;
    })
    .await;
    let tenant = app.create_tenant("Down", "BIZ").await;
    app.ok(
        &app.admin(&tenant),
        UPDATE,
        json!({ "t": tenant, "i": SettingsInput::plain(port).json() }),
    )
    .await;
    let id = enqueue(&app, registration(&tenant, "en", None)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let worker = RunningWorker::start(&app);
    let d = wait_status(&app, &id, "FAILED", Duration::from_secs(30)).await;
    worker.stop().await;
    assert_eq!(d["failureCode"], "EXPIRED", "{d}");
    assert_eq!(
        d["failureReason"], "expired",
        "the deprecated field answers as before: {d}"
    );
    assert_eq!(d["failureDetail"], Value::Null, "{d}");
    let attempts = d["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "retried before it expired: {d}");
    assert!(
        attempts[..attempts.len() - 1].iter().all(|a| a["outcome"] == "RETRY"),
        "{d}"
    );
    assert_eq!(attempts[attempts.len() - 1]["outcome"], "FAILED");
    assert_eq!(attempts[attempts.len() - 1]["smtpCode"], 451);
    assert_eq!(down.count(), 0, "nothing was accepted");
    app.finish().await;
}

async fn a_downgrade_between_enqueue_and_send_uses_the_platform_default(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let app = delivery_app(backend, &[smtp.port]).await;
    let tenant = app.create_tenant("Downgraded", "SHARE").await;
    app.ok(
        &app.admin(&tenant),
        UPDATE,
        json!({ "t": tenant, "i": SettingsInput::plain(smtp.port).json() }),
    )
    .await;
    let id = enqueue(&app, registration(&tenant, "en", None)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.ok(
        &app.operator(),
        "mutation($t:ID!){ changeTenantPlan(tenantId:$t, plan:PRO){ id } }",
        json!({ "t": tenant }),
    )
    .await;
    let worker = RunningWorker::start(&app);
    let d = wait_status(&app, &id, "SENT", Duration::from_secs(10)).await;
    assert_eq!(d["attempts"][0]["senderSource"], "PLATFORM_DEFAULT");
    assert_eq!(d["attempts"][0]["senderAddress"], "noreply@platform.example");
    assert_eq!(smtp.count(), 0);
    let files: Vec<_> = std::fs::read_dir(app.app.config.data_dir.join("mail"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1);
    worker.stop().await;
    app.finish().await;
}

async fn pacing_holds_with_several_workers(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let app = delivery_app(backend, &[smtp.port]).await;
    let tenant = app.create_tenant("Paced", "SHARE").await;
    let mut s = SettingsInput::plain(smtp.port).json();
    s["sendIntervalMs"] = json!(400);
    app.ok(&app.admin(&tenant), UPDATE, json!({ "t": tenant, "i": s }))
        .await;
    for i in 0..6 {
        enqueue(&app, json!({ "tenantId": tenant, "kind": "CUSTOM", "to": "a@example.net", "subject": format!("n{i}"), "text": "t" })).await;
    }
    let workers = [
        RunningWorker::start(&app),
        RunningWorker::start(&app),
        RunningWorker::start(&app),
    ];
    let got = smtp.wait_for(6, Duration::from_secs(20));
    let mut times: Vec<f64> = got.iter().map(|r| r.mail_from_at.expect("MAIL FROM time")).collect();
    times.sort_by(f64::total_cmp);
    for w in times.windows(2) {
        // Starts as the server saw them (MAIL FROM); 2 ms allowed for loopback transit.
        assert!(w[1] - w[0] >= 0.398, "{:.3} s apart: {times:?}", w[1] - w[0]);
    }
    for w in workers {
        w.stop().await;
    }
    app.finish().await;
}

async fn tenants_see_their_deliveries_and_operators_see_metrics(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let app = delivery_app(backend, &[smtp.port]).await;
    let a = app.create_tenant("A", "SHARE").await;
    let b = app.create_tenant("B", "SHARE").await;
    app.ok(
        &app.admin(&a),
        UPDATE,
        json!({ "t": a, "i": SettingsInput::plain(smtp.port).json() }),
    )
    .await;
    let mine = enqueue(&app, registration(&a, "en", None)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs = enqueue(&app, registration(&b, "en", None)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let worker = RunningWorker::start(&app);
    wait_status(&app, &mine, "SENT", Duration::from_secs(10)).await;
    wait_status(&app, &theirs, "SENT", Duration::from_secs(10)).await;
    let q = "query($id:ID!,$s:DeliveryStatus){ tenant(id:$id){ deliveries(status:$s){ edges { node { id status } } counts { status count } } } }";
    let d = app.ok(&app.admin(&a), q, json!({ "id": a })).await;
    assert_eq!(
        d["tenant"]["deliveries"]["edges"],
        json!([{ "node": { "id": mine, "status": "SENT" } }])
    );
    assert!(
        d["tenant"]["deliveries"]["counts"]
            .as_array()
            .unwrap()
            .contains(&json!({ "status": "SENT", "count": 1 }))
    );
    let d = app.ok(&app.admin(&a), q, json!({ "id": a, "s": "FAILED" })).await;
    assert_eq!(d["tenant"]["deliveries"]["edges"], json!([]));
    let other = app.gql(&app.admin(&a), DELIVERY, json!({ "id": theirs })).await;
    assert_eq!(
        other["data"]["delivery"],
        Value::Null,
        "another tenant's delivery does not exist for A"
    );
    let retry = app
        .gql(
            &app.admin(&a),
            "mutation($id:ID!){ retryDelivery(id:$id){ id } }",
            json!({ "id": theirs }),
        )
        .await;
    assert_eq!(code(&retry), "NOT_FOUND");

    let metrics_url = format!("http://{}/metrics", app.addr);
    let denied = app
        .client
        .get(&metrics_url)
        .bearer_auth(app.admin(&a))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let text = app
        .client
        .get(&metrics_url)
        .bearer_auth(app.operator())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("mailgate_deliveries{status=\"sent\"} 2"), "{text}");
    assert!(
        text.contains("mailgate_sends_total{outcome=\"sent\",source=\"custom\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("mailgate_sends_total{outcome=\"sent\",source=\"platform_default\"} 1"),
        "{text}"
    );
    assert!(text.contains("mailgate_send_duration_seconds_count 2"), "{text}");
    // Counted right after the outcomes' commit, which the counts above already saw.
    let recorded = "mailgate_deliveries_recorded_total{status=\"sent\"} 2";
    let mut text = text;
    for _ in 0..50 {
        if text.contains(recorded) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        text = app
            .client
            .get(&metrics_url)
            .bearer_auth(app.operator())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }
    assert!(text.contains(recorded), "{text}");
    assert!(
        text.contains("mailgate_deliveries_recorded_total{status=\"failed\"} 0"),
        "{text}"
    );
    worker.stop().await;
    app.finish().await;
}

/// Makes the tenant's stored settings row unreadable behind the API's back (an encryption
/// code no version of Mailgate wrote), then has a write go through the tenant cache
/// (a plan change) so the next read sees the row as it now is.
async fn corrupt_settings(app: &TestApp, tenant: &str, plan: &str) {
    use sea_orm::ConnectionTrait as _;
    app.app
        .db
        .execute_unprepared(&format!(
            "UPDATE mail_settings SET encryption = 'ROT13' WHERE tenant_id = '{tenant}'"
        ))
        .await
        .expect("corrupt the row");
    app.ok(
        &app.operator(),
        "mutation($t:ID!,$p:Plan!){ changeTenantPlan(tenantId:$t, plan:$p){ id } }",
        json!({ "t": tenant, "p": plan }),
    )
    .await;
}

async fn unreadable_settings_hold_the_mail_until_repaired_through_the_api(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let app = delivery_app(backend, &[smtp.port]).await;
    let repaired = app.create_tenant("Repaired", "SHARE").await;
    let cleared = app.create_tenant("Cleared", "SHARE").await;
    for t in [&repaired, &cleared] {
        app.ok(
            &app.admin(t),
            UPDATE,
            json!({ "t": t, "i": SettingsInput::plain(smtp.port).json() }),
        )
        .await;
    }
    let waiting: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(
                enqueue(&app, registration(&repaired, "en", None)).await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        ids
    };
    let mut to_clear = Vec::new();
    for _ in 0..2 {
        to_clear.push(
            enqueue(&app, registration(&cleared, "en", None)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    corrupt_settings(&app, &repaired, "BIZ").await;
    corrupt_settings(&app, &cleared, "BIZ").await;

    // The tenant is still there for its admin; only the settings say why they are not.
    let seen = app
        .gql(&app.admin(&repaired), TENANT_QUERY, json!({ "id": repaired }))
        .await;
    assert_eq!(seen["data"]["tenant"]["name"], "Repaired", "{seen}");
    assert_eq!(seen["data"]["tenant"]["mailSettings"], Value::Null, "{seen}");
    assert_eq!(code(&seen), "SETTINGS_UNREADABLE", "{seen}");
    assert_eq!(seen["errors"][0]["path"], json!(["tenant", "mailSettings"]), "{seen}");
    assert_eq!(seen["errors"][0]["extensions"]["currentVersion"], 1, "{seen}");
    let reason = seen["data"]["tenant"]["effectiveSender"]["reason"].as_str().unwrap();
    assert!(reason.contains("cannot be read"), "{reason}");
    assert!(!seen.to_string().contains("ROT13"), "no stored value leaks: {seen}");
    // A test of what is saved cannot run; nothing is sent.
    let test = app
        .gql(
            &app.admin(&repaired),
            "mutation($t:ID!){ sendTestMail(tenantId:$t, to:\"a@example.net\"){ ok } }",
            json!({ "t": repaired }),
        )
        .await;
    assert_eq!(code(&test), "SETTINGS_UNREADABLE", "{test}");

    // The worker neither sends them elsewhere nor spins: one delivery at a time records
    // why it waits (stage SETTINGS, no retry used), backing off.
    let worker = RunningWorker::start(&app);
    let start = Instant::now();
    let marked = loop {
        let mut found = None;
        for id in &waiting {
            let d = delivery(&app, id).await;
            if d["status"] == "RETRYING" && d["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
                found = Some(d);
            }
        }
        if let Some(d) = found {
            break d;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no delivery recorded why it waits"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(marked["status"], "RETRYING", "{marked}");
    assert_eq!(marked["retries"], 0, "{marked}");
    assert_eq!(marked["attempts"][0]["stage"], "SETTINGS", "{marked}");
    assert_eq!(marked["attempts"][0]["outcome"], "DEFERRED", "{marked}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut attempts = 0;
    for id in &waiting {
        let d = delivery(&app, id).await;
        assert_ne!(d["status"], "SENT", "{d}");
        assert_ne!(d["status"], "FAILED", "{d}");
        attempts += d["attempts"].as_array().map_or(0, Vec::len);
    }
    // Backing off from 1 s (doubling): a handful of tries in 3 s, not a loop.
    assert!((1..=5).contains(&attempts), "{attempts} attempts in about 3 s");
    assert_eq!(smtp.count(), 0, "nothing went out from the tenant's server");

    // Repaired through the API without reading the old row: all of it goes out.
    let mut input = SettingsInput::plain(smtp.port).json();
    input["expectedVersion"] = json!(1);
    let saved = app
        .gql(
            &app.admin(&repaired),
            "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ version } }",
            json!({ "t": repaired, "i": input }),
        )
        .await;
    assert_eq!(saved["data"]["updateMailSettings"]["version"], 2, "{saved}");
    for id in &waiting {
        let d = wait_status(&app, id, "SENT", Duration::from_secs(40)).await;
        assert_eq!(d["retries"], 0, "{d}");
    }
    assert_eq!(smtp.wait_for(3, Duration::from_secs(5)).len(), 3);

    // Or cleared: the mail then goes out from the platform default.
    let clear = app
        .gql(
            &app.admin(&cleared),
            "mutation($t:ID!){ clearMailSettings(tenantId:$t){ mailSettings { version } effectiveSender { source } } }",
            json!({ "t": cleared }),
        )
        .await;
    assert_eq!(
        clear["data"]["clearMailSettings"]["mailSettings"],
        Value::Null,
        "{clear}"
    );
    assert_eq!(
        clear["data"]["clearMailSettings"]["effectiveSender"]["source"], "PLATFORM_DEFAULT",
        "{clear}"
    );
    // Within the test's time, so well before the 180 s that mail held behind a probe
    // waits at most: held mail comes back as soon as a send goes through.
    for id in &to_clear {
        let d = wait_status(&app, id, "SENT", Duration::from_secs(40)).await;
        assert_eq!(
            d["attempts"].as_array().unwrap().last().unwrap()["senderSource"],
            "PLATFORM_DEFAULT"
        );
    }
    let trail = app
        .ok(
            &app.admin(&cleared),
            "query($t:ID!){ tenant(id:$t){ auditTrail { edges { node { action } } } } }",
            json!({ "t": cleared }),
        )
        .await;
    assert!(trail.to_string().contains("MAIL_SETTINGS_CLEARED"), "{trail}");
    assert!(logs().contains("cannot be read"), "operators see it in the log");
    worker.stop().await;
    app.finish().await;
}

/// A delivery that took down every process that claimed it (its lease ran out each time,
/// so its claims count up without an outcome) is failed after the fifth, with a reason,
/// instead of taking the next process down; one within the limit is sent as usual.
async fn a_delivery_whose_every_claim_ended_with_its_process_is_failed(backend: Backend) {
    use sea_orm::ConnectionTrait as _;
    let app = delivery_app(backend, &[]).await;
    let tenant = app.create_tenant("Poisoned", "PRO").await;
    let poison = enqueue(&app, registration(&tenant, "en", None)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let survivor = enqueue(&app, registration(&tenant, "en", None)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // As five (and four) claims by processes that died before an outcome leave it.
    let expired = chrono::Utc::now().timestamp_millis() - 1_000;
    for (id, claims) in [(&poison, 5), (&survivor, 4)] {
        app.app
            .db
            .execute_unprepared(&format!(
                "UPDATE deliveries SET status = 'SENDING', lease_owner = 'a-dead-worker', \
                 lease_until_ms = {expired}, claims = {claims} WHERE id = '{id}'"
            ))
            .await
            .expect("age the claims");
    }
    let worker = RunningWorker::start(&app);
    let failed = wait_status(&app, &poison, "FAILED", Duration::from_secs(10)).await;
    assert!(
        failed["failureCode"] == "ABANDONED" && failed["failureDetail"].is_null(),
        "{failed}"
    );
    assert_eq!(failed["attempts"][0]["stage"], "INTERNAL", "{failed}");
    assert_eq!(failed["attempts"][0]["outcome"], "FAILED", "{failed}");
    let sent = wait_status(&app, &survivor, "SENT", Duration::from_secs(10)).await;
    assert_eq!(sent["attempts"].as_array().unwrap().len(), 1, "{sent}");
    let files = std::fs::read_dir(app.app.config.data_dir.join("mail")).unwrap().count();
    assert_eq!(files, 1, "only the survivor went out");
    worker.stop().await;
    app.finish().await;
}

/// A CUSTOM body with bare CRs and LFs and a smuggling attempt (`\r.\r\n` then a second
/// envelope) arrives as one message whose every line ends in CRLF.
async fn custom_bodies_reach_the_wire_with_crlf_line_ends_only(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let app = delivery_app(backend, &[smtp.port]).await;
    let tenant = app.create_tenant("Smuggler", "SHARE").await;
    app.ok(
        &app.admin(&tenant),
        UPDATE,
        json!({ "t": tenant, "i": SettingsInput::plain(smtp.port).json() }),
    )
    .await;
    let text = "line one\rline two\nline three\r.\r\nMAIL FROM:<evil@evil.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nhi\r\n.\r\n";
    let id = enqueue(
        &app,
        json!({ "tenantId": tenant, "kind": "CUSTOM", "to": "member@example.net", "subject": "Plain", "text": text, "html": "<p>a\rb</p>\n" }),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let worker = RunningWorker::start(&app);
    wait_status(&app, &id, "SENT", Duration::from_secs(10)).await;
    worker.stop().await;
    let got = smtp.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "exactly one message");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(smtp.received().len(), 1, "and no second one smuggled in");
    assert_eq!(got[0].rcpt_tos, vec!["member@example.net".to_owned()]);
    let data = got[0].data.as_bytes();
    for (i, b) in data.iter().enumerate() {
        match b {
            b'\r' => assert_eq!(data.get(i + 1), Some(&b'\n'), "bare CR at {i}: {:?}", got[0].data),
            b'\n' => assert!(i > 0 && data[i - 1] == b'\r', "bare LF at {i}: {:?}", got[0].data),
            _ => {}
        }
    }
    app.finish().await;
}

/// An accepted notification must be durable before the call returns, so a database
/// that takes no write is not ready: while another process holds SQLite's write lock,
/// `/readyz` answers 503 within its deadline (reads still work); once the lock is gone
/// it answers 200 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_not_ready_while_another_process_holds_the_sqlite_write_lock() {
    use sea_orm::TransactionTrait as _;
    let app = spawn_app(Backend::Sqlite).await;
    let readyz = format!("http://{}/readyz", app.addr);
    let status = |url: String| async move { reqwest::get(url).await.expect("readyz").status().as_u16() };
    assert_eq!(status(readyz.clone()).await, 200);
    let url = app.app.config.database_url.clone().expect("an SQLite file");
    let other = sea_orm::Database::connect(url.as_str()).await.unwrap();
    let lock = other
        .begin_with_options(sea_orm::TransactionOptions {
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        })
        .await
        .unwrap();
    let started = Instant::now();
    assert_eq!(
        status(readyz.clone()).await,
        503,
        "not ready while writes cannot get through"
    );
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    lock.rollback().await.unwrap();
    other.close().await.unwrap();
    let started = Instant::now();
    while status(readyz.clone()).await != 200 {
        assert!(started.elapsed() < Duration::from_secs(15), "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.finish().await;
}
