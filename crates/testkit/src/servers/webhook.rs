//! A webhook receiver on loopback (`webhook_receiver.py`) that verifies every request with
//! the `standardwebhooks` package, and can fail or hang on purpose.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::script::{Script, read_lossy, temp_dir};

/// `webhook_receiver.py`: a webhook receiver on loopback that verifies every request with
/// the `standardwebhooks` package (the specification's reference verifier).
#[derive(Debug)]
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
    /// When it came, in seconds of the receiver's monotonic clock: for comparing the
    /// requests of one receiver with each other.
    pub at: f64,
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
        let log = read_lossy(&self.log);
        // A line the receiver is still writing has no newline yet: only whole lines count.
        let whole = log.rfind('\n').map_or("", |end| &log[..end]);
        whole
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
