//! POP3 on loopback: a private Dovecot instance (`pop3_dovecot.py`) with one user, POP3S
//! and STLS with the test CA, and the gate file that POP-before-SMTP reads.

use std::path::{Path, PathBuf};

use super::ca::test_ca;
use super::script::{Script, read_lossy, temp_dir};

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
