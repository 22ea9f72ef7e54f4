//! The command line: `serve` (default), `migrate`, `token`, `rotate-secret-key`,
//! `print-schema`.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use domain::{Role, TenantId};

use crate::app::{self, App};
use crate::config::{Config, Profile};
use crate::http::{self, RunningServer};

#[derive(Debug, Parser)]
#[command(
    name = "mailgate",
    version,
    about = "Decides which mail server and sender each tenant's mail goes out from, and sends it."
)]
pub struct Cli {
    /// A TOML configuration file (also `MAILGATE_CONFIG`); environment variables override it.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP/GraphQL server (the default).
    Serve,
    /// Run only the delivery worker (no HTTP), until SIGTERM/SIGINT.
    Worker,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Mint a bearer token with the configured key (development and operations).
    Token {
        /// operator, tenant_admin or service.
        #[arg(long)]
        role: String,
        /// The tenant of a tenant_admin.
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime: seconds, or with a unit: 30m, 12h, 7d.
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// The `sub` claim.
        #[arg(long, default_value = "cli")]
        subject: String,
        /// PEM private key, needed to mint RS256/EdDSA tokens.
        #[arg(long)]
        private_key: Option<PathBuf>,
        /// Print a console link that hands the token over once in its fragment
        /// (`<base>/console/#token=…`; the fragment never reaches a server or a log).
        /// The base defaults to `http://` and MAILGATE_LISTEN.
        #[arg(long, value_name = "BASE", num_args = 0..=1, default_missing_value = "")]
        console_url: Option<String>,
    },
    /// Re-encrypt every stored password under the current MAILGATE_SECRET_KEY.
    RotateSecretKey,
    /// Print the GraphQL schema (SDL).
    PrintSchema,
}

/// Parses `3600`, `30m`, `12h`, `7d`.
pub fn parse_ttl(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("--ttl {s:?} is not a duration like 3600, 30m, 12h or 7d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("--ttl {s:?}: unknown unit {unit:?} (use s, m, h or d)"),
    };
    let secs = n.checked_mul(mult).context("--ttl is too large")?;
    if secs == 0 {
        bail!("--ttl must be positive");
    }
    Ok(secs)
}

/// `<base>/console/#token=<token>`; an empty base is `http://<listen>` (loopback for an
/// address that listens on every interface).
pub fn console_link(base: &str, listen: std::net::SocketAddr, token: &str) -> anyhow::Result<String> {
    let base = if base.is_empty() {
        let host = match listen.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
            ip if ip.is_unspecified() => "[::1]".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("http://{host}:{}", listen.port())
    } else {
        base.trim_end_matches('/').to_owned()
    };
    if !(base.starts_with("http://") || base.starts_with("https://")) || base.contains('#') {
        bail!("--console-url {base:?}: give the address the console is served on, e.g. https://mail.example.com");
    }
    let base = base.strip_suffix(console::BASE).unwrap_or(&base);
    Ok(format!("{base}{}/#token={token}", console::BASE))
}

/// Loads and checks the configuration (generating development secrets if needed).
pub fn load_config(file: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let mut config = Config::load(file)?;
    config.validate_and_prepare()?;
    Ok(config)
}

/// Runs the command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::PrintSchema = command {
        print!("{}", graphql_api::schema::sdl());
        return Ok(());
    }
    let config = load_config(cli.config.as_deref())?;
    let _traces = crate::telemetry::init(config.log_format, config.otlp_endpoint.as_deref())?;
    if !config.ignored_service_links.is_empty() {
        tracing::info!(
            variables = %config.ignored_service_links.join(","),
            "ignoring Kubernetes service-link variables (set enableServiceLinks: false on the pod to drop them)"
        );
    }
    match command {
        Command::Serve => serve(config).await,
        Command::Worker => {
            let shutdown = http::shutdown_signal();
            tokio::pin!(shutdown);
            let app = tokio::select! {
                app = App::build(config) => app?,
                () = &mut shutdown => return Ok(()),
            };
            let listener = tokio::net::TcpListener::bind(app.config.worker_listen)
                .await
                .with_context(|| format!("MAILGATE_WORKER_LISTEN: cannot listen on {}", app.config.worker_listen))?;
            tracing::info!(addr = %app.config.worker_listen, "worker metrics and health listening");
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let operations = tokio::spawn(
                axum::serve(listener, http::operations_router(app.clone()))
                    .with_graceful_shutdown(stopped_when(stopped.clone()))
                    .into_future(),
            );
            let dispatcher = tokio::spawn(app.dispatcher().run(stopped_when(stopped.clone())));
            let _keep_alive = app.keep_connections_alive();
            let report = app.worker().run(shutdown).await;
            let _ = stop.send(true);
            let _ = dispatcher.await;
            let _ = operations.await;
            println!(
                "worker stopped: {} finished, {} given back",
                report.finished, report.released
            );
            Ok(())
        }
        Command::Migrate => {
            let (db, _lock) = app::connect(&config).await?;
            persistence::migrate(&db).await.context("running migrations")?;
            println!("migrations applied");
            Ok(())
        }
        Command::Token {
            role,
            tenant,
            ttl,
            subject,
            private_key,
            console_url,
        } => {
            let role = Role::from_code(&role)
                .with_context(|| format!("--role {role:?}: use operator, tenant_admin or service"))?;
            let tenant = tenant
                .map(|t| TenantId::from_str(&t).map_err(|_| anyhow::anyhow!("--tenant {t:?} is not a tenant id")))
                .transpose()?;
            if role == Role::TenantAdmin && tenant.is_none() {
                bail!("--tenant is required for --role tenant_admin");
            }
            let verifier = app::token_verifier(&config)?;
            let pem = private_key
                .map(|p| std::fs::read(&p).with_context(|| format!("--private-key: cannot read {}", p.display())))
                .transpose()?;
            let claims = verifier.claims(&subject, role, tenant, parse_ttl(&ttl)?);
            let token = verifier.mint(&claims, pem.as_deref())?;
            match console_url {
                None => println!("{token}"),
                Some(base) => {
                    if !config.console_enabled() {
                        eprintln!(
                            "note: this configuration serves no console (production profile): set MAILGATE_CONSOLE=true on the server"
                        );
                    }
                    println!("{}", console_link(&base, config.listen, &token)?);
                }
            }
            Ok(())
        }
        Command::RotateSecretKey => {
            let keyring = app::keyring(&config)?;
            let (db, _lock) = app::connect(&config).await?;
            let n = persistence::rotate_secret_key(&db, &keyring)
                .await
                .context("re-encrypting stored passwords")?;
            println!("re-encrypted {n} stored password(s) under the current key");
            Ok(())
        }
        Command::PrintSchema => Ok(()),
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let dev = config.profile == Profile::Development;
    // Listening for SIGTERM and SIGINT from here on, before anything is printed; a signal
    // while the app is built (migrations, a slow database) stops the start.
    let shutdown = http::shutdown_signal();
    tokio::pin!(shutdown);
    let app = tokio::select! {
        app = App::build(config) => app?,
        () = &mut shutdown => return Ok(()),
    };
    let server = RunningServer::start(app.clone()).await?;
    tracing::info!(addr = %server.addr, "mailgate listening");
    let (stop_worker, stopped) = tokio::sync::watch::channel(false);
    let worker = app.config.worker_enabled.then(|| {
        let mut stopped = stopped.clone();
        tokio::spawn(app.worker().run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }))
    });
    let _keep_alive = app.config.worker_enabled.then(|| app.keep_connections_alive());
    // Webhook messages go out wherever mail does.
    let dispatcher = app
        .config
        .worker_enabled
        .then(|| tokio::spawn(app.dispatcher().run(stopped_when(stopped.clone()))));
    if dev {
        // A working token only for the secrets Mailgate generated itself: with a key of
        // the operator's own, a token printed on every start would outlive the start.
        let minted = app.config.jwt_secret_generated.then(|| {
            let claims = app.verifier.claims("dev-operator", Role::Operator, None, 24 * 3600);
            app.verifier.mint(&claims, None).ok()
        });
        let token = minted.flatten();
        let console = if app.config.console_enabled() {
            match &token {
                Some(token) => console_link("", server.addr, token).unwrap_or_default(),
                None => console_link("", server.addr, "")
                    .map(|link| link.trim_end_matches("#token=").to_owned())
                    .unwrap_or_default(),
            }
        } else {
            "disabled (MAILGATE_CONSOLE=true turns it on)".into()
        };
        let graphiql = if app.config.graphiql_enabled() {
            format!("http://{}/graphql", server.addr)
        } else {
            "disabled".into()
        };
        println!(
            "\nMailgate is running (development profile, data in {}).",
            app.config.data_dir.display()
        );
        println!("  GraphiQL:  {graphiql}");
        println!("  Console:   {console}");
        match token {
            Some(token) => {
                println!("  Operator token (24 h), send as `Authorization: Bearer <token>`:\n  {token}\n");
            }
            None => println!(
                "  Operator token: not printed (a JWT key of your own is configured); mint one with `mailgate token --role operator`.\n"
            ),
        }
    }
    (&mut shutdown).await;
    let _ = stop_worker.send(true);
    let (http_result, worker_report, _) = tokio::join!(
        server.stop(),
        async {
            match worker {
                Some(handle) => handle.await.ok(),
                None => None,
            }
        },
        async {
            if let Some(handle) = dispatcher {
                let _ = handle.await;
            }
        }
    );
    http_result?;
    if let Some(report) = worker_report {
        tracing::info!(
            finished = report.finished,
            given_back = report.released,
            "worker drained"
        );
    }
    tracing::info!("mailgate stopped");
    Ok(())
}

/// Resolves once `stopped` turns true (or its sender is gone).
async fn stopped_when(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}
