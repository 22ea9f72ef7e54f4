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

XOAUTH2 (--xoauth2-introspect URL): offers `AUTH XOAUTH2` (besides PLAIN/LOGIN only if --auth
is given too) and requires it before MAIL FROM. The client's
`user=<mailbox>^Aauth=Bearer <token>^A^A` is accepted when the authorization server's RFC 7662
introspection (URL, e.g. http://id:secret@127.0.0.1:1234/introspect from oauth_server.py;
client credentials as URL user info, sent as HTTP Basic) says the token is active and either
its `username` is that mailbox (case-insensitive) or it has none (an app-only token from
client_credentials), and, with --xoauth2-scope, it carries that scope. Otherwise, by
--xoauth2-style: `microsoft` answers `535 5.7.3 Authentication unsuccessful`; `google` sends
a `334 <base64 JSON {"status","schemes","scope"}>` challenge, waits for the client's (empty)
line, then answers `535 5.7.8 Username and Password not accepted. ...`. The record's
`auth_user` is the mailbox, `auth_mechanism` the mechanism.
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

import urllib.parse
import urllib.request
from base64 import b64decode, b64encode

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

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
    p.add_argument("--xoauth2-introspect", metavar="URL",
                   help="offer AUTH XOAUTH2 and check bearer tokens by RFC 7662 introspection at URL "
                        "(client credentials as URL user info)")
    p.add_argument("--xoauth2-scope", metavar="SCOPE", help="with --xoauth2-introspect: require this scope")
    p.add_argument("--xoauth2-style", choices=("microsoft", "google"), default="microsoft",
                   help="how a refused XOAUTH2 attempt is answered (see above)")
    p.add_argument("--starttls-reply", metavar="REPLY",
                   help="in starttls mode: answer every STARTTLS with this reply (e.g. Postfix's "
                        "`454 4.7.0 TLS not available due to local problem`) instead of starting TLS")
    p.add_argument("--mail-from-reply", metavar="REPLY", help="answer every MAIL FROM with this reply")
    p.add_argument("--rcpt-reply", metavar="REPLY", help="answer every RCPT TO with this reply")
    p.add_argument("--data-reply", metavar="REPLY", help="answer the end of DATA with this reply")
    p.add_argument("--data-reply-times", type=int, default=0, metavar="N",
                   help="with --data-reply: use it only for the first N messages, then accept (0 = always)")
    p.add_argument("--greeting-delay", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long after accepting before sending the 220 greeting")
    p.add_argument("--greeting-reply", metavar="REPLY",
                   help="greet with this refusal (e.g. '554 5.3.2 No service here'); then, as RFC 5321 "
                        "section 3.1 asks, answer 503 to everything until QUIT")
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
    p.add_argument("--pipelining", action="store_true",
                   help="offer PIPELINING (RFC 2920) in the EHLO reply, and record for each message "
                        "whether RCPT TO had already arrived when MAIL FROM was answered")
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
        if self.args.pipelining:
            responses = responses[:1] + ["250-PIPELINING"] + responses[1:]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # When the client started this send (pacing is measured here).
        envelope.mail_from_at = time.time()
        # Pipelined: the client sent RCPT TO without waiting for this reply (aiosmtpd reads
        # commands one line at a time from its stream; what follows waits in its buffer).
        waiting = bytes(getattr(server._reader, "_buffer", b""))
        envelope.pipelined = b"RCPT" in waiting.upper()
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
                "auth_mechanism": getattr(session, "auth_mechanism", None),
                "tls": server.is_tls(),
                "received_at": time.time(),
                "mail_from_at": getattr(envelope, "mail_from_at", None),
                "mail_options": list(envelope.mail_options),
                "pipelined": getattr(envelope, "pipelined", False),
            })
        return "250 2.0.0 OK queued"


MS_535 = "535 5.7.3 Authentication unsuccessful"
GOOGLE_535 = ("535 5.7.8 Username and Password not accepted. For more information, go to "
              "https://support.google.com/mail/?p=BadCredentials")


def introspect(url: str, token: str) -> dict:
    """RFC 7662 introspection; the client credentials come from the URL's user info."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname + (":%d" % parts.port if parts.port else "")
    plain = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    req = urllib.request.Request(plain, data=urllib.parse.urlencode(
        {"token": token, "token_type_hint": "access_token"}).encode(), method="POST")
    if parts.username is not None:
        cred = "%s:%s" % (urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or ""))
        req.add_header("Authorization", "Basic " + b64encode(cred.encode()).decode())
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read().decode())


def xoauth2_verdict(args, user: str, token: str) -> bool:
    try:
        info = introspect(args.xoauth2_introspect, token)
    except Exception as e:  # the authorization server is down or refuses us: not authenticated
        sys.stderr.write("XOAUTH2 introspection failed: %r\n" % e)
        return False
    if not info.get("active"):
        return False
    owner = info.get("username")
    if owner is not None and owner.lower() != user.lower():
        return False
    if args.xoauth2_scope and args.xoauth2_scope not in (info.get("scope") or "").split():
        return False
    return True


class TestSMTP(SMTP):
    greeting_delay = 0.0
    greeting_reply = None
    xoauth2_args = None
    starttls_reply = None

    async def smtp_STARTTLS(self, arg):
        if self.starttls_reply:
            await self.push(reply(self.starttls_reply))
            return
        await super().smtp_STARTTLS(arg)

    async def auth_XOAUTH2(self, _, args):
        """SASL XOAUTH2 as Microsoft 365 and Gmail speak it (see the module docs)."""
        opts = self.xoauth2_args
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = b64decode(args[1].encode(), validate=True)
            except Exception:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        fields = {}
        for part in blob.split(b"\x01"):
            key, sep, value = part.partition(b"=")
            if sep:
                fields[key.decode("utf-8", "replace").lower()] = value.decode("utf-8", "replace")
        user = fields.get("user", "")
        bearer = fields.get("auth", "")
        token = bearer[7:].strip() if bearer.lower().startswith("bearer ") else ""
        ok = bool(user and token)
        if ok:
            ok = await asyncio.get_running_loop().run_in_executor(None, xoauth2_verdict, opts, user, token)
        if ok:
            self.session.auth_mechanism = "XOAUTH2"
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        if opts.xoauth2_style == "google":
            challenge = json.dumps({"status": "401", "schemes": "Bearer", "scope": "https://mail.google.com/"})
            await self.challenge_auth(challenge)  # the client answers with an empty line
            return AuthResult(success=False, handled=False, message=GOOGLE_535)
        return AuthResult(success=False, handled=False, message=MS_535)

    def is_tls(self) -> bool:
        transport = self.transport
        if self.session is not None and self.session.ssl is not None:
            return True
        return transport is not None and transport.get_extra_info("ssl_object") is not None

    async def _handle_client(self):
        if self.greeting_delay > 0:
            await asyncio.sleep(self.greeting_delay)
        if self.greeting_reply:
            await self._refuse_session()
            return
        await super()._handle_client()

    async def _refuse_session(self):
        """A refusing greeting; every command is logged like aiosmtpd's own and answered
        503 until QUIT (221, then the connection closes)."""
        log = logging.getLogger("mail.log")
        await self.push(reply(self.greeting_reply))
        while self.transport is not None:
            try:
                line = (await self._reader.readuntil()).rstrip(b"\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            log.info("%r >> %r", self.session.peer, line)
            if line.upper() == b"QUIT":
                await self.push("221 2.0.0 Bye")
                self.transport.close()
                return
            await self.push("503 5.5.1 Bad sequence of commands")


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
    password_auth = args.auth is not None or args.auth_reply is not None or args.auth_echo
    use_auth = password_auth or args.xoauth2_introspect is not None
    offered = {m.strip().upper() for m in args.auth_mechanisms.split(",") if m.strip()} if password_auth \
        else set()
    if args.xoauth2_introspect is not None:
        offered.add("XOAUTH2")
    TestSMTP.xoauth2_args = args
    handler = Handler(args, recorder, use_auth)
    tls_context = server_context(args) if args.mode != "plain" else None
    TestSMTP.greeting_delay = args.greeting_delay
    TestSMTP.greeting_reply = args.greeting_reply
    TestSMTP.starttls_reply = args.starttls_reply

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
            auth_exclude_mechanism=[m for m in ("LOGIN", "PLAIN", "XOAUTH2") if m not in offered],
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
