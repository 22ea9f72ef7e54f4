#!/usr/bin/env python3
"""Small fakes of the two HTTP mail-sending APIs, for Mailgate's tests (standard library only):

  Microsoft Graph  POST /v1.0/users/{id}/sendMail and POST /v1.0/me/sendMail
                   body: the MIME message, base64, `Content-Type: text/plain` -> 202, no body
  Gmail            POST /gmail/v1/users/{userId}/messages/send
                   body: JSON {"raw": base64url MIME} -> 200 {"id", "threadId", "labelIds"}

Binds 127.0.0.1 (port 0 = any free port), HTTPS with --cert/--key (or plain HTTP with --plain),
and prints `READY <port>` on stdout once it listens.

Every request needs `Authorization: Bearer <token>`; the token is checked by RFC 7662
introspection at --introspect URL (oauth_server.py; client credentials as URL user info, sent
as HTTP Basic). It must be active, and: for /users/{id} its `username` must be that mailbox
(case-insensitive) unless it is an app-only token (no username; Graph's application
permission); for /me it must have a username; for Gmail's {userId} ("me" or the mailbox) it
must have a username that matches. Otherwise 401 with the API's own error body (Graph:
`InvalidAuthenticationToken`, Gmail: `UNAUTHENTICATED`) and a WWW-Authenticate header.

--fail STATUS (401, 413 or 429) answers accepted-looking requests with that error instead
(429 with `Retry-After: --retry-after`), for the first --fail-times N requests (0 = always).

Record (--record FILE): one JSON object per accepted message, one per line:
  {"api": "graph"|"gmail", "path", "mailbox", "client_id", "data" (the decoded MIME, UTF-8
   lossy), "received_at"}
Request log (--log-requests FILE): one JSON line {"method", "path", "status"} per request.
"""
import argparse
import base64
import binascii
import json
import os
import re
import secrets
import select
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

GRAPH_USER = re.compile(r"^/v1\.0/users/([^/]+)/sendMail$", re.IGNORECASE)
GRAPH_ME = re.compile(r"^/v1\.0/me/sendMail$", re.IGNORECASE)
GMAIL = re.compile(r"^/gmail/v1/users/([^/]+)/messages/send$")
CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, socket.timeout, ssl.SSLError)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    p.add_argument("--plain", action="store_true", help="plain HTTP, no TLS")
    p.add_argument("--cert", help="server certificate chain (PEM); needed without --plain")
    p.add_argument("--key", help="server private key (PEM); needed without --plain")
    p.add_argument("--introspect", metavar="URL", required=True, help="RFC 7662 introspection endpoint")
    p.add_argument("--fail", type=int, choices=(401, 413, 429), help="answer with this error (see above)")
    p.add_argument("--fail-times", type=int, default=0, metavar="N", help="only the first N times (0 = always)")
    p.add_argument("--retry-after", type=int, default=2, metavar="SECONDS", help="Retry-After of a 429")
    p.add_argument("--record", metavar="FILE", help="append one JSON line per accepted message")
    p.add_argument("--log-requests", metavar="FILE", help="append one JSON line per request")
    p.add_argument("--watch-stdin", action="store_true",
                   help="exit when standard input reaches EOF (the parent test process died)")
    args = p.parse_args(argv)
    if not args.plain and not (args.cert and args.key):
        p.error("HTTPS needs --cert and --key (or use --plain)")
    return args


def introspect(url: str, token: str) -> dict:
    """RFC 7662 introspection; the client credentials come from the URL's user info."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname + (":%d" % parts.port if parts.port else "")
    plain = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    req = urllib.request.Request(plain, data=urllib.parse.urlencode(
        {"token": token, "token_type_hint": "access_token"}).encode(), method="POST")
    if parts.username is not None:
        cred = "%s:%s" % (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
        req.add_header("Authorization", "Basic " + base64.b64encode(cred.encode()).decode())
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read().decode())


def graph_error(status, code, message):
    return status, {"error": {"code": code, "message": message,
                              "innerError": {"request-id": secrets.token_hex(8)}}}


def gmail_error(status, message, state):
    return status, {"error": {"code": status, "message": message, "status": state,
                              "errors": [{"message": message, "domain": "global", "reason": state.lower()}]}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MailgateTestMailAPI/1"
    timeout = 30

    def do_POST(self):
        length = self.headers.get("Content-Length")
        body = self.rfile.read(int(length)) if length and length.isdigit() else b""
        path = urllib.parse.urlsplit(self.path).path
        status, payload, headers = self.route(path, body)
        self.server.log_line({"method": "POST", "path": path, "status": status})
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def do_GET(self):
        self.server.log_line({"method": "GET", "path": self.path, "status": 404})
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route(self, path, body):
        args = self.server.args
        m_user, m_me, m_gmail = GRAPH_USER.match(path), GRAPH_ME.match(path), GMAIL.match(path)
        if not (m_user or m_me or m_gmail):
            return 404, {"error": {"code": "NotFound", "message": "no such endpoint"}}, []
        api = "gmail" if m_gmail else "graph"
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        info = {}
        if token:
            try:
                info = introspect(args.introspect, token)
            except Exception as e:  # the authorization server is down: the token is not accepted
                sys.stderr.write("introspection failed: %r\n" % e)
        owner = info.get("username")
        if m_user:
            wanted = urllib.parse.unquote(m_user.group(1))
            ok = info.get("active") and (owner is None or owner.lower() == wanted.lower())
            mailbox = wanted
        elif m_me:
            ok = info.get("active") and owner is not None
            mailbox = owner
        else:
            wanted = urllib.parse.unquote(m_gmail.group(1))
            ok = info.get("active") and owner is not None and (wanted == "me" or owner.lower() == wanted.lower())
            mailbox = owner
        if not ok or self.server.take_failure(401):
            if api == "graph":
                status, payload = graph_error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
                return status, payload, [("WWW-Authenticate", 'Bearer realm="", error="invalid_token"')]
            status, payload = gmail_error(401, "Request had invalid authentication credentials. Expected OAuth 2 "
                                               "access token.", "UNAUTHENTICATED")
            return status, payload, [("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/", '
                                                          'error="invalid_token"')]
        if self.server.take_failure(413):
            if api == "graph":
                return (*graph_error(413, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported "
                                                                       "size."), [])
            return (*gmail_error(413, "Request payload size exceeds the limit.", "FAILED_PRECONDITION"), [])
        if self.server.take_failure(429):
            retry = [("Retry-After", str(args.retry_after))]
            if api == "graph":
                return (*graph_error(429, "ApplicationThrottled", "Application is over its MailboxConcurrency "
                                                                   "limit."), retry)
            return (*gmail_error(429, "User-rate limit exceeded.", "RESOURCE_EXHAUSTED"), retry)
        try:
            if api == "graph":
                ctype = self.headers.get("Content-Type", "")
                if not ctype.lower().startswith("text/plain"):
                    return (*graph_error(400, "ErrorMimeContentInvalid", "Content-Type must be text/plain "
                                                                          "for MIME."), [])
                mime = base64.b64decode(b"".join(body.split()), validate=True)
            else:
                raw = json.loads(body.decode("utf-8"))["raw"]
                mime = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (ValueError, KeyError, TypeError, binascii.Error):
            if api == "graph":
                return (*graph_error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for "
                                                                                   "MIME content."), [])
            return (*gmail_error(400, "Invalid value for ByteString", "INVALID_ARGUMENT"), [])
        if not mime.strip():
            return (*(graph_error(400, "ErrorMimeContentInvalid", "MIME content is empty.") if api == "graph"
                      else gmail_error(400, "Recipient address required", "INVALID_ARGUMENT")), [])
        self.server.record({"api": api, "path": path, "mailbox": mailbox, "client_id": info.get("client_id"),
                            "data": mime.decode("utf-8", errors="replace"), "received_at": time.time()})
        if api == "graph":
            return 202, None, []
        mid = secrets.token_hex(8)
        return 200, {"id": mid, "threadId": mid, "labelIds": ["SENT"]}, []

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
        self.lock = threading.Lock()
        self.failures = 0
        self.record_file = open(args.record, "a", encoding="utf-8") if args.record else None
        self.log_file = open(args.log_requests, "a", encoding="utf-8") if args.log_requests else None
        super().__init__(("127.0.0.1", args.port), Handler)

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def take_failure(self, status) -> bool:
        """Whether this request gets the scripted --fail STATUS (counts it)."""
        if self.args.fail != status:
            return False
        with self.lock:
            if self.args.fail_times > 0 and self.failures >= self.args.fail_times:
                return False
            self.failures += 1
            return True

    def record(self, entry):
        if self.record_file is None:
            return
        with self.lock:
            self.record_file.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self.record_file.flush()

    def log_line(self, entry):
        if self.log_file is None:
            return
        with self.lock:
            self.log_file.write(json.dumps(entry) + "\n")
            self.log_file.flush()

    def finish_request(self, request, client_address):
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
        sys.exit("mail_api_server.py: cannot listen on 127.0.0.1:%d: %s" % (args.port, e))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    print("READY %d" % server.server_address[1], flush=True)
    wait_for_stop(args.watch_stdin)
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main(parse_args())
