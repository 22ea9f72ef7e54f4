//! SMTP manners: every session Mailgate opens to a tenant's server ends with QUIT while
//! the conversation still stands — the pooled ones when the worker stops (as on SIGTERM),
//! one whose mail was refused (RSET, kept, then QUIT), the ones closed to give the only
//! place at a busy host to another tenant, and one whose server refused it in its
//! greeting — as the servers' command logs show.
//! Where a server offers PIPELINING (RFC 2920), a send's MAIL FROM, RCPT TO and DATA go
//! in one write; a refusal among them is named by its own command and leaves the session
//! in step (every reply read, then RSET).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::servers::*;
use testkit::settings::SettingsInput;

use crate::support::deliveries::*;
use crate::support::*;

testkit::each_backend!(
    pooled_sessions_say_quit_when_the_worker_stops,
    sessions_closed_for_a_busy_host_say_quit,
    a_session_that_cannot_authenticate_says_quit,
    a_server_that_refuses_in_its_greeting_gets_quit,
    a_server_that_offers_pipelining_gets_each_send_in_one_write,
    a_refusal_inside_a_pipelined_send_is_named_and_the_session_kept,
);

const SEND_TEST: &str = "mutation($t:ID!,$to:String!,$s:MailSettingsInput){ sendTestMail(tenantId:$t, to:$to, settings:$s){ ok stage hintCode } }";

fn logged(mut options: SmtpOptions) -> SmtpOptions {
    options.log_commands = true;
    options
}

/// The tenant admin's test mail with `settings`, the whole answer.
async fn test_mail(app: &TestApp, tenant: &str, settings: &Value) -> Value {
    app.gql(
        &app.admin(tenant),
        SEND_TEST,
        json!({ "t": tenant, "to": "customer@example.net", "s": settings }),
    )
    .await
}

/// Each connection's verbs, for a failure message.
fn verbs(smtp: &SmtpServer) -> Vec<Vec<String>> {
    smtp.conversations().iter().map(Conversation::verbs).collect()
}

/// Two Share tenants, Sakura and Kaede, whose own servers (plain SMTP) are at these
/// ports on loopback.
async fn share_tenants_on(app: &TestApp, sakura_port: u16, kaede_port: u16) -> (String, String) {
    let (sakura, kaede) = (
        app.create_tenant("Sakura", "SHARE").await,
        app.create_tenant("Kaede", "SHARE").await,
    );
    for (tenant, port) in [(&sakura, sakura_port), (&kaede, kaede_port)] {
        app.ok(
            &app.admin(tenant),
            UPDATE,
            json!({ "t": tenant, "i": SettingsInput::plain(port).json() }),
        )
        .await;
    }
    (sakura, kaede)
}

/// Polls until the delivery has an attempt (its first send is over), and returns it.
async fn wait_attempted(app: &TestApp, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let d = delivery(app, id).await;
        if d["attempts"].as_array().is_some_and(|a| !a.is_empty()) {
            return d;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "never attempted: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn pooled_sessions_say_quit_when_the_worker_stops(backend: Backend) {
    let smtp = SmtpServer::start(logged(SmtpOptions::plain()));
    let refusing = SmtpServer::start(logged(SmtpOptions {
        rcpt_reply: Some("550 5.1.1 <member@example.net>: Recipient address rejected: User unknown".into()),
        ..SmtpOptions::plain()
    }));
    let app = delivery_app(backend, &[smtp.port, refusing.port]).await;
    let (sakura, kaede) = share_tenants_on(&app, smtp.port, refusing.port).await;
    let mut sent = Vec::new();
    for i in 0..3 {
        let d = enqueue(&app, registration(&sakura, "ja", Some(&format!("sakura-{i}")))).await;
        sent.push(d["id"].as_str().unwrap().to_owned());
    }
    let refused = enqueue(&app, registration(&kaede, "ja", Some("kaede-0"))).await;

    let worker = RunningWorker::start(&app);
    for id in &sent {
        wait_status(&app, id, "SENT", Duration::from_secs(15)).await;
    }
    let d = wait_attempted(&app, refused["id"].as_str().unwrap()).await;
    assert_eq!(d["attempts"][0]["stage"], "RCPT_TO", "{d}");
    assert_eq!(d["attempts"][0]["smtpCode"], 550, "{d}");
    // The sessions are idle in their pools now; the worker stops as on SIGTERM.
    worker.stop().await;

    let conversations = smtp.conversations();
    assert!(!conversations.is_empty(), "the command log works");
    assert!(
        conversations.iter().all(Conversation::ended_with_quit),
        "every pooled session said QUIT at shutdown: {:?}",
        verbs(&smtp)
    );
    assert_eq!(
        conversations
            .iter()
            .flat_map(Conversation::verbs)
            .filter(|v| v == "DATA")
            .count(),
        3,
        "three mails: {:?}",
        verbs(&smtp)
    );
    // The refused recipient left a usable session: reset, kept, and ended with QUIT.
    let refused_log = refusing.conversations();
    assert!(!refused_log.is_empty(), "the refusing server was reached");
    assert!(
        refused_log.iter().all(Conversation::ended_with_quit),
        "the session whose mail was refused said QUIT at shutdown: {:?}",
        verbs(&refusing)
    );
    assert!(
        refused_log[0].verbs().windows(2).any(|w| w == ["RCPT", "RSET"]),
        "the refused transaction was reset: {:?}",
        verbs(&refusing)
    );
    app.finish().await;
}

/// Settings with a login, to a server that offers no AUTH (Postfix on port 25 often
/// does not): nothing can be sent, but the session stood — it ends with QUIT after EHLO,
/// for a test mail and for the worker's pool alike, not with a lost connection.
async fn a_session_that_cannot_authenticate_says_quit(backend: Backend) {
    let smtp = SmtpServer::start(logged(SmtpOptions::plain()));
    let app = delivery_app(backend, &[smtp.port]).await;
    let tenant = app.create_tenant("Nashi", "SHARE").await;
    let settings = SettingsInput::plain(smtp.port)
        .with_auth("shop", "s3cret-Passw0rd")
        .json();
    let body = test_mail(&app, &tenant, &settings).await;
    let r = &body["data"]["sendTestMail"];
    assert_eq!(
        (r["ok"].clone(), r["stage"].clone(), r["hintCode"].clone()),
        (json!(false), json!("AUTH"), json!("AUTH_NOT_OFFERED")),
        "{body}"
    );
    assert_eq!(verbs(&smtp), [["EHLO", "QUIT"]], "the test mail's session");

    app.ok(&app.admin(&tenant), UPDATE, json!({ "t": tenant, "i": settings }))
        .await;
    let d = enqueue(&app, registration(&tenant, "en", Some("nashi-0"))).await;
    let worker = RunningWorker::start(&app);
    let d = wait_attempted(&app, d["id"].as_str().unwrap()).await;
    assert_eq!(d["attempts"][0]["stage"], "AUTH", "{d}");
    worker.stop().await;
    let conversations = smtp.conversations();
    assert!(
        conversations.len() >= 2 && conversations.iter().all(Conversation::ended_with_quit),
        "every session ended with QUIT: {:?}",
        verbs(&smtp)
    );
    app.finish().await;
}

/// A server that refuses the session in its greeting (`554`) waits for QUIT (RFC 5321
/// §3.1), and gets it in each mode: plain, implicit TLS, and STARTTLS (where the refusal
/// comes before the upgrade). The refusal is named as the greeting's, with its code.
async fn a_server_that_refuses_in_its_greeting_gets_quit(backend: Backend) {
    let refusing = |options: SmtpOptions| {
        SmtpServer::start(SmtpOptions {
            greeting_reply: Some("554 5.3.2 No SMTP service here".into()),
            ..logged(options)
        })
    };
    let servers = [
        ("NONE", refusing(SmtpOptions::plain())),
        ("SSL", refusing(SmtpOptions::implicit_tls())),
        ("STARTTLS", refusing(SmtpOptions::starttls())),
    ];
    let app = delivery_app(backend, &servers.iter().map(|(_, s)| s.port).collect::<Vec<_>>()).await;
    let tenant = app.create_tenant("Ume", "SHARE").await;
    for (encryption, smtp) in &servers {
        let settings = SettingsInput::plain(smtp.port).encryption(encryption).json();
        let body = test_mail(&app, &tenant, &settings).await;
        let r = &body["data"]["sendTestMail"];
        assert_eq!(
            (r["ok"].clone(), r["stage"].clone()),
            (json!(false), json!("GREETING")),
            "{encryption}: {body}"
        );
        // The server reads QUIT and closes; its log line may come a moment after our answer.
        let start = Instant::now();
        while verbs(smtp) != [["QUIT"]] && start.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            verbs(smtp),
            [["QUIT"]],
            "{encryption}: the session said QUIT and nothing else"
        );
    }
    app.finish().await;
}

/// One place at the host for two tenants: each time the place changes hands, the session
/// that held it is closed with QUIT (never opened and dropped), and the last one is closed
/// with QUIT when the worker stops.
async fn sessions_closed_for_a_busy_host_say_quit(backend: Backend) {
    let smtp = SmtpServer::start(logged(SmtpOptions::plain()));
    let ports = vec![smtp.port];
    let app = spawn_app_with(backend, move |c| {
        delivery_config(c, ports);
        c.smtp_max_connections_per_host = 1;
    })
    .await;
    let (ume, momo) = (
        app.create_tenant("Ume", "SHARE").await,
        app.create_tenant("Momo", "SHARE").await,
    );
    let mut ids = Vec::new();
    for tenant in [&ume, &momo] {
        app.ok(
            &app.admin(tenant),
            UPDATE,
            json!({ "t": tenant, "i": SettingsInput::plain(smtp.port).json() }),
        )
        .await;
        for i in 0..3 {
            let d = enqueue(&app, registration(tenant, "en", Some(&format!("{tenant}-{i}")))).await;
            ids.push(d["id"].as_str().unwrap().to_owned());
        }
    }
    let worker = RunningWorker::start(&app);
    for id in &ids {
        wait_status(&app, id, "SENT", Duration::from_secs(30)).await;
    }
    worker.stop().await;

    let conversations = smtp.conversations();
    assert!(
        conversations.len() >= 2,
        "two tenants' pools took turns at the one place: {:?}",
        verbs(&smtp)
    );
    assert!(
        conversations.iter().all(Conversation::ended_with_quit),
        "every session ended with QUIT: {:?}",
        verbs(&smtp)
    );
    app.finish().await;
}

async fn a_server_that_offers_pipelining_gets_each_send_in_one_write(backend: Backend) {
    let pipelining = SmtpServer::start(logged(SmtpOptions {
        pipelining: true,
        ..SmtpOptions::plain()
    }));
    let plain = SmtpServer::start(logged(SmtpOptions::plain()));
    let app = delivery_app(backend, &[pipelining.port, plain.port]).await;
    let (sakura, kaede) = share_tenants_on(&app, pipelining.port, plain.port).await;
    let mut sent = Vec::new();
    for i in 0..3 {
        for (tenant, name) in [(&sakura, "sakura"), (&kaede, "kaede")] {
            let d = enqueue(&app, registration(tenant, "ja", Some(&format!("{name}-{i}")))).await;
            sent.push(d["id"].as_str().unwrap().to_owned());
        }
    }
    let worker = RunningWorker::start(&app);
    for id in &sent {
        wait_status(&app, id, "SENT", Duration::from_secs(15)).await;
    }
    worker.stop().await;
    let (piped, one_by_one) = (pipelining.received(), plain.received());
    assert_eq!((piped.len(), one_by_one.len()), (3, 3));
    assert!(
        piped.iter().all(|r| r.pipelined),
        "RCPT TO came before MAIL FROM was answered: {:?}",
        verbs(&pipelining)
    );
    assert!(
        one_by_one.iter().all(|r| !r.pipelined),
        "a server that does not offer it gets one command at a time"
    );
    // The same conversation as without it, and it still ends with QUIT.
    for conversation in pipelining.conversations() {
        assert!(conversation.ended_with_quit(), "{:?}", verbs(&pipelining));
        let verbs = conversation.verbs();
        assert!(verbs.windows(3).any(|w| w == ["MAIL", "RCPT", "DATA"]), "{verbs:?}");
    }
    app.finish().await;
}

async fn a_refusal_inside_a_pipelined_send_is_named_and_the_session_kept(backend: Backend) {
    let refusing_rcpt = SmtpServer::start(logged(SmtpOptions {
        pipelining: true,
        rcpt_reply: Some("550 5.1.1 <member@example.net>: Recipient address rejected: User unknown".into()),
        ..SmtpOptions::plain()
    }));
    let refusing_mail = SmtpServer::start(logged(SmtpOptions {
        pipelining: true,
        mail_from_reply: Some("553 5.7.1 Sender address rejected: not owned by user".into()),
        ..SmtpOptions::plain()
    }));
    let app = delivery_app(backend, &[refusing_rcpt.port, refusing_mail.port]).await;
    let (sakura, kaede) = share_tenants_on(&app, refusing_rcpt.port, refusing_mail.port).await;
    // Two refused recipients, one after the other on the tenant's one lane.
    let at_rcpt = [
        enqueue(&app, registration(&sakura, "ja", Some("sakura-0"))).await,
        enqueue(&app, registration(&sakura, "ja", Some("sakura-1"))).await,
    ];
    let at_mail = enqueue(&app, registration(&kaede, "ja", Some("kaede-0"))).await;
    let worker = RunningWorker::start(&app);
    for refused in &at_rcpt {
        let d = wait_attempted(&app, refused["id"].as_str().unwrap()).await;
        assert_eq!(d["attempts"][0]["stage"], "RCPT_TO", "{d}");
        assert_eq!(d["attempts"][0]["smtpCode"], 550, "{d}");
    }
    let d = wait_attempted(&app, at_mail["id"].as_str().unwrap()).await;
    assert_eq!(d["attempts"][0]["stage"], "MAIL_FROM", "{d}");
    assert_eq!(d["attempts"][0]["smtpCode"], 553, "{d}");
    worker.stop().await;
    // Each server got the three commands at once, answered all three (DATA with 503: no
    // valid recipient), and was reset; the session stood, so it ended with QUIT.
    for server in [&refusing_rcpt, &refusing_mail] {
        let conversations = server.conversations();
        assert!(!conversations.is_empty(), "the server was reached");
        assert!(
            conversations[0]
                .verbs()
                .windows(4)
                .any(|w| w == ["MAIL", "RCPT", "DATA", "RSET"]),
            "the refused transaction was read to its end and reset: {:?}",
            verbs(server)
        );
        assert!(
            conversations.iter().all(Conversation::ended_with_quit),
            "the session stood: {:?}",
            verbs(server)
        );
        assert_eq!(server.received().len(), 0, "nothing was accepted");
    }
    // Every reply was read: the RSET was answered as such, so the same session took the
    // second mail (a reply left unread would have answered the RSET, and the session
    // would have been closed).
    assert!(
        refusing_rcpt.conversations().iter().any(|c| c
            .verbs()
            .windows(8)
            .any(|w| w == ["MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA", "RSET"])),
        "both refused mails went on one session: {:?}",
        verbs(&refusing_rcpt)
    );
    app.finish().await;
}
