#!/usr/bin/env python3
"""A webhook receiver for Mailgate's tests: every request it gets is verified by the
`standardwebhooks` package from PyPI (the reference verifier of the Standard Webhooks
specification, not written here), with each --secret in turn.

Binds 127.0.0.1 (port 0 = any free port) and prints `READY <port>` on stdout once it
listens. HTTP/1.1 (standard library server).

How it answers (--mode):
  ok            204 to every request;
  fail-first N  500 to the first N requests, then 204;
  hang          reads the request and never answers (until the client hangs up).

Log (--log FILE): one JSON object per request, appended and flushed once the request has
been read (before answering):
  {"path": ..., "headers": {lowercased name: value}, "body": text,
   "verified": true when a secret verified it, "verified_by": the indexes of every secret
   that verifies it on its own, "error": the verifier's message when none did,
   "answered": status or null (hang),
   "at": when it came, in seconds of this process's monotonic clock (for comparing
         requests with each other)}
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--secret", action="append", default=[], help="whsec_… (repeatable)")
    p.add_argument("--mode", default="ok", choices=["ok", "fail-first", "hang"])
    p.add_argument("--fail", type=int, default=1, help="for fail-first: how many 500s")
    p.add_argument("--log", required=True)
    p.add_argument("--watch-stdin", action="store_true",
                   help="exit when standard input reaches EOF (the parent test process died)")
    return p.parse_args(argv)


def main():
    args = parse_args()
    hooks = [Webhook(s) for s in args.secret]
    lock = threading.Lock()
    seen = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            at = time.monotonic()
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            headers = {k.lower(): v for k, v in self.headers.items()}
            verified_by, error = [], None
            for i, hook in enumerate(hooks):
                try:
                    hook.verify(body, headers)
                    verified_by.append(i)
                except WebhookVerificationError as e:
                    error = str(e)
            with lock:
                seen["n"] += 1
                n = seen["n"]
            if args.mode == "hang":
                status = None
            elif args.mode == "fail-first" and n <= args.fail:
                status = 500
            else:
                status = 204
            entry = {"path": self.path, "headers": headers, "body": body, "verified": bool(verified_by),
                     "verified_by": verified_by, "error": None if verified_by else error, "answered": status,
                     "at": at}
            with lock, open(args.log, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
                f.flush()
            if status is None:
                while True:
                    time.sleep(3600)
            self.send_response(status)
            if status == 500:
                payload = b"receiver says no"
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            else:
                self.send_header("Content-Length", "0")
                self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"READY {server.server_address[1]}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if args.watch_stdin:
        def watch():
            while os.read(sys.stdin.fileno(), 4096):
                pass
            stop.set()
        threading.Thread(target=watch, daemon=True).start()
    while not stop.wait(0.5):
        pass
    os._exit(0)


if __name__ == "__main__":
    main()
