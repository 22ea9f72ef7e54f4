//! Real mail servers on loopback for the API tests, none of them written by this repo:
//! aiosmtpd (SMTP: plain, STARTTLS, implicit TLS, AUTH, scripted failures, POP-before-SMTP
//! gate) and a private Dovecot instance (POP3/POP3S), plus a test CA made with trustme.
//! The scripts live in `tests/mailservers/` (`install.sh` installs what they need).
//!
//! Every server is a child process with its own temporary directory (config, log, record);
//! it is stopped when its handle is dropped, and also when this test process dies (the
//! scripts exit when their standard input, a pipe from us, reaches EOF). A server that
//! fails to start panics with its log; a test that panics keeps the directories for a look.
//!
//! The functions block (they wait for child processes and poll files); in async tests,
//! prefer `SmtpServer::wait_for_async`.

// Not every helper is used by every test suite.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

/// How long a server may take to say `READY`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `tests/mailservers/` in this repository.
pub fn scripts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/mailservers");
    dir.canonicalize().unwrap_or(dir)
}

/// The Python interpreter that has aiosmtpd and trustme (`MAILGATE_TEST_PYTHON`, else `python3`).
pub fn python() -> String {
    std::env::var("MAILGATE_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A fresh private directory under the system temp dir.
fn temp_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mailgate-{kind}-{}", uuid::Uuid::new_v4().simple()));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Removes `<temp dir>/<prefix>*` directories last modified longer ago than `age` (each
/// test process makes its own CA; nothing else would clean them up).
fn prune_old_dirs(prefix: &str, age: Duration) {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|e| e > age);
        if old && entry.file_name().to_string_lossy().starts_with(prefix) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Test CA
// ---------------------------------------------------------------------------------------

/// The web names the test certificate is valid for besides `localhost` and `127.0.0.1`:
/// the autoconfig hosts of the setup assistant's fixture domains.
pub const TEST_WEB_NAMES: [&str; 6] = [
    "shop.test",
    "autoconfig.shop.test",
    "big.test",
    "autoconfig.big.test",
    "slow.test",
    "autoconfig.slow.test",
];

/// A throw-away CA and two server certificates (made once per test process by trustme).
#[derive(Debug)]
pub struct TestCa {
    pub dir: PathBuf,
    /// The CA certificate a client must trust.
    pub ca_pem: PathBuf,
    /// Valid for `localhost`, `127.0.0.1` and [`TEST_WEB_NAMES`].
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Valid only for `wrong.example` (certificate-name-mismatch tests).
    pub wrong_cert: PathBuf,
    pub wrong_key: PathBuf,
}

impl TestCa {
    /// The CA certificate as PEM text.
    pub fn ca_pem_text(&self) -> String {
        read_lossy(&self.ca_pem)
    }
}

/// The test CA of this process, made on first use.
pub fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        prune_old_dirs("mailgate-ca-", Duration::from_secs(3600));
        let dir = temp_dir("ca");
        let out = Command::new(python())
            .arg(scripts_dir().join("make_certs.py"))
            .arg(&dir)
            .arg("--names")
            .arg(TEST_WEB_NAMES.join(","))
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} (run tests/mailservers/install.sh): {e}", python()));
        assert!(
            out.status.success(),
            "make_certs.py failed (run tests/mailservers/install.sh): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        TestCa {
            ca_pem: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            wrong_cert: dir.join("wrong.pem"),
            wrong_key: dir.join("wrong.key"),
            dir,
        }
    })
}

// ---------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------

/// A script child: stdin is a pipe (closing it stops the script), stdout gives `READY ...`,
/// stderr goes to `log`.
#[derive(Debug)]
struct Script {
    child: Child,
    stdin: Option<ChildStdin>,
    dir: PathBuf,
    log: PathBuf,
}

impl Script {
    /// Starts `python3 SCRIPT ARGS --watch-stdin` and waits for its `READY` line, whose
    /// words after `READY` are returned. `extra_logs` are added to the panic message.
    fn start(name: &str, script: &str, args: &[String], dir: PathBuf, extra_logs: &[PathBuf]) -> (Script, Vec<String>) {
        let log = dir.join(format!("{name}.stderr"));
        let stderr = File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let mut child = Command::new(python())
            .arg(scripts_dir().join(script))
            .args(args)
            .arg("--watch-stdin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {script} with {} (run tests/mailservers/install.sh): {e}",
                    python()
                )
            });
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            if let Some(stdout) = stdout {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        // Nobody listens any more: keep draining so the child never blocks.
                        continue;
                    }
                }
            }
        });
        let mut script_child = Script { child, stdin, dir, log };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix("READY") {
                        let words = rest.split_whitespace().map(str::to_owned).collect();
                        return (script_child, words);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = script_child.child.try_wait() {
                        script_child.fail(&format!("{script} exited with {status} before READY"), extra_logs);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    script_child.fail(&format!("{script} not READY within {STARTUP_TIMEOUT:?}"), extra_logs)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = script_child.child.wait();
                    script_child.fail(&format!("{script} closed its stdout before READY"), extra_logs);
                }
            }
        }
    }

    fn fail(&mut self, what: &str, extra_logs: &[PathBuf]) -> ! {
        self.stop();
        let mut message = format!("{what}\n--- {}:\n{}", self.log.display(), read_lossy(&self.log));
        for log in extra_logs {
            message.push_str(&format!("\n--- {}:\n{}", log.display(), read_lossy(log)));
        }
        panic!("{message}");
    }

    /// Closes stdin (the script shuts down cleanly), waits up to 10 s, then kills.
    fn stop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("mail server files kept for inspection: {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

// ---------------------------------------------------------------------------------------
// SMTP (aiosmtpd)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SmtpMode {
    /// No TLS offered at all (AUTH allowed over plain text).
    #[default]
    Plain,
    /// STARTTLS offered and required before AUTH and MAIL FROM.
    StartTls,
    /// TLS from the first byte (port-465 style).
    ImplicitTls,
}

/// Which certificate a TLS server presents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CertChoice {
    /// Valid for `localhost` and `127.0.0.1`, signed by `test_ca()`.
    #[default]
    Valid,
    /// Signed by `test_ca()` but only valid for `wrong.example`.
    WrongName,
}

#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    pub mode: SmtpMode,
    pub cert: CertChoice,
    /// Offer AUTH PLAIN/LOGIN with these credentials and require it before MAIL FROM.
    pub auth: Option<(String, String)>,
    /// Answer every AUTH attempt with this reply (e.g. `534 5.7.9 Application-specific password required`).
    pub auth_reply: Option<String>,
    /// Answer every MAIL FROM with this reply.
    pub mail_from_reply: Option<String>,
    /// Answer every RCPT TO with this reply.
    pub rcpt_reply: Option<String>,
    /// Answer the end of DATA with this reply.
    pub data_reply: Option<String>,
    /// Use `data_reply` only for the first N messages, then accept (0: always).
    pub data_reply_times: u32,
    /// Wait this long before the 220 greeting.
    pub greeting_delay: Option<Duration>,
    /// POP-before-SMTP: (gate file, window in seconds). MAIL FROM is refused with
    /// `554 5.7.1 Relay access denied (POP before SMTP)` unless the gate file has a line
    /// `<client ip> <unix time>` at most that old (see `Pop3Server::gate_file`).
    pub pop_gate: Option<(PathBuf, u64)>,
    /// Only count messages (fast sink for throughput tests); `received()` stays empty.
    pub no_record: bool,
    /// Write every command line a client sends to the server's log (`log()`).
    pub log_commands: bool,
    /// Listen on this port (0: any free one), e.g. to replace a stopped server at the
    /// address a tenant saved.
    pub port: u16,
    /// Do not offer SMTPUTF8.
    pub no_smtputf8: bool,
    /// Offer `AUTH XOAUTH2` and check bearer tokens by introspection (see [`Xoauth2`]).
    pub xoauth2: Option<Xoauth2>,
}

/// `AUTH XOAUTH2` on an [`SmtpServer`]: a token is accepted when the authorization server's
/// introspection says it is active for the `user=` mailbox (or is an app-only token).
#[derive(Debug, Clone, Default)]
pub struct Xoauth2 {
    /// RFC 7662 endpoint with the caller's credentials as user info
    /// ([`OAuthServer::introspection_for_servers`]).
    pub introspect_url: String,
    /// Require this scope (e.g. `https://outlook.office.com/SMTP.Send`).
    pub scope: Option<String>,
    /// Refuse like Gmail (`334` base64-JSON challenge, then `535 5.7.8` after the client's
    /// empty line) instead of like Microsoft 365 (`535 5.7.3 Authentication unsuccessful`).
    pub google_style: bool,
}

impl SmtpOptions {
    pub fn plain() -> Self {
        Self::default()
    }
    pub fn starttls() -> Self {
        Self {
            mode: SmtpMode::StartTls,
            ..Self::default()
        }
    }
    pub fn implicit_tls() -> Self {
        Self {
            mode: SmtpMode::ImplicitTls,
            ..Self::default()
        }
    }
    pub fn with_auth(mut self, user: &str, pass: &str) -> Self {
        self.auth = Some((user.into(), pass.into()));
        self
    }
    /// `AUTH XOAUTH2` checked by `oauth`'s introspection, refusing like Microsoft 365.
    pub fn with_xoauth2(mut self, oauth: &OAuthServer) -> Self {
        self.xoauth2 = Some(Xoauth2 {
            introspect_url: oauth.introspection_for_servers(),
            ..Xoauth2::default()
        });
        self
    }
}

/// One message accepted by the SMTP server.
#[derive(Debug, Clone, Deserialize)]
pub struct Received {
    /// Client IP address.
    pub peer: Option<String>,
    /// Client port: tells connections apart.
    #[serde(default)]
    pub peer_port: Option<u16>,
    /// The name the client sent in HELO/EHLO.
    pub ehlo: Option<String>,
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The raw message (headers and body, CRLF line ends, dot-unstuffed), UTF-8 lossy.
    pub data: String,
    /// The AUTH login name, if the client authenticated.
    pub auth_user: Option<String>,
    /// Whether the session was encrypted (after STARTTLS, or implicit TLS).
    pub tls: bool,
    /// Unix time (seconds) when the message was accepted.
    pub received_at: f64,
    /// Unix time the MAIL FROM command arrived (the start of the send).
    #[serde(default)]
    pub mail_from_at: Option<f64>,
    /// The MAIL FROM parameters (e.g. `SMTPUTF8`, `BODY=8BITMIME`).
    #[serde(default)]
    pub mail_options: Vec<String>,
    /// The AUTH mechanism, when the server records it (`XOAUTH2`).
    #[serde(default)]
    pub auth_mechanism: Option<String>,
}

impl Received {
    /// The first header of that name (case-insensitive), unfolded; raw (MIME-encoded words
    /// are not decoded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(value) = found.as_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((key, value)) = line.split_once(':')
                && key.trim().eq_ignore_ascii_case(name)
            {
                found = Some(value.trim().to_owned());
            }
        }
        found
    }

    /// Everything after the header block.
    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }
}

/// A running aiosmtpd server on 127.0.0.1 (`tests/mailservers/smtp_server.py`).
#[derive(Debug)]
pub struct SmtpServer {
    pub port: u16,
    pub mode: SmtpMode,
    record: PathBuf,
    count_file: PathBuf,
    child: Script,
}

impl SmtpServer {
    pub fn start(opts: SmtpOptions) -> SmtpServer {
        let dir = temp_dir("smtp");
        let record = dir.join("received.jsonl");
        let count_file = dir.join("count");
        let mut args: Vec<String> = vec!["--port".into(), opts.port.to_string()];
        let mut push = |flag: &str, value: String| args.extend([flag.to_owned(), value]);
        push(
            "--mode",
            match opts.mode {
                SmtpMode::Plain => "plain",
                SmtpMode::StartTls => "starttls",
                SmtpMode::ImplicitTls => "tls",
            }
            .into(),
        );
        if opts.mode != SmtpMode::Plain {
            let ca = test_ca();
            let (cert, key) = match opts.cert {
                CertChoice::Valid => (&ca.cert, &ca.key),
                CertChoice::WrongName => (&ca.wrong_cert, &ca.wrong_key),
            };
            push("--cert", cert.display().to_string());
            push("--key", key.display().to_string());
        }
        if let Some((user, pass)) = &opts.auth {
            push("--auth", format!("{user}:{pass}"));
        }
        for (flag, value) in [
            ("--auth-reply", &opts.auth_reply),
            ("--mail-from-reply", &opts.mail_from_reply),
            ("--rcpt-reply", &opts.rcpt_reply),
            ("--data-reply", &opts.data_reply),
        ] {
            if let Some(value) = value {
                push(flag, value.clone());
            }
        }
        if opts.data_reply_times > 0 {
            push("--data-reply-times", opts.data_reply_times.to_string());
        }
        if let Some(delay) = opts.greeting_delay {
            push("--greeting-delay", delay.as_secs_f64().to_string());
        }
        if let Some((gate, window)) = &opts.pop_gate {
            push("--pop-gate", gate.display().to_string());
            push("--pop-window", window.to_string());
        }
        push("--count-file", count_file.display().to_string());
        if opts.log_commands {
            args.push("--log-commands".into());
        }
        if opts.no_smtputf8 {
            args.push("--no-smtputf8".into());
        }
        if let Some(x) = &opts.xoauth2 {
            args.extend(["--xoauth2-introspect".into(), x.introspect_url.clone()]);
            if let Some(scope) = &x.scope {
                args.extend(["--xoauth2-scope".into(), scope.clone()]);
            }
            if x.google_style {
                args.extend(["--xoauth2-style".into(), "google".into()]);
            }
        }
        if opts.no_record {
            args.push("--no-record".into());
        } else {
            args.extend(["--record".into(), record.display().to_string()]);
        }
        let (child, ready) = Script::start("smtp", "smtp_server.py", &args, dir, &[]);
        let port = ready
            .first()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad READY line: {ready:?}"));
        SmtpServer {
            port,
            mode: opts.mode,
            record,
            count_file,
            child,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's own directory (record, count file, stderr log).
    pub fn dir(&self) -> &Path {
        &self.child.dir
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        read_lossy(&self.child.log)
    }

    /// The command lines clients sent (with `log_commands`), in order.
    pub fn commands(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|line| line.split_once(" >> ").map(|(_, command)| command.to_owned()))
            .collect()
    }

    /// Every message accepted so far, in order.
    pub fn received(&self) -> Vec<Received> {
        let text = read_lossy(&self.record);
        text.split_inclusive('\n')
            .filter(|line| line.ends_with('\n') && !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("bad record line {line:?}: {e}")))
            .collect()
    }

    /// Messages accepted so far; with `no_record`, read from the count file (updated every 0.1 s).
    pub fn count(&self) -> usize {
        let recorded = self.received().len();
        let counted = fs::read_to_string(&self.count_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        recorded.max(counted)
    }

    /// Waits until at least `n` messages arrived and returns all of them; panics on timeout.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                self.timed_out(n, timeout, &got);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `wait_for` without blocking the async runtime.
    pub async fn wait_for_async(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if Instant::now() >= deadline {
                self.timed_out(n, timeout, &got);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn timed_out(&self, n: usize, timeout: Duration, got: &[Received]) -> ! {
        panic!(
            "expected {n} message(s) on SMTP port {} within {timeout:?}, got {}: {got:#?}\n--- server log:\n{}",
            self.port,
            got.len(),
            self.log()
        )
    }
}

// ---------------------------------------------------------------------------------------
// POP3 (Dovecot)
// ---------------------------------------------------------------------------------------

/// A private Dovecot POP3 server on 127.0.0.1 (`tests/mailservers/pop3_dovecot.py`) with one
/// user. Every successful login appends `<client ip> <unix time>` to `gate_file`.
#[derive(Debug)]
pub struct Pop3Server {
    /// Plain POP3 (STLS offered when started with `start_tls`; plain-text login allowed).
    pub port: u16,
    /// POP3S (implicit TLS) with `test_ca().cert`, when started with `start_tls`.
    pub tls_port: Option<u16>,
    pub gate_file: PathBuf,
    pub user: String,
    pub password: String,
    dovecot_log: PathBuf,
    child: Script,
}

impl Pop3Server {
    /// Plain POP3 only.
    pub fn start(user: &str, pass: &str) -> Pop3Server {
        Self::launch(user, pass, false)
    }

    /// Plain POP3 (with STLS) and POP3S, both with the test CA's `localhost` certificate.
    pub fn start_tls(user: &str, pass: &str) -> Pop3Server {
        Self::launch(user, pass, true)
    }

    fn launch(user: &str, pass: &str, tls: bool) -> Pop3Server {
        let dir = temp_dir("pop3");
        let gate_file = dir.join("pop-gate");
        let dovecot_log = dir.join("dovecot.log");
        let mut args: Vec<String> = vec![
            "--dir".into(),
            dir.display().to_string(),
            "--port".into(),
            "0".into(),
            "--user".into(),
            user.into(),
            "--password".into(),
            pass.into(),
            "--gate-file".into(),
            gate_file.display().to_string(),
        ];
        if tls {
            let ca = test_ca();
            args.extend([
                "--tls-port".into(),
                "0".into(),
                "--cert".into(),
                ca.cert.display().to_string(),
                "--key".into(),
                ca.key.display().to_string(),
            ]);
        }
        let extra = [dovecot_log.clone(), dir.join("dovecot.stderr")];
        let (child, ready) = Script::start("pop3", "pop3_dovecot.py", &args, dir, &extra);
        let ports: Vec<u16> = ready.iter().filter_map(|p| p.parse().ok()).collect();
        let (port, tls_port) = match ports[..] {
            [port, tls_port] => (port, (tls_port != 0).then_some(tls_port)),
            _ => panic!("bad READY line: {ready:?}"),
        };
        Pop3Server {
            port,
            tls_port,
            gate_file,
            user: user.into(),
            password: pass.into(),
            dovecot_log,
            child,
        }
    }

    /// The gate file's lines as (client ip, unix time).
    pub fn gate_lines(&self) -> Vec<(String, u64)> {
        read_lossy(&self.gate_file)
            .lines()
            .filter_map(|line| {
                let (ip, at) = line.split_once(' ')?;
                Some((ip.to_owned(), at.trim().parse().ok()?))
            })
            .collect()
    }

    /// Dovecot's log so far.
    pub fn log(&self) -> String {
        format!("{}{}", read_lossy(&self.child.log), read_lossy(&self.dovecot_log))
    }

    /// The server's own directory (config, passwd-file, maildir, logs).
    pub fn dir(&self) -> &Path {
        &self.child.dir
    }
}

// ---------------------------------------------------------------------------------------
// Plain TCP listeners
// ---------------------------------------------------------------------------------------

/// Keeps a silent listener running; dropping it closes the listener and its connections.
#[derive(Debug)]
pub struct SilentListener {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl SilentListener {
    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The most connections that were open at the same time (checked every 10 ms).
    pub fn most_open(&self) -> usize {
        self.most_open.load(Ordering::SeqCst)
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bind_loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"))
}

fn local_port(listener: &TcpListener) -> u16 {
    listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
}

/// A TCP listener on 127.0.0.1 that accepts connections and never says anything
/// (for greeting/connect timeout tests). Connections stay open until the guard is dropped.
pub fn silent_listener() -> (u16, SilentListener) {
    let listener = bind_loopback();
    let port = local_port(&listener);
    let _ = listener.set_nonblocking(true);
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let most_open = Arc::new(AtomicUsize::new(0));
    let thread = {
        let (stop, accepted, most_open) = (stop.clone(), accepted.clone(), most_open.clone());
        std::thread::spawn(move || {
            let mut open: Vec<std::net::TcpStream> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.set_nonblocking(true);
                        open.push(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
                // Forget connections the client closed (a read of 0 bytes); the rest are
                // open at the same time.
                open.retain(|s| !matches!(s.peek(&mut [0u8; 1]), Ok(0)));
                most_open.fetch_max(open.len(), Ordering::SeqCst);
            }
            for stream in open {
                let _ = stream.shutdown(Shutdown::Both);
            }
        })
    };
    (
        port,
        SilentListener {
            stop,
            accepted,
            most_open,
            thread: Some(thread),
        },
    )
}

/// A TCP proxy on 127.0.0.1 in front of a real server, counting the connections open
/// through it at the same moment: each from 20 ms after its accept until its client
/// closed, so the proxy's own lag in seeing a close cannot count a hand-over (a client
/// closes one session, then opens the next) as two at once. Use it in front of a server
/// that takes longer than that to greet, so a real overlap always counts.
#[derive(Debug, Clone)]
pub struct CountingProxy {
    pub port: u16,
    open: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

impl CountingProxy {
    /// The most connections open through the proxy at once.
    pub fn most_open(&self) -> usize {
        self.most_open.load(Ordering::SeqCst)
    }
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Starts a [`CountingProxy`] to `127.0.0.1:target`; it lives until the process ends.
pub fn counting_proxy(target: u16) -> CountingProxy {
    let listener = bind_loopback();
    let proxy = CountingProxy {
        port: local_port(&listener),
        open: Arc::new(AtomicUsize::new(0)),
        most_open: Arc::new(AtomicUsize::new(0)),
        accepted: Arc::new(AtomicUsize::new(0)),
    };
    let counts = proxy.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            counts.accepted.fetch_add(1, Ordering::SeqCst);
            let counts = counts.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                let now = counts.open.fetch_add(1, Ordering::SeqCst) + 1;
                counts.most_open.fetch_max(now, Ordering::SeqCst);
                let (mut c_read, mut s_write) =
                    (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                let downstream = std::thread::spawn(move || {
                    let (mut s_read, mut c_write) = (server, client);
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(Shutdown::Both);
                });
                // Open until the client (Mailgate) closes its side.
                let _ = std::io::copy(&mut c_read, &mut s_write);
                counts.open.fetch_sub(1, Ordering::SeqCst);
                let _ = s_write.shutdown(Shutdown::Write);
                let _ = downstream.join();
            });
        }
    });
    proxy
}

/// A TCP listener on 127.0.0.1 that counts accepted connections and closes each at once
/// (to prove that a refused address saw no connection). It lives until the process ends.
pub fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = bind_loopback();
    let port = local_port(&listener);
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stream.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, count)
}

// ---------------------------------------------------------------------------------------
// Self-tests of this infrastructure (raw sockets, and Python's smtplib/poplib for TLS)
// ---------------------------------------------------------------------------------------

/// A line-based plain-text client for the self-tests.
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect {port}: {e}"));
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let writer = stream.try_clone().unwrap_or_else(|e| panic!("clone: {e}"));
        Raw {
            reader: BufReader::new(stream),
            writer,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap_or_else(|e| panic!("read: {e}"));
        line.trim_end().to_owned()
    }

    /// Reads one SMTP reply (all continuation lines), returning the code and the joined text.
    fn smtp_reply(&mut self) -> (u16, String) {
        let mut text = Vec::new();
        loop {
            let line = self.line();
            assert!(line.len() >= 3, "short SMTP reply line {line:?}");
            let code = line[..3]
                .parse()
                .unwrap_or_else(|_| panic!("bad SMTP reply line {line:?}"));
            text.push(line.get(4..).unwrap_or_default().to_owned());
            if line.as_bytes().get(3) != Some(&b'-') {
                return (code, text.join("\n"));
            }
        }
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap_or_else(|e| panic!("write: {e}"));
    }

    fn smtp(&mut self, line: &str) -> (u16, String) {
        self.send(line);
        self.smtp_reply()
    }

    fn pop(&mut self, line: &str) -> String {
        self.send(line);
        self.line()
    }
}

fn b64(input: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

/// Runs a Python snippet (with `sys.argv[1:] = args`), returning (success, stdout+stderr).
fn run_python(code: &str, args: &[String]) -> (bool, String) {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python()));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const PY_SEND: &str = r#"
import smtplib, ssl, sys
mode, port, cafile, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=cafile)
if mode == "tls":
    s = smtplib.SMTP_SSL("localhost", port, context=ctx, local_hostname="py.example", timeout=10)
else:
    s = smtplib.SMTP("localhost", port, local_hostname="py.example", timeout=10)
    s.starttls(context=ctx)
s.login(user, password)
s.sendmail("from@py.example", ["to@py.example"], "Subject: via " + mode + "\r\n\r\nhello\r\n")
s.quit()
print("SENT")
"#;

#[test]
fn smtp_plain_greets_records_and_counts() {
    let server = SmtpServer::start(SmtpOptions::plain());
    let mut c = Raw::connect(server.port);
    assert_eq!(c.smtp_reply().0, 220);
    let (code, ehlo) = c.smtp("EHLO client.example");
    assert_eq!(code, 250);
    assert!(
        !ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
        "plain mode offers no TLS/AUTH: {ehlo}"
    );
    assert_eq!(c.smtp("MAIL FROM:<a@example.com>").0, 250);
    assert_eq!(c.smtp("RCPT TO:<b@example.org>").0, 250);
    assert_eq!(c.smtp("RCPT TO:<c@example.org>").0, 250);
    assert_eq!(c.smtp("DATA").0, 354);
    c.send("Subject: Hello\r\nFrom: A <a@example.com>\r\n\r\n..leading dot\r\nbody\r\n.");
    assert_eq!(c.smtp_reply().0, 250);
    assert_eq!(c.smtp("QUIT").0, 221);

    let got = server.wait_for(1, Duration::from_secs(5));
    let m = &got[0];
    assert_eq!(m.peer.as_deref(), Some("127.0.0.1"));
    assert_eq!(m.ehlo.as_deref(), Some("client.example"));
    assert_eq!(m.mail_from, "a@example.com");
    assert_eq!(m.rcpt_tos, ["b@example.org", "c@example.org"]);
    assert_eq!(m.header("subject").as_deref(), Some("Hello"));
    assert_eq!(m.body(), ".leading dot\r\nbody\r\n");
    assert_eq!(m.auth_user, None);
    assert!(!m.tls);
    assert!((now_unix() - m.received_at).abs() < 60.0);
    assert_eq!(server.count(), 1);
}

#[test]
fn smtp_no_record_only_counts() {
    let server = SmtpServer::start(SmtpOptions {
        no_record: true,
        ..SmtpOptions::plain()
    });
    let mut c = Raw::connect(server.port);
    c.smtp_reply();
    c.smtp("EHLO sink.example");
    // Many messages on one connection, as a pooled client sends them.
    for i in 0..25 {
        assert_eq!(c.smtp("MAIL FROM:<a@example.com>").0, 250, "message {i}");
        assert_eq!(c.smtp("RCPT TO:<b@example.org>").0, 250);
        assert_eq!(c.smtp("DATA").0, 354);
        c.send("Subject: x\r\n\r\nx\r\n.");
        assert_eq!(c.smtp_reply().0, 250);
    }
    c.smtp("QUIT");
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.count() < 25 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.count(), 25);
    assert!(server.received().is_empty());
}

#[test]
fn smtp_plain_auth_plain_and_login() {
    let server = SmtpServer::start(SmtpOptions::plain().with_auth("alice", "s3cret"));
    let mut c = Raw::connect(server.port);
    c.smtp_reply();
    let (_, ehlo) = c.smtp("EHLO client.example");
    assert!(
        ehlo.contains("AUTH") && ehlo.contains("PLAIN") && ehlo.contains("LOGIN"),
        "{ehlo}"
    );
    assert_eq!(
        c.smtp("MAIL FROM:<a@example.com>"),
        (530, "5.7.0 Authentication required".into())
    );
    assert_eq!(
        c.smtp(&format!("AUTH PLAIN {}", b64("\0alice\0wrong"))),
        (535, "5.7.8 Authentication credentials invalid".into())
    );
    assert_eq!(c.smtp("AUTH LOGIN").0, 334);
    assert_eq!(c.smtp(&b64("alice")).0, 334);
    assert_eq!(c.smtp(&b64("s3cret")).0, 235);
    assert_eq!(c.smtp("MAIL FROM:<a@example.com>").0, 250);
    assert_eq!(c.smtp("RCPT TO:<b@example.org>").0, 250);
    assert_eq!(c.smtp("DATA").0, 354);
    c.send("Subject: auth\r\n\r\nx\r\n.");
    assert_eq!(c.smtp_reply().0, 250);
    let got = server.wait_for(1, Duration::from_secs(5));
    assert_eq!(got[0].auth_user.as_deref(), Some("alice"));

    let mut c = Raw::connect(server.port);
    c.smtp_reply();
    c.smtp("EHLO client.example");
    assert_eq!(c.smtp(&format!("AUTH PLAIN {}", b64("\0alice\0s3cret"))).0, 235);
}

#[test]
fn smtp_starttls_is_offered_and_required() {
    let server = SmtpServer::start(SmtpOptions::starttls().with_auth("alice", "s3cret"));
    let mut c = Raw::connect(server.port);
    assert_eq!(c.smtp_reply().0, 220);
    let (_, ehlo) = c.smtp("EHLO client.example");
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(!ehlo.contains("AUTH"), "no AUTH before TLS: {ehlo}");
    assert_eq!(c.smtp("MAIL FROM:<a@example.com>").0, 530);
    assert_eq!(c.smtp("STARTTLS").0, 220);
}

#[test]
fn smtp_implicit_tls_says_nothing_to_plain_text_clients() {
    let server = SmtpServer::start(SmtpOptions::implicit_tls());
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap_or_else(|e| panic!("connect: {e}"));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => panic!("implicit TLS server closed the connection at once"),
        Ok(n) => panic!(
            "implicit TLS server sent plain text: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(e) => assert!(
            matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            "{e}"
        ),
    }
}

#[test]
fn smtp_tls_modes_verify_against_the_test_ca() {
    let ca = test_ca();
    for (opts, mode) in [
        (SmtpOptions::starttls(), "starttls"),
        (SmtpOptions::implicit_tls(), "tls"),
    ] {
        let server = SmtpServer::start(opts.with_auth("alice", "s3cret"));
        let args = [
            mode.into(),
            server.port.to_string(),
            ca.ca_pem.display().to_string(),
            "alice".into(),
            "s3cret".into(),
        ];
        let (ok, out) = run_python(PY_SEND, &args);
        assert!(ok && out.contains("SENT"), "{mode}: {out}\n{}", server.log());
        let got = server.wait_for(1, Duration::from_secs(5));
        assert!(got[0].tls, "{mode}");
        assert_eq!(got[0].auth_user.as_deref(), Some("alice"));
        assert_eq!(got[0].ehlo.as_deref(), Some("py.example"));
        assert_eq!(got[0].header("Subject"), Some(format!("via {mode}")));

        // The same client refuses the certificate for the wrong name.
        let wrong = SmtpServer::start(SmtpOptions {
            cert: CertChoice::WrongName,
            ..opts_for(mode)
        });
        let args = [
            mode.into(),
            wrong.port.to_string(),
            ca.ca_pem.display().to_string(),
            "alice".into(),
            "s3cret".into(),
        ];
        let (ok, out) = run_python(PY_SEND, &args);
        assert!(
            !ok && out.contains("CERTIFICATE_VERIFY_FAILED") && out.contains("ostname"),
            "{mode}: {out}"
        );
        assert!(wrong.received().is_empty());
    }
}

fn opts_for(mode: &str) -> SmtpOptions {
    if mode == "tls" {
        SmtpOptions::implicit_tls()
    } else {
        SmtpOptions::starttls()
    }
}

#[test]
fn smtp_scripted_failures() {
    let gmail = "534 5.7.9 Application-specific password required. Learn more at https://support.google.com/mail";
    let server = SmtpServer::start(SmtpOptions {
        auth_reply: Some(gmail.into()),
        ..SmtpOptions::plain()
    });
    let mut c = Raw::connect(server.port);
    c.smtp_reply();
    c.smtp("EHLO client.example");
    let (code, text) = c.smtp(&format!("AUTH PLAIN {}", b64("\0alice\0right-password")));
    assert_eq!((code, format!("{code} {text}")), (534, gmail.to_owned()));

    let server = SmtpServer::start(SmtpOptions {
        mail_from_reply: Some("553 5.7.1 Sender address rejected: not owned by user".into()),
        ..SmtpOptions::plain()
    });
    let mut c = Raw::connect(server.port);
    c.smtp_reply();
    c.smtp("EHLO client.example");
    assert_eq!(
        c.smtp("MAIL FROM:<a@example.com>"),
        (553, "5.7.1 Sender address rejected: not owned by user".into())
    );

    let server = SmtpServer::start(SmtpOptions {
        rcpt_reply: Some("550 5.1.1 User unknown".into()),
        ..SmtpOptions::plain()
    });
    let mut c = Raw::connect(server.port);
    c.smtp_reply();
    c.smtp("EHLO client.example");
    assert_eq!(c.smtp("MAIL FROM:<a@example.com>").0, 250);
    assert_eq!(c.smtp("RCPT TO:<b@example.org>"), (550, "5.1.1 User unknown".into()));

    let server = SmtpServer::start(SmtpOptions {
        data_reply: Some("451 4.3.0 Try again later".into()),
        greeting_delay: Some(Duration::from_millis(1500)),
        ..SmtpOptions::plain()
    });
    let started = Instant::now();
    let mut c = Raw::connect(server.port);
    assert_eq!(c.smtp_reply().0, 220);
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "greeting after {:?}",
        started.elapsed()
    );
    c.smtp("EHLO client.example");
    assert_eq!(c.smtp("MAIL FROM:<a@example.com>").0, 250);
    assert_eq!(c.smtp("RCPT TO:<b@example.org>").0, 250);
    assert_eq!(c.smtp("DATA").0, 354);
    c.send("Subject: x\r\n\r\nx\r\n.");
    assert_eq!(c.smtp_reply(), (451, "4.3.0 Try again later".into()));
    assert!(server.received().is_empty());
}

#[test]
fn pop3_login_appends_to_the_gate_file() {
    let pop = Pop3Server::start("alice", "s3cret");
    assert_eq!(pop.tls_port, None);
    let mut c = Raw::connect(pop.port);
    assert!(c.line().starts_with("+OK"));
    assert!(c.pop("USER alice").starts_with("+OK"));
    let wrong = c.pop("PASS wrong");
    assert!(wrong.starts_with("-ERR"), "{wrong}");
    assert!(pop.gate_lines().is_empty());

    let before = now_unix() as u64;
    let mut c = Raw::connect(pop.port);
    c.line();
    assert!(c.pop("USER alice").starts_with("+OK"));
    let ok = c.pop("PASS s3cret");
    assert!(ok.starts_with("+OK"), "{ok}\n{}", pop.log());
    assert!(c.pop("STAT").starts_with("+OK 0 0"));
    assert!(c.pop("QUIT").starts_with("+OK"));
    let lines = pop.gate_lines();
    assert_eq!(lines.len(), 1, "{lines:?}\n{}", pop.log());
    assert_eq!(lines[0].0, "127.0.0.1");
    assert!(lines[0].1 >= before && lines[0].1 <= now_unix() as u64 + 1, "{lines:?}");
}

#[test]
fn pop3s_and_stls_verify_against_the_test_ca() {
    let pop = Pop3Server::start_tls("alice", "s3cret");
    let tls_port = pop.tls_port.unwrap_or_else(|| panic!("no POP3S port"));
    let code = r#"
import poplib, ssl, sys
port, tls_port, cafile = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
p = poplib.POP3_SSL("localhost", tls_port, context=ctx, timeout=10)
p.user("alice"); print(p.pass_("s3cret")); p.quit()
p = poplib.POP3("localhost", port, timeout=10)
p.stls(context=ctx); p.user("alice"); print(p.pass_("s3cret")); p.quit()
"#;
    let args = [
        pop.port.to_string(),
        tls_port.to_string(),
        test_ca().ca_pem.display().to_string(),
    ];
    let (ok, out) = run_python(code, &args);
    assert!(ok && out.matches("+OK").count() == 2, "{out}\n{}", pop.log());
    assert_eq!(pop.gate_lines().len(), 2);
}

#[test]
fn pop_before_smtp_gate_opens_after_pop3_login() {
    let pop = Pop3Server::start("alice", "s3cret");
    let smtp = SmtpServer::start(SmtpOptions {
        pop_gate: Some((pop.gate_file.clone(), 60)),
        ..SmtpOptions::plain()
    });
    let mut c = Raw::connect(smtp.port);
    c.smtp_reply();
    c.smtp("EHLO client.example");
    assert_eq!(
        c.smtp("MAIL FROM:<a@example.com>"),
        (554, "5.7.1 Relay access denied (POP before SMTP)".into())
    );

    let mut p = Raw::connect(pop.port);
    p.line();
    p.pop("USER alice");
    assert!(p.pop("PASS s3cret").starts_with("+OK"));
    p.pop("QUIT");

    assert_eq!(c.smtp("MAIL FROM:<a@example.com>").0, 250);
    assert_eq!(c.smtp("RCPT TO:<b@example.org>").0, 250);
    assert_eq!(c.smtp("DATA").0, 354);
    c.send("Subject: gated\r\n\r\nx\r\n.");
    assert_eq!(c.smtp_reply().0, 250);
    assert_eq!(smtp.wait_for(1, Duration::from_secs(5)).len(), 1);
}

#[test]
fn pop_before_smtp_gate_closes_after_the_window() {
    let dir = temp_dir("gate");
    let gate = dir.join("gate");
    // A login 120 s ago, outside a 60 s window, and another client's fresh login.
    let now = now_unix() as u64;
    fs::write(&gate, format!("127.0.0.1 {}\n127.0.0.2 {now}\n", now - 120)).unwrap_or_else(|e| panic!("{e}"));
    let smtp = SmtpServer::start(SmtpOptions {
        pop_gate: Some((gate.clone(), 60)),
        ..SmtpOptions::plain()
    });
    let mut c = Raw::connect(smtp.port);
    c.smtp_reply();
    c.smtp("EHLO client.example");
    assert_eq!(c.smtp("MAIL FROM:<a@example.com>").0, 554);
    fs::write(&gate, format!("127.0.0.1 {now}\n")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.smtp("MAIL FROM:<a@example.com>").0, 250);
    let _ = fs::remove_dir_all(dir);
}

#[test]
fn silent_and_counting_listeners() {
    let (port, guard) = silent_listener();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect: {e}"));
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 16];
    let read = stream.read(&mut buf);
    assert!(read.is_err(), "silent listener said something: {read:?}");
    let deadline = Instant::now() + Duration::from_secs(2);
    while guard.accepted() < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(guard.accepted(), 1);
    drop(guard);

    let (port, count) = counting_listener();
    assert_eq!(count.load(Ordering::SeqCst), 0);
    for _ in 0..3 {
        let _ = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect: {e}"));
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while count.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

/// What a [`HostileServer`] does to every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostility {
    /// `220 ` and then bytes without a line end, for as long as the client reads.
    EndlessGreeting,
    /// A greeting, then an EHLO reply of continuation lines that never ends.
    EndlessEhlo,
    /// `+OK ` and then bytes without a line end (a POP3 server).
    EndlessPopGreeting,
    /// Offers STARTTLS, then answers it with `220 go ahead\r\n250 fake\r\n` in one write,
    /// as if plain text could stand for a reply after the upgrade.
    StartTlsInjection,
    /// Another service's banner (an SSH server's), then its answer to whatever comes, then
    /// it hangs up: what a banner grabber would like to read back.
    ForeignBanner,
}

/// A TCP server on 127.0.0.1 that breaks the protocol on purpose (a tenant's hostile
/// server). Counts the octets each client sent after the server's last scripted reply.
pub struct HostileServer {
    pub port: u16,
    /// Octets clients sent after the scripted conversation ended (e.g. a TLS
    /// ClientHello after an injected STARTTLS reply).
    pub after_script: Arc<AtomicUsize>,
    /// Octets streamed to clients in all.
    pub streamed: Arc<AtomicUsize>,
}

impl HostileServer {
    pub fn start(hostility: Hostility) -> Self {
        let listener = bind_loopback();
        let port = local_port(&listener);
        let after_script = Arc::new(AtomicUsize::new(0));
        let streamed = Arc::new(AtomicUsize::new(0));
        let (after, total) = (after_script.clone(), streamed.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (after, total) = (after.clone(), total.clone());
                std::thread::spawn(move || hostile_conversation(stream, hostility, &after, &total));
            }
        });
        Self {
            port,
            after_script,
            streamed,
        }
    }
}

fn hostile_conversation(mut stream: TcpStream, hostility: Hostility, after: &AtomicUsize, total: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = match stream.try_clone() {
        Ok(s) => BufReader::new(s),
        Err(_) => return,
    };
    let mut line = String::new();
    let endless = |stream: &mut TcpStream, first: &[u8], chunk: &[u8]| {
        if stream.write_all(first).is_err() {
            return;
        }
        // Until the client hangs up (at most a few GiB, should it never).
        for _ in 0..100_000 {
            if stream.write_all(chunk).is_err() {
                return;
            }
            total.fetch_add(chunk.len(), Ordering::Relaxed);
        }
    };
    match hostility {
        Hostility::EndlessGreeting => endless(&mut stream, b"220 ", &[b'A'; 65536]),
        Hostility::EndlessPopGreeting => endless(&mut stream, b"+OK ", &[b'A'; 65536]),
        Hostility::EndlessEhlo => {
            let _ = stream.write_all(b"220 hostile.example ESMTP\r\n");
            let _ = reader.read_line(&mut line);
            let mut chunk = Vec::new();
            for _ in 0..600 {
                chunk.extend_from_slice(b"250-");
                chunk.extend_from_slice(&[b'x'; 94]);
                chunk.extend_from_slice(b"\r\n");
            }
            endless(&mut stream, b"250-hostile.example\r\n", &chunk);
        }
        Hostility::ForeignBanner => {
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6p1 internal-build-host-7\r\n");
            let _ = reader.read_line(&mut line);
            let _ = stream.write_all(b"Invalid SSH identification string: internal-build-host-7\r\n");
        }
        Hostility::StartTlsInjection => {
            let _ = stream.write_all(b"220 hostile.example ESMTP\r\n");
            let _ = reader.read_line(&mut line); // EHLO
            let _ = stream.write_all(b"250-hostile.example\r\n250 STARTTLS\r\n");
            line.clear();
            let _ = reader.read_line(&mut line); // STARTTLS
            if line.trim_end().eq_ignore_ascii_case("STARTTLS") {
                let _ = stream.write_all(b"220 go ahead\r\n250 fake\r\n");
                // Whatever comes now (a ClientHello, AUTH, MAIL FROM) is counted.
                let mut buf = [0u8; 4096];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    after.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// The resident memory of this process, in KiB (`VmRSS`), and its peak (`VmHWM`).
pub fn memory_kib() -> (u64, u64) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

// ---------------------------------------------------------------------------------------
// DNS (dnslib) and HTTPS (the standard library) for the setup assistant
// ---------------------------------------------------------------------------------------

/// An authoritative DNS server for fixture zones on 127.0.0.1 (UDP and TCP, one port).
#[derive(Debug)]
pub struct DnsServer {
    pub port: u16,
    queries: PathBuf,
    child: Script,
}

impl DnsServer {
    /// Serves `zone` (master-file text; full names or `$ORIGIN`).
    pub fn start(zone: &str) -> DnsServer {
        let dir = temp_dir("dns");
        let zone_file = dir.join("fixture.zone");
        fs::write(&zone_file, zone).unwrap_or_else(|e| panic!("cannot write {}: {e}", zone_file.display()));
        let queries = dir.join("queries.log");
        let args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--zone".into(),
            zone_file.display().to_string(),
            "--log-queries".into(),
            queries.display().to_string(),
        ];
        let (child, ready) = Script::start("dns", "dns_server.py", &args, dir, &[]);
        let port = ready
            .first()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad READY line: {ready:?}"));
        DnsServer { port, queries, child }
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The questions asked so far: `<TYPE> <name>` (lower case, no final dot).
    pub fn queries(&self) -> Vec<String> {
        read_lossy(&self.queries).lines().map(str::to_owned).collect()
    }

    pub fn dir(&self) -> &Path {
        &self.child.dir
    }
}

/// One DNS server for the whole test process that answers NXDOMAIN for every name but
/// `localhost` (what the test servers listen on), so no test asks the machine's resolver.
pub fn empty_dns() -> &'static DnsServer {
    static DNS: OnceLock<DnsServer> = OnceLock::new();
    DNS.get_or_init(|| DnsServer::start("localhost. 60 IN A 127.0.0.1\n"))
}

/// A static HTTPS server on 127.0.0.1 with the test certificate (valid for
/// [`TEST_WEB_NAMES`]), serving `files` (path under the root, content).
#[derive(Debug)]
pub struct HttpsServer {
    pub port: u16,
    requests: PathBuf,
    child: Script,
}

impl HttpsServer {
    /// `extra` args, e.g. `["--big", "200000"]` or `["--delay", "8"]`.
    pub fn start(files: &[(&str, &str)], extra: &[&str]) -> HttpsServer {
        let dir = temp_dir("https");
        let root = dir.join("root");
        for (path, content) in files {
            let file = root.join(path);
            fs::create_dir_all(file.parent().unwrap_or(&root)).unwrap_or_else(|e| panic!("{e}"));
            fs::write(&file, content).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        }
        fs::create_dir_all(&root).unwrap_or_else(|e| panic!("{e}"));
        let requests = dir.join("requests.log");
        let ca = test_ca();
        let mut args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--cert".into(),
            ca.cert.display().to_string(),
            "--key".into(),
            ca.key.display().to_string(),
            "--root".into(),
            root.display().to_string(),
            "--log-requests".into(),
            requests.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let (child, ready) = Script::start("https", "https_server.py", &args, dir, &[]);
        let port = ready
            .first()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad READY line: {ready:?}"));
        HttpsServer { port, requests, child }
    }

    /// The requests so far: `<METHOD> <target> <Host>`.
    pub fn requests(&self) -> Vec<String> {
        read_lossy(&self.requests).lines().map(str::to_owned).collect()
    }

    pub fn dir(&self) -> &Path {
        &self.child.dir
    }
}

/// `webhook_receiver.py`: a webhook receiver on loopback that verifies every request with
/// the `standardwebhooks` package (the specification's reference verifier).
pub struct WebhookReceiver {
    pub port: u16,
    log: PathBuf,
    child: Script,
}

/// One request a [`WebhookReceiver`] got.
#[derive(Debug, Clone, Deserialize)]
pub struct WebhookRequest {
    pub path: String,
    pub headers: std::collections::HashMap<String, String>,
    pub body: String,
    /// The reference verifier accepted it with one of the receiver's secrets.
    pub verified: bool,
    /// Every secret that verifies it on its own (indexes into the list given).
    pub verified_by: Vec<usize>,
    pub error: Option<String>,
    /// The status it was answered with; none when the receiver hung.
    pub answered: Option<u16>,
}

impl WebhookRequest {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("webhook body is not JSON ({e}): {}", self.body))
    }
}

impl WebhookReceiver {
    /// `mode`: `ok`, `fail-first` (with `--fail N` in `extra`) or `hang`.
    pub fn start(secrets: &[&str], mode: &str, extra: &[&str]) -> WebhookReceiver {
        let dir = temp_dir("webhooks");
        let log = dir.join("requests.jsonl");
        let mut args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--mode".into(),
            mode.into(),
            "--log".into(),
            log.display().to_string(),
        ];
        for s in secrets {
            args.push("--secret".into());
            args.push((*s).to_owned());
        }
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let (child, ready) = Script::start("webhooks", "webhook_receiver.py", &args, dir, &[]);
        let port = ready
            .first()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad READY line: {ready:?}"));
        WebhookReceiver { port, log, child }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/mailgate", self.port)
    }

    pub fn requests(&self) -> Vec<WebhookRequest> {
        read_lossy(&self.log)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad receiver log line ({e}): {l}")))
            .collect()
    }

    /// Waits until at least `n` requests came (panics after `timeout`).
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<WebhookRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "webhook receiver got {} of {n} requests in {timeout:?}: {got:?}\n--- stderr:\n{}",
                got.len(),
                read_lossy(&self.child.log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The requests whose event `type` is `kind`.
    pub fn of_type(&self, kind: &str) -> Vec<WebhookRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.json()["type"] == kind)
            .collect()
    }
}

/// `otlp_receiver.py`: an OTLP/HTTP trace receiver on loopback that decodes every export
/// with the `opentelemetry-proto` package.
pub struct OtlpReceiver {
    pub port: u16,
    log: PathBuf,
    child: Script,
}

/// One span an [`OtlpReceiver`] got.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceivedSpan {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub service: String,
    pub attributes: std::collections::HashMap<String, String>,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        let dir = temp_dir("otlp");
        let log = dir.join("spans.jsonl");
        let args: Vec<String> = vec!["--port".into(), "0".into(), "--log".into(), log.display().to_string()];
        let (child, ready) = Script::start("otlp", "otlp_receiver.py", &args, dir, &[]);
        let port = ready
            .first()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad READY line: {ready:?}"));
        OtlpReceiver { port, log, child }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        read_lossy(&self.log)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad span line ({e}): {l}")))
            .collect()
    }

    /// The spans once `done` holds for them (panics after `timeout`).
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&[ReceivedSpan]) -> bool) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                Instant::now() < deadline,
                "the spans never arrived: {spans:#?}\n--- stderr:\n{}",
                read_lossy(&self.child.log)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

// ---------------------------------------------------------------------------------------
// OAuth 2.0 (Authlib) and the Graph/Gmail sending APIs, for the OAuth mail routes
// ---------------------------------------------------------------------------------------

/// The client that the SMTP and mail-API fakes introspect tokens as (registered on every
/// [`OAuthServer`]).
pub const INTROSPECTION_CLIENT: (&str, &str) = ("mailserver", "mailserver-introspection-secret");

/// A PKCE pair (RFC 7636): the verifier and its S256 challenge.
pub const PKCE_VERIFIER: &str = "mailgate-test-pkce-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
pub const PKCE_CHALLENGE: &str = "6E6U8dO0dpe_ndrqI2iHze20DNFkAp-EJGv_dlbqZSU";

/// A client registered on an [`OAuthServer`].
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct OAuthClient {
    pub client_id: String,
    /// None: a public client (PKCE only, no secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Exact match, except that `http://127.0.0.1:0/...` (or localhost) matches any port.
    pub redirect_uris: Vec<String>,
    /// A JWT-bearer issuer (RFC 7523): assertions with `iss` = `client_id`, signed RS256 by
    /// the private half of this key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_public_key: Option<PathBuf>,
    /// May introspect any token.
    pub introspect: bool,
}

impl OAuthClient {
    pub fn confidential(id: &str, secret: &str, redirect_uris: &[&str]) -> Self {
        Self {
            client_id: id.into(),
            client_secret: Some(secret.into()),
            redirect_uris: redirect_uris.iter().map(|u| (*u).to_owned()).collect(),
            ..Self::default()
        }
    }
    pub fn public(id: &str, redirect_uris: &[&str]) -> Self {
        Self {
            client_id: id.into(),
            redirect_uris: redirect_uris.iter().map(|u| (*u).to_owned()).collect(),
            ..Self::default()
        }
    }
    /// A service account with domain-wide delegation (Google): signs assertions with
    /// [`jwt_test_key`].
    pub fn jwt_issuer(id: &str) -> Self {
        Self {
            client_id: id.into(),
            jwt_public_key: Some(jwt_test_key().public_pem.clone()),
            ..Self::default()
        }
    }
}

/// How `/authorize` refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthDenial {
    ConsentRequired,
    AccessDenied,
}

impl OAuthDenial {
    fn as_str(self) -> &'static str {
        match self {
            Self::ConsentRequired => "consent_required",
            Self::AccessDenied => "access_denied",
        }
    }
}

#[derive(Debug, Clone)]
pub struct OAuthOptions {
    /// HTTPS with the test CA (`test_ca()`); control and introspection for the fakes stay
    /// on a plain-HTTP port.
    pub tls: bool,
    /// The mailbox that signs in at `/authorize`.
    pub user: String,
    pub deny: Option<OAuthDenial>,
    /// Access-token lifetime (default 3600 s).
    pub token_ttl: Option<u64>,
    /// Every refresh answers `invalid_grant` with `AADSTS700082: ...`.
    pub refresh_fails: bool,
    /// Besides [`INTROSPECTION_CLIENT`], which is always there.
    pub clients: Vec<OAuthClient>,
}

impl Default for OAuthOptions {
    fn default() -> Self {
        Self {
            tls: false,
            user: "alice@contoso.example".into(),
            deny: None,
            token_ttl: None,
            refresh_fails: false,
            clients: Vec::new(),
        }
    }
}

/// One request the [`OAuthServer`] answered (its JSON-lines log; never a secret or token).
#[derive(Debug, Clone, Deserialize)]
pub struct OAuthRequest {
    pub at: f64,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub scope: Option<String>,
    pub user: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A token the [`OAuthServer`] issued (`/control/tokens`).
#[derive(Debug, Clone, Deserialize)]
pub struct IssuedToken {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub scope: String,
    pub user: Option<String>,
    pub client_id: String,
    pub grant_type: Option<String>,
    pub issued_at: i64,
    pub expires_in: i64,
    pub access_revoked: bool,
    pub refresh_revoked: bool,
    /// Not revoked and not expired.
    pub active: bool,
}

/// The JWT-bearer test key pair of this process (made on first use by `make_jwt_key.py`).
#[derive(Debug)]
pub struct JwtTestKey {
    /// PKCS#8 PEM: sign assertions with this (`jsonwebtoken::EncodingKey::from_rsa_pem`).
    pub private_pem: PathBuf,
    pub public_pem: PathBuf,
}

pub fn jwt_test_key() -> &'static JwtTestKey {
    static KEY: OnceLock<JwtTestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        prune_old_dirs("mailgate-jwtkey-", Duration::from_secs(3600));
        let dir = temp_dir("jwtkey");
        let out = Command::new(python())
            .arg(scripts_dir().join("make_jwt_key.py"))
            .arg(&dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} (run tests/mailservers/install.sh): {e}", python()));
        assert!(
            out.status.success(),
            "make_jwt_key.py failed (run tests/mailservers/install.sh): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        JwtTestKey {
            private_pem: dir.join("jwt_private.pem"),
            public_pem: dir.join("jwt_public.pem"),
        }
    })
}

/// A blocking HTTP/1.1 exchange with a plain-HTTP server on 127.0.0.1: (status, body).
fn http_plain(port: u16, method: &str, path: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect {port}: {e}"));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .unwrap_or_else(|e| panic!("write {path}: {e}"));
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad HTTP response to {path}: {text}"));
    (status, body.to_owned())
}

/// `oauth_server.py`: an OAuth 2.0 authorization server (Authlib) on 127.0.0.1 standing in
/// for Microsoft Entra ID and Google: `/authorize` (PKCE S256), `/token` (code, refresh with
/// rotation, client credentials, JWT bearer), `/introspect`, `/revoke`.
#[derive(Debug)]
pub struct OAuthServer {
    /// HTTP, or HTTPS with `tls`.
    pub port: u16,
    /// Plain HTTP (the same as `port` without `tls`): control endpoints and the fakes'
    /// introspection.
    pub control_port: u16,
    pub tls: bool,
    log: PathBuf,
    child: Script,
}

impl OAuthServer {
    pub fn start(opts: OAuthOptions) -> OAuthServer {
        let dir = temp_dir("oauth");
        let log = dir.join("requests.jsonl");
        let clients_file = dir.join("clients.json");
        let mut clients = opts.clients.clone();
        clients.push(OAuthClient {
            client_id: INTROSPECTION_CLIENT.0.into(),
            client_secret: Some(INTROSPECTION_CLIENT.1.into()),
            introspect: true,
            ..OAuthClient::default()
        });
        let json = serde_json::to_string_pretty(&clients).unwrap_or_else(|e| panic!("{e}"));
        fs::write(&clients_file, json).unwrap_or_else(|e| panic!("cannot write {}: {e}", clients_file.display()));
        let mut args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--clients".into(),
            clients_file.display().to_string(),
            "--log".into(),
            log.display().to_string(),
            "--user".into(),
            opts.user.clone(),
        ];
        if opts.tls {
            let ca = test_ca();
            args.extend([
                "--tls".into(),
                "--cert".into(),
                ca.cert.display().to_string(),
                "--key".into(),
                ca.key.display().to_string(),
            ]);
        }
        if let Some(deny) = opts.deny {
            args.extend(["--deny".into(), deny.as_str().into()]);
        }
        if let Some(ttl) = opts.token_ttl {
            args.extend(["--token-ttl".into(), ttl.to_string()]);
        }
        if opts.refresh_fails {
            args.push("--refresh-fails".into());
        }
        let (child, ready) = Script::start("oauth", "oauth_server.py", &args, dir, &[]);
        let port_at = |i: usize| -> u16 {
            ready
                .get(i)
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("bad READY line: {ready:?}"))
        };
        OAuthServer {
            port: port_at(0),
            control_port: port_at(1),
            tls: opts.tls,
            log,
            child,
        }
    }

    /// `http(s)://127.0.0.1:<port>`: the issuer; endpoints are below it.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }
    pub fn authorize_url(&self) -> String {
        format!("{}/authorize", self.base_url())
    }
    /// Also the `aud` a JWT-bearer assertion must carry.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }
    pub fn introspect_url(&self) -> String {
        format!("{}/introspect", self.base_url())
    }
    pub fn revoke_url(&self) -> String {
        format!("{}/revoke", self.base_url())
    }

    /// The introspection endpoint as the SMTP and mail-API fakes call it: plain HTTP, with
    /// [`INTROSPECTION_CLIENT`] as user info.
    pub fn introspection_for_servers(&self) -> String {
        let (id, secret) = INTROSPECTION_CLIENT;
        format!("http://{id}:{secret}@127.0.0.1:{}/introspect", self.control_port)
    }

    /// The CA certificate a client must trust (with `tls`).
    pub fn ca_pem(&self) -> Option<&'static Path> {
        self.tls.then(|| test_ca().ca_pem.as_path())
    }

    pub fn dir(&self) -> &Path {
        &self.child.dir
    }

    /// What the server wrote to stderr (Werkzeug's access log and any traceback).
    pub fn stderr(&self) -> String {
        read_lossy(&self.child.log)
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<OAuthRequest> {
        let text = read_lossy(&self.log);
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad OAuth log line ({e}): {l}")))
            .collect()
    }

    /// `/token` requests with this `grant_type` (e.g. `refresh_token`), answered or not.
    pub fn token_requests(&self, grant_type: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path == "/token" && r.grant_type.as_deref() == Some(grant_type))
            .count()
    }

    /// `/token` requests with this `grant_type` that got a token (200).
    pub fn tokens_granted(&self, grant_type: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path == "/token" && r.grant_type.as_deref() == Some(grant_type) && r.status == 200)
            .count()
    }

    /// Every token issued so far, in order.
    pub fn tokens(&self) -> Vec<IssuedToken> {
        let (status, body) = http_plain(self.control_port, "GET", "/control/tokens", "application/json", "");
        assert_eq!(status, 200, "/control/tokens: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad /control/tokens ({e}): {body}"))
    }

    /// Revokes every access and refresh token of `user` (an admin revoking the app's consent).
    pub fn revoke_user(&self, user: &str) -> usize {
        let body = format!(
            "user={}",
            user.replace('%', "%25").replace('+', "%2B").replace('@', "%40")
        );
        let (status, text) = http_plain(
            self.control_port,
            "POST",
            "/control/revoke-user",
            "application/x-www-form-urlencoded",
            &body,
        );
        assert_eq!(status, 200, "/control/revoke-user: {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        v["revoked"].as_u64().unwrap_or_default() as usize
    }

    /// Changes settings while running: any of `user`, `deny` (`null`, `"consent_required"`,
    /// `"access_denied"`), `refresh_fails`, `token_ttl`. Returns all settings.
    pub fn set(&self, settings: serde_json::Value) -> serde_json::Value {
        let (status, text) = http_plain(
            self.control_port,
            "POST",
            "/control/settings",
            "application/json",
            &settings.to_string(),
        );
        assert_eq!(status, 200, "/control/settings: {text}");
        serde_json::from_str(&text).unwrap_or_default()
    }

    /// Registers (or replaces) a client while running, e.g. once the app's port is known.
    pub fn register_client(&self, client: &OAuthClient) {
        let json = serde_json::to_string(client).unwrap_or_else(|e| panic!("{e}"));
        let (status, text) = http_plain(self.control_port, "POST", "/control/clients", "application/json", &json);
        assert_eq!(status, 200, "/control/clients: {text}");
    }
}

/// How a [`MailApiServer`] misbehaves.
#[derive(Debug, Clone, Default)]
pub struct MailApiOptions {
    /// Plain HTTP instead of HTTPS with the test CA.
    pub plain: bool,
    /// Answer with 401, 413 or 429 (with `Retry-After: retry_after`) ...
    pub fail: Option<u16>,
    /// ... only the first N times (0: always).
    pub fail_times: u32,
    pub retry_after: Option<u64>,
}

/// One message a [`MailApiServer`] accepted.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiMessage {
    /// `graph` or `gmail`.
    pub api: String,
    pub path: String,
    /// Whose mailbox sent it.
    pub mailbox: Option<String>,
    /// The OAuth client the token was issued to.
    pub client_id: Option<String>,
    /// The decoded MIME message, UTF-8 lossy.
    pub data: String,
    pub received_at: f64,
}

/// `mail_api_server.py`: fakes of Microsoft Graph `sendMail` (MIME) and Gmail
/// `messages/send` that check bearer tokens by introspection at an [`OAuthServer`].
#[derive(Debug)]
pub struct MailApiServer {
    pub port: u16,
    pub tls: bool,
    record: PathBuf,
    requests: PathBuf,
    child: Script,
}

impl MailApiServer {
    pub fn start(oauth: &OAuthServer, opts: MailApiOptions) -> MailApiServer {
        let dir = temp_dir("mailapi");
        let record = dir.join("received.jsonl");
        let requests = dir.join("requests.jsonl");
        let mut args: Vec<String> = vec![
            "--port".into(),
            "0".into(),
            "--introspect".into(),
            oauth.introspection_for_servers(),
            "--record".into(),
            record.display().to_string(),
            "--log-requests".into(),
            requests.display().to_string(),
        ];
        if opts.plain {
            args.push("--plain".into());
        } else {
            let ca = test_ca();
            args.extend([
                "--cert".into(),
                ca.cert.display().to_string(),
                "--key".into(),
                ca.key.display().to_string(),
            ]);
        }
        if let Some(status) = opts.fail {
            args.extend(["--fail".into(), status.to_string()]);
            args.extend(["--fail-times".into(), opts.fail_times.to_string()]);
        }
        if let Some(secs) = opts.retry_after {
            args.extend(["--retry-after".into(), secs.to_string()]);
        }
        let (child, ready) = Script::start("mailapi", "mail_api_server.py", &args, dir, &[]);
        let port = ready
            .first()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad READY line: {ready:?}"));
        MailApiServer {
            port,
            tls: !opts.plain,
            record,
            requests,
            child,
        }
    }

    /// `http(s)://127.0.0.1:<port>`: put `/v1.0/...` (Graph) or `/gmail/v1/...` after it.
    pub fn base_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        &self.child.dir
    }

    /// Every message accepted so far, in order.
    pub fn received(&self) -> Vec<ApiMessage> {
        read_lossy(&self.record)
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n') && !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record line ({e}): {l}")))
            .collect()
    }

    /// Every request answered so far: (path, status).
    pub fn requests(&self) -> Vec<(String, u16)> {
        read_lossy(&self.requests)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                (
                    v["path"].as_str().unwrap_or_default().to_owned(),
                    v["status"].as_u64().unwrap_or_default() as u16,
                )
            })
            .collect()
    }

    /// Waits until at least `n` messages arrived (panics after `timeout`), without blocking
    /// the async runtime.
    pub async fn wait_for_async(&self, n: usize, timeout: Duration) -> Vec<ApiMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "mail API got {} of {n} messages in {timeout:?}: {got:#?}\n--- stderr:\n{}",
                got.len(),
                read_lossy(&self.child.log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
