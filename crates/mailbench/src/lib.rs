//! Shared pieces of the mail benchmarks: the loopback SMTP sink (a separate process, the
//! `sink` binary, so its memory and CPU are not counted in the benchmarked process), test
//! certificates made with the `openssl` CLI, the peer scripts (nodemailer, smtplib),
//! percentiles and RSS; [`inprocess`]: Mailgate in-process for the end-to-end benchmarks.

pub mod inprocess;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// The body every sender uses (same text for Mailgate, nodemailer and smtplib).
pub fn body_text() -> String {
    let line = "Thank you for registering. This is a notification mail of typical size.\r\n";
    let mut s = String::from("Hello Yamada,\r\n\r\n");
    while s.len() < 1000 {
        s.push_str(line);
    }
    s
}
pub const SUBJECT: &str = "Welcome to Sakura";
pub const FROM: &str = "shop@example.jp";
pub const TO: &str = "member@example.net";

/// Counters reported by the sink.
#[derive(Debug, Clone, Copy, Default)]
pub struct SinkStats {
    pub messages: u64,
    pub bytes: u64,
    pub connections: u64,
    pub tls: u64,
    pub auths: u64,
}

impl SinkStats {
    pub fn since(&self, before: &SinkStats) -> SinkStats {
        SinkStats {
            messages: self.messages - before.messages,
            bytes: self.bytes - before.bytes,
            connections: self.connections - before.connections,
            tls: self.tls - before.tls,
            auths: self.auths - before.auths,
        }
    }
    pub fn avg_bytes(&self) -> u64 {
        self.bytes.checked_div(self.messages).unwrap_or(0)
    }
}

/// The SMTP sink child process.
#[derive(Debug)]
pub struct Sink {
    child: Child,
    pub port: u16,
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("exe dir")?;
    let p = dir.join(name);
    if !p.exists() {
        bail!(
            "{} not found (build with `cargo build --release -p mailbench`)",
            p.display()
        );
    }
    Ok(p)
}

impl Sink {
    /// Starts the sink; with `tls`, it offers STARTTLS with `certs`.
    pub fn start(certs: Option<&Certs>) -> anyhow::Result<Self> {
        let mut cmd = Command::new(sibling("sink")?);
        if let Some(c) = certs {
            cmd.arg("--cert").arg(&c.cert).arg("--key").arg(&c.key);
        }
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
        let out = child.stdout.take().context("stdout")?;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line)?;
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("sink said {line:?}"))?;
        Ok(Self { child, port })
    }

    /// Asks the sink for its counters (the `XCOUNT` command on a plain connection).
    pub async fn stats(&self) -> anyhow::Result<SinkStats> {
        let s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).await?;
        r.get_mut().write_all(b"XCOUNT\r\n").await?;
        line.clear();
        r.read_line(&mut line).await?;
        let nums: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        if nums.len() != 5 {
            bail!("bad XCOUNT reply {line:?}");
        }
        r.get_mut().write_all(b"QUIT\r\n").await?;
        Ok(SinkStats {
            messages: nums[0],
            bytes: nums[1],
            connections: nums[2],
            tls: nums[3],
            auths: nums[4],
        })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and a server certificate for `localhost` signed by it.
#[derive(Debug, Clone)]
pub struct Certs {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl").args(args).current_dir(dir).output()?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Generates a self-signed CA (RSA 2048) and a `localhost` server certificate signed by it.
pub fn make_certs() -> anyhow::Result<Certs> {
    let dir = std::env::temp_dir().join(format!("mailbench-certs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=mailbench test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )?;
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    )?;
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )?;
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    )?;
    Ok(Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        dir,
    })
}

/// The percentile `p` (0..=100) of sorted durations, in milliseconds.
pub fn pct_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// This process's resident set size in KiB (VmRSS).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

pub fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// The nodemailer peer: `node send.js <port> <n> <maxConnections> <tls 0|1> <ca> <user> <pass>`.
pub const NODE_SCRIPT: &str = r#"
const nodemailer = require('nodemailer');
const fs = require('fs');
const [port, n, maxc, tls, ca, user, pass] = process.argv.slice(2);
const N = parseInt(n, 10);
const opts = { host: 'localhost', port: parseInt(port, 10), secure: false, pool: true,
  maxConnections: parseInt(maxc, 10), maxMessages: Infinity };
if (tls === '1') { opts.requireTLS = true; opts.tls = { ca: fs.readFileSync(ca), servername: 'localhost' };
  opts.auth = { user, pass }; } else { opts.ignoreTLS = true; }
const t = nodemailer.createTransport(opts);
const text = process.env.MB_TEXT;
let sent = 0, failed = 0, next = 0, firstErr = null;
const t0 = process.hrtime.bigint();
async function worker() {
  while (next < N) { next++;
    try { await t.sendMail({ from: 'Sakura <shop@example.jp>', to: 'member@example.net', subject: 'Welcome to Sakura', text });
      sent++; } catch (e) { failed++; if (!firstErr) firstErr = String(e); } }
}
(async () => {
  await Promise.all(Array.from({ length: 64 }, worker));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  t.close();
  if (firstErr) console.error('first error: ' + firstErr);
  console.log(`RESULT sent=${sent} failed=${failed} secs=${secs}`);
})();
"#;

/// The smtplib peer: one connection, STARTTLS + login when tls=1.
pub const PY_SCRIPT: &str = r#"
import smtplib, ssl, sys, time, os
from email.message import EmailMessage
port, n, tls, ca, user, pw = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == '1', sys.argv[4], sys.argv[5], sys.argv[6]
text = os.environ['MB_TEXT']
sent = failed = 0
first = None
t0 = time.perf_counter()
s = smtplib.SMTP('localhost', port)
s.ehlo('bench.example')
if tls:
    s.starttls(context=ssl.create_default_context(cafile=ca))
    s.ehlo('bench.example')
    s.login(user, pw)
for i in range(n):
    m = EmailMessage()
    m['From'] = 'Sakura <shop@example.jp>'
    m['To'] = 'member@example.net'
    m['Subject'] = 'Welcome to Sakura'
    m.set_content(text)
    try:
        s.send_message(m)
        sent += 1
    except Exception as e:
        failed += 1
        first = first or repr(e)
s.quit()
secs = time.perf_counter() - t0
if first: print('first error:', first, file=sys.stderr)
print(f'RESULT sent={sent} failed={failed} secs={secs}')
"#;

/// What a peer script printed.
#[derive(Debug, Clone, Copy)]
pub struct PeerResult {
    pub sent: u64,
    pub failed: u64,
    pub secs: f64,
}

impl PeerResult {
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.secs
    }
}

fn parse_result(out: &std::process::Output, what: &str) -> anyhow::Result<PeerResult> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .with_context(|| format!("{what} printed no RESULT (status {}): {stdout}\n{stderr}", out.status))?;
    if !stderr.trim().is_empty() {
        println!("  [{what} stderr] {}", stderr.trim());
    }
    let get = |k: &str| -> anyhow::Result<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{what}: no {k} in {line}"))
    };
    Ok(PeerResult {
        sent: get("sent")? as u64,
        failed: get("failed")? as u64,
        secs: get("secs")?,
    })
}

/// Where nodemailer is installed (`npm install nodemailer` on first use).
pub fn nodemailer_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join("mailbench-node");
    if !dir.join("node_modules/nodemailer").exists() {
        std::fs::create_dir_all(&dir)?;
        println!("  (installing nodemailer: npm install nodemailer in {})", dir.display());
        let st = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "nodemailer"])
            .current_dir(&dir)
            .status()?;
        if !st.success() {
            bail!("npm install nodemailer failed");
        }
    }
    std::fs::write(dir.join("send.js"), NODE_SCRIPT)?;
    Ok(dir)
}

pub fn nodemailer_version(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("node_modules/nodemailer/package.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// Runs nodemailer (pool) against the sink.
pub fn run_nodemailer(port: u16, n: u64, max_conns: u32, tls: Option<&Certs>) -> anyhow::Result<(String, PeerResult)> {
    let dir = nodemailer_dir()?;
    let ca = tls.map(|c| c.ca.display().to_string()).unwrap_or_else(|| "-".into());
    let args = vec![
        "send.js".to_owned(),
        port.to_string(),
        n.to_string(),
        max_conns.to_string(),
        if tls.is_some() { "1" } else { "0" }.to_owned(),
        ca,
        "node-user".into(),
        "node-pass".into(),
    ];
    let cmdline = format!("(cd {} && node {})", dir.display(), args.join(" "));
    let out = Command::new("node")
        .args(&args)
        .current_dir(&dir)
        .env("MB_TEXT", body_text())
        .output()?;
    Ok((cmdline, parse_result(&out, "nodemailer")?))
}

/// Runs smtplib (one connection) against the sink.
pub fn run_smtplib(port: u16, n: u64, tls: Option<&Certs>) -> anyhow::Result<(String, PeerResult)> {
    let path = std::env::temp_dir().join("mailbench-smtplib.py");
    std::fs::write(&path, PY_SCRIPT)?;
    let ca = tls.map(|c| c.ca.display().to_string()).unwrap_or_else(|| "-".into());
    let args = vec![
        path.display().to_string(),
        port.to_string(),
        n.to_string(),
        if tls.is_some() { "1" } else { "0" }.to_owned(),
        ca,
        "py-user".into(),
        "py-pass".into(),
    ];
    let cmdline = format!("python3 {}", args.join(" "));
    let out = Command::new("python3")
        .args(&args)
        .env("MB_TEXT", body_text())
        .output()?;
    Ok((cmdline, parse_result(&out, "smtplib")?))
}

/// Simple `--name value` argument lookup.
pub fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

pub fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// `/proc/loadavg` plus the other processes using CPU now (the machine may be shared).
pub fn load_note() -> String {
    let la = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let me = std::process::id().to_string();
    let busy = Command::new("ps")
        .args(["-eo", "pid,pcpu,comm", "--sort=-pcpu", "--no-headers"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() >= 3 && f[0] != me && f[1].parse::<f64>().unwrap_or(0.0) >= 10.0
                })
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    format!(
        "loadavg {} | other processes >=10% CPU (lifetime avg): [{}]",
        la.trim(),
        busy
    )
}

/// The machine's CPU time counters (`/proc/stat`), to tell what a measured interval
/// competed with: on a virtual machine the host may take ("steal") a large share.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes([u64; 8]);

impl CpuTimes {
    pub fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let mut times = [0u64; 8];
        if let Some(line) = stat.lines().next() {
            for (slot, v) in times.iter_mut().zip(line.split_whitespace().skip(1)) {
                *slot = v.parse().unwrap_or(0);
            }
        }
        Self(times)
    }

    /// Shares of the time since `earlier`: "busy X% (user, nice, system, irq), idle Y%
    /// (incl. iowait), steal Z%".
    pub fn since(&self, earlier: &Self) -> String {
        let d: Vec<u64> = self.0.iter().zip(earlier.0).map(|(a, b)| a.saturating_sub(b)).collect();
        let total: u64 = d.iter().sum();
        if total == 0 {
            return "cpu: n/a".into();
        }
        let pct = |n: u64| 100.0 * n as f64 / total as f64;
        format!(
            "cpu: busy {:.0}%, idle {:.0}%, steal {:.0}%",
            pct(d[0] + d[1] + d[2] + d[5] + d[6]),
            pct(d[3] + d[4]),
            pct(d[7])
        )
    }
}
