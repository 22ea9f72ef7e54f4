#!/usr/bin/env python3
"""Static checks of deploy/ (run by deploy/check.sh from the repository root).

Prints one `PASS <check>` or `FAIL <check>: <why>` line per check (and `SKIP ...` for
checks whose tool is missing), and writes the environment each deployment passes to
Mailgate into OUT_DIR (`k8s.env`, `k8s-worker.env`, `compose.env`, `image.env`: one
KEY=VALUE per line, placeholders kept) for the runtime checks. Exit status 1 if any
check failed.

Usage: python3 deploy/check_manifests.py OUT_DIR
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path.cwd()
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else None

results: list[tuple[str, str, str]] = []


def report(ok: bool | None, name: str, detail: str = "") -> None:
    status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
    results.append((status, name, detail))
    line = f"{status} {name}"
    if detail:
        line += f": {detail}"
    print(line, flush=True)


def check(name: str):
    """Decorator: runs the function now; AssertionError or any exception = FAIL."""

    def run(fn):
        try:
            detail = fn()
            report(True, name, detail if isinstance(detail, str) else "")
        except SkipCheck as s:
            report(None, name, str(s))
        except AssertionError as e:
            report(False, name, str(e) or "assertion failed")
        except Exception as e:  # noqa: BLE001 - any problem is a failed check
            report(False, name, f"{type(e).__name__}: {e}")
        return fn

    return run


class SkipCheck(Exception):
    pass


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


# --------------------------------------------------------------------------- loading

yaml_files = sorted(
    p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml")
)
docs_by_file: dict[Path, list] = {}


@check("every YAML file under deploy/ parses (multi-document)")
def _parse():
    problems = []
    count = 0
    for p in yaml_files:
        try:
            docs = [d for d in yaml.safe_load_all(p.read_text()) if d is not None]
            docs_by_file[p] = docs
            count += len(docs)
        except yaml.YAMLError as e:
            problems.append(f"{rel(p)}: {e}")
    assert not problems, "; ".join(problems)
    return f"{len(yaml_files)} files, {count} documents"


SETTINGS_RS = "crates/mailgate/src/config/settings.rs"


def known_settings() -> set[str]:
    """MAILGATE_* names Mailgate accepts: the settings declared in `settings!` (the
    `pub struct Config { … }` block of config/settings.rs; its `derived` block is worked
    out at start and read from nowhere), plus the variables it reads outside the struct
    (MAILGATE_CONFIG, MAILGATE_LOG)."""
    text = (ROOT / SETTINGS_RS).read_text()
    m = re.search(r"pub struct Config \{(.*?)\n    \}\n", text, re.S)
    assert m, f"cannot find `pub struct Config` in {SETTINGS_RS}"
    fields = re.findall(r"^\s*pub (\w+):", m.group(1), re.M)
    assert fields, "no fields found in Config"
    return {f"MAILGATE_{f.upper()}" for f in fields} | {"MAILGATE_CONFIG", "MAILGATE_LOG"}


KNOWN: set[str] = set()


@check(f"the list of Mailgate settings is readable from {SETTINGS_RS}")
def _known():
    KNOWN.update(known_settings())
    return f"{len(KNOWN)} settings"


def unknown_keys(keys) -> list[str]:
    return sorted(k for k in keys if k.startswith("MAILGATE_") and KNOWN and k not in KNOWN)


# --------------------------------------------------------------------------- compose

compose = (docs_by_file.get(DEPLOY / "compose.yaml") or [{}])[0]
services = compose.get("services", {}) if isinstance(compose, dict) else {}


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip()
    return out


@check("compose.yaml has services postgres, mailpit, migrate, mailgate-1, mailgate-2")
def _compose_services():
    want = {"postgres", "mailpit", "migrate", "mailgate-1", "mailgate-2"}
    missing = want - set(services)
    assert not missing, f"missing {sorted(missing)}"


@check("compose: postgres:16 with a healthcheck; mailpit with SMTP 1025 and UI 8025")
def _compose_infra():
    pg = services["postgres"]
    assert str(pg.get("image", "")).startswith("postgres:16"), f"postgres image is {pg.get('image')}"
    assert "pg_isready" in json.dumps(pg.get("healthcheck", {})), "postgres healthcheck does not use pg_isready"
    mp = services["mailpit"]
    assert str(mp.get("image", "")).startswith("axllent/mailpit"), f"mailpit image is {mp.get('image')}"
    ports = " ".join(str(p) for p in mp.get("ports", []))
    assert "8025" in ports and "1025" in ports, f"mailpit ports are {ports}"


@check("compose: migrate runs `mailgate migrate` once, after postgres is healthy")
def _compose_migrate():
    m = services["migrate"]
    assert m.get("command") in (["migrate"], "migrate"), f"command is {m.get('command')}"
    assert str(m.get("restart", "no")) == "no", "migrate must not restart"
    dep = (m.get("depends_on") or {}).get("postgres", {})
    assert dep.get("condition") == "service_healthy", f"depends_on postgres: {dep}"


@check("compose: mailgate-1/-2 wait for migrate, no auto-migrate, mailpit relay, ports 8081/8082")
def _compose_replicas():
    for name, port in (("mailgate-1", "8081"), ("mailgate-2", "8082")):
        s = services[name]
        dep = (s.get("depends_on") or {}).get("migrate", {})
        assert dep.get("condition") == "service_completed_successfully", f"{name} depends_on migrate: {dep}"
        env = env_of(s)
        assert env.get("MAILGATE_AUTO_MIGRATE") == "false", f"{name}: MAILGATE_AUTO_MIGRATE={env.get('MAILGATE_AUTO_MIGRATE')}"
        assert env.get("MAILGATE_DEFAULT_SMTP_URL") == "smtp://mailpit:1025", f"{name}: relay {env.get('MAILGATE_DEFAULT_SMTP_URL')}"
        assert env.get("MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS") == "true", f"{name}: private hosts not allowed (mailpit unusable by tenants)"
        assert env.get("MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS_IN_PRODUCTION") == "true", (
            f"{name}: the production profile refuses private hosts without the acknowledgement"
        )
        ports = [str(p) for p in s.get("ports", [])]
        assert any(p.split(":")[-2] == port and p.endswith(":8080") for p in ports), f"{name} ports {ports}"
        assert s.get("image") == services["migrate"].get("image"), f"{name} and migrate use different images"
    text = (DEPLOY / "compose.yaml").read_text()
    assert re.search(r"#.*(demo|local).*\n(.*\n){0,3}.*MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS", text, re.I), (
        "MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS lacks its local-demo-only comment"
    )


def grace_secs(env: dict[str, str]) -> int:
    return int(env.get("MAILGATE_WORKER_SHUTDOWN_GRACE_SECS", "25"))


def duration_secs(s: str) -> int:
    m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", str(s))
    assert m and any(m.groups()), f"cannot read duration {s!r}"
    return int(m.group(1) or 0) * 60 + int(m.group(2) or 0)


@check("compose: secrets come from compose.env (example present, placeholders only), stop grace > worker grace")
def _compose_secrets():
    example = DEPLOY / "compose.env.example"
    assert example.is_file(), "deploy/compose.env.example is missing"
    ex = read_env_file(example)
    for key in ("MAILGATE_JWT_SECRET", "MAILGATE_SECRET_KEY", "MAILGATE_DATABASE_URL", "POSTGRES_PASSWORD"):
        assert key in ex, f"compose.env.example lacks {key}"
    for key in ("MAILGATE_JWT_SECRET", "MAILGATE_SECRET_KEY"):
        assert ex[key] == "REPLACE_ME", f"compose.env.example holds a real-looking {key}"
    for name in ("migrate", "mailgate-1", "mailgate-2"):
        files = services[name].get("env_file") or []
        files = [f["path"] if isinstance(f, dict) else f for f in (files if isinstance(files, list) else [files])]
        assert "compose.env" in files, f"{name} does not read compose.env"
        env = env_of(services[name])
        assert not (set(env) & {"MAILGATE_JWT_SECRET", "MAILGATE_SECRET_KEY"}), f"{name} has secrets inline"
        grace = duration_secs(services[name].get("stop_grace_period", "10s"))
        assert grace > grace_secs(env) + 5, f"{name}: stop_grace_period {grace}s <= worker grace + 5"
    bad = unknown_keys(set(ex) | {k for n in services for k in env_of(services[n])})
    assert not bad, f"unknown settings (Mailgate would refuse to start): {bad}"


# --------------------------------------------------------------------------- kubernetes

k8s_docs: list[tuple[Path, dict]] = []
for path, docs in docs_by_file.items():
    if K8S in path.parents:
        k8s_docs += [(path, d) for d in docs]


@check("k8s: every document has apiVersion, kind and metadata.name")
def _k8s_shape():
    problems = []
    for path, d in k8s_docs:
        if not isinstance(d, dict):
            problems.append(f"{rel(path)}: not a mapping")
            continue
        if not d.get("apiVersion") or not d.get("kind"):
            problems.append(f"{rel(path)}: missing apiVersion/kind")
        elif d["kind"] != "Kustomization" and not (d.get("metadata") or {}).get("name"):
            problems.append(f"{rel(path)}: {d['kind']} without metadata.name")
    assert not problems, "; ".join(problems)
    return f"{len(k8s_docs)} documents"


kustomizations = sorted(p for p in K8S.rglob("kustomization.yaml"))


def kust_refs(kfile: Path) -> list[str]:
    k = docs_by_file[kfile][0]
    refs = list(k.get("resources", []) or [])
    refs += list(k.get("components", []) or [])
    for patch in k.get("patches", []) or []:
        if isinstance(patch, dict) and "path" in patch:
            refs.append(patch["path"])
        elif isinstance(patch, str):
            refs.append(patch)
    refs += list(k.get("patchesStrategicMerge", []) or [])
    return refs


@check("k8s: kustomizations list only files that exist; every manifest is used or an *.example.yaml")
def _kust_refs():
    assert kustomizations, "no kustomization.yaml under deploy/k8s"
    problems, used = [], set()
    for kfile in kustomizations:
        for ref in kust_refs(kfile):
            if "://" in ref or ref.startswith("github.com/"):
                continue
            target = (kfile.parent / ref).resolve()
            if target.is_dir():
                if not (target / "kustomization.yaml").is_file():
                    problems.append(f"{rel(kfile)}: {ref} is a directory without kustomization.yaml")
                used.add(target / "kustomization.yaml")
            elif target.is_file():
                used.add(target)
            else:
                problems.append(f"{rel(kfile)}: {ref} does not exist")
    for p in (p for p in yaml_files if K8S in p.parents):
        if p.name == "kustomization.yaml" or p.name.endswith(".example.yaml"):
            continue
        if p.resolve() not in used:
            problems.append(f"{rel(p)} is listed by no kustomization.yaml")
    assert not problems, "; ".join(problems)


@check("k8s: secret.example.yaml holds placeholders only and is applied by no kustomization")
def _secret_example():
    path = K8S / "secret.example.yaml"
    docs = docs_by_file.get(path)
    assert docs, "deploy/k8s/secret.example.yaml is missing"
    data = docs[0].get("stringData") or {}
    for key in ("MAILGATE_DATABASE_URL", "MAILGATE_JWT_SECRET", "MAILGATE_SECRET_KEY"):
        assert key in data, f"secret.example.yaml lacks {key}"
    for key, value in data.items():
        if key in ("MAILGATE_JWT_SECRET", "MAILGATE_SECRET_KEY"):
            assert value == "REPLACE_ME", f"{key} holds a real-looking value"
        else:
            assert "REPLACE_ME" in str(value), f"{key} holds no REPLACE_ME placeholder"
    assert not docs[0].get("data"), "use stringData with placeholders, not base64 data"
    for kfile in kustomizations:
        for ref in kust_refs(kfile):
            assert "secret.example" not in ref, f"{rel(kfile)} applies {ref}"


def by_kind(docs, kind, name=None):
    return [d for d in docs if isinstance(d, dict) and d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


base_docs = [d for p, d in k8s_docs if p.parent == K8S / "base"]
overlay_dir = K8S / "overlays" / "separate-worker"
overlay_docs = [d for p, d in k8s_docs if p.parent == overlay_dir]


def one(docs, kind, name=None):
    found = by_kind(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}{' ' + name if name else ''}, found {len(found)}"
    return found[0]


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def container(workload, name=None):
    cs = pod_spec(workload)["containers"]
    return cs[0] if name is None else next(c for c in cs if c["name"] == name)


configmap = {}
secret_keys: set[str] = set()


@check("k8s: ConfigMap mailgate-config: production, no auto-migrate, known settings only")
def _configmap():
    cm = one(base_docs, "ConfigMap", "mailgate-config")
    configmap.update({k: str(v) for k, v in (cm.get("data") or {}).items()})
    assert configmap.get("MAILGATE_PROFILE") == "production", "MAILGATE_PROFILE is not production"
    assert configmap.get("MAILGATE_AUTO_MIGRATE") == "false", "MAILGATE_AUTO_MIGRATE must be false (the Job migrates)"
    assert "MAILGATE_WORKER_ENABLED" in configmap, "MAILGATE_WORKER_ENABLED is not configurable"
    assert configmap.get("MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS", "false") == "false", "private SMTP hosts allowed in production"
    assert "MAILGATE_ALLOW_PRIVATE_SMTP_HOSTS_IN_PRODUCTION" not in configmap, "the demo acknowledgement is in the production ConfigMap"
    secret = docs_by_file[K8S / "secret.example.yaml"][0]
    secret_keys.update(secret.get("stringData") or {})
    bad = unknown_keys(set(configmap) | secret_keys)
    assert not bad, f"unknown settings (Mailgate would refuse to start): {bad}"
    overlap = set(configmap) & secret_keys
    assert not overlap, f"set in both ConfigMap and Secret: {sorted(overlap)}"


def probe_path(c, probe):
    return ((c.get(probe) or {}).get("httpGet") or {}).get("path")


def prestop_sleep(c) -> int:
    pre = (c.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre:
        return int(pre["sleep"]["seconds"])
    cmd = (pre.get("exec") or {}).get("command") or []
    return int(cmd[1]) if len(cmd) == 2 and cmd[0] == "sleep" else 0


def check_hardening(workload, data_dir):
    spec = pod_spec(workload)
    psc = spec.get("securityContext") or {}
    # Else Kubernetes injects MAILGATE_PORT, MAILGATE_SERVICE_HOST, ... for the Service
    # named mailgate (Mailgate ignores those, but they do not belong in its environment).
    assert spec.get("enableServiceLinks") is False, "enableServiceLinks is not false"
    for c in spec["containers"]:
        csc = c.get("securityContext") or {}
        assert psc.get("runAsNonRoot") or csc.get("runAsNonRoot"), f"{c['name']}: runAsNonRoot not set"
        assert csc.get("readOnlyRootFilesystem") is True, f"{c['name']}: readOnlyRootFilesystem not set"
        assert csc.get("allowPrivilegeEscalation") is False, f"{c['name']}: allowPrivilegeEscalation not false"
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        assert data_dir in mounts, f"{c['name']}: nothing mounted at the data dir {data_dir}"
        vol = next(v for v in spec.get("volumes", []) if v["name"] == mounts[data_dir])
        assert "emptyDir" in vol, f"{c['name']}: data dir volume is not an emptyDir"
        refs = {(e.get("configMapRef") or e.get("secretRef") or {}).get("name") for e in c.get("envFrom", [])}
        assert {"mailgate-config", "mailgate-secrets"} <= refs, f"{c['name']}: envFrom is {refs}"
        assert (c.get("resources") or {}).get("requests"), f"{c['name']}: no resources.requests"
        assert (c.get("resources") or {}).get("limits"), f"{c['name']}: no resources.limits"
        bad = unknown_keys(e["name"] for e in c.get("env", []))
        assert not bad, f"{c['name']}: unknown settings {bad}"


@check("k8s: Deployment mailgate: probes /readyz, /healthz (+startup), resources, grace >= 30, hardening")
def _deployment():
    dep = one(base_docs, "Deployment", "mailgate")
    assert dep["spec"].get("replicas", 1) >= 2, "replicas < 2"
    c = container(dep)
    assert c.get("args") in (["serve"], None), f"args {c.get('args')}"
    assert probe_path(c, "readinessProbe") == "/readyz", f"readinessProbe path {probe_path(c, 'readinessProbe')}"
    assert probe_path(c, "livenessProbe") == "/healthz", f"livenessProbe path {probe_path(c, 'livenessProbe')}"
    assert c.get("startupProbe"), "no startupProbe"
    grace = pod_spec(dep).get("terminationGracePeriodSeconds", 30)
    assert grace >= 30, f"terminationGracePeriodSeconds {grace} < 30"
    worker_grace = grace_secs(configmap)
    sleep = prestop_sleep(c)
    assert sleep >= 1, "no preStop sleep (endpoint removal races SIGTERM)"
    # SIGTERM drains HTTP (each request ends within the request deadline) and the worker
    # (its grace, then handing back and the last outcome writes: ~5 s) at the same time.
    request_deadline = int(configmap.get("MAILGATE_REQUEST_TIMEOUT_SECS", "30"))
    drain = max(request_deadline, worker_grace + 5)
    assert grace >= sleep + drain + 5, (
        f"terminationGracePeriodSeconds {grace} < preStop {sleep} + max(request deadline {request_deadline}, "
        f"worker grace {worker_grace} + 5) + 5"
    )
    port = next(p for p in c["ports"] if p.get("name") == "http")["containerPort"]
    assert configmap.get("MAILGATE_LISTEN", "").endswith(f":{port}"), f"MAILGATE_LISTEN does not use port {port}"
    check_hardening(dep, configmap.get("MAILGATE_DATA_DIR", "/var/lib/mailgate"))
    return f"grace {grace} s >= preStop {sleep} + drain {drain} + 5"


@check("k8s: Service mailgate (ClusterIP 80 -> http/8080) selects the web pods")
def _service():
    svc = one(base_docs, "Service", "mailgate")
    dep = one(base_docs, "Deployment", "mailgate")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    sel = svc["spec"]["selector"]
    assert all(labels.get(k) == v for k, v in sel.items()), f"selector {sel} does not match pod labels {labels}"
    assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", "not ClusterIP"
    p = svc["spec"]["ports"][0]
    assert p["port"] == 80 and p["targetPort"] in ("http", 8080), f"port {p}"


@check("k8s: PodDisruptionBudget (minAvailable 1) covers the web pods")
def _pdb():
    pdb = one(base_docs, "PodDisruptionBudget")
    dep = one(base_docs, "Deployment", "mailgate")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    sel = pdb["spec"]["selector"]["matchLabels"]
    assert all(labels.get(k) == v for k, v in sel.items()), f"selector {sel} does not match {labels}"
    assert pdb["spec"].get("minAvailable") == 1, f"minAvailable {pdb['spec'].get('minAvailable')}"


@check("k8s: Job runs `mailgate migrate` (backoffLimit, ttlSecondsAfterFinished, hardened)")
def _job():
    jobs = [j for j in by_kind(base_docs, "Job") if "migrate" in (container(j).get("args") or []) + (container(j).get("command") or [])]
    assert len(jobs) == 1, f"{len(jobs)} Jobs run migrate"
    job = jobs[0]
    assert "backoffLimit" in job["spec"], "no backoffLimit"
    assert "ttlSecondsAfterFinished" in job["spec"], "no ttlSecondsAfterFinished"
    assert pod_spec(job).get("restartPolicy") in ("Never", "OnFailure"), "restartPolicy"
    check_hardening(job, configmap.get("MAILGATE_DATA_DIR", "/var/lib/mailgate"))


@check("k8s overlay separate-worker: `mailgate worker` Deployment, web pods with MAILGATE_WORKER_ENABLED=false")
def _overlay():
    w = one(overlay_docs, "Deployment", "mailgate-worker")
    c = container(w)
    assert c.get("args") == ["worker"] or c.get("command", [])[-1:] == ["worker"], f"args {c.get('args')}"
    ports = [p.get("containerPort") for p in c.get("ports") or []]
    env_w = {e["name"]: e.get("value") for e in c.get("env") or []}
    listen = env_w.get("MAILGATE_WORKER_LISTEN", "")
    assert ports == [9091] and listen.endswith(":9091"), f"the worker serves /metrics on 9091: ports {ports}, listen {listen!r}"
    ann = w["spec"]["template"]["metadata"].get("annotations", {})
    assert ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == "9091", f"scrape annotations {ann}"
    for probe in ("livenessProbe", "readinessProbe"):
        assert c.get(probe, {}).get("httpGet", {}).get("port") == "metrics", f"{probe} on the metrics port"
    grace = pod_spec(w).get("terminationGracePeriodSeconds", 30)
    assert grace > grace_secs(configmap), f"worker terminationGracePeriodSeconds {grace} <= worker grace"
    check_hardening(w, configmap.get("MAILGATE_DATA_DIR", "/var/lib/mailgate"))
    patch = one(overlay_docs, "Deployment", "mailgate")
    env = {e["name"]: e.get("value") for e in container(patch)["env"]}
    assert env.get("MAILGATE_WORKER_ENABLED") == "false", f"patch env {env}"
    assert not by_kind(overlay_docs, "Service"), "the overlay must not add a Service for the worker"


def render(target: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(target)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr.strip()[-400:]
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def check_rendered(docs, expect_worker: bool):
    kinds = sorted(d["kind"] for d in docs)
    for kind in ("Namespace", "ConfigMap", "Job", "Deployment", "Service", "PodDisruptionBudget"):
        assert kind in kinds, f"rendered output lacks a {kind}"
    assert not by_kind(docs, "Secret"), "rendered output contains a Secret (placeholders would overwrite real secrets)"
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == "mailgate", f"{d['kind']} {d['metadata']['name']} not in namespace mailgate"
    images = {c["image"] for d in docs if d["kind"] in ("Deployment", "Job") for c in pod_spec(d)["containers"]}
    assert len(images) == 1, f"workloads use different images: {images}"
    web = one(docs, "Deployment", "mailgate")
    env = {e["name"]: e.get("value") for e in container(web).get("env", [])}
    if expect_worker:
        assert one(docs, "Deployment", "mailgate-worker")
        assert env.get("MAILGATE_WORKER_ENABLED") == "false", "web pods still run the worker"
    else:
        assert not by_kind(docs, "Deployment", "mailgate-worker")
    return f"{len(docs)} objects, image {images.pop()}"


rendered: dict[str, list] = {}
for label, target, worker in (
    ("deploy/k8s", K8S, False),
    ("deploy/k8s/overlays/separate-worker", overlay_dir, True),
):

    @check(f"kubectl kustomize {label} renders")
    def _render(target=target, worker=worker, label=label):
        if not shutil.which("kubectl"):
            raise SkipCheck("kubectl is not installed (not installing it); structure checked above")
        docs = render(target)
        rendered[label] = docs
        return check_rendered(docs, worker)


# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        word, _, rest = s.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


dockerfile = DEPLOY / "Dockerfile"
image_env: dict[str, str] = {}


@check("Dockerfile: multi-stage rust:*-bookworm -> bookworm-slim/distroless, `--release -p mailgate --locked`")
def _docker_from():
    ins = dockerfile_instructions(dockerfile.read_text())
    args = dict(re.match(r"(\w+)=?(.*)", a).groups() for w, a in ins if w == "ARG")
    froms = [re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), a).split()[0] for w, a in ins if w == "FROM"]
    assert len(froms) >= 2, f"FROM lines: {froms}"
    assert any(re.fullmatch(r"rust:1\.9\d+(\.\d+)?-bookworm", f) for f in froms[:-1]), f"no rust:1.9x-bookworm builder in {froms}"
    assert froms[-1] in ("debian:bookworm-slim",) or froms[-1].startswith("gcr.io/distroless/cc"), f"runtime is {froms[-1]}"
    runs = " ".join(a for w, a in ins if w == "RUN")
    assert re.search(r"cargo build --release -p mailgate --locked", runs), "no `cargo build --release -p mailgate --locked`"
    assert runs.count("cargo build") >= 2, "no separate dependency-caching build"
    return " -> ".join(froms)


@check("Dockerfile: final stage runs as uid 10001, EXPOSE 8080, HEALTHCHECK, ENTRYPOINT/CMD, known ENV")
def _docker_final():
    ins = dockerfile_instructions(dockerfile.read_text())
    last_from = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    final = ins[last_from:]
    users = [a for w, a in final if w == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1]} is root"
    assert user == "10001", f"USER {users[-1]} (expected uid 10001)"
    assert any(w == "HEALTHCHECK" and a.upper() != "NONE" for w, a in final), "no HEALTHCHECK"
    assert any(w == "EXPOSE" and "8080" in a.split() for w, a in final), "no EXPOSE 8080"
    entry = [json.loads(a) for w, a in final if w == "ENTRYPOINT"]
    cmd = [json.loads(a) for w, a in final if w == "CMD"]
    assert entry and entry[-1] == ["/usr/local/bin/mailgate"], f"ENTRYPOINT {entry}"
    assert cmd and cmd[-1] == ["serve"], f"CMD {cmd}"
    for w, a in final:
        if w == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", a):
                image_env[key] = value
    want = {
        "MAILGATE_LISTEN": "0.0.0.0:8080",
        "MAILGATE_PROFILE": "production",
        "MAILGATE_LOG_FORMAT": "json",
        "MAILGATE_DATA_DIR": "/var/lib/mailgate",
    }
    for k, v in want.items():
        assert image_env.get(k) == v, f"ENV {k}={image_env.get(k)} (want {v})"
    bad = unknown_keys(image_env)
    assert not bad, f"unknown settings in ENV: {bad}"


@check("Dockerfile: COPY sources exist, are not dockerignored, and cover every workspace member")
def _docker_copy():
    ins = dockerfile_instructions(dockerfile.read_text())
    sources = []
    for w, a in ins:
        if w == "COPY" and "--from=" not in a:
            parts = [p for p in a.split() if not p.startswith("--")]
            sources += parts[:-1]
    for s in sources:
        assert (ROOT / s).exists(), f"COPY {s}: no such file"
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {l[1:].rstrip("/") for l in ignore if l.startswith("!")}
    assert "*" in ignore, "Dockerfile.dockerignore is not an allow-list"
    for s in sources:
        assert s.rstrip("/") in allowed, f"COPY {s} is excluded by deploy/Dockerfile.dockerignore"
    cargo = (ROOT / "Cargo.toml").read_text()
    m = re.search(r"members\s*=\s*\[(.*?)\]", cargo, re.S)
    members = re.findall(r'"([^"]+)"', m.group(1))
    copied = {s.rstrip("/") for s in sources}
    uncovered = [mem for mem in members if not any(mem == c or mem.startswith(c + "/") for c in copied)]
    assert not uncovered, f"workspace members not copied into the image: {uncovered}"
    return f"{len(members)} workspace members covered"


# --------------------------------------------------------------------------- environments for the runtime checks


def write_env(name: str, env: dict[str, str]) -> None:
    if OUT is None:
        return
    OUT.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, v in sorted(env.items()):
        assert "\n" not in v, f"{k} has a newline"
        lines.append(f"{k}={v}")
    (OUT / f"{name}.env").write_text("\n".join(lines) + "\n")


@check("environments of the image, compose and k8s written for the runtime checks")
def _envs():
    write_env("image", image_env)
    web = one(base_docs, "Deployment", "mailgate")
    k8s = {**image_env, **configmap, **{k: str(v) for k, v in docs_by_file[K8S / "secret.example.yaml"][0]["stringData"].items()}}
    k8s.update({e["name"]: str(e.get("value", "")) for e in container(web).get("env", [])})
    write_env("k8s", k8s)
    worker = one(overlay_docs, "Deployment", "mailgate-worker")
    kw = {**k8s, **{e["name"]: str(e.get("value", "")) for e in container(worker).get("env", [])}}
    write_env("k8s-worker", kw)
    patch = one(overlay_docs, "Deployment", "mailgate")
    write_env("k8s-web-separate", {**k8s, **{e["name"]: str(e.get("value", "")) for e in container(patch).get("env", [])}})
    comp = {**image_env, **read_env_file(DEPLOY / "compose.env.example"), **env_of(services["mailgate-1"])}
    comp.pop("POSTGRES_PASSWORD", None)
    write_env("compose", comp)


failed = [r for r in results if r[0] == "FAIL"]
sys.exit(1 if failed else 0)
