//! The `mailgate` binary as a child process, as an operator runs it: a command with a
//! clean `MAILGATE_` environment, started until it prints its address and operator
//! token, stopped with SIGTERM; and the database such a process keeps its data in.
//!
//! The binary's path is the caller's (`env!("CARGO_BIN_EXE_mailgate")` in the API suite,
//! a path on the command line in the benchmarks). Processes started here are killed when
//! the test panics, so a failed test leaves no server behind (nextest runs each test in a
//! process of its own, which exits after the panic while its children would live on).

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, Once, PoisonError};
use std::time::{Duration, Instant};

use crate::db::{Backend, PgSchema, postgres_url};

/// `bin` with its data in `data_dir`, listening on a free loopback port, logging warnings
/// only, and none of this process's `MAILGATE_` settings.
pub fn mailgate(bin: &Path, data_dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("MAILGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("MAILGATE_DATA_DIR", data_dir)
        .env("MAILGATE_LISTEN", "127.0.0.1:0")
        .env("MAILGATE_LOG", "warn");
    cmd
}

/// A started `mailgate serve`: the child, its GraphQL URL and an operator token.
#[derive(Debug)]
pub struct Started {
    pub child: Child,
    pub url: String,
    pub token: String,
}

/// Starts `cmd` (a `mailgate` command, serving) and reads the GraphQL URL and operator
/// token it prints; for a process that prints none (its JWT secret is configured), the
/// token is minted with `cmd`'s settings. The process is killed if the caller panics.
pub fn try_start(mut cmd: Command) -> std::io::Result<Started> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    track(child.id());
    let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let (mut url, mut token) = (String::new(), String::new());
    while let Some(Ok(line)) = lines.next() {
        if let Some(rest) = line.trim().strip_prefix("GraphiQL:") {
            url = rest.trim().to_owned();
        }
        if line.contains("Operator token") {
            token = lines.next().and_then(Result::ok).unwrap_or_default().trim().to_owned();
            break;
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    if !url.starts_with("http://") {
        return Err(std::io::Error::other(format!("mailgate did not start (URL {url:?})")));
    }
    if token.split('.').count() != 3 {
        token = mint_operator_like(&cmd)?;
    }
    Ok(Started { child, url, token })
}

/// [`try_start`] for a test: panics if the process does not start. Returns (child, URL,
/// operator token).
pub fn start_with(cmd: Command) -> (Child, String, String) {
    let Started { child, url, token } = try_start(cmd).unwrap_or_else(|e| panic!("started: {e}"));
    (child, url, token)
}

/// Starts `mailgate` (serve) on `data_dir` with nothing configured and reads the address
/// and operator token it prints, as a new user sees them.
pub fn start(bin: &Path, data_dir: &Path) -> (Child, String, String) {
    let mut child = mailgate(bin, data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut url = String::new();
    let mut token = String::new();
    while let Some(Ok(line)) = lines.next() {
        if let Some(rest) = line.trim().strip_prefix("GraphiQL:") {
            url = rest.trim().to_owned();
        }
        if line.contains("Operator token") {
            token = lines.next().and_then(Result::ok).unwrap_or_default().trim().to_owned();
            break;
        }
    }
    assert!(
        url.starts_with("http://127.0.0.1:"),
        "printed the GraphiQL URL: {url:?}"
    );
    assert_eq!(token.split('.').count(), 3, "printed a JWT: {token:?}");
    (child, url, token)
}

/// Stops a process with SIGTERM and asserts that it exits cleanly (code 0).
pub fn stop(mut child: Child) {
    untrack(child.id());
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "SIGTERM gives a clean exit, got {exit:?}");
}

/// Stops a process with SIGTERM, and kills it if it has not exited within `grace`.
/// Returns its exit status when it exited by itself.
pub fn terminate(mut child: Child, grace: Duration) -> Option<ExitStatus> {
    untrack(child.id());
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let started = Instant::now();
    while started.elapsed() < grace {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Processes started here and not stopped: killed when a test panics.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn track(pid: u32) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let pids = CHILDREN.lock().map(|c| c.clone()).unwrap_or_default();
            for pid in pids {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            default(info);
        }));
    });
    CHILDREN.lock().unwrap_or_else(PoisonError::into_inner).push(pid);
}

/// A process the caller stopped (or killed) itself: no longer killed on a panic.
pub fn untrack(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|p| *p != pid);
}

/// An operator token from the binary `cmd` runs, with `cmd`'s settings (for a process that
/// prints none: a JWT key of its own is configured).
pub fn mint_operator_like(cmd: &Command) -> std::io::Result<String> {
    let mut mint = Command::new(cmd.get_program());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => mint.env(k, v),
            None => mint.env_remove(k),
        };
    }
    let out = mint.args(["token", "--role", "operator"]).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "token: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    String::from_utf8(out.stdout)
        .map(|t| t.trim().to_owned())
        .map_err(std::io::Error::other)
}

/// A token for `role` minted by `cmd` (a `mailgate` command with its settings).
pub fn token(mut cmd: Command, role: &str) -> String {
    let out = cmd.args(["token", "--role", role]).output().expect("token");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
}

/// Where a `mailgate` process keeps its data: SQLite in its data directory, or a fresh
/// schema of the PostgreSQL test database (dropped with this value).
#[derive(Debug)]
pub struct Database {
    schema: Option<PgSchema>,
}

impl Database {
    pub fn for_backend(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self { schema: None },
            Backend::Postgres => Self::postgres("t"),
        }
    }

    /// A fresh PostgreSQL schema named `<prefix>_<uuid>`.
    pub fn postgres(prefix: &str) -> Self {
        Self {
            schema: Some(PgSchema::fresh(prefix)),
        }
    }

    pub fn schema(&self) -> Option<&str> {
        self.schema.as_ref().map(PgSchema::name)
    }

    /// The settings that point a process at it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match &self.schema {
            None => Vec::new(),
            Some(schema) => vec![
                ("MAILGATE_DATABASE_URL", postgres_url()),
                ("MAILGATE_DATABASE_SCHEMA", schema.name().to_owned()),
            ],
        }
    }
}
