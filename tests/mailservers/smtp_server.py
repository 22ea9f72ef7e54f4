#!/usr/bin/env python3
"""A real SMTP server (aiosmtpd) for Mailgate's tests, one process per server.

Binds 127.0.0.1 (port 0 = any free port) and prints `READY <port>` on stdout once it
listens. See --help for the modes, authentication, recording and scripted failures.

Record format (--record FILE): one JSON object per accepted message, one per line:
  {"peer", "peer_port", "ehlo", "mail_from", "rcpt_tos", "data", "auth_user", "tls", "received_at"}

POP-before-SMTP (--pop-gate FILE --pop-window SECONDS): MAIL FROM is refused with
`554 5.7.1 Relay access denied (POP before SMTP)` unless FILE has a line
`<client ip> <unix time>` whose time is at most SECONDS old. Dovecot's post-login script
(pop3_dovecot.py) appends such a line on every successful POP3 login.
"""
import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import sys
import time
import warnings

from base64 import b64encode

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

# "Requiring AUTH while not requiring TLS": wanted in plain mode.
warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
# Expected noise in aiosmtpd's log: it sets its own deprecated Session.login_data, and
# complains about AUTH over plain text, which plain mode wants.
logging.getLogger("mail.log").addFilter(
    lambda r: not any(s in r.getMessage() for s in ("login_data is deprecated", "auth_require_tls == False"))
)

POP_DENIED = "554 5.7.1 Relay access denied (POP before SMTP)"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    p.add_argument("--mode", choices=("plain", "starttls", "tls"), default="plain",
                   help="plain: no TLS offered; starttls: STARTTLS offered and required; "
                        "tls: implicit TLS from the first byte")
    p.add_argument("--cert", help="server certificate chain (PEM), for starttls/tls")
    p.add_argument("--key", help="server private key (PEM), for starttls/tls")
    p.add_argument("--hostname", default="mailgate-test.localhost", help="name in the greeting and EHLO reply")
    p.add_argument("--auth", metavar="USER:PASS",
                   help="offer AUTH PLAIN and LOGIN and require it before MAIL FROM "
                        "(over plain text only in plain mode)")
    p.add_argument("--auth-reply", metavar="REPLY", help="answer every AUTH attempt with this reply")
    p.add_argument("--auth-echo", action="store_true",
                   help="answer every AUTH attempt with `535 5.7.8` and an echo of what the client sent: "
                        "PLAIN: the base64 blob; LOGIN: the base64 user name and password; then the "
                        "decoded password (a hostile server handing credentials back)")
    p.add_argument("--auth-mechanisms", metavar="LIST", default="PLAIN,LOGIN",
                   help="the AUTH mechanisms offered, comma-separated (default PLAIN,LOGIN)")
    p.add_argument("--mail-from-reply", metavar="REPLY", help="answer every MAIL FROM with this reply")
    p.add_argument("--rcpt-reply", metavar="REPLY", help="answer every RCPT TO with this reply")
    p.add_argument("--data-reply", metavar="REPLY", help="answer the end of DATA with this reply")
    p.add_argument("--data-reply-times", type=int, default=0, metavar="N",
                   help="with --data-reply: use it only for the first N messages, then accept (0 = always)")
    p.add_argument("--greeting-delay", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long after accepting before sending the 220 greeting")
    p.add_argument("--pop-gate", metavar="FILE", help="POP-before-SMTP gate file (lines: <ip> <unix time>)")
    p.add_argument("--pop-window", type=float, default=300.0, metavar="SECONDS",
                   help="how recent a POP login must be (default 300)")
    p.add_argument("--record", metavar="FILE", help="append one JSON line per accepted message")
    p.add_argument("--no-record", action="store_true",
                   help="do not record messages, only count them (fast sink; see --count-file)")
    p.add_argument("--count-file", metavar="FILE",
                   help="keep the number of accepted messages in FILE (rewritten at most every 0.1 s and at exit)")
    p.add_argument("--no-smtputf8", action="store_true",
                   help="do not offer SMTPUTF8 (RFC 6531) in the EHLO reply")
    p.add_argument("--log-commands", action="store_true",
                   help="write every command line a client sends to standard error (aiosmtpd's own log)")
    p.add_argument("--watch-stdin", action="store_true",
                   help="exit when standard input reaches EOF (the parent test process died)")
    args = p.parse_args(argv)
    if args.mode != "plain" and not (args.cert and args.key):
        p.error("--mode %s needs --cert and --key" % args.mode)
    if args.auth is not None and ":" not in args.auth:
        p.error("--auth must be USER:PASS")
    return args


def reply(text: str) -> str:
    """Makes sure a scripted reply is a single SMTP reply line."""
    return text.replace("\r", " ").replace("\n", " ").strip()


class Recorder:
    def __init__(self, path, count_file):
        self.count = 0
        self.dirty = False
        self.count_file = count_file
        # Line-buffered text would flush per line anyway; write whole lines and flush
        # explicitly (no fsync: readers are on the same machine).
        self.file = open(path, "a", encoding="utf-8") if path else None

    def add(self, entry):
        self.count += 1
        self.dirty = True
        if self.file is not None:
            self.file.write(json.dumps(entry, ensure_ascii=False) + "\n")
            self.file.flush()

    def write_count(self):
        if self.count_file and self.dirty:
            self.dirty = False
            tmp = self.count_file + ".tmp"
            with open(tmp, "w") as f:
                f.write("%d\n" % self.count)
            os.replace(tmp, self.count_file)


def pop_gate_open(path: str, ip: str, window: float) -> bool:
    now = time.time()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 2 or parts[0] != ip:
                    continue
                try:
                    at = float(parts[1])
                except ValueError:
                    continue
                if 0 <= now - at <= window or (at > now and at - now < 2):
                    return True
    except FileNotFoundError:
        return False
    return False


class Handler:
    def __init__(self, args, recorder: Recorder, use_auth: bool):
        self.args = args
        self.recorder = recorder
        self.use_auth = use_auth

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if not self.use_auth:
            # aiosmtpd always lists AUTH (even with no mechanism); without --auth there is none.
            responses = [r for r in responses if not r[4:].startswith("AUTH")]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # When the client started this send (pacing is measured here).
        envelope.mail_from_at = time.time()
        if self.args.pop_gate:
            ip = session.peer[0] if session.peer else ""
            if not pop_gate_open(self.args.pop_gate, ip, self.args.pop_window):
                return POP_DENIED
        if self.args.mail_from_reply:
            return reply(self.args.mail_from_reply)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.args.rcpt_reply:
            return reply(self.args.rcpt_reply)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.args.data_reply:
            if self.args.data_reply_times <= 0:
                return reply(self.args.data_reply)
            self.data_replies = getattr(self, "data_replies", 0) + 1
            if self.data_replies <= self.args.data_reply_times:
                return reply(self.args.data_reply)
        if self.recorder.file is None:
            self.recorder.add(None)
        else:
            raw = envelope.original_content if envelope.original_content is not None else envelope.content
            if isinstance(raw, str):
                data = raw
            else:
                data = (raw or b"").decode("utf-8", errors="replace")
            login = getattr(session.auth_data, "login", None)
            if isinstance(login, bytes):
                login = login.decode("utf-8", errors="replace")
            self.recorder.add({
                "peer": session.peer[0] if session.peer else None,
                "peer_port": session.peer[1] if session.peer else None,
                "ehlo": session.host_name,
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "data": data,
                "auth_user": login,
                "tls": server.is_tls(),
                "received_at": time.time(),
                "mail_from_at": getattr(envelope, "mail_from_at", None),
                "mail_options": list(envelope.mail_options),
            })
        return "250 2.0.0 OK queued"


class TestSMTP(SMTP):
    greeting_delay = 0.0

    def is_tls(self) -> bool:
        transport = self.transport
        if self.session is not None and self.session.ssl is not None:
            return True
        return transport is not None and transport.get_extra_info("ssl_object") is not None

    async def _handle_client(self):
        if self.greeting_delay > 0:
            await asyncio.sleep(self.greeting_delay)
        await super()._handle_client()


def make_authenticator(args):
    user = password = None
    if args.auth is not None:
        user, password = args.auth.split(":", 1)

    def authenticator(server, session, envelope, mechanism, auth_data):
        if args.auth_echo and isinstance(auth_data, LoginPassword):
            # What went over the wire, encoded again exactly as a client encodes it.
            if mechanism == "PLAIN":
                sent = b64encode(b"\0" + auth_data.login + b"\0" + auth_data.password).decode()
            else:
                sent = b64encode(auth_data.login).decode() + " " + b64encode(auth_data.password).decode()
            decoded = auth_data.password.decode("utf-8", errors="replace")
            return AuthResult(success=False, handled=False,
                              message=reply("535 5.7.8 Authentication failed for %s (password %s)" % (sent, decoded)))
        if args.auth_reply:
            return AuthResult(success=False, handled=False, message=reply(args.auth_reply))
        if (isinstance(auth_data, LoginPassword)
                and auth_data.login == user.encode()
                and auth_data.password == password.encode()):
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)  # 535 5.7.8 Authentication credentials invalid

    return authenticator


def server_context(args) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    return ctx


async def main(args) -> None:
    if args.log_commands:
        # aiosmtpd logs each line a client sends ("peer >> b'EHLO ...'") at INFO.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        mail_log = logging.getLogger("mail.log")
        mail_log.addHandler(handler)
        mail_log.setLevel(logging.INFO)
    loop = asyncio.get_running_loop()
    recorder = Recorder(None if args.no_record else args.record, args.count_file)
    use_auth = args.auth is not None or args.auth_reply is not None or args.auth_echo
    offered = {m.strip().upper() for m in args.auth_mechanisms.split(",") if m.strip()}
    handler = Handler(args, recorder, use_auth)
    tls_context = server_context(args) if args.mode != "plain" else None
    TestSMTP.greeting_delay = args.greeting_delay

    def factory():
        return TestSMTP(
            handler,
            hostname=args.hostname,
            enable_SMTPUTF8=not args.no_smtputf8,
            decode_data=False,
            # A pooled client sends many MAIL FROMs on one connection.
            command_call_limit=None,
            tls_context=tls_context if args.mode == "starttls" else None,
            require_starttls=args.mode == "starttls",
            authenticator=make_authenticator(args) if use_auth else None,
            auth_required=use_auth,
            auth_exclude_mechanism=[m for m in ("LOGIN", "PLAIN") if m not in offered] if use_auth
            else ["LOGIN", "PLAIN"],
            # AUTH over plain text only in plain mode; in tls mode the whole connection is
            # already encrypted (aiosmtpd only tracks STARTTLS itself).
            auth_require_tls=args.mode == "starttls",
            loop=loop,
        )

    server = await loop.create_server(
        factory, host="127.0.0.1", port=args.port,
        ssl=tls_context if args.mode == "tls" else None, backlog=256,
    )
    port = server.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.watch_stdin:
        def on_stdin():
            if not os.read(sys.stdin.fileno(), 4096):
                loop.remove_reader(sys.stdin.fileno())
                stop.set()
        loop.add_reader(sys.stdin.fileno(), on_stdin)

    async def count_writer():
        while True:
            await asyncio.sleep(0.1)
            recorder.write_count()

    if args.count_file:
        recorder.dirty = True
        recorder.write_count()
        writer = loop.create_task(count_writer())
    print("READY %d" % port, flush=True)
    await stop.wait()
    server.close()
    if args.count_file:
        writer.cancel()
        recorder.dirty = True
        recorder.write_count()
    try:
        print("COUNT %d" % recorder.count, flush=True)
    except BrokenPipeError:
        pass


if __name__ == "__main__":
    try:
        asyncio.run(main(parse_args()))
    except KeyboardInterrupt:
        pass
