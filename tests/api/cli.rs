//! The real `mailgate` binary, as a new user runs it: first start with no
//! configuration, the printed token works, GraphiQL is served, secrets are private,
//! `mailgate token` mints working tokens, SIGTERM stops it cleanly, and bad settings are
//! named at start-up.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;

use serde_json::json;
use testkit::client::call;
use testkit::process::stop;

use crate::support::process::{mailgate, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_without_configuration() {
    let dir = std::env::temp_dir().join(format!("mailgate-cli-{}", uuid::Uuid::new_v4().simple()));
    let (child, url, token) = start(&dir);

    let created = call(
        &url,
        &token,
        "mutation{ createTenant(name:\"First\", plan:SHARE){ id effectiveSender { source } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        created["data"]["createTenant"]["effectiveSender"]["source"], "PLATFORM_DEFAULT",
        "{created}"
    );
    let tenant = created["data"]["createTenant"]["id"].as_str().expect("id").to_owned();
    let page = reqwest::get(&url).await.expect("GET").text().await.expect("html");
    assert!(
        page.to_lowercase().contains("graphiql"),
        "GraphiQL is served in development"
    );
    let base = url.trim_end_matches("/graphql");
    assert_eq!(
        reqwest::get(format!("{base}/healthz")).await.expect("healthz").status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/readyz")).await.expect("readyz").status(),
        200
    );
    stop(child);

    // The data directory holds the database and private development secrets.
    assert!(dir.join("mailgate.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("dev-secrets.toml"))
            .expect("secrets file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // `mailgate token` mints with the same key; the data survives a restart.
    let out = mailgate(&dir)
        .args(["token", "--role", "tenant_admin", "--tenant", &tenant, "--ttl", "10m"])
        .output()
        .expect("token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let admin = String::from_utf8(out.stdout).expect("utf8").trim().to_owned();
    let (child, url, _) = start(&dir);
    let viewer = call(&url, &admin, "{ viewer { role tenant { id name } } }", json!({})).await;
    assert_eq!(
        viewer["data"]["viewer"],
        json!({ "role": "TENANT_ADMIN", "tenant": { "id": tenant, "name": "First" } })
    );
    stop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With a JWT secret of the operator's own, the development banner prints no token (a
/// token printed on every start, valid for a day, would outlive the start in any log).
#[test]
fn the_banner_prints_a_token_only_for_generated_secrets() {
    let dir = std::env::temp_dir().join(format!("mailgate-cli-{}", uuid::Uuid::new_v4().simple()));
    let mut child = mailgate(&dir)
        .env("MAILGATE_JWT_SECRET", "an-operator-chosen-secret-of-at-least-32-bytes")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut banner = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        let last = line.contains("Operator token");
        banner.push(line);
        if last {
            break;
        }
    }
    // SIGTERM at once, right after the banner: `serve` listens for it from before the
    // banner is printed, so the process still stops cleanly (`stop` checks exit 0).
    stop(child);
    let banner = banner.join("\n");
    assert!(banner.contains("mailgate token --role operator"), "{banner}");
    assert!(!banner.contains("eyJ"), "no JWT in the banner: {banner}");
    assert!(
        banner.contains("/console/"),
        "the console's address is still shown: {banner}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_process_on_one_sqlite_file_is_refused() {
    let dir = std::env::temp_dir().join(format!("mailgate-cli-{}", uuid::Uuid::new_v4().simple()));
    let (first, _url, _token) = start(&dir);
    let out = mailgate(&dir).arg("serve").output().expect("runs");
    assert!(
        !out.status.success(),
        "a second process on the same SQLite file must not start"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MAILGATE_DATABASE_URL") && err.contains("another Mailgate process"),
        "{err}"
    );
    stop(first);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_config_file_is_read_and_the_environment_wins_over_it() {
    let dir = std::env::temp_dir().join(format!("mailgate-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("mailgate.toml");
    std::fs::write(&file, "worker_poll_ms = 5\nmax_batch_size = 3\n").expect("write");
    // The file is read: its bad value is refused and named.
    let out = mailgate(&dir)
        .env("MAILGATE_CONFIG", &file)
        .arg("migrate")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MAILGATE_WORKER_POLL_MS"), "{err}");
    // The environment overrides the file.
    let out = mailgate(&dir)
        .env("MAILGATE_CONFIG", &file)
        .env("MAILGATE_WORKER_POLL_MS", "50")
        .arg("migrate")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "the environment's value wins: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A file that does not exist is named, not silently skipped.
    let out = mailgate(&dir)
        .env("MAILGATE_CONFIG", dir.join("missing.toml"))
        .arg("migrate")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MAILGATE_CONFIG"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_settings_are_named_at_start() {
    let dir = std::env::temp_dir().join(format!("mailgate-cli-{}", uuid::Uuid::new_v4().simple()));
    let cases: [(&[(&str, &str)], &str); 13] = [
        (&[("MAILGATE_WORKER_LEASE_SECS", "1")], "MAILGATE_WORKER_LEASE_SECS"),
        // A misspelt setting is refused, not ignored.
        (&[("MAILGATE_LISTN", "127.0.0.1:0")], "MAILGATE_LISTN"),
        (&[("MAILGATE_LOG", "mailgate=loud")], "MAILGATE_LOG"),
        // Upper case would name another schema once PostgreSQL folds it.
        (&[("MAILGATE_DATABASE_SCHEMA", "Tenants")], "MAILGATE_DATABASE_SCHEMA"),
        (&[("MAILGATE_LISTEN", "not-an-address")], "MAILGATE_LISTEN"),
        (&[("MAILGATE_WORKER_POLL_MS", "0")], "MAILGATE_WORKER_POLL_MS"),
        (&[("MAILGATE_WORKER_BATCH_SIZE", "0")], "MAILGATE_WORKER_BATCH_SIZE"),
        (
            &[("MAILGATE_SMTP_MAX_CONNECTIONS_PER_TENANT", "0")],
            "MAILGATE_SMTP_MAX_CONNECTIONS_PER_TENANT",
        ),
        (&[("MAILGATE_PROFILE", "production")], "MAILGATE_JWT_SECRET"),
        (&[("MAILGATE_JWT_SECRET", "short")], "MAILGATE_JWT_SECRET"),
        (&[("MAILGATE_SECRET_KEY", "bm90LTMyLWJ5dGVz")], "MAILGATE_SECRET_KEY"),
        (
            &[("MAILGATE_DEFAULT_FROM", "Platform <not an address>")],
            "MAILGATE_DEFAULT_FROM",
        ),
        // A relay over STARTTLS whose name no certificate can match: the URL is named,
        // not the CA file.
        (
            &[("MAILGATE_DEFAULT_SMTP_URL", "smtp://a..b:587?starttls=required")],
            "MAILGATE_DEFAULT_SMTP_URL",
        ),
    ];
    for (env, named) in cases {
        let out = mailgate(&dir)
            .envs(env.iter().copied())
            .arg("serve")
            .output()
            .expect("runs");
        assert!(!out.status.success(), "{env:?} must be refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{env:?}: the message names {named}: {err}");
    }
    let out = mailgate(&dir)
        .args(["token", "--role", "tenant_admin"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tenant"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The variables Kubernetes injects for a Service named `mailgate` (unless a pod sets
/// `enableServiceLinks: false`) are ignored with a log line; a real typo beside them is
/// still refused, and named alone.
#[test]
fn kubernetes_service_links_do_not_stop_the_start() {
    let dir = std::env::temp_dir().join(format!("mailgate-cli-{}", uuid::Uuid::new_v4().simple()));
    let links = [
        ("MAILGATE_PORT", "tcp://10.96.0.10:80"),
        ("MAILGATE_PORT_80_TCP", "tcp://10.96.0.10:80"),
        ("MAILGATE_PORT_80_TCP_PROTO", "tcp"),
        ("MAILGATE_PORT_80_TCP_PORT", "80"),
        ("MAILGATE_PORT_80_TCP_ADDR", "10.96.0.10"),
        ("MAILGATE_SERVICE_HOST", "10.96.0.10"),
        ("MAILGATE_SERVICE_PORT", "80"),
        ("MAILGATE_SERVICE_PORT_HTTP", "80"),
    ];
    let out = mailgate(&dir)
        .envs(links)
        .env("MAILGATE_LOG", "info")
        .args(["token", "--role", "operator"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "starts beside service links: {err}");
    assert!(err.contains("ignoring Kubernetes service-link variables"), "{err}");
    assert!(err.contains("MAILGATE_SERVICE_HOST"), "the log names them: {err}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("MAILGATE"),
        "stdout is the token only"
    );

    let out = mailgate(&dir)
        .envs(links)
        .env("MAILGATE_LISTN", "127.0.0.1:0")
        .args(["token", "--role", "operator"])
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a typo is still refused");
    assert!(
        err.contains("MAILGATE_LISTN") && !err.contains("MAILGATE_PORT"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
