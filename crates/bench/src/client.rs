//! The load generator: a minimal HTTP/1.1 keep-alive client over a raw
//! [`TcpStream`] (one connection per task, one request in flight per connection), and
//! the closed-loop driver that runs `connections` such tasks for a warm-up period and a
//! measured period and collects per-request latencies.
//!
//! The client is deliberately tiny so that it costs as little CPU as possible on the
//! machine it shares with the server: requests are pre-serialised byte strings, the
//! response is read into one reused buffer, and only the status line and
//! `Content-Length` are parsed.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Largest response the client accepts (a sanity bound, not a limit of the server).
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Error messages kept per task, and in the merged result.
const ERROR_SAMPLES: usize = 5;

/// One keep-alive connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A response read by [`Conn::request`]; the body is `conn.body(&range)`.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Range<usize>,
    /// The server asked to close the connection after this response.
    pub close: bool,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Writes one complete, pre-serialised request and reads its response.
    pub async fn request(&mut self, request: &[u8]) -> anyhow::Result<Response> {
        self.stream.write_all(request).await.context("writing the request")?;
        self.buf.clear();
        let mut searched = 0;
        let header_end = loop {
            if let Some(pos) = find(&self.buf[searched..], b"\r\n\r\n") {
                break searched + pos + 4;
            }
            searched = self.buf.len().saturating_sub(3);
            self.read_more().await?;
        };
        let head = std::str::from_utf8(&self.buf[..header_end]).context("response headers are not UTF-8")?;
        let (status, content_length, close) = parse_head(head)?;
        let end = header_end + content_length;
        if end > MAX_RESPONSE_BYTES {
            bail!("response of {content_length} bytes is larger than the client accepts");
        }
        while self.buf.len() < end {
            self.read_more().await?;
        }
        if self.buf.len() > end {
            bail!("{} unexpected bytes after the response body", self.buf.len() - end);
        }
        Ok(Response {
            status,
            body: header_end..end,
            close,
        })
    }

    pub fn body(&self, range: &Range<usize>) -> &[u8] {
        &self.buf[range.clone()]
    }

    async fn read_more(&mut self) -> anyhow::Result<()> {
        self.buf.reserve(4096);
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .context("reading the response")?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        Ok(())
    }
}

/// Status, `Content-Length` and `Connection: close` of a response head.
fn parse_head(head: &str) -> anyhow::Result<(u16, usize, bool)> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut content_length = None;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<usize>()
                    .with_context(|| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("Transfer-Encoding {value:?} is not supported by the bench client");
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    let content_length = content_length.context("the response has no Content-Length")?;
    Ok((status, content_length, close))
}

/// The first position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// What makes a response a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Status 200 is enough (the bare endpoint).
    Status200,
    /// Status 200, an `effectiveSender` with a `"source"`, and no `"errors"`.
    EffectiveSender,
}

/// One load run: where, what, how hard and how long.
#[derive(Debug, Clone)]
pub struct Load {
    pub addr: SocketAddr,
    /// Complete request byte strings; each request picks one at random.
    pub requests: Arc<Vec<Vec<u8>>>,
    pub check: Check,
    pub connections: usize,
    pub warmup: Duration,
    pub measure: Duration,
}

/// The result of a run. Only requests that *started* inside the measured window and
/// succeeded count toward `requests` and `latencies_us`; errors are counted over the
/// whole run, warm-up included.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: u64,
    pub errors: u64,
    /// Successful measured responses whose source was `CUSTOM` (Mailgate only).
    pub custom: u64,
    /// Sorted ascending.
    pub latencies_us: Vec<u32>,
    pub error_samples: Vec<String>,
    pub measure: Duration,
    /// CPU time this process (client, servers, SQLite) used during the measured
    /// window, when the platform reports it.
    pub cpu: Option<Duration>,
    /// CPU time every other process on the machine (PostgreSQL included) used during
    /// the measured window, when the platform reports it.
    pub others_cpu: Option<Duration>,
}

impl Stats {
    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.measure.as_secs_f64()
    }

    /// Process CPU time per measured request, in microseconds. Unlike requests/s this
    /// hardly changes when other processes compete for the CPU.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        let cpu = self.cpu?;
        (self.requests > 0).then(|| cpu.as_secs_f64() * 1e6 / self.requests as f64)
    }

    /// The share of the machine's CPU capacity that other processes used during the
    /// measured window: high values mean the figures were disturbed.
    pub fn others_share(&self) -> Option<f64> {
        let threads = std::thread::available_parallelism().ok()?.get() as f64;
        Some(self.others_cpu?.as_secs_f64() / (self.measure.as_secs_f64() * threads))
    }

    /// The `p`-th percentile latency in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((self.latencies_us.len() as f64) * p / 100.0).ceil() as usize;
        let index = rank.saturating_sub(1).min(self.latencies_us.len() - 1);
        f64::from(self.latencies_us[index]) / 1000.0
    }
}

/// Per-task tallies, merged into [`Stats`].
#[derive(Debug, Default)]
struct TaskStats {
    requests: u64,
    errors: u64,
    custom: u64,
    latencies_us: Vec<u32>,
    error_samples: Vec<String>,
}

impl TaskStats {
    fn error(&mut self, message: impl FnOnce() -> String) {
        self.errors += 1;
        if self.error_samples.len() < ERROR_SAMPLES {
            self.error_samples.push(message());
        }
    }
}

/// A small, fast PRNG (xorshift64*) so each task picks tenants independently.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let r = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        // Multiply-shift: maps r onto 0..n without a division.
        ((u128::from(r) * n as u128) >> 64) as usize
    }
}

/// Runs `load.connections` closed-loop clients and returns the merged statistics.
pub async fn run(load: &Load) -> anyhow::Result<Stats> {
    if load.requests.is_empty() {
        bail!("no requests to send");
    }
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let until = measure_from + load.measure;
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..load.connections {
        let load = load.clone();
        tasks.spawn(client_task(load, task, measure_from, until));
    }
    let cpu_meter = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let (own_begin, all_begin) = (process_cpu(), machine_busy());
        tokio::time::sleep_until(until.into()).await;
        let own = process_cpu()
            .zip(own_begin)
            .map(|(end, begin)| end.saturating_sub(begin));
        let all = machine_busy()
            .zip(all_begin)
            .map(|(end, begin)| end.saturating_sub(begin));
        (own, all.zip(own).map(|(all, own)| all.saturating_sub(own)))
    });
    let mut stats = Stats {
        measure: load.measure,
        ..Stats::default()
    };
    let mut latencies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let task = joined.context("a load task panicked")?;
        stats.requests += task.requests;
        stats.errors += task.errors;
        stats.custom += task.custom;
        latencies.push(task.latencies_us);
        for sample in task.error_samples {
            if stats.error_samples.len() < ERROR_SAMPLES {
                stats.error_samples.push(sample);
            }
        }
    }
    (stats.cpu, stats.others_cpu) = cpu_meter.await.unwrap_or_default();
    stats.latencies_us = latencies.concat();
    stats.latencies_us.sort_unstable();
    Ok(stats)
}

/// One closed-loop client. During warm-up the tasks first walk the request list
/// together (task `k` sends `k`, `k + connections`, …) so that every tenant has been
/// read once — the tenant cache is then as warm as in steady state — and after that,
/// and throughout the measured window, each request is picked at random.
async fn client_task(load: Load, task: usize, measure_from: Instant, until: Instant) -> TaskStats {
    let mut stats = TaskStats {
        latencies_us: Vec::with_capacity(64 * 1024),
        ..TaskStats::default()
    };
    let mut rng = Rng::new(task as u64 + 1);
    let mut sequential = task;
    let mut conn: Option<Conn> = None;
    loop {
        let begun = Instant::now();
        if begun >= until {
            break;
        }
        let mut c = match conn.take() {
            Some(c) => c,
            None => match Conn::connect(load.addr).await {
                Ok(c) => c,
                Err(e) => {
                    stats.error(|| format!("{e:#}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let index = if begun < measure_from && sequential < load.requests.len() {
            sequential += load.connections;
            sequential - load.connections
        } else {
            rng.below(load.requests.len())
        };
        let request = &load.requests[index];
        // Timed from here so a reconnect is not counted as request latency.
        let begun = Instant::now();
        let response = match c.request(request).await {
            Ok(r) => r,
            Err(e) => {
                stats.error(|| format!("{e:#}"));
                continue; // drops the connection; the next round reconnects
            }
        };
        let elapsed = begun.elapsed();
        let body = c.body(&response.body);
        let ok = response.status == 200
            && match load.check {
                Check::Status200 => true,
                Check::EffectiveSender => contains(body, b"\"source\"") && !contains(body, b"\"errors\""),
            };
        if !ok {
            let status = response.status;
            stats.error(|| format!("status {status}: {}", String::from_utf8_lossy(body)));
        } else if begun >= measure_from && begun < until {
            stats.requests += 1;
            stats
                .latencies_us
                .push(u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX));
            if load.check == Check::EffectiveSender && contains(body, b"\"CUSTOM\"") {
                stats.custom += 1;
            }
        }
        if !response.close {
            conn = Some(c);
        }
    }
    stats
}

/// User plus system CPU time of this process so far (Linux `/proc/self/stat`, in
/// USER_HZ = 100 ticks per second).
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split_whitespace().skip(11); // state is field 3; utime is 14
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Busy (not idle, not waiting for I/O) CPU time of the whole machine so far (Linux
/// `/proc/stat`, in USER_HZ = 100 ticks per second).
fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user]
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    Some(Duration::from_millis(busy * 10))
}

/// A complete `POST /graphql` request with a JSON body.
pub fn post_request(addr: SocketAddr, token: Option<&str>, body: &str) -> Vec<u8> {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /graphql HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head() {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 42\r\n\r\n";
        assert_eq!(parse_head(head).ok(), Some((200, 42, false)));
        let head = "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse_head(head).ok(), Some((401, 0, true)));
        assert!(parse_head("HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

    #[test]
    fn percentiles() {
        let stats = Stats {
            latencies_us: (1..=100).map(|v| v * 1000).collect(),
            ..Stats::default()
        };
        assert!((stats.percentile_ms(50.0) - 50.0).abs() < 1e-9);
        assert!((stats.percentile_ms(99.0) - 99.0).abs() < 1e-9);
    }

    #[test]
    fn reads_process_cpu() {
        if cfg!(target_os = "linux") {
            assert!(process_cpu().is_some());
            assert!(machine_busy().is_some());
        }
    }

    #[test]
    fn rng_stays_in_range() {
        let mut rng = Rng::new(7);
        assert!((0..10_000).all(|_| rng.below(10) < 10));
    }
}
