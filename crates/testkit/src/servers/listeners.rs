//! Plain TCP listeners on loopback: one that never says anything, one that counts and
//! closes connections, and a proxy that counts the connections open through it at once.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Keeps a silent listener running; dropping it closes the listener and its connections.
#[derive(Debug)]
pub struct SilentListener {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl SilentListener {
    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// The most connections that were open at the same time (checked every 10 ms).
    pub fn most_open(&self) -> usize {
        self.most_open.load(Ordering::SeqCst)
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(crate) fn bind_loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"))
}

pub(crate) fn local_port(listener: &TcpListener) -> u16 {
    listener
        .local_addr()
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
}

/// Holds a loopback port that refuses every connection: bound on 127.0.0.1 (and on ::1
/// where the machine has it) but never listening, so the kernel answers each connect
/// with a reset and no other process can take the port while the guard lives. A port
/// merely found free and let go can be taken by a parallel test's server at once.
#[derive(Debug)]
pub struct RefusedPort {
    pub port: u16,
    _held: Vec<tokio::net::TcpSocket>,
}

/// A loopback port that refuses connections for as long as the guard lives. A port whose
/// ::1 side another listener already has is passed over for another one.
pub fn refused_port() -> RefusedPort {
    for _ in 0..64 {
        let v4 = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| panic!("socket: {e}"));
        v4.bind(([127, 0, 0, 1], 0).into())
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"));
        let port = v4
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let mut held = vec![v4];
        // A machine without IPv6 on loopback has nothing to hold there.
        if let Ok(v6) = tokio::net::TcpSocket::new_v6() {
            match v6.bind((std::net::Ipv6Addr::LOCALHOST, port).into()) {
                Ok(()) => held.push(v6),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(_) => {}
            }
        }
        return RefusedPort { port, _held: held };
    }
    panic!("no loopback port free on both 127.0.0.1 and ::1 in 64 tries")
}

/// A TCP listener on 127.0.0.1 that accepts connections and never says anything
/// (for greeting/connect timeout tests). Connections stay open until the guard is dropped.
pub fn silent_listener() -> (u16, SilentListener) {
    let listener = bind_loopback();
    let port = local_port(&listener);
    let _ = listener.set_nonblocking(true);
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let most_open = Arc::new(AtomicUsize::new(0));
    let thread = {
        let (stop, accepted, most_open) = (stop.clone(), accepted.clone(), most_open.clone());
        std::thread::spawn(move || {
            let mut open: Vec<std::net::TcpStream> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.set_nonblocking(true);
                        open.push(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
                // Forget connections the client closed (a read of 0 bytes); the rest are
                // open at the same time.
                open.retain(|s| !matches!(s.peek(&mut [0u8; 1]), Ok(0)));
                most_open.fetch_max(open.len(), Ordering::SeqCst);
            }
            for stream in open {
                let _ = stream.shutdown(Shutdown::Both);
            }
        })
    };
    (
        port,
        SilentListener {
            stop,
            accepted,
            most_open,
            thread: Some(thread),
        },
    )
}

/// A TCP proxy on 127.0.0.1 in front of a real server, counting the connections open
/// through it at the same moment: each from 20 ms after its accept until its client
/// closed, so the proxy's own lag in seeing a close cannot count a hand-over (a client
/// closes one session, then opens the next) as two at once. Use it in front of a server
/// that takes longer than that to greet, so a real overlap always counts.
#[derive(Debug, Clone)]
pub struct CountingProxy {
    pub port: u16,
    open: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

impl CountingProxy {
    /// The most connections open through the proxy at once.
    pub fn most_open(&self) -> usize {
        self.most_open.load(Ordering::SeqCst)
    }
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Starts a [`CountingProxy`] to `127.0.0.1:target`; it lives until the process ends.
pub fn counting_proxy(target: u16) -> CountingProxy {
    let listener = bind_loopback();
    let proxy = CountingProxy {
        port: local_port(&listener),
        open: Arc::new(AtomicUsize::new(0)),
        most_open: Arc::new(AtomicUsize::new(0)),
        accepted: Arc::new(AtomicUsize::new(0)),
    };
    let counts = proxy.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            counts.accepted.fetch_add(1, Ordering::SeqCst);
            let counts = counts.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                let now = counts.open.fetch_add(1, Ordering::SeqCst) + 1;
                counts.most_open.fetch_max(now, Ordering::SeqCst);
                let (mut c_read, mut s_write) =
                    (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                let downstream = std::thread::spawn(move || {
                    let (mut s_read, mut c_write) = (server, client);
                    let _ = std::io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(Shutdown::Both);
                });
                // Open until the client (Mailgate) closes its side.
                let _ = std::io::copy(&mut c_read, &mut s_write);
                counts.open.fetch_sub(1, Ordering::SeqCst);
                let _ = s_write.shutdown(Shutdown::Write);
                let _ = downstream.join();
            });
        }
    });
    proxy
}

/// A TCP listener on 127.0.0.1 that counts accepted connections and closes each at once
/// (to prove that a refused address saw no connection). It lives until the process ends.
pub fn counting_listener() -> (u16, Arc<AtomicUsize>) {
    let listener = bind_loopback();
    let port = local_port(&listener);
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stream.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, count)
}
