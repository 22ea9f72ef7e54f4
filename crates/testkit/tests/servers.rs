//! Self-tests of the loopback servers: each one speaks its protocol as the API tests
//! expect (raw sockets, and Python's smtplib/poplib for TLS against the test CA).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on the first surprise"
)]

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use testkit::servers::*;

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
