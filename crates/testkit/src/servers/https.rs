//! HTTPS on loopback: a static file server (`https_server.py`) with the test certificate,
//! for the setup assistant's autoconfig documents.

use std::fs;
use std::path::{Path, PathBuf};

use super::ca::test_ca;
use super::script::{Script, read_lossy, temp_dir};

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
