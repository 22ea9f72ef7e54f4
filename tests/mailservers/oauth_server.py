#!/usr/bin/env python3
"""A real OAuth 2.0 authorization server (Authlib on Flask) for Mailgate's tests, standing in
for Microsoft Entra ID and Google's token endpoint. Nothing here ever talks to them.

Binds 127.0.0.1 (port 0 = any free port) and prints `READY <port> <control port>` on stdout
once it listens. Without --tls both numbers are the same port (plain HTTP); with --tls the
first port is HTTPS (--cert/--key, e.g. from make_certs.py) and the second is a plain-HTTP
listener on 127.0.0.1 that serves the same endpoints, for the test harness and for the
introspecting fakes (smtp_server.py, mail_api_server.py), which do not need the CA then.

Endpoints:
  GET  /authorize    authorization code with PKCE (S256 only, required for every client);
                     approves at once as the configured user (--user, or /control/settings),
                     or, with --deny consent_required|access_denied, redirects back with that
                     error; redirects to the client's registered redirect URI with code/state.
  POST /token        authorization_code (checks the PKCE verifier), refresh_token (rotation:
                     every refresh returns a new refresh token and revokes the old one, so
                     reuse answers invalid_grant), client_credentials, and the JWT bearer
                     grant (RFC 7523: an RS256 assertion by a configured public key, `aud` =
                     this server's /token URL, `sub` = the mailbox, `scope` in the claims or
                     the form: Google's domain-wide delegation). Access tokens live --token-ttl
                     seconds. --refresh-fails makes every refresh answer invalid_grant with
                     Microsoft's `AADSTS700082: ...` description.
  POST /introspect   RFC 7662 (client authentication required; answers `username` = mailbox).
  POST /revoke       RFC 7009 (a refresh token revokes its access token too; an access token
                     only itself).
  Control (tests only):
  GET  /control/tokens            every token issued: access/refresh token, user, client, ...
  POST /control/revoke-user       form user=MAILBOX: revoke all of that user's tokens
  POST /control/settings          JSON {"user", "deny", "refresh_fails", "token_ttl"} (any subset)
  POST /control/clients           JSON client (as in --clients) added or replaced

Clients (--clients FILE): a JSON list of
  {"client_id": "...", "client_secret": "..." (omit for a public client),
   "redirect_uris": ["http://127.0.0.1:1234/cb", ...], "jwt_public_key": "/path/key.pem"
   (a JWT-bearer issuer: its `iss` is the client_id), "introspect": true (may introspect)}
A redirect URI on 127.0.0.1 or localhost with port 0 matches any port (RFC 8252 7.3).

Request log (--log FILE): one JSON object per request, appended and flushed after the answer:
  {"at", "method", "path", "status", "grant_type", "client_id", "scope", "user", "error",
   "error_description"} - never a secret, code, verifier, assertion or token.
"""
import argparse
import base64
import json
import os
import secrets
import select
import signal
import ssl
import sys
import threading
import time
import urllib.parse

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, OAuth2Error
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerGrant as _JWTBearerGrant
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _IntrospectionEndpoint
from flask import Flask, jsonify, redirect, request
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

AADSTS700082 = ("AADSTS700082: The refresh token has expired due to inactivity. The token was "
                "issued on a date and was inactive for 90.00:00:00.")
DENIALS = ("consent_required", "access_denied")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0 picks a free one")
    p.add_argument("--tls", action="store_true", help="serve HTTPS (needs --cert/--key) plus a plain control port")
    p.add_argument("--cert", help="server certificate chain (PEM), for --tls")
    p.add_argument("--key", help="server private key (PEM), for --tls")
    p.add_argument("--clients", metavar="FILE", help="registered clients (JSON list, see above)")
    p.add_argument("--user", default="alice@contoso.example", help="the mailbox that signs in at /authorize")
    p.add_argument("--deny", choices=DENIALS, help="answer every /authorize with this error")
    p.add_argument("--token-ttl", type=int, default=3600, metavar="SECONDS", help="access-token lifetime")
    p.add_argument("--refresh-fails", action="store_true",
                   help="every refresh answers invalid_grant (AADSTS700082)")
    p.add_argument("--log", metavar="FILE", help="append one JSON line per request")
    p.add_argument("--watch-stdin", action="store_true",
                   help="exit when standard input reaches EOF (the parent test process died)")
    args = p.parse_args(argv)
    if args.tls and not (args.cert and args.key):
        p.error("--tls needs --cert and --key")
    return args


# ---------------------------------------------------------------------------------------
# Models (in memory; one lock serialises every state change)
# ---------------------------------------------------------------------------------------

LOCK = threading.RLock()


class Client:
    def __init__(self, d):
        self.client_id = d["client_id"]
        self.client_secret = d.get("client_secret")
        self.redirect_uris = list(d.get("redirect_uris", []))
        self.jwt_public_key = d.get("jwt_public_key")
        self.introspect = bool(d.get("introspect", False))

    # ClientMixin
    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope):
        return scope or ""

    def check_redirect_uri(self, redirect_uri):
        for registered in self.redirect_uris:
            if redirect_uri == registered:
                return True
            a, b = urllib.parse.urlsplit(registered), urllib.parse.urlsplit(redirect_uri)
            if (a.hostname in ("127.0.0.1", "localhost") and a.port == 0 and a.scheme == b.scheme
                    and a.hostname == b.hostname and a.path == b.path and a.query == b.query):
                return True
        return False

    def check_client_secret(self, client_secret):
        return self.client_secret is not None and secrets.compare_digest(self.client_secret, client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        if self.client_secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        if grant_type == JWTBearerGrant.GRANT_TYPE:
            return self.jwt_public_key is not None
        if grant_type == "client_credentials":
            return self.client_secret is not None
        return True


class AuthCode:
    def __init__(self, code, client_id, redirect_uri, scope, user, challenge, method):
        self.code, self.client_id, self.redirect_uri, self.scope = code, client_id, redirect_uri, scope
        self.user, self.code_challenge, self.code_challenge_method = user, challenge, method
        self.issued_at = time.time()

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def is_expired(self):
        return time.time() - self.issued_at > 600


class Token:
    def __init__(self, d, client_id, user, grant_type):
        self.access_token = d["access_token"]
        self.refresh_token = d.get("refresh_token")
        self.scope = d.get("scope", "")
        self.expires_in = int(d.get("expires_in", 0))
        self.issued_at = int(time.time())
        self.client_id, self.user, self.grant_type = client_id, user, grant_type
        self.access_revoked = False
        self.refresh_revoked = False

    # TokenMixin
    def check_client(self, client):
        return self.client_id == client.get_client_id()

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return self.expires_in

    def is_expired(self):
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self):
        return self.access_revoked

    def get_user(self):
        return self.user

    def get_client(self):
        return STATE.clients.get(self.client_id)

    def as_dict(self):
        return {"access_token": self.access_token, "refresh_token": self.refresh_token, "scope": self.scope,
                "user": self.user, "client_id": self.client_id, "grant_type": self.grant_type,
                "issued_at": self.issued_at, "expires_in": self.expires_in,
                "access_revoked": self.access_revoked, "refresh_revoked": self.refresh_revoked,
                "active": not (self.access_revoked or self.is_expired())}


class State:
    def __init__(self):
        self.clients = {}
        self.codes = {}
        self.tokens = []  # in order of issue
        self.by_access = {}
        self.by_refresh = {}
        self.user = None
        self.deny = None
        self.token_ttl = 3600
        self.refresh_fails = False
        self.token_url = None


STATE = State()


def save_token(token, req):
    grant_type = req.payload.grant_type if req.payload else None
    user = req.user
    t = Token(token, req.client.get_client_id(), user, grant_type)
    with LOCK:
        STATE.tokens.append(t)
        STATE.by_access[t.access_token] = t
        if t.refresh_token:
            STATE.by_refresh[t.refresh_token] = t


# ---------------------------------------------------------------------------------------
# Grants and endpoints
# ---------------------------------------------------------------------------------------

class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def save_authorization_code(self, code, req):
        c = AuthCode(code, req.client.get_client_id(), req.payload.redirect_uri, req.payload.scope or "",
                     req.user, req.payload.data.get("code_challenge"),
                     req.payload.data.get("code_challenge_method"))
        with LOCK:
            STATE.codes[code] = c

    def query_authorization_code(self, code, client):
        with LOCK:
            c = STATE.codes.get(code)
        if c and c.client_id == client.get_client_id() and not c.is_expired():
            return c
        return None

    def delete_authorization_code(self, authorization_code):
        with LOCK:
            STATE.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code):
        return authorization_code.user


class S256Only(CodeChallenge):
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def get_authorization_code_challenge(self, authorization_code):
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code):
        return authorization_code.code_challenge_method


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token):
        if STATE.refresh_fails:
            raise InvalidGrantError(description=AADSTS700082)
        t = STATE.by_refresh.get(refresh_token)
        if t is None or t.refresh_revoked:
            return None
        return t

    def authenticate_user(self, refresh_token):
        return refresh_token.user

    def revoke_old_credential(self, refresh_token):
        refresh_token.refresh_revoked = True


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class JWTBearerGrant(_JWTBearerGrant):
    def resolve_issuer_client(self, issuer):
        c = STATE.clients.get(issuer)
        return c if c is not None and c.jwt_public_key else None

    def resolve_client_public_key(self, client):
        with open(client.jwt_public_key, "rb") as f:
            return RSAKey.import_key(f.read())

    def authenticate_user(self, subject):
        return subject if "@" in subject else None

    def has_granted_permission(self, client, user):
        return True

    def get_audiences(self):
        return [STATE.token_url]

    def process_assertion_claims(self, assertion):
        claims = super().process_assertion_claims(assertion)
        self.assertion_scope = claims.get("scope")
        return claims

    def create_token_response(self):
        scope = self.request.payload.scope or getattr(self, "assertion_scope", None)
        token = self.generate_token(scope=scope, user=self.request.user, include_refresh_token=False)
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class IntrospectionEndpoint(_IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string, token_type_hint):
        with LOCK:
            t = STATE.by_access.get(token_string)
            if t is None and token_type_hint != "access_token":
                r = STATE.by_refresh.get(token_string)
                if r is not None:
                    return RefreshView(r)
        return t

    def check_permission(self, token, client, req):
        return client.introspect or token.client_id == client.get_client_id()

    def introspect_token(self, token):
        out = {"active": True, "client_id": token.client_id, "token_type": "Bearer", "scope": token.scope,
               "iat": token.issued_at, "iss": STATE.token_url.rsplit("/", 1)[0]}
        if getattr(token, "expires_in", 0):
            out["exp"] = token.issued_at + token.expires_in
        if token.user:
            out["username"] = token.user
            out["sub"] = token.user
        return out


class RefreshView:
    """A refresh token seen by introspection: active until used (rotation) or revoked."""

    def __init__(self, t):
        self.t = t
        self.client_id, self.user, self.scope, self.issued_at = t.client_id, t.user, t.scope, t.issued_at
        self.expires_in = 0

    def is_expired(self):
        return False

    def is_revoked(self):
        return self.t.refresh_revoked


class RevocationEndpoint_(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def query_token(self, token_string, token_type_hint):
        with LOCK:
            return STATE.by_access.get(token_string) or STATE.by_refresh.get(token_string)

    def revoke_token(self, token, req):
        # RFC 7009 2.1: revoking a refresh token ends its access token too; revoking an
        # access token (as when it expired) leaves the refresh token usable.
        with LOCK:
            token.access_revoked = True
            if request.form.get("token") != token.access_token:
                token.refresh_revoked = True


def token_generator():
    def expires(client, grant_type):
        return STATE.token_ttl

    def access(**_):
        return "at-" + secrets.token_urlsafe(30)

    def refresh(**_):
        return "rt-" + secrets.token_urlsafe(36)

    return IdTokenGenerator(access, refresh, expires)


def unsigned_jwt(claims):
    """A JWT with `alg: none`: Mailgate reads the ID token it got straight from the token
    endpoint without checking a signature (OpenID Connect Core 3.1.3.7 (6))."""
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return part({"alg": "none", "typ": "JWT"}) + "." + part(claims) + "."


class IdTokenGenerator(BearerTokenGenerator):
    """Adds an OpenID Connect ID token naming the signed-in user (`email`,
    `preferred_username`, Microsoft's `tid`/`oid`) when `openid` was granted."""

    def generate(self, grant_type, client, user=None, scope=None, expires_in=None, include_refresh_token=True):
        token = super().generate(grant_type, client, user=user, scope=scope, expires_in=expires_in,
                                 include_refresh_token=include_refresh_token)
        if user and scope and "openid" in scope.split():
            now = int(time.time())
            token["id_token"] = unsigned_jwt({
                "iss": STATE.token_url or "http://127.0.0.1/", "aud": client.get_client_id(), "sub": "sub-" + user,
                "email": user, "preferred_username": user, "tid": "00000000-0000-0000-0000-00000000c0de",
                "oid": "oid-" + user, "iat": now, "exp": now + 3600})
        return token


# ---------------------------------------------------------------------------------------
# Flask app
# ---------------------------------------------------------------------------------------

def create_app(args, log):
    app = Flask("oauth_server")
    server = AuthorizationServer(app, query_client=lambda cid: STATE.clients.get(cid), save_token=save_token)
    server.register_token_generator("default", token_generator())
    server.register_grant(AuthorizationCodeGrant, [S256Only(required=True)])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_grant(JWTBearerGrant)
    server.register_endpoint(IntrospectionEndpoint)
    server.register_endpoint(RevocationEndpoint_)

    def error_redirect(uri, error, description, state):
        q = {"error": error, "error_description": description}
        if state is not None:
            q["state"] = state
        sep = "&" if "?" in uri else "?"
        return redirect(uri + sep + urllib.parse.urlencode(q))

    @app.get("/authorize")
    def authorize():
        try:
            grant = server.get_consent_grant(end_user=STATE.user)
        except OAuth2Error as error:
            return server.handle_error_response(None, error)
        uri = grant.redirect_uri or grant.client.get_default_redirect_uri()
        state = request.args.get("state")
        if request.args.get("code_challenge_method") != "S256" or not request.args.get("code_challenge"):
            return error_redirect(uri, "invalid_request", "PKCE with code_challenge_method=S256 is required",
                                  state)
        if STATE.deny == "consent_required":
            return error_redirect(uri, "consent_required",
                                  "AADSTS65001: The user or administrator has not consented to use the "
                                  "application.", state)
        if STATE.deny == "access_denied":
            return error_redirect(uri, "access_denied", "The user has denied access to the scope requested "
                                  "by the client application.", state)
        return server.create_authorization_response(grant=grant, grant_user=STATE.user)

    @app.post("/token")
    def token():
        with LOCK:
            return server.create_token_response()

    @app.post("/introspect")
    def introspect():
        with LOCK:
            return server.create_endpoint_response(IntrospectionEndpoint.ENDPOINT_NAME)

    @app.post("/revoke")
    def revoke():
        with LOCK:
            return server.create_endpoint_response(RevocationEndpoint_.ENDPOINT_NAME)

    @app.get("/control/tokens")
    def control_tokens():
        with LOCK:
            return jsonify([t.as_dict() for t in STATE.tokens])

    @app.post("/control/revoke-user")
    def control_revoke_user():
        user = (request.form.get("user") or "").lower()
        n = 0
        with LOCK:
            for t in STATE.tokens:
                if t.user and t.user.lower() == user:
                    t.access_revoked = t.refresh_revoked = True
                    n += 1
        return jsonify({"revoked": n})

    @app.post("/control/settings")
    def control_settings():
        body = request.get_json(force=True) or {}
        with LOCK:
            if "user" in body:
                STATE.user = body["user"]
            if "deny" in body:
                if body["deny"] not in (None,) + DENIALS:
                    return jsonify({"error": "bad deny"}), 400
                STATE.deny = body["deny"]
            if "refresh_fails" in body:
                STATE.refresh_fails = bool(body["refresh_fails"])
            if "token_ttl" in body:
                STATE.token_ttl = int(body["token_ttl"])
            return jsonify({"user": STATE.user, "deny": STATE.deny, "refresh_fails": STATE.refresh_fails,
                            "token_ttl": STATE.token_ttl})

    @app.post("/control/clients")
    def control_clients():
        c = Client(request.get_json(force=True))
        with LOCK:
            STATE.clients[c.client_id] = c
        return jsonify({"client_id": c.client_id})

    @app.after_request
    def record(response):
        if log is None:
            return response
        form = request.form if request.method == "POST" else request.args
        client_id = form.get("client_id")
        auth = request.headers.get("Authorization", "")
        if not client_id and auth.lower().startswith("basic "):
            try:
                client_id = urllib.parse.unquote(base64.b64decode(auth[6:]).decode().split(":", 1)[0])
            except (ValueError, UnicodeDecodeError):
                client_id = None
        error = description = user = None
        if response.is_json:
            body = response.get_json(silent=True) or {}
            if isinstance(body, dict):
                error, description = body.get("error"), body.get("error_description")
                user = body.get("username")
        elif response.status_code in (301, 302, 303):
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(response.headers.get("Location", "")).query)
            error = (q.get("error") or [None])[0]
            description = (q.get("error_description") or [None])[0]
        if request.path == "/authorize" and error is None and response.status_code == 302:
            user = STATE.user
        entry = {"at": time.time(), "method": request.method, "path": request.path,
                 "status": response.status_code, "grant_type": form.get("grant_type"),
                 "client_id": client_id, "scope": form.get("scope"), "user": user, "error": error,
                 "error_description": description}
        with LOCK:
            log.write(json.dumps(entry) + "\n")
            log.flush()
        return response

    return app


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
    if args.clients:
        with open(args.clients, encoding="utf-8") as f:
            for d in json.load(f):
                c = Client(d)
                STATE.clients[c.client_id] = c
    STATE.user, STATE.deny = args.user, args.deny
    STATE.token_ttl, STATE.refresh_fails = args.token_ttl, args.refresh_fails
    log = open(args.log, "a", encoding="utf-8") if args.log else None
    app = create_app(args, log)
    ctx = None
    if args.tls:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
    servers = [make_server("127.0.0.1", args.port, app, threaded=True, ssl_context=ctx)]
    if args.tls:
        servers.append(make_server("127.0.0.1", 0, app, threaded=True))
    port = servers[0].server_port
    control = servers[-1].server_port
    STATE.token_url = "%s://127.0.0.1:%d/token" % ("https" if args.tls else "http", port)
    for s in servers:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    print("READY %d %d" % (port, control), flush=True)
    wait_for_stop(args.watch_stdin)
    for s in servers:
        s.shutdown()


if __name__ == "__main__":
    main(parse_args())
