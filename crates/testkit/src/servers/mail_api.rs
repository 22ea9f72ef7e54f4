//! Fakes of the mail-sending APIs on loopback (`mail_api_server.py`): Microsoft Graph
//! `sendMail` and Gmail `messages/send`, checking bearer tokens at an [`OAuthServer`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::ca::test_ca;
use super::oauth::OAuthServer;
use super::script::{Script, read_lossy, temp_dir};

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
