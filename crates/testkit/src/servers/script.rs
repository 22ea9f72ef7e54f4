//! Running the scripts in `tests/mailservers/` as child processes: the interpreter, the
//! scripts' directory, a private temporary directory per server, and [`Script`], the
//! child that is stopped when dropped.

use std::fs::{self, File};
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
pub fn temp_dir(kind: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mailgate-{kind}-{}", uuid::Uuid::new_v4().simple()));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Removes `<temp dir>/<prefix>*` directories last modified longer ago than `age` (each
/// test process makes its own CA; nothing else would clean them up).
pub(crate) fn prune_old_dirs(prefix: &str, age: Duration) {
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

/// The file's text (lossy UTF-8), or empty when it cannot be read.
pub(crate) fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Now, in seconds since the Unix epoch (what the scripts record).
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A script child: stdin is a pipe (closing it stops the script), stdout gives `READY ...`,
/// stderr goes to `log`.
#[derive(Debug)]
pub(crate) struct Script {
    child: Child,
    stdin: Option<ChildStdin>,
    pub(crate) dir: PathBuf,
    pub(crate) log: PathBuf,
}

impl Script {
    /// Starts `python3 SCRIPT ARGS --watch-stdin` and waits for its `READY` line, whose
    /// words after `READY` are returned. `extra_logs` are added to the panic message.
    pub(crate) fn start(
        name: &str,
        script: &str,
        args: &[String],
        dir: PathBuf,
        extra_logs: &[PathBuf],
    ) -> (Script, Vec<String>) {
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
