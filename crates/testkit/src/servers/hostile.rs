//! A tenant's hostile server: a TCP server on loopback that breaks the protocol on purpose
//! (endless replies, a STARTTLS injection, another service's banner) or answers a
//! pipelined send in the rare ways RFC 2920 leaves open, and this process's memory, to
//! show that reading it costs a bounded amount.

use std::fs;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::listeners::{bind_loopback, local_port};

/// What a [`HostileServer`] does to every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostility {
    /// `220 ` and then bytes without a line end, for as long as the client reads.
    EndlessGreeting,
    /// A greeting, then an EHLO reply of continuation lines that never ends.
    EndlessEhlo,
    /// `+OK ` and then bytes without a line end (a POP3 server).
    EndlessPopGreeting,
    /// Offers STARTTLS, then answers it with `220 go ahead\r\n250 fake\r\n` in one write,
    /// as if plain text could stand for a reply after the upgrade.
    StartTlsInjection,
    /// Another service's banner (an SSH server's), then its answer to whatever comes, then
    /// it hangs up: what a banner grabber would like to read back.
    ForeignBanner,
    /// Offers PIPELINING, answers the pipelined MAIL FROM with `421` and hangs up (RFC
    /// 5321 §3.8 lets a server close after a 421).
    PipelinedHangUp,
    /// Offers PIPELINING, refuses RCPT TO (`550`) and still answers DATA with `354`;
    /// counts in `after_script` each lone `.` that then ends an empty message, answers it
    /// `554`, and takes RSET and QUIT.
    PipelinedDataAfterRefusal,
}

/// A TCP server on 127.0.0.1 that breaks the protocol on purpose (a tenant's hostile
/// server). Counts the octets each client sent after the server's last scripted reply.
#[derive(Debug)]
pub struct HostileServer {
    pub port: u16,
    /// Octets clients sent after the scripted conversation ended (e.g. a TLS
    /// ClientHello after an injected STARTTLS reply).
    pub after_script: Arc<AtomicUsize>,
    /// Octets streamed to clients in all.
    pub streamed: Arc<AtomicUsize>,
}

impl HostileServer {
    pub fn start(hostility: Hostility) -> Self {
        let listener = bind_loopback();
        let port = local_port(&listener);
        let after_script = Arc::new(AtomicUsize::new(0));
        let streamed = Arc::new(AtomicUsize::new(0));
        let (after, total) = (after_script.clone(), streamed.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (after, total) = (after.clone(), total.clone());
                std::thread::spawn(move || hostile_conversation(stream, hostility, &after, &total));
            }
        });
        Self {
            port,
            after_script,
            streamed,
        }
    }
}

fn hostile_conversation(mut stream: TcpStream, hostility: Hostility, after: &AtomicUsize, total: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = match stream.try_clone() {
        Ok(s) => BufReader::new(s),
        Err(_) => return,
    };
    let mut line = String::new();
    let endless = |stream: &mut TcpStream, first: &[u8], chunk: &[u8]| {
        if stream.write_all(first).is_err() {
            return;
        }
        // Until the client hangs up (at most a few GiB, should it never).
        for _ in 0..100_000 {
            if stream.write_all(chunk).is_err() {
                return;
            }
            total.fetch_add(chunk.len(), Ordering::Relaxed);
        }
    };
    let pipelining_ehlo = |stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, line: &mut String| {
        let _ = stream.write_all(b"220 hostile.example ESMTP\r\n");
        let _ = reader.read_line(line); // EHLO
        let _ = stream.write_all(b"250-hostile.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
    };
    match hostility {
        Hostility::PipelinedHangUp => {
            pipelining_ehlo(&mut stream, &mut reader, &mut line);
            line.clear();
            let _ = reader.read_line(&mut line); // MAIL FROM (RCPT TO and DATA come with it)
            let _ =
                stream.write_all(b"421 4.7.0 hostile.example Too many connections, closing transmission channel\r\n");
        }
        Hostility::PipelinedDataAfterRefusal => {
            pipelining_ehlo(&mut stream, &mut reader, &mut line);
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let verb = line.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "RCPT" => b"550 5.1.1 <member@example.net>: Recipient address rejected\r\n",
                    "DATA" => {
                        let _ = stream.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n");
                        let mut body = String::new();
                        loop {
                            body.clear();
                            match reader.read_line(&mut body) {
                                Ok(0) | Err(_) => return,
                                Ok(_) if body == ".\r\n" => break,
                                Ok(_) => {}
                            }
                        }
                        after.fetch_add(1, Ordering::Relaxed);
                        b"554 5.5.1 Error: no valid recipients\r\n"
                    }
                    "QUIT" => {
                        let _ = stream.write_all(b"221 2.0.0 Bye\r\n");
                        break;
                    }
                    _ => b"250 2.0.0 OK\r\n",
                };
                if stream.write_all(reply).is_err() {
                    break;
                }
            }
        }
        Hostility::EndlessGreeting => endless(&mut stream, b"220 ", &[b'A'; 65536]),
        Hostility::EndlessPopGreeting => endless(&mut stream, b"+OK ", &[b'A'; 65536]),
        Hostility::EndlessEhlo => {
            let _ = stream.write_all(b"220 hostile.example ESMTP\r\n");
            let _ = reader.read_line(&mut line);
            let mut chunk = Vec::new();
            for _ in 0..600 {
                chunk.extend_from_slice(b"250-");
                chunk.extend_from_slice(&[b'x'; 94]);
                chunk.extend_from_slice(b"\r\n");
            }
            endless(&mut stream, b"250-hostile.example\r\n", &chunk);
        }
        Hostility::ForeignBanner => {
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6p1 internal-build-host-7\r\n");
            let _ = reader.read_line(&mut line);
            let _ = stream.write_all(b"Invalid SSH identification string: internal-build-host-7\r\n");
        }
        Hostility::StartTlsInjection => {
            let _ = stream.write_all(b"220 hostile.example ESMTP\r\n");
            let _ = reader.read_line(&mut line); // EHLO
            let _ = stream.write_all(b"250-hostile.example\r\n250 STARTTLS\r\n");
            line.clear();
            let _ = reader.read_line(&mut line); // STARTTLS
            if line.trim_end().eq_ignore_ascii_case("STARTTLS") {
                let _ = stream.write_all(b"220 go ahead\r\n250 fake\r\n");
                // Whatever comes now (a ClientHello, AUTH, MAIL FROM) is counted.
                let mut buf = [0u8; 4096];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    after.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
}

/// The resident memory of this process, in KiB (`VmRSS`), and its peak (`VmHWM`).
pub fn memory_kib() -> (u64, u64) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
