//! SMTP on loopback: aiosmtpd (`smtp_server.py`) in plain, STARTTLS or implicit-TLS mode,
//! with AUTH (PLAIN/LOGIN, or XOAUTH2 checked by introspection), scripted replies, a
//! greeting delay, the POP-before-SMTP gate, and a record of every message it accepted.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::ca::test_ca;
use super::oauth::OAuthServer;
use super::script::{Script, read_lossy, temp_dir};

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
    /// In STARTTLS mode, answer every STARTTLS with this reply (e.g. `454 4.7.0 TLS not
    /// available due to local problem`) instead of starting TLS.
    pub starttls_reply: Option<String>,
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
    /// Greet with this refusal instead (e.g. `554 5.3.2 No service here`), then answer
    /// `503` to every command until QUIT, as RFC 5321 §3.1 has a refusing server do.
    pub greeting_reply: Option<String>,
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
    /// Offer PIPELINING (RFC 2920); each message records whether its RCPT TO came
    /// before MAIL FROM was answered ([`Received::pipelined`]).
    pub pipelining: bool,
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
    /// RCPT TO had arrived before the server answered MAIL FROM: the client pipelined.
    #[serde(default)]
    pub pipelined: bool,
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

/// One client connection as the server's command log shows it ([`SmtpServer::conversations`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    /// The client's address as the server logs it (`('127.0.0.1', 40312)`).
    pub peer: String,
    /// The command lines, in order, as logged (`b'EHLO web01.example'`).
    pub commands: Vec<String>,
}

impl Conversation {
    /// The verbs (`EHLO`, `MAIL`, …), upper case, in order.
    pub fn verbs(&self) -> Vec<String> {
        self.commands
            .iter()
            .map(|c| {
                let line = c.trim_start_matches("b'").trim_start_matches("b\"");
                line.split([' ', ':', '\\', '\'', '"'])
                    .next()
                    .unwrap_or_default()
                    .to_ascii_uppercase()
            })
            .collect()
    }

    /// Whether the client's last command was QUIT.
    pub fn ended_with_quit(&self) -> bool {
        self.verbs().last().is_some_and(|v| v == "QUIT")
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
            ("--starttls-reply", &opts.starttls_reply),
            ("--greeting-reply", &opts.greeting_reply),
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
        if opts.pipelining {
            args.push("--pipelining".into());
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

    /// Each client connection's command lines (with `log_commands`), in the order the
    /// connections were made: what the server saw of each conversation, e.g. whether the
    /// client ended it with QUIT. Connections are told apart by the client's address and
    /// port (aiosmtpd's `Peer:` line opens one).
    pub fn conversations(&self) -> Vec<Conversation> {
        let mut all: Vec<Conversation> = Vec::new();
        let mut current: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for line in self.log().lines() {
            if let Some(peer) = line.strip_prefix("Peer: ") {
                current.insert(peer.to_owned(), all.len());
                all.push(Conversation {
                    peer: peer.to_owned(),
                    commands: Vec::new(),
                });
            } else if let Some((peer, command)) = line.split_once(" >> ") {
                let i = *current.entry(peer.to_owned()).or_insert_with(|| {
                    all.push(Conversation {
                        peer: peer.to_owned(),
                        commands: Vec::new(),
                    });
                    all.len() - 1
                });
                all[i].commands.push(command.to_owned());
            }
        }
        all
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
