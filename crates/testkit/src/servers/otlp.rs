//! An OTLP/HTTP trace receiver on loopback (`otlp_receiver.py`) that decodes every export
//! with the `opentelemetry-proto` package.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::script::{Script, read_lossy, temp_dir};

/// `otlp_receiver.py`: an OTLP/HTTP trace receiver on loopback that decodes every export
/// with the `opentelemetry-proto` package.
#[derive(Debug)]
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
