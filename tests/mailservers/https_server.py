#!/usr/bin/env python3
"""A tiny static HTTPS (or, with --plain, HTTP) server for Mailgate's tests (standard library only).

Binds 127.0.0.1 (port 0 = any free port) and prints `READY <port>` on stdout once it
listens. Answers HTTP/1.1, always with Content-Length, keeps connections alive, and shrugs
off clients that hang up early (also during --delay or a --big body).

What it answers, whatever the method (GET, HEAD without the body, POST, ...):
  --redirect-to URL   302 to URL, for every request;
  --big BYTES         200 with exactly BYTES bytes of XML-ish filler, for every request;
  otherwise           the file under --root at the request's path (query string ignored:
                      `/mail/config-v1.1.xml?emailaddress=a%40example.test` is
                      ROOT/mail/config-v1.1.xml; `/.well-known/autoconfig/mail/config-v1.1.xml`
                      is ROOT/.well-known/autoconfig/mail/config-v1.1.xml; a directory serves
                      its index.html), or 404. One root serves every Host name.
--delay SECONDS waits before each answer (after reading the request).

Certificate: --cert/--key, e.g. server.pem/server.key made by
`make_certs.py OUTDIR --names example.test,autoconfig.example.test`, which is valid for
localhost, 127.0.0.1 and those names (clients connect to 127.0.0.1 but send the name as SNI
and Host).

Request log (--log-requests FILE): one line `<method> <target> <Host>` per request, appended
and flushed when the request has been read (before --delay), the target as the client sent
it (with any query string), `-` for a missing Host, e.g.
  GET /mail/config-v1.1.xml?emailaddress=a%40example.test autoconfig.example.test:44123
"""
import argparse
import mimetypes
import os
import posixpath
import select
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TYPES = {".xml": "application/xml", ".json": "application/json", ".txt": "text/plain; charset=utf-8",
         ".html": "text/html; charset=utf-8"}
BIG_HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n<clientConfig version="1.1">\n'
BIG_LINE = b"  <!-- filler filler filler filler filler filler filler filler filler -->\n"
CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout, ssl.SSLError)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    p.add_argument("--plain", action="store_true", help="plain HTTP, no TLS")
    p.add_argument("--cert", help="server certificate chain (PEM); needed without --plain")
    p.add_argument("--key", help="server private key (PEM); needed without --plain")
    p.add_argument("--root", metavar="DIR", help="serve the files under DIR")
    p.add_argument("--log-requests", metavar="FILE", help="append `<method> <target> <Host>` per request")
    p.add_argument("--delay", type=float, default=0.0, metavar="SECONDS", help="wait before answering")
    p.add_argument("--redirect-to", metavar="URL", help="answer every request with 302 to URL")
    p.add_argument("--big", type=int, metavar="BYTES", help="answer every request with a body of BYTES bytes")
    p.add_argument("--watch-stdin", action="store_true",
                   help="exit when standard input reaches EOF (the parent test process died)")
    args = p.parse_args(argv)
    if not args.plain and not (args.cert and args.key):
        p.error("HTTPS needs --cert and --key (or use --plain)")
    if args.big is not None and args.big < 0:
        p.error("--big must be at least 0")
    if not (args.root or args.redirect_to or args.big is not None):
        p.error("give --root, --redirect-to or --big")
    return args


def big_body(n: int):
    """Chunks of exactly n bytes of filler that looks like an autoconfig document."""
    head = BIG_HEAD[:n]
    yield head
    left = n - len(head)
    block = BIG_LINE * 1024
    while left > 0:
        chunk = block[:left]
        yield chunk
        left -= len(chunk)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MailgateTestHTTP/1"
    timeout = 30  # an idle keep-alive connection is closed after this

    def do_any(self):
        args = self.server.args
        self.server.log_request_line(self.command, self.path, self.headers.get("Host", "-"))
        # Read (and drop) a request body, so the connection stays usable.
        length = self.headers.get("Content-Length")
        if length and length.isdigit():
            left = int(length)
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        if args.delay > 0:
            time.sleep(args.delay)
        if args.redirect_to:
            body = b'<html><body><a href="%s">moved</a></body></html>\n' % args.redirect_to.encode()
            self.answer(302, "text/html; charset=utf-8", [body], len(body), [("Location", args.redirect_to)])
        elif args.big is not None:
            self.answer(200, "application/xml", big_body(args.big), args.big)
        else:
            self.serve_file(args.root)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = do_any

    def serve_file(self, root: str):
        path = urllib.parse.urlsplit(self.path).path
        rel = posixpath.normpath("/" + urllib.parse.unquote(path)).lstrip("/")
        full = os.path.join(root, *[p for p in rel.split("/") if p and p != ".."])
        if os.path.isdir(full):
            full = os.path.join(full, "index.html")
        try:
            with open(full, "rb") as f:
                data = f.read()
        except (OSError, ValueError):
            body = b"not found\n"
            self.answer(404, "text/plain; charset=utf-8", [body], len(body))
            return
        ext = os.path.splitext(full)[1].lower()
        ctype = TYPES.get(ext) or mimetypes.guess_type(full)[0] or "application/octet-stream"
        self.answer(200, ctype, [data], len(data))

    def answer(self, code, ctype, chunks, length, extra_headers=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            for chunk in chunks:
                self.wfile.write(chunk)
        self.wfile.flush()

    def handle(self):
        try:
            super().handle()
        except CLIENT_GONE:
            self.close_connection = True

    def log_message(self, format, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), format % args))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, args, tls):
        self.args = args
        self.tls = tls
        self.log = open(args.log_requests, "a", encoding="utf-8") if args.log_requests else None
        self.log_lock = threading.Lock()
        super().__init__(("127.0.0.1", args.port), Handler)

    def server_bind(self):
        # HTTPServer.server_bind would look up the host's FQDN (a DNS lookup): not needed.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def log_request_line(self, method, target, host):
        if self.log is None:
            return
        line = "%s %s %s\n" % (method, target.replace(" ", "%20"), host.replace(" ", "") or "-")
        with self.log_lock:
            self.log.write(line)
            self.log.flush()

    def finish_request(self, request, client_address):
        # The TLS handshake runs here, in the connection's own thread, so a client that
        # never completes it holds up only itself.
        if self.tls is None:
            return super().finish_request(request, client_address)
        request.settimeout(Handler.timeout)
        try:
            conn = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as e:
            sys.stderr.write("%s TLS handshake failed: %s\n" % (client_address[0], e))
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        if isinstance(e, CLIENT_GONE):
            return
        sys.stderr.write("%s error: %r\n" % (client_address[0], e))


def wait_for_stop(watch_stdin: bool) -> None:
    """Returns on SIGTERM/SIGINT, or (watch_stdin) when standard input reaches EOF."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stop = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.append(True))
    fds = [wake_r] + ([sys.stdin.fileno()] if watch_stdin else [])
    while not stop:
        try:
            readable, _, _ = select.select(fds, [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            os.read(wake_r, 512)
        if watch_stdin and sys.stdin.fileno() in readable:
            if not os.read(sys.stdin.fileno(), 4096):
                return


def main(args) -> None:
    tls = None
    if not args.plain:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.cert, args.key)
    try:
        server = Server(args, tls)
    except OSError as e:
        sys.exit("https_server.py: cannot listen on 127.0.0.1:%d: %s" % (args.port, e))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    print("READY %d" % server.server_address[1], flush=True)
    wait_for_stop(args.watch_stdin)
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main(parse_args())
