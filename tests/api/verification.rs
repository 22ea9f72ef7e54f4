//! Settings go live only once proven: a saved version waits (`PENDING_VERIFICATION`) and
//! mail keeps going out as before the save — from the platform default, or through the
//! version that was live — until a test mail of exactly that version succeeds (`test`
//! activation) or the code that test mail carried is given back (`code` activation).

use std::time::Duration;

use serde_json::{Value, json};
use testkit::servers::*;
use testkit::settings::SettingsInput;

use crate::support::deliveries::{RunningWorker, delivery_config, enqueue, registration, wait_status};
use crate::support::*;

testkit::each_backend!(
    a_saved_version_waits_for_its_test_and_the_live_one_carries_the_mail,
    in_code_mode_only_the_code_from_the_inbox_activates,
);

const HEALTH: &str = "query($t:ID!){ tenant(id:$t){ effectiveSender { address source reasonCode reason replyTo } \
    mailSettings { version fromAddress health { state since consecutiveFailures lastFailure { stage smtpCode } hint hintCode \
    activationCodeExpiresAt } } } }";
const SAVE: &str =
    "mutation($t:ID!,$i:MailSettingsInput!){ updateMailSettings(tenantId:$t, input:$i){ version health { state } } }";
const TEST: &str = "mutation($t:ID!,$s:MailSettingsInput){ sendTestMail(tenantId:$t, to:\"admin@example.net\", settings:$s){ ok activated activationCodeSent } }";
const ACTIVATE: &str =
    "mutation($t:ID!,$c:String!){ activateMailSettings(tenantId:$t, code:$c){ version health { state } } }";
const AUDIT: &str =
    "query($t:ID!){ tenant(id:$t){ auditTrail(first:50){ edges { node { action changes { field after } } } } } }";

async fn app_in(backend: Backend, mode: &'static str, ports: &[u16]) -> TestApp {
    let ports = ports.to_vec();
    spawn_app_with(backend, move |c| {
        delivery_config(c, ports);
        c.settings_activation = match mode {
            "code" => mailgate::config::SettingsActivation::Code,
            _ => mailgate::config::SettingsActivation::Test,
        };
    })
    .await
}

async fn health(app: &TestApp, tenant: &str) -> Value {
    app.ok(&app.admin(tenant), HEALTH, json!({ "t": tenant })).await["tenant"].clone()
}

fn platform_mails(app: &TestApp) -> Vec<String> {
    std::fs::read_dir(app.app.config.data_dir.join("mail"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

async fn audit_actions(app: &TestApp, tenant: &str) -> Vec<String> {
    app.ok(&app.operator(), AUDIT, json!({ "t": tenant })).await["tenant"]["auditTrail"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["action"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_saved_version_waits_for_its_test_and_the_live_one_carries_the_mail(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let working = SmtpServer::start(SmtpOptions::plain());
    let app = app_in(backend, "test", &[smtp.port, working.port]).await;
    let tenant = app.create_tenant("Sakura", "BIZ").await;
    let admin = app.admin(&tenant);
    let worker = RunningWorker::start(&app);

    // Saved, not proven: mail still goes out from the platform default.
    let saved = app
        .ok(
            &admin,
            SAVE,
            json!({ "t": tenant, "i": SettingsInput::plain(smtp.port).json() }),
        )
        .await;
    assert_eq!(saved["updateMailSettings"]["health"]["state"], "PENDING_VERIFICATION");
    let h = health(&app, &tenant).await;
    assert_eq!(h["effectiveSender"]["source"], "PLATFORM_DEFAULT", "{h}");
    assert_eq!(h["effectiveSender"]["reasonCode"], "PENDING_VERIFICATION");
    assert_eq!(h["effectiveSender"]["address"], "noreply@platform.example");
    assert_eq!(h["mailSettings"]["health"]["consecutiveFailures"], 0);
    let d = enqueue(&app, registration(&tenant, "en", None)).await;
    let d = wait_status(&app, d["id"].as_str().unwrap(), "SENT", Duration::from_secs(10)).await;
    assert_eq!(d["attempts"][0]["senderSource"], "PLATFORM_DEFAULT");
    assert_eq!(platform_mails(&app).len(), 1);
    assert_eq!(smtp.count(), 0, "nothing went through the unproven server");

    // A draft test proves nothing about what is saved.
    let r = app
        .ok(
            &admin,
            TEST,
            json!({ "t": tenant, "s": SettingsInput::plain(smtp.port).json() }),
        )
        .await["sendTestMail"]
        .clone();
    assert_eq!(
        (r["ok"].clone(), r["activated"].clone()),
        (json!(true), json!(false)),
        "{r}"
    );
    assert_eq!(
        health(&app, &tenant).await["mailSettings"]["health"]["state"],
        "PENDING_VERIFICATION"
    );

    // A failing test of the saved version activates nothing either.
    drop(smtp);
    let r = app.ok(&admin, TEST, json!({ "t": tenant })).await["sendTestMail"].clone();
    assert_eq!(
        (r["ok"].clone(), r["activated"].clone()),
        (json!(false), json!(false)),
        "{r}"
    );
    assert_eq!(
        health(&app, &tenant).await["mailSettings"]["health"]["state"],
        "PENDING_VERIFICATION"
    );

    // Saved again with a server that works: its successful test puts it in force.
    let smtp = working;
    let mut live = SettingsInput::plain(smtp.port).json();
    app.ok(&admin, SAVE, json!({ "t": tenant, "i": live.clone() })).await;
    let r = app.ok(&admin, TEST, json!({ "t": tenant })).await["sendTestMail"].clone();
    assert_eq!(
        (r["ok"].clone(), r["activated"].clone()),
        (json!(true), json!(true)),
        "{r}"
    );
    let h = health(&app, &tenant).await;
    assert_eq!(h["mailSettings"]["health"]["state"], "LIVE", "{h}");
    assert_eq!(h["effectiveSender"]["reasonCode"], "CUSTOM_LIVE");
    assert_eq!(h["effectiveSender"]["address"], "shop@example.jp");
    let live_version = h["mailSettings"]["version"].clone();
    assert!(
        audit_actions(&app, &tenant)
            .await
            .contains(&"MAIL_SETTINGS_LIVE".to_owned())
    );

    // A new save waits for its own test; the live version keeps carrying the mail.
    live["fromAddress"] = json!("news@example.jp");
    let pending = app.ok(&admin, SAVE, json!({ "t": tenant, "i": live })).await;
    assert_eq!(pending["updateMailSettings"]["health"]["state"], "PENDING_VERIFICATION");
    let h = health(&app, &tenant).await;
    assert_eq!(
        h["mailSettings"]["fromAddress"], "news@example.jp",
        "the form shows what was saved"
    );
    assert_eq!(h["effectiveSender"]["reasonCode"], "CUSTOM_LIVE");
    assert_eq!(
        h["effectiveSender"]["address"], "shop@example.jp",
        "the live version's sender"
    );
    let d = enqueue(&app, registration(&tenant, "ja", None)).await;
    wait_status(&app, d["id"].as_str().unwrap(), "SENT", Duration::from_secs(10)).await;
    let got = smtp.wait_for(2, Duration::from_secs(5));
    assert_eq!(
        got[1].mail_from, "shop@example.jp",
        "sent through the version that was live"
    );

    // Its test makes it live; the old one is gone.
    let r = app.ok(&admin, TEST, json!({ "t": tenant })).await["sendTestMail"].clone();
    assert_eq!(r["activated"], true, "{r}");
    let h = health(&app, &tenant).await;
    assert_eq!(h["effectiveSender"]["address"], "news@example.jp");
    assert_ne!(h["mailSettings"]["version"], live_version);
    let d = enqueue(&app, registration(&tenant, "ja", None)).await;
    wait_status(&app, d["id"].as_str().unwrap(), "SENT", Duration::from_secs(10)).await;
    assert_eq!(smtp.wait_for(4, Duration::from_secs(5))[3].mail_from, "news@example.jp");

    // Nothing to activate with a code in `test` mode, and nothing changes.
    let body = app
        .gql(&admin, ACTIVATE, json!({ "t": tenant, "c": "ABCDEFGHJK" }))
        .await;
    assert_eq!(code(&body), "VALIDATION_FAILED", "{body}");
    assert_eq!(fields(&body), vec![("code".to_owned(), "ALREADY_LIVE".to_owned())]);
    worker.stop().await;
    app.finish().await;
}

/// The activation code in a received test mail's body.
fn code_in(mail: &Received) -> String {
    let body = mail.body();
    let at = body.find("Activation code: ").expect("the mail carries a code") + "Activation code: ".len();
    body[at..].chars().take_while(|c| c.is_ascii_alphanumeric()).collect()
}

async fn in_code_mode_only_the_code_from_the_inbox_activates(backend: Backend) {
    let smtp = SmtpServer::start(SmtpOptions::plain());
    let app = app_in(backend, "code", &[smtp.port]).await;
    let tenant = app.create_tenant("Sakura", "SHARE").await;
    let admin = app.admin(&tenant);
    app.ok(
        &admin,
        SAVE,
        json!({ "t": tenant, "i": SettingsInput::plain(smtp.port).json() }),
    )
    .await;

    // A successful test does not activate; it sends the code.
    let r = app.ok(&admin, TEST, json!({ "t": tenant })).await["sendTestMail"].clone();
    assert_eq!(
        (r["ok"].clone(), r["activated"].clone(), r["activationCodeSent"].clone()),
        (json!(true), json!(false), json!(true)),
        "{r}"
    );
    let waiting = health(&app, &tenant).await["mailSettings"]["health"].clone();
    assert_eq!(waiting["state"], "PENDING_VERIFICATION");
    // The console shows the code's field while a code is waiting, and says until when.
    let expires = waiting["activationCodeExpiresAt"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let expires = chrono::DateTime::parse_from_rfc3339(&expires).unwrap_or_else(|e| panic!("{waiting}: {e}"));
    assert!(expires > chrono::Utc::now(), "{waiting}");
    let first = code_in(&smtp.wait_for(1, Duration::from_secs(5))[0]);
    assert_eq!(first.len(), 10, "{first}");

    // A second test replaces the code: the first no longer works.
    app.ok(&admin, TEST, json!({ "t": tenant })).await;
    let second = code_in(&smtp.wait_for(2, Duration::from_secs(5))[1]);
    assert_ne!(first, second);
    for wrong in [first.as_str(), "AAAAAAAAAA", ""] {
        let body = app.gql(&admin, ACTIVATE, json!({ "t": tenant, "c": wrong })).await;
        assert_eq!(
            fields(&body),
            vec![("code".to_owned(), "ACTIVATION_CODE_INVALID".to_owned())],
            "{body}"
        );
    }
    assert_eq!(
        health(&app, &tenant).await["mailSettings"]["health"]["state"],
        "PENDING_VERIFICATION"
    );

    // An expired code is refused as such (its time moved back in the database).
    let backend_db = app.app.db.get_database_backend();
    let past = chrono::Utc::now() - chrono::Duration::minutes(1);
    sea_orm::ConnectionTrait::execute_raw(
        &app.app.db,
        sea_orm::Statement::from_sql_and_values(
            backend_db,
            match backend_db {
                sea_orm::DbBackend::Postgres => {
                    "UPDATE mail_settings SET activation_code_expires_at = $1 WHERE tenant_id = $2"
                }
                _ => "UPDATE mail_settings SET activation_code_expires_at = ? WHERE tenant_id = ?",
            },
            [past.into(), tenant.clone().into()],
        ),
    )
    .await
    .unwrap();
    // A write through the tenant cache, so the next read sees the row as it now is.
    app.ok(
        &app.operator(),
        "mutation($t:ID!){ changeTenantPlan(tenantId:$t, plan:BIZ){ id } }",
        json!({ "t": tenant }),
    )
    .await;
    let body = app.gql(&admin, ACTIVATE, json!({ "t": tenant, "c": second })).await;
    assert_eq!(
        fields(&body),
        vec![("code".to_owned(), "ACTIVATION_CODE_EXPIRED".to_owned())],
        "{body}"
    );
    let expired = health(&app, &tenant).await["mailSettings"]["health"].clone();
    assert!(expired["activationCodeExpiresAt"].is_null(), "no code waits: {expired}");

    // A fresh code, typed loosely, activates; another tenant's admin cannot use it.
    app.ok(&admin, TEST, json!({ "t": tenant })).await;
    let third = code_in(&smtp.wait_for(3, Duration::from_secs(5))[2]);
    let other = app.create_tenant("Other", "SHARE").await;
    let body = app
        .gql(&app.admin(&other), ACTIVATE, json!({ "t": tenant, "c": third }))
        .await;
    assert_eq!(
        code(&body),
        "NOT_FOUND",
        "another tenant's settings do not exist for it: {body}"
    );
    let typed = format!("{}-{}", third[..5].to_ascii_lowercase(), &third[5..]);
    let done = app.ok(&admin, ACTIVATE, json!({ "t": tenant, "c": typed })).await;
    assert_eq!(done["activateMailSettings"]["health"]["state"], "LIVE");
    let h = health(&app, &tenant).await;
    assert_eq!(h["effectiveSender"]["reasonCode"], "CUSTOM_LIVE", "{h}");
    app.finish().await;
}
