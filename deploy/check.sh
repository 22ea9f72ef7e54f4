#!/usr/bin/env bash
# Checks the deployment files in deploy/ with what runs on this machine (no Docker
# engine, no cluster needed):
#
#  1. static: every YAML parses; compose services and wiring; Kubernetes manifests
#     (probes, grace periods, PodDisruptionBudget, migration Job, overlay, kustomization
#     references); Dockerfile lint; the settings named anywhere are ones Mailgate knows
#     (deploy/check_manifests.py). `kubectl kustomize` renders the base and the overlay
#     when kubectl is installed (skipped otherwise; never installed).
#     The Prometheus alert rules (`promtool check rules` and `promtool test rules` when
#     promtool is installed; a parser otherwise) and the Grafana dashboard's JSON.
#  2. the Dockerfile's dependency-caching layer resolves from the manifests alone
#     (deploy/stub-crates.sh + `cargo tree --locked --offline`), and the shell scripts parse.
#  3. runtime: builds target/debug/mailgate and runs it with the environment the k8s
#     ConfigMap + secret.example.yaml, the separate-worker overlay and compose.yaml pass
#     (database, schema, listen address, data dir and secrets substituted): the example
#     placeholders are refused; `migrate` exits 0; `serve` becomes ready, /metrics needs a
#     token, the image's HEALTHCHECK script passes, SIGTERM exits 0; `worker` exits 0 on
#     SIGTERM. Uses the local PostgreSQL (postgres://postgres@127.0.0.1:5432/test) in a
#     throw-away schema deploycheck_<random>, dropped at the end.
#
# Usage (from anywhere; works on the repository it lives in):
#   bash deploy/check.sh            # everything
#   bash deploy/check.sh --static   # steps 1-2 only (no build, no database)
# Idempotent; no network except PyPI when PyYAML is missing. Exit status 1 if a check failed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

STATIC_ONLY=false
[[ ${1:-} == --static ]] && STATIC_ONLY=true

PG_URL=${DEPLOY_CHECK_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
PG_HOST=127.0.0.1
PG_PORT=5432
PG_DB=test
PG_USER=postgres

passes=0
fails=0
skips=0
summary=()

record() { # record PASS|FAIL|SKIP "name" ["detail"]
  local status=$1 name=$2 detail=${3:-}
  local line="$status $name${detail:+: $detail}"
  echo "$line"
  summary+=("$line")
  case $status in
    PASS) passes=$((passes + 1)) ;;
    FAIL) fails=$((fails + 1)) ;;
    SKIP) skips=$((skips + 1)) ;;
  esac
}

section() { printf '\n== %s\n' "$*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/mailgate-deploycheck.XXXXXX")
started_pids=()
schema=""

cleanup() {
  local pid
  for pid in "${started_pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  if [[ -n $schema ]]; then
    psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -qtAc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

finish() {
  section "summary"
  local line
  for line in "${summary[@]}"; do
    echo "$line"
  done
  echo
  if ((fails > 0)); then
    echo "deploy check: FAIL ($fails failed, $passes passed, $skips skipped)"
    exit 1
  fi
  echo "deploy check: PASS ($passes passed, $skips skipped)"
  exit 0
}

# ---------------------------------------------------------------------- prerequisites
section "prerequisites"
if ! command -v python3 >/dev/null; then
  record FAIL "python3 is available" "install python3"
  finish
fi
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "PyYAML is missing: installing it from PyPI (pip --user)"
  python3 -m pip install --quiet --disable-pip-version-check --user pyyaml 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --user --break-system-packages pyyaml ||
    true
fi
if python3 -c 'import yaml' 2>/dev/null; then
  record PASS "PyYAML is importable"
else
  record FAIL "PyYAML is importable" "python3 -m pip install pyyaml failed"
  finish
fi

# ---------------------------------------------------------------------- 1. static checks
section "static checks (deploy/check_manifests.py)"
static_out=$work/static.txt
set +e
python3 deploy/check_manifests.py "$work/env" | tee "$static_out"
static_rc=${PIPESTATUS[0]}
set -e
while IFS= read -r line; do
  case $line in
    PASS\ * | FAIL\ * | SKIP\ *) summary+=("$line") ;;
  esac
done <"$static_out"
passes=$((passes + $(grep -c '^PASS ' "$static_out" || true)))
fails=$((fails + $(grep -c '^FAIL ' "$static_out" || true)))
skips=$((skips + $(grep -c '^SKIP ' "$static_out" || true)))
if ((static_rc != 0)) && ! grep -q '^FAIL ' "$static_out"; then
  record FAIL "deploy/check_manifests.py ran" "exit status $static_rc"
fi

# ---------------------------------------------------------------------- alerts and dashboard
section "Prometheus alert rules and the Grafana dashboard"
if command -v promtool >/dev/null; then
  if promtool check rules deploy/prometheus/alerts.yaml >"$work/promtool.txt" 2>&1; then
    record PASS "promtool check rules deploy/prometheus/alerts.yaml"
  else
    record FAIL "promtool check rules deploy/prometheus/alerts.yaml" "$(tail -n 5 "$work/promtool.txt")"
  fi
  if (cd deploy/prometheus && promtool test rules alerts.test.yaml) >"$work/promtool-test.txt" 2>&1; then
    record PASS "promtool test rules: every alert fires when it should (alerts.test.yaml)"
  else
    record FAIL "promtool test rules: every alert fires when it should (alerts.test.yaml)" "$(tail -n 20 "$work/promtool-test.txt")"
  fi
else
  # Without promtool (not installable here): parse them and check each rule's shape.
  if python3 - <<'PY'
import yaml
doc = yaml.safe_load(open("deploy/prometheus/alerts.yaml"))
rules = [r for g in doc["groups"] for r in g["rules"]]
assert rules, "no rules"
for r in rules:
    assert r.get("alert") and r.get("expr"), r
    assert r.get("labels", {}).get("severity") in ("info", "warning", "critical"), r
    assert r.get("annotations", {}).get("summary"), r
    assert r["expr"].count("(") == r["expr"].count(")"), r["alert"]
PY
  then
    record PASS "alerts.yaml parses and every rule has alert, expr, severity and summary (promtool not installed)"
  else
    record FAIL "alerts.yaml parses and every rule has alert, expr, severity and summary"
  fi
  record SKIP "promtool check/test rules" "promtool is not installed (Debian package prometheus)"
fi
if python3 - <<'PY'
import json
d = json.load(open("deploy/grafana/mailgate.json"))
assert d["uid"] and d["panels"], "uid and panels"
ids = [p["id"] for p in d["panels"]]
assert len(ids) == len(set(ids)), "panel ids are unique"
for p in d["panels"]:
    assert p["targets"] and all(t["expr"].count("(") == t["expr"].count(")") for t in p["targets"]), p["title"]
    g = p["gridPos"]
    assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
PY
then
  record PASS "the Grafana dashboard parses (unique panel ids, a query per panel, on the 24-column grid)"
else
  record FAIL "the Grafana dashboard parses (unique panel ids, a query per panel, on the 24-column grid)"
fi

# ---------------------------------------------------------------------- 2. scripts, dependency layer
section "scripts and the Dockerfile's dependency layer"
if bash -n deploy/healthcheck.sh && bash -n deploy/check.sh && sh -n deploy/stub-crates.sh; then
  record PASS "healthcheck.sh, check.sh and stub-crates.sh parse"
else
  record FAIL "healthcheck.sh, check.sh and stub-crates.sh parse"
fi
if command -v shellcheck >/dev/null; then
  if shellcheck -S warning deploy/healthcheck.sh deploy/check.sh deploy/stub-crates.sh; then
    record PASS "shellcheck (warnings and errors)"
  else
    record FAIL "shellcheck (warnings and errors)"
  fi
else
  record SKIP "shellcheck" "not installed"
fi
if [[ -x deploy/healthcheck.sh ]]; then
  record PASS "healthcheck.sh is executable (kept by COPY --chmod as well)"
else
  record FAIL "healthcheck.sh is executable" "chmod +x deploy/healthcheck.sh"
fi

recipe=$work/recipe
if sh deploy/stub-crates.sh . "$recipe"; then
  real_sources=$(find "$recipe" -name '*.rs' -size +20c | head -n 3)
  missing_stub=$(cd "$recipe" && find . -name Cargo.toml -not -path ./Cargo.toml -exec dirname {} \; |
    while read -r d; do [[ -f $d/src/lib.rs && -f $d/src/main.rs ]] || echo "$d"; done)
  if [[ -z $real_sources && -z $missing_stub ]]; then
    record PASS "stub-crates.sh: the recipe holds manifests, Cargo.lock and stubs only"
  else
    record FAIL "stub-crates.sh: the recipe holds manifests, Cargo.lock and stubs only" "real sources: ${real_sources:-none}; packages without stubs: ${missing_stub:-none}"
  fi
  # The Dockerfile's first `cargo build` runs on exactly this recipe: it must resolve
  # with --locked (Cargo.lock up to date) from the manifests alone.
  if tree_err=$(cd "$recipe" && cargo tree -p mailgate --locked --offline -e normal,build --prefix none 2>&1 >/dev/null) ||
    tree_err=$(cd "$recipe" && cargo tree -p mailgate --locked -e normal,build --prefix none 2>&1 >/dev/null); then
    record PASS "dependency layer: the stubbed workspace resolves with --locked"
  else
    record FAIL "dependency layer: the stubbed workspace resolves with --locked" "$(tail -n 3 <<<"$tree_err" | tr '\n' ' ')"
  fi
else
  record FAIL "stub-crates.sh runs"
fi

if $STATIC_ONLY; then
  record SKIP "runtime checks" "--static"
  finish
fi

# ---------------------------------------------------------------------- 3. runtime
section "runtime: build"
if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null ||
  ! psql -h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -qtAc 'select 1' >/dev/null 2>&1; then
  record FAIL "PostgreSQL reachable at $PG_URL" "start it (.ci/run does) or use --static"
  finish
fi
record PASS "PostgreSQL reachable at $PG_URL"

if cargo build -q -p mailgate; then
  record PASS "cargo build -p mailgate"
else
  record FAIL "cargo build -p mailgate"
  finish
fi
bin=${CARGO_TARGET_DIR:-target}/debug/mailgate
[[ $bin == /* ]] || bin=$PWD/$bin

schema=deploycheck_$(python3 -c 'import secrets; print(secrets.token_hex(6))')
jwt_secret=$(python3 -c 'import secrets, base64; print(base64.b64encode(secrets.token_bytes(48)).decode())')
secret_key=$(python3 -c 'import secrets, base64; print(base64.b64encode(secrets.token_bytes(32)).decode())')

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

http_code() { # http_code URL [TOKEN]
  local auth=()
  [[ -n ${2:-} ]] && auth=(-H "Authorization: Bearer $2")
  curl -s -o "$work/body" -w '%{http_code}' --max-time 5 "${auth[@]}" "$1" || true
}

# RUN_ENV: the environment of deployment $1 (deploy/check_manifests.py wrote it), with
# $2 = "local" (database, schema, listen, data dir and secrets substituted),
# "secrets-as-written" (only database/listen/data dir substituted) or
# "key-as-written" (JWT secret substituted, MAILGATE_SECRET_KEY as written).
RUN_ENV=()
PORT=0
make_env() {
  local name=$1 mode=$2 line key value
  PORT=$(free_port)
  RUN_ENV=("PATH=$PATH" "HOME=${HOME:-/tmp}")
  mkdir -p "$work/data-$name"
  while IFS= read -r line; do
    [[ -z $line ]] && continue
    key=${line%%=*}
    value=${line#*=}
    case $key in
      MAILGATE_DATABASE_URL) value=$PG_URL ;;
      MAILGATE_LISTEN) value=127.0.0.1:$PORT ;;
      MAILGATE_DATA_DIR) value=$work/data-$name ;;
      MAILGATE_JWT_SECRET) [[ $mode == secrets-as-written ]] || value=$jwt_secret ;;
      MAILGATE_SECRET_KEY) [[ $mode == local ]] && value=$secret_key ;;
    esac
    RUN_ENV+=("$key=$value")
  done <"$work/env/$name.env"
  RUN_ENV+=("MAILGATE_DATABASE_SCHEMA=$schema")
  # What Kubernetes injects into a pod without `enableServiceLinks: false` for the
  # Service `mailgate` (port 80, named http) and a Service `mailgate-metrics`: Mailgate
  # must start anyway, as on a cluster where someone dropped that line.
  if [[ $name == k8s* ]]; then
    RUN_ENV+=(
      "MAILGATE_SERVICE_HOST=10.96.0.10" "MAILGATE_SERVICE_PORT=80" "MAILGATE_SERVICE_PORT_HTTP=80"
      "MAILGATE_PORT=tcp://10.96.0.10:80" "MAILGATE_PORT_80_TCP=tcp://10.96.0.10:80"
      "MAILGATE_PORT_80_TCP_PROTO=tcp" "MAILGATE_PORT_80_TCP_PORT=80" "MAILGATE_PORT_80_TCP_ADDR=10.96.0.10"
      "MAILGATE_METRICS_SERVICE_HOST=10.96.0.11" "MAILGATE_METRICS_PORT_9090_TCP_ADDR=10.96.0.11"
    )
  fi
}

env_value() { # env_value KEY: from RUN_ENV
  local kv
  for kv in "${RUN_ENV[@]}"; do
    [[ ${kv%%=*} == "$1" ]] && {
      echo "${kv#*=}"
      return
    }
  done
}

run_fg() { # run_fg LOG ARGS...: runs mailgate in the foreground with RUN_ENV
  local log=$1
  shift
  env -i "${RUN_ENV[@]}" timeout 120 "$bin" "$@" >"$log.out" 2>"$log.err"
}

BG_PID=0
run_bg() { # run_bg LOG ARGS...
  local log=$1
  shift
  env -i "${RUN_ENV[@]}" "$bin" "$@" >"$log.out" 2>"$log.err" &
  BG_PID=$!
  started_pids+=("$BG_PID")
}

STOP_STATUS=0
stop_and_wait() { # stop_and_wait PID: SIGTERM, wait up to 40 s; sets STOP_STATUS (or "timeout")
  local pid=$1 status=0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 400); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    STOP_STATUS=timeout
    return
  fi
  wait "$pid" || status=$?
  STOP_STATUS=$status
}

log_tail() { tail -n 5 "$1" 2>/dev/null | tr '\n' ' ' | cut -c1-400; }

check_placeholders() { # the example secrets must not start a server
  local name=$1 label=$2 log=$work/$1-placeholder
  make_env "$name" secrets-as-written
  if run_fg "$log-jwt" token --role operator; then
    record FAIL "$label: example placeholders are refused" "mailgate accepted MAILGATE_JWT_SECRET=REPLACE_ME"
    return
  fi
  make_env "$name" key-as-written
  if run_fg "$log-key" token --role operator; then
    record FAIL "$label: example placeholders are refused" "mailgate accepted MAILGATE_SECRET_KEY=REPLACE_ME"
    return
  fi
  if grep -q MAILGATE_JWT_SECRET "$log-jwt.err" && grep -q MAILGATE_SECRET_KEY "$log-key.err"; then
    record PASS "$label: example placeholders are refused, naming the setting"
  else
    record FAIL "$label: example placeholders are refused, naming the setting" "$(log_tail "$log-jwt.err") / $(log_tail "$log-key.err")"
  fi
}

check_typo_refused() { # a real typo next to the service links still stops the start, named
  local name=$1 label=$2 log=$work/$1-typo
  make_env "$name" local
  RUN_ENV+=("MAILGATE_LISTN=0.0.0.0:8080")
  if run_fg "$log" token --role operator; then
    record FAIL "$label: an unknown MAILGATE_* setting is still refused" "mailgate accepted MAILGATE_LISTN"
  elif grep -q "MAILGATE_LISTN" "$log.err" && ! grep -q "MAILGATE_PORT" "$log.err"; then
    record PASS "$label: an unknown MAILGATE_* setting is still refused, named (service links are not)"
  else
    record FAIL "$label: an unknown MAILGATE_* setting is still refused, named (service links are not)" "$(log_tail "$log.err")"
  fi
}

check_migrate() {
  local name=$1 label=$2 log=$work/$1-migrate
  make_env "$name" local
  if run_fg "$log" migrate; then
    record PASS "$label: \`mailgate migrate\` exits 0" "$(tr '\n' ' ' <"$log.out")"
  else
    record FAIL "$label: \`mailgate migrate\` exits 0" "$(log_tail "$log.err")"
  fi
}

check_serve() {
  local name=$1 label=$2 log=$work/$1-serve code token ready=false status
  make_env "$name" local
  local base=http://127.0.0.1:$PORT
  run_bg "$log" serve
  local pid=$BG_PID
  for _ in $(seq 1 600); do
    if ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
    code=$(http_code "$base/readyz")
    if [[ $code == 200 ]]; then
      ready=true
      break
    fi
    sleep 0.1
  done
  if ! $ready; then
    record FAIL "$label: \`mailgate serve\` answers /readyz 200" "$(log_tail "$log.err")"
    kill -KILL "$pid" 2>/dev/null || true
    return
  fi
  record PASS "$label: \`mailgate serve\` answers /readyz 200"
  if [[ $name == k8s* ]]; then
    if grep -q "ignoring Kubernetes service-link variables" "$log.err"; then
      record PASS "$label: Kubernetes service-link variables (MAILGATE_PORT, …) are ignored with a log line"
    else
      record FAIL "$label: Kubernetes service-link variables (MAILGATE_PORT, …) are ignored with a log line" "$(log_tail "$log.err")"
    fi
  fi

  code=$(http_code "$base/healthz")
  [[ $code == 200 ]] && record PASS "$label: /healthz 200" || record FAIL "$label: /healthz 200" "got $code"

  if env -i PATH="$PATH" MAILGATE_LISTEN="$(env_value MAILGATE_LISTEN)" bash deploy/healthcheck.sh "$pid"; then
    record PASS "$label: the image's HEALTHCHECK script reports healthy"
  else
    record FAIL "$label: the image's HEALTHCHECK script reports healthy"
  fi

  code=$(http_code "$base/metrics")
  [[ $code == 401 ]] && record PASS "$label: /metrics without a token is 401" || record FAIL "$label: /metrics without a token is 401" "got $code"

  if token=$(env -i "${RUN_ENV[@]}" "$bin" token --role operator --ttl 365d --subject prometheus 2>"$log-token.err"); then
    code=$(http_code "$base/metrics" "$token")
    if [[ $code == 200 ]] && grep -q '^# TYPE mailgate_deliveries' "$work/body"; then
      record PASS "$label: /metrics with a 365d operator token (mailgate token) is 200"
    else
      record FAIL "$label: /metrics with a 365d operator token is 200" "got $code"
    fi
  else
    record FAIL "$label: \`mailgate token --role operator --ttl 365d\`" "$(log_tail "$log-token.err")"
  fi

  if [[ $(env_value MAILGATE_LOG_FORMAT) == json ]]; then
    if python3 -c 'import json, sys
lines = [l for l in open(sys.argv[1]) if l.strip()]
assert lines
for l in lines:
    json.loads(l)' "$log.err" 2>/dev/null; then
      record PASS "$label: logs are JSON lines (MAILGATE_LOG_FORMAT=json)"
    else
      record FAIL "$label: logs are JSON lines" "$(head -c 300 "$log.err")"
    fi
  fi

  stop_and_wait "$pid"
  status=$STOP_STATUS
  if [[ $status == 0 ]]; then
    record PASS "$label: SIGTERM stops \`serve\` with exit 0"
  else
    record FAIL "$label: SIGTERM stops \`serve\` with exit 0" "exit $status; $(log_tail "$log.err")"
  fi
  if env -i PATH="$PATH" MAILGATE_LISTEN="$(env_value MAILGATE_LISTEN)" bash deploy/healthcheck.sh "$pid" 2>/dev/null; then
    record FAIL "$label: the HEALTHCHECK script reports a stopped server unhealthy"
  else
    record PASS "$label: the HEALTHCHECK script reports a stopped server unhealthy"
  fi
}

check_worker() {
  local name=$1 label=$2 log=$work/$1-worker status
  make_env "$name" local
  run_bg "$log" worker
  local pid=$BG_PID
  sleep 2
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" && status=0 || status=$?
    record FAIL "$label: \`mailgate worker\` runs until SIGTERM" "exited early with $status: $(log_tail "$log.err")"
    return
  fi
  if env -i PATH="$PATH" MAILGATE_WORKER_LISTEN="$(env_value MAILGATE_WORKER_LISTEN)" bash deploy/healthcheck.sh "$pid"; then
    record PASS "$label: the HEALTHCHECK script reports a running worker healthy (GET /healthz on MAILGATE_WORKER_LISTEN)"
  else
    record FAIL "$label: the HEALTHCHECK script reports a running worker healthy (GET /healthz on MAILGATE_WORKER_LISTEN)"
  fi
  stop_and_wait "$pid"
  status=$STOP_STATUS
  if [[ $status == 0 ]]; then
    record PASS "$label: \`mailgate worker\` runs, SIGTERM after 2 s exits 0"
  else
    record FAIL "$label: \`mailgate worker\` runs, SIGTERM after 2 s exits 0" "exit $status; $(log_tail "$log.err")"
  fi
  if env -i PATH="$PATH" MAILGATE_WORKER_LISTEN="$(env_value MAILGATE_WORKER_LISTEN)" bash deploy/healthcheck.sh "$pid" 2>/dev/null; then
    record FAIL "$label: the HEALTHCHECK script reports a stopped worker unhealthy"
  else
    record PASS "$label: the HEALTHCHECK script reports a stopped worker unhealthy"
  fi
}

if [[ ! -f $work/env/k8s.env || ! -f $work/env/compose.env ]]; then
  record FAIL "runtime environments were written by the static checks"
  finish
fi

section "runtime: Kubernetes settings (ConfigMap + secret.example.yaml), schema $schema"
check_placeholders k8s "k8s"
check_typo_refused k8s "k8s"
check_migrate k8s "k8s Job"
check_migrate k8s "k8s Job (run again: nothing pending)"
check_serve k8s "k8s Deployment"
check_worker k8s "k8s (in-process worker settings)"

section "runtime: Kubernetes overlay separate-worker"
check_serve k8s-web-separate "overlay web (MAILGATE_WORKER_ENABLED=false)"
check_worker k8s-worker "overlay mailgate-worker"

section "runtime: compose settings (compose.yaml + compose.env.example)"
check_placeholders compose "compose"
check_migrate compose "compose migrate"
check_serve compose "compose mailgate-1"
check_worker compose "compose (worker command)"

finish
