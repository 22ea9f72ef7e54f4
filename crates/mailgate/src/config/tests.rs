//! The configuration's own tests: README.md's table against the declarations, the
//! declared checks, production's refusals, service links.

use super::{Config, Profile, is_service_link};

/// README.md's configuration table as (variable, default) pairs: a row's first column
/// names one or more variables (`A` / `B`), its second their defaults, one for each
/// (`x` / `y`) or one for all. A row whose defaults cannot be paired gives `None`.
fn readme_table() -> Vec<(String, Option<String>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme.split("\n## Configuration\n").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `MAILGATE_"))
        .flat_map(|l| {
            let mut cells = l.trim_start_matches("| ").split(" | ");
            let names: Vec<String> = cells
                .next()
                .unwrap_or("")
                .split(" / ")
                .map(|n| n.trim().trim_matches('`').to_owned())
                .collect();
            let defaults: Vec<String> = cells
                .next()
                .unwrap_or("")
                .split(" / ")
                .map(|d| d.trim().to_owned())
                .collect();
            let count = names.len();
            names
                .into_iter()
                .enumerate()
                .map(|(i, name)| {
                    let default = match defaults.len() {
                        1 => Some(defaults[0].clone()),
                        n if n == count => Some(defaults[i].clone()),
                        _ => None,
                    };
                    (name, default)
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn the_readme_table_names_every_setting_the_binary_reads_and_no_other() {
    let read: Vec<String> = Config::settings().into_iter().map(|s| s.name).collect();
    assert!(read.len() > 50, "the names come from the declarations: {read:?}");
    assert!(read.contains(&"MAILGATE_DATABASE_URL".to_owned()));
    let documented: Vec<String> = readme_table().into_iter().map(|(name, _)| name).collect();
    let missing: Vec<&String> = read.iter().filter(|n| !documented.contains(n)).collect();
    let unknown: Vec<&String> = documented.iter().filter(|n| !read.contains(n)).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "README.md's configuration table is not what the binary reads: not in the table {missing:?}; \
         in the table but not read {unknown:?}"
    );
    let mut once = documented.clone();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), documented.len(), "a setting has two rows");
}

#[test]
fn the_readme_table_shows_the_declared_default_of_every_setting() {
    let table = readme_table();
    let wrong: Vec<String> = Config::settings()
        .into_iter()
        .filter_map(|setting| {
            let (_, shown) = table.iter().find(|(name, _)| *name == setting.name)?;
            match shown {
                Some(shown) if *shown == setting.default => None,
                Some(shown) => Some(format!(
                    "{}: the table shows {shown}, the declared default is {}",
                    setting.name, setting.default
                )),
                None => Some(format!(
                    "{}: its row's defaults do not pair with its names (one for each, ` / ` between, or one for all); \
                     the declared default is {}",
                    setting.name, setting.default
                )),
            }
        })
        .collect();
    assert!(wrong.is_empty(), "README.md's Default column:\n{}", wrong.join("\n"));
}

/// What the table shows as a value (in backticks) is what the binary reads as the
/// default when a variable says it: the shown text and the default cannot drift apart.
#[test]
fn every_default_shown_as_a_value_reads_back_as_that_default() {
    let defaults = format!("{:?}", Config::default());
    let mut read_back = 0;
    for setting in Config::settings() {
        if !setting.default_is_the_value {
            continue;
        }
        let Some(text) = setting.default.strip_prefix('`').and_then(|t| t.strip_suffix('`')) else {
            continue; // none: `–`
        };
        let field = setting.name.trim_start_matches("MAILGATE_").to_ascii_lowercase();
        let value: figment::value::Value = text.parse().unwrap();
        let config: Config = figment::Figment::new()
            .merge((field.as_str(), value))
            .extract()
            .unwrap_or_else(|e| panic!("{}={text}: {e}", setting.name));
        assert_eq!(
            format!("{config:?}"),
            defaults,
            "{}={text} is not the default",
            setting.name
        );
        read_back += 1;
    }
    assert!(read_back > 40, "most defaults are values: {read_back}");
}

#[test]
fn every_setting_has_a_description() {
    for setting in Config::settings() {
        assert!(setting.description.len() > 10, "{setting:?}");
    }
}

#[test]
fn a_declared_check_names_its_setting_and_says_what_is_wrong() {
    let dir = std::env::temp_dir().join(format!("mailgate-config-{}", uuid::Uuid::new_v4().simple()));
    let base = Config {
        data_dir: dir.clone(),
        ..Config::default()
    };
    let refused = |change: fn(&mut Config)| {
        let mut config = base.clone();
        change(&mut config);
        config.validate_and_prepare().unwrap_err().to_string()
    };
    assert_eq!(
        refused(|c| c.worker_lease_secs = 2),
        "MAILGATE_WORKER_LEASE_SECS must be at least 3"
    );
    assert_eq!(
        refused(|c| c.webhook_timeout_secs = 61),
        "MAILGATE_WEBHOOK_TIMEOUT_SECS must be 1 to 60"
    );
    assert_eq!(
        refused(|c| c.jwt_issuer = " ".into()),
        "MAILGATE_JWT_ISSUER must not be empty"
    );
    assert_eq!(
        refused(|c| c.request_timeout_secs = 0),
        "MAILGATE_REQUEST_TIMEOUT_SECS must be at least 1 (keep it above 20: a test mail may take that long)"
    );
    assert_eq!(
        refused(|c| c.webhook_per_endpoint_in_flight = 0),
        "MAILGATE_WEBHOOK_PER_ENDPOINT_IN_FLIGHT must be at least 1"
    );
    assert_eq!(
        refused(|c| c.oauth_keep_alive_secs = 0),
        "MAILGATE_OAUTH_KEEP_ALIVE_SECS must be at least 1"
    );
    let mut fine = base.clone();
    fine.validate_and_prepare().expect("the defaults pass their own checks");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn production_refuses_private_smtp_hosts_without_the_second_yes() {
    let dir = std::env::temp_dir().join(format!("mailgate-config-{}", uuid::Uuid::new_v4().simple()));
    let base = Config {
        profile: Profile::Production,
        data_dir: dir.clone(),
        jwt_secret: Some("a-production-secret-of-at-least-32-bytes!".into()),
        secret_key: Some(persistence::crypto::generate_key_base64()),
        ..Config::default()
    };
    let mut plain = base.clone();
    plain
        .validate_and_prepare()
        .expect("a safe production configuration starts");
    let mut private = Config {
        allow_private_smtp_hosts: true,
        ..base.clone()
    };
    let refused = private.validate_and_prepare().unwrap_err().to_string();
    assert!(
        refused.contains("MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS_IN_PRODUCTION"),
        "{refused}"
    );
    let mut acknowledged = Config {
        allow_private_smtp_hosts: true,
        allow_private_smtp_hosts_in_production: true,
        ..base.clone()
    };
    acknowledged.validate_and_prepare().expect("acknowledged");
    let mut development = Config {
        profile: Profile::Development,
        allow_private_smtp_hosts: true,
        ..base
    };
    development
        .validate_and_prepare()
        .expect("development needs no acknowledgement");
    assert!(!development.introspection_enabled() || development.profile == Profile::Development);
    assert!(
        !plain.introspection_enabled() && !plain.graphiql_enabled(),
        "off in production unless asked for"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn kubernetes_service_links_are_recognised_and_settings_are_not() {
    for link in [
        "PORT",
        "SERVICE_HOST",
        "SERVICE_PORT",
        "SERVICE_PORT_HTTP",
        "PORT_80_TCP",
        "PORT_80_TCP_PROTO",
        "PORT_80_TCP_PORT",
        "PORT_80_TCP_ADDR",
        // A Service named `mailgate-metrics`.
        "METRICS_SERVICE_HOST",
        "METRICS_PORT_9090_TCP_ADDR",
        "port_8080_udp",
    ] {
        assert!(is_service_link(link), "{link}");
    }
    for typo in [
        "PORTS",
        "LISTEN_PORT_X",
        "PORT_80",
        "PORT_80_TCP_HOST",
        "SERVICE",
        "SMTP_ALLOWED_PORT_S",
        "DATABSE_URL",
    ] {
        assert!(!is_service_link(typo), "{typo}");
    }
    // No documented setting looks like a service link.
    let readme = include_str!("../../../../README.md");
    let mut names: Vec<&str> = readme
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter_map(|w| w.strip_prefix("MAILGATE_"))
        .filter(|w| !w.is_empty())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() > 30, "the README's settings were found: {names:?}");
    for name in names {
        assert!(
            !is_service_link(name),
            "MAILGATE_{name} would be ignored as a service link"
        );
    }
}
