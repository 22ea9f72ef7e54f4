//! The test CA: a throw-away CA and server certificates made once per test process by
//! trustme (`make_certs.py`), which every TLS server here presents and clients trust.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::script::{prune_old_dirs, python, read_lossy, scripts_dir, temp_dir};

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
