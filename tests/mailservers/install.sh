#!/usr/bin/env bash
# Installs the real mail servers that the tests start on loopback (crates/testkit/src/servers):
#   - aiosmtpd (SMTP), trustme (test CA), dnslib (DNS), authlib and flask (OAuth 2.0),
#     graphql-core and standardwebhooks (the webhook verifier), pinned in requirements.txt,
#     from PyPI, into the python3 on PATH (or $MAILGATE_TEST_PYTHON);
#   - Dovecot's POP3 server (Debian package dovecot-pop3d), only if it is missing.
# Idempotent; run as root (apt-get). Starts no system-wide service: each test runs its own
# private instance (smtp_server.py, pop3_dovecot.py).
# dns_server.py is an authoritative DNS server (dnslib) for fixture zones, on UDP and TCP.
# https_server.py is a static HTTPS/HTTP server (standard library only) for autoconfig files.
# webhook_receiver.py receives webhooks and verifies each with standardwebhooks.
# otlp_receiver.py receives OTLP/HTTP traces and decodes them with opentelemetry-proto.
# oauth_server.py is an OAuth 2.0 authorization server (Authlib on Flask) standing in for
#   Microsoft Entra ID / Google: PKCE code flow, refresh with rotation, client credentials,
#   JWT bearer (RFC 7523), introspection, revocation, plus control endpoints for the tests.
# make_jwt_key.py writes a throw-away RSA key pair for JWT-bearer assertions (cryptography).
# mail_api_server.py fakes Microsoft Graph sendMail and Gmail messages/send (standard library),
#   checking bearer tokens by introspection at oauth_server.py.
# smtp_server.py --xoauth2-introspect URL offers AUTH XOAUTH2 checked the same way.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${MAILGATE_TEST_PYTHON:-python3}"
DOVECOT=/usr/sbin/dovecot

bash "$here/../pip-pinned.sh" "$here/requirements.txt"

if ! [ -x "$DOVECOT" ] || ! [ -x /usr/lib/dovecot/pop3 ] || ! [ -x /usr/lib/dovecot/pop3-login ]; then
  echo "installing dovecot-pop3d from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Keep the maintainer scripts from starting the system-wide service (the tests start
  # private instances); a policy-rc.d that is already there is left alone.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
  fi
  status=0
  apt-get install -y -qq --no-install-recommends dovecot-core dovecot-pop3d >/dev/null || status=$?
  if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
  if [ "$status" != 0 ]; then exit "$status"; fi
  # If an init system started it anyway, stop the system-wide instance (it is not ours
  # to use, and it would hold ports 110/995).
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet dovecot 2>/dev/null; then
    systemctl stop dovecot || true
    systemctl disable dovecot >/dev/null 2>&1 || true
  fi
fi

# What the tests rely on.
"$PYTHON" -c 'from importlib.metadata import version; print("aiosmtpd", version("aiosmtpd"), "| trustme", version("trustme"), "| dnslib", version("dnslib"), "| authlib", version("authlib"), "| flask", version("flask"))'
echo "dovecot $("$DOVECOT" --version)"
getent passwd dovecot >/dev/null
getent passwd dovenull >/dev/null
getent passwd nobody >/dev/null
