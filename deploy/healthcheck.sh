#!/bin/bash
# Container HEALTHCHECK for the Mailgate image (installed as /usr/local/bin/mailgate-healthcheck).
#
# `mailgate serve`: GET /healthz on the port of MAILGATE_LISTEN, healthy on "200";
# `mailgate worker`: the same on MAILGATE_WORKER_LISTEN (default 127.0.0.1:9091), where
# the worker answers /healthz. The runtime image has no curl, so this speaks HTTP over
# bash's /dev/tcp. One-shot commands (`migrate`, `token`, ...) are healthy while their
# process runs. The check looks at the arguments of the container's main process.
#
# Usage: mailgate-healthcheck [PID]   (PID of the mailgate process; default 1)
# Exit 0 = healthy, 1 = unhealthy. Reads no MAILGATE_* variable other than MAILGATE_LISTEN
# and MAILGATE_WORKER_LISTEN.
set -u

pid=${1:-1}
listen=${MAILGATE_LISTEN:-127.0.0.1:8080}
if [[ -r /proc/$pid/cmdline ]]; then
  mapfile -d '' -t args <"/proc/$pid/cmdline"
  for arg in "${args[@]:1}"; do
    case $arg in
      worker) listen=${MAILGATE_WORKER_LISTEN:-127.0.0.1:9091} ;;
      migrate | rotate-secret-key | token | print-schema) exit 0 ;;
    esac
  done
elif ! kill -0 "$pid" 2>/dev/null; then
  echo "unhealthy: no process $pid" >&2
  exit 1
fi

port=${listen##*:}
host=${listen%:*}
host=${host#[}
host=${host%]}
case $host in
  0.0.0.0 | '' | '*') host=127.0.0.1 ;;
  :: | ::0) host=::1 ;;
esac

if ! exec 3<>"/dev/tcp/$host/$port"; then
  echo "unhealthy: cannot connect to $host:$port" >&2
  exit 1
fi
printf 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: mailgate-healthcheck\r\nConnection: close\r\n\r\n' >&3
status=
IFS= read -r -t 4 status <&3 || true
exec 3<&- 3>&-
status=${status%$'\r'}
if [[ $status =~ ^HTTP/1\.[01]\ 200 ]]; then
  exit 0
fi
echo "unhealthy: GET /healthz answered ${status:-nothing}" >&2
exit 1
