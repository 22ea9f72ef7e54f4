#!/usr/bin/env python3
"""An OTLP/HTTP trace receiver for Mailgate's tests: `POST /v1/traces` with a protobuf
`ExportTraceServiceRequest`, decoded by the `opentelemetry-proto` package from PyPI (the
OpenTelemetry project's own generated code, not written here).

Binds 127.0.0.1 (port 0 = any free port), prints `READY <port>` once it listens, answers
200 with an empty `ExportTraceServiceResponse`.

Log (--log FILE): one JSON object per span, appended and flushed as requests arrive:
  {"name", "trace_id", "span_id", "parent_span_id" (hex, "" for a root), "kind",
   "service": the resource's service.name, "attributes": {key: value as text}}
"""
import argparse
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def value_text(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return ""
    return str(getattr(v, kind))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--log", required=True)
    p.add_argument("--watch-stdin", action="store_true")
    args = p.parse_args()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path != "/v1/traces":
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            lines = []
            for rs in req.resource_spans:
                service = ""
                for kv in rs.resource.attributes:
                    if kv.key == "service.name":
                        service = value_text(kv.value)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        lines.append(json.dumps({
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "kind": span.kind,
                            "service": service,
                            "attributes": {kv.key: value_text(kv.value) for kv in span.attributes},
                        }))
            with lock, open(args.log, "a", encoding="utf-8") as f:
                for line in lines:
                    f.write(line + "\n")
                f.flush()
            payload = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

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
