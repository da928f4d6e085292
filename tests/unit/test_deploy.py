"""deploy/: every file parses, has the services, settings and probes production needs, and
holds no secret. Validators run where this machine has them (docker compose, the
compose-spec schema through check-jsonschema, systemd-analyze, kubectl kustomize,
kubernetes-validate); each is skipped with a message saying which is missing."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.settings import env_names

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
SYSTEMD = DEPLOY / "systemd"
K8S = DEPLOY / "kubernetes"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"

#: every FIBOSMS_* name the settings read (the contract)
KNOWN_SETTINGS = set(env_names())


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file())


def tool(name: str) -> str:
    """The path of ``name`` (on PATH or beside this Python), or skip saying it is missing."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed here; the structural checks still ran")
    return found


# -- everywhere ----------------------------------------------------------------------------


def test_no_file_in_deploy_carries_the_password_only_a_file_path() -> None:
    inline = re.compile(r"FIBOSMS_CLIENT_PASS(?!_FILE)\b\s*[:=]")
    for path in deploy_files():
        text = path.read_text()
        assert not inline.search(text), f"{path}: FIBOSMS_CLIENT_PASS with a value"
        assert not re.search(r"FIBOSMS_FLOWER_BASIC_AUTH(?!_FILE)\b\s*[:=]", text), path
    # and the password reaches every kind of deployment as a file
    for path in (COMPOSE, DEPLOY / "env.example", K8S / "configmap.yaml"):
        assert "FIBOSMS_CLIENT_PASS_FILE" in path.read_text(), path


def test_every_fibosms_setting_named_in_deploy_exists() -> None:
    assert len(KNOWN_SETTINGS) > 20
    for path in deploy_files():
        named = set(re.findall(r"\bFIBOSMS_[A-Z0-9_]+", path.read_text()))
        unknown = named - KNOWN_SETTINGS
        assert not unknown, f"{path.relative_to(ROOT)} names unknown settings {unknown}"


# -- docker compose ------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command", [])
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def test_compose_has_the_production_shape() -> None:
    services = compose()["services"]
    assert {"redis", "postgres", "migrate", "beat", "flower", "metrics"} <= set(services)
    # Redis keeps its data; PostgreSQL has a volume
    assert "--appendonly" in command(services["redis"])
    assert any("/data" in v for v in services["redis"]["volumes"])
    assert services["postgres"]["volumes"]
    # the migrations run once, first
    assert command(services["migrate"]) == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    fibosms = {n: s for n, s in services.items() if s.get("image", "").startswith("fibosms")}
    workers = {n: s for n, s in fibosms.items() if command(s)[:1] == ["worker"]}
    queues = {command(s)[command(s).index("-Q") + 1] for s in workers.values()}
    assert queues == {"urgent", "default,bulk"}
    for name, service in fibosms.items():
        env = service["environment"]
        assert env["FIBOSMS_CLIENT_PASS_FILE"] == "/run/secrets/fibo_client_pass", name
        assert "fibo_client_pass" in service["secrets"], name
        assert env["FIBOSMS_BROKER_URL"].startswith("redis://"), name
        assert env["FIBOSMS_DATABASE_URL"].startswith("postgresql+psycopg://"), name
        if name != "migrate":
            assert service["depends_on"]["migrate"]["condition"] == (
                "service_completed_successfully"
            ), name
    # exactly one beat
    beats = [n for n, s in fibosms.items() if command(s)[:1] == ["beat"]]
    assert beats == ["beat"]
    assert services["beat"]["deploy"]["replicas"] == 1
    # workers' health probes never call the gateway
    for name in [*workers, "beat"]:
        test = services[name]["healthcheck"]["test"]
        assert test[1:4] == ["fibosms", "health", "--check"], name
        assert "gateway" not in test[4], name
    # Flower behind authentication, its credentials a secret file too
    flower = services["flower"]
    assert command(flower)[0] == "flower" and "--unauthenticated" not in command(flower)
    assert flower["environment"]["FIBOSMS_FLOWER_BASIC_AUTH_FILE"] == (
        "/run/secrets/flower_basic_auth"
    )
    assert "flower_basic_auth" in flower["secrets"]
    assert command(services["metrics"])[0] == "metrics"
    secrets = compose()["secrets"]
    assert set(secrets) == {"fibo_client_pass", "flower_basic_auth"}
    assert all("file" in s for s in secrets.values())


def test_compose_validates_against_the_compose_specification() -> None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            done = subprocess.run(
                [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
                capture_output=True, text=True, timeout=60,
                env={"POSTGRES_PASSWORD": "x", "FIBOSMS_CLIENT_NO": "CL1", "PATH": "/usr/bin:/bin"},
            )
            assert done.returncode == 0, done.stderr
            return
    checker = tool("check-jsonschema")
    done = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dockerfile_runs_fibosms_as_a_user() -> None:
    lines = [ln.strip() for ln in (DEPLOY / "Dockerfile").read_text().splitlines()]
    instructions = [ln.split(None, 1) for ln in lines if ln and not ln.startswith("#")
                    and ln.split(None, 1)[0].isupper()]
    names = [i[0] for i in instructions]
    assert names[0] == "FROM"
    user = [i[1] for i in instructions if i[0] == "USER"]
    assert user and user[-1] not in ("root", "0")
    assert ["ENTRYPOINT", '["fibosms"]'] in instructions
    assert compose()["x-fibosms"]["build"]["dockerfile"] == "deploy/Dockerfile"


# -- systemd -------------------------------------------------------------------------------


def unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file as section → [(key, value)], repeated keys kept (systemd allows them)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: a key before any section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key=value: {line}"
        current.append((key.strip(), value.strip()))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def test_systemd_units_cover_every_role() -> None:
    units = {p.name: unit(p) for p in SYSTEMD.glob("fibosms*")}
    assert set(units) == {
        "fibosms-worker@.service", "fibosms-beat.service", "fibosms-flower.service",
        "fibosms-metrics.service", "fibosms-migrate.service", "fibosms-api.service",
        "fibosms.target",
    }
    services = {n: u for n, u in units.items() if n.endswith(".service")}
    for name, u in services.items():
        service = u["Service"]
        assert "/etc/fibosms/env" in values(service, "EnvironmentFile"), name
        assert values(service, "User") == ["fibosms"], name
        [exec_start] = values(service, "ExecStart")
        assert exec_start.startswith("/opt/fibosms/.venv/bin/fibosms "), name
        assert values(u["Install"], "WantedBy") == ["fibosms.target"], name
    migrate = services["fibosms-migrate.service"]["Service"]
    assert values(migrate, "Type") == ["oneshot"]
    assert values(migrate, "ExecStart")[0].endswith("fibosms db upgrade")
    for name in ("fibosms-worker@.service", "fibosms-beat.service"):
        u = services[name]["Unit"]
        assert "fibosms-migrate.service" in " ".join(values(u, "Requires")), name
        assert "fibosms-migrate.service" in " ".join(values(u, "After")), name
    worker = services["fibosms-worker@.service"]["Service"]
    assert "-Q ${WORKER_QUEUES}" in values(worker, "ExecStart")[0]
    assert "WORKER_QUEUES=%i" in values(worker, "Environment")
    assert "-/etc/fibosms/worker-%i.env" in values(worker, "EnvironmentFile")
    # the per-group files shipped as examples
    groups = {p.stem.removeprefix("worker-"): p.read_text() for p in SYSTEMD.glob("worker-*.env")}
    assert "WORKER_QUEUES=urgent" in groups["urgent"]
    assert "WORKER_QUEUES=default,bulk" in groups["standard"]
    assert "--unauthenticated" not in values(services["fibosms-flower.service"]["Service"],
                                             "ExecStart")[0]


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    # verify wants ExecStart to exist: point the copies at this checkout's fibosms
    fibosms = Path(sys.executable).parent / "fibosms"
    assert fibosms.exists()
    for path in SYSTEMD.glob("fibosms*"):
        text = path.read_text().replace("/opt/fibosms/.venv/bin/fibosms", str(fibosms))
        (tmp_path / path.name).write_text(text)
    names = [p.name for p in tmp_path.iterdir() if p.name != "fibosms-worker@.service"]
    names += ["fibosms-worker@urgent.service", "fibosms-worker@standard.service"]
    done = subprocess.run(
        [analyze, "verify", "--man=no", *names], cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )
    if "Failed to" in done.stderr and "bus" in done.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


# -- Kubernetes ----------------------------------------------------------------------------


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def container(doc: dict[str, Any]) -> dict[str, Any]:
    first: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
    return first


def health_probe(probe: dict[str, Any]) -> list[str]:
    cmd: list[str] = probe["exec"]["command"]
    assert cmd[:2] == ["fibosms", "health"], cmd
    return cmd


def test_kubernetes_workers_beat_migrations_and_the_secret_file() -> None:
    deployments = by_kind("Deployment")
    workers = {n: d for n, d in deployments.items() if container(d)["args"][0] == "worker"}
    queues = {container(d)["args"][container(d)["args"].index("-Q") + 1]
              for d in workers.values()}
    assert queues == {"urgent", "default,bulk"}
    beat = deployments["fibosms-beat"]
    assert container(beat)["args"] == ["beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    for name, d in {**workers, "fibosms-beat": beat}.items():
        c = container(d)
        for kind in ("livenessProbe", "readinessProbe"):
            cmd = health_probe(c[kind])
            assert "gateway" not in cmd[cmd.index("--check") + 1], (name, kind)
        # migrations first: an init container waits for the database to be at head
        [init] = d["spec"]["template"]["spec"]["initContainers"]
        assert "fibosms health --check database" in " ".join(init["command"])
    for name, d in deployments.items():
        pod = d["spec"]["template"]["spec"]
        c = container(d)
        config = by_kind("ConfigMap")["fibosms"]["data"]
        pass_file = Path(config["FIBOSMS_CLIENT_PASS_FILE"])
        [mount] = [m for m in c["volumeMounts"] if m["mountPath"] == str(pass_file.parent)]
        [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == "fibosms-gateway", name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        env = {e["name"]: e for e in c.get("env", [])}
        assert "secretKeyRef" in env["FIBOSMS_DATABASE_URL"]["valueFrom"], name
    [job] = by_kind("Job").values()
    assert container(job)["args"] == ["db", "upgrade"]
    hpas = by_kind("HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()} == set(workers)
    flower = container(deployments["fibosms-flower"])
    assert flower["args"][0] == "flower" and "--unauthenticated" not in flower["args"]
    assert {e["name"] for e in flower["env"]} >= {"FIBOSMS_FLOWER_BASIC_AUTH_FILE"}


def test_the_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    present = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present


def test_kubectl_kustomize_builds_the_manifests() -> None:
    kubectl = tool("kubectl")
    done = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(done.stdout) if d]
    assert kinds.count("Deployment") == 6 and "Job" in kinds


def test_kubernetes_validate_accepts_the_manifests_strictly() -> None:
    validator = tool("kubernetes-validate")
    files = [str(p) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"]
    done = subprocess.run([validator, "--strict", "--quiet", "-k", "1.30.0", *files],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


# -- Prometheus ----------------------------------------------------------------------------


def exposed_metric_names() -> set[str]:
    """fibosms_* names the code defines, with the suffixes Prometheus adds."""
    names: set[str] = set()
    for path in (ROOT / "worker" / "metrics").glob("*.py"):
        for name in re.findall(r'"(fibosms_[a-z_]+)"', path.read_text()):
            names.add(name)
            names.update(name + s for s in ("_total", "_bucket", "_count", "_sum", "_gsum",
                                            "_gcount"))
    return names


def test_the_alert_rules_are_well_formed_and_use_metrics_that_exist() -> None:
    rules = yaml.safe_load(ALERTS.read_text())
    known = exposed_metric_names()
    alerts = []
    for group in rules["groups"]:
        assert group["name"] and group["rules"]
        for rule in group["rules"]:
            alerts.append(rule["alert"])
            assert re.fullmatch(r"[A-Z][A-Za-z]+", rule["alert"])
            assert rule["labels"]["severity"] in {"critical", "warning"}
            assert rule["annotations"]["summary"]
            if "for" in rule:
                assert re.fullmatch(r"\d+[smh]", rule["for"])
            used = set(re.findall(r"\bfibosms_[a-z_]+", rule["expr"]))
            assert used or rule["expr"].startswith("up{"), rule["alert"]
            assert used <= known, f"{rule['alert']} uses unknown {used - known}"
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]
    assert len(alerts) == len(set(alerts))
    assert {"FibosmsBrokerDown", "FibosmsAccountWideFailure", "FibosmsUrgentBacklog"} <= set(
        alerts
    )


def test_the_api_is_deployed_on_loopback_or_inside_the_cluster_only() -> None:
    # compose: published on the host's loopback; a TLS proxy faces the clients
    api = compose()["services"]["api"]
    assert command(api)[0] == "serve"
    assert api["ports"] == ["127.0.0.1:8080:8080"]
    assert "/v1/health/ready" in " ".join(api["healthcheck"]["test"])
    # systemd: listens on loopback
    service = unit(SYSTEMD / "fibosms-api.service")["Service"]
    [start] = values(service, "ExecStart")
    assert "serve --host 127.0.0.1" in start
    # Kubernetes: a ClusterIP service, probes on the liveness and readiness routes
    deployment, svc = list(yaml.safe_load_all((K8S / "api.yaml").read_text()))
    assert svc["spec"]["type"] == "ClusterIP"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/v1/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/health/ready"


# -- the other brokers: Redis Sentinel and RabbitMQ, layered on the compose file ------------

SENTINEL_COMPOSE = DEPLOY / "docker-compose.sentinel.yml"
RABBITMQ_COMPOSE = DEPLOY / "docker-compose.rabbitmq.yml"
SENTINEL_CONF = DEPLOY / "sentinel" / "sentinel.conf"
RABBITMQ_CONF = DEPLOY / "rabbitmq" / "rabbitmq.conf"
#: what the compose files read from deploy/.env, for the checks below
DOT_ENV = {
    "POSTGRES_PASSWORD": "x", "FIBOSMS_CLIENT_NO": "CL1", "FIBOSMS_SENDER_NAME": "",
    "RABBITMQ_PASSWORD": "y",
}


def merged(*paths: Path) -> dict[str, Any]:
    """The compose files as ``docker compose -f … -f …`` merges them: mappings key by key,
    anything else replaced by the later file."""

    def merge(base: Any, over: Any) -> Any:
        if isinstance(base, dict) and isinstance(over, dict):
            return {k: merge(base[k], v) if k in base else v for k, v in over.items()} | {
                k: v for k, v in base.items() if k not in over
            }
        return over

    result: dict[str, Any] = {}
    for path in paths:
        result = merge(result, yaml.safe_load(path.read_text()))
    return result


def interpolated(value: str) -> str:
    """``${NAME:?…}`` and ``${NAME:-…}`` replaced from DOT_ENV, as compose would."""
    return re.sub(r"\$\{(\w+)(?::[?-][^}]*)?\}", lambda m: DOT_ENV[m.group(1)], value)


def fibosms_services(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in data["services"].items()
            if str(s.get("image", "")).startswith("fibosms")}


def settings_of(env: dict[str, str], tmp: Path) -> Any:
    """The settings a process given ``env`` would run with (its password file in ``tmp``)."""
    from worker.settings import Settings

    files = {}
    for name in ("FIBOSMS_CLIENT_PASS_FILE", "FIBOSMS_FLOWER_BASIC_AUTH_FILE"):
        if name in env:
            files[name] = str(tmp / name.lower())
            Path(files[name]).write_text("ops:from-the-secret-file")
    return Settings.from_env({**env, **files, "FIBOSMS_ENV_FILE": str(tmp / "no.env")})


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    return {k: interpolated(str(v)) for k, v in service["environment"].items()}


def sentinel_directives() -> list[list[str]]:
    return [
        line.split() for line in SENTINEL_CONF.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_the_sentinel_example_gives_every_process_the_sentinels_of_its_compose_file(
    tmp_path: Path,
) -> None:
    over = yaml.safe_load(SENTINEL_COMPOSE.read_text())
    data = merged(COMPOSE, SENTINEL_COMPOSE)
    services = data["services"]
    sentinels = sorted(n for n in services if n.startswith("sentinel-"))
    assert sentinels == ["sentinel-1", "sentinel-2", "sentinel-3"]
    assert "--replicaof" in command(services["redis-replica"])
    # the monitor line: the master name the processes are given, the base file's Redis, and
    # a quorum that is a majority of the three
    [monitor] = [d for d in sentinel_directives() if d[:2] == ["sentinel", "monitor"]]
    master, host, port, quorum = monitor[2:]
    assert (host, port, int(quorum)) == ("redis", "6379", 2)
    assert ["sentinel", "resolve-hostnames", "yes"] in sentinel_directives()
    for name in sentinels:
        assert any(v.startswith("./sentinel/sentinel.conf:") for v in services[name]["volumes"])
        assert "redis-sentinel /data/sentinel.conf" in " ".join(command(services[name]))
    # every fibosms process of the base file is overridden, none is left on plain Redis
    assert set(fibosms_services(data)) <= set(over["services"])
    for name, service in fibosms_services(data).items():
        settings = settings_of(compose_env(service), tmp_path)
        assert settings.broker_sentinel_master == master, name
        for url in (settings.broker_url, settings.redis_url):
            parts = [p for p in str(url).split(";") if p]
            assert sorted(p.split("//")[1].split(":")[0] for p in parts) == sentinels, name
            assert all(p.endswith(":26379/0") or p.endswith(":26379/1") for p in parts), name
        # the password still only as a file
        assert service["environment"]["FIBOSMS_CLIENT_PASS_FILE"] == "/run/secrets/fibo_client_pass"
        if name != "migrate":
            assert set(sentinels) <= set(service["depends_on"]), name
            assert service["depends_on"]["migrate"]["condition"] == (
                "service_completed_successfully"
            ), name


def test_the_rabbitmq_example_keeps_a_redis_for_the_shared_state(tmp_path: Path) -> None:
    over = yaml.safe_load(RABBITMQ_COMPOSE.read_text())
    data = merged(COMPOSE, RABBITMQ_COMPOSE)
    rabbit = data["services"]["rabbitmq"]
    vhost = rabbit["environment"]["RABBITMQ_DEFAULT_VHOST"]
    assert any(v.endswith(":/var/lib/rabbitmq") for v in rabbit["volumes"])
    assert any(v.startswith("./rabbitmq/rabbitmq.conf:/etc/rabbitmq/conf.d/")
               for v in rabbit["volumes"])
    assert rabbit["hostname"] == "rabbitmq" and rabbit["healthcheck"]["test"]
    assert all(p.startswith("127.0.0.1:") for p in rabbit.get("ports", []))
    # the broker's password comes from deploy/.env, never from the committed file
    assert rabbit["environment"]["RABBITMQ_DEFAULT_PASS"].startswith("${RABBITMQ_PASSWORD:?")
    conf = dict(
        (k.strip(), v.strip()) for k, _, v in (
            ln.partition("=") for ln in RABBITMQ_CONF.read_text().splitlines()
            if ln.strip() and not ln.startswith("#")
        )
    )
    assert conf["listeners.tcp.default"] == "5672"
    assert set(fibosms_services(data)) <= set(over["services"])
    for name, service in fibosms_services(data).items():
        settings = settings_of(compose_env(service), tmp_path)
        assert str(settings.broker_url).startswith("amqp://fibosms:"), name
        assert str(settings.broker_url).endswith(f"@rabbitmq:5672/{vhost}"), name
        # the rate limit, the breaker and the beat lock stay shared, in the base file's Redis
        assert settings.redis_url == "redis://redis:6379/1", name
        if name != "migrate":
            assert "redis" in service["depends_on"], name
            assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy", name
    for name in ("worker-urgent", "worker-standard"):
        grace = data["services"][name]["stop_grace_period"]
        assert int(grace.rstrip("s")) >= int(compose()["x-fibosms"]["stop_grace_period"]
                                               .rstrip("s")) + 10


def test_the_plain_host_broker_examples_name_real_settings_and_parse(tmp_path: Path) -> None:
    base = dict(
        ln.split("=", 1) for ln in (DEPLOY / "env.example").read_text().splitlines()
        if ln and not ln.startswith("#")
    )
    for path in (DEPLOY / "sentinel" / "env.example", DEPLOY / "rabbitmq" / "env.example"):
        lines = dict(
            ln.split("=", 1) for ln in path.read_text().splitlines()
            if ln and not ln.startswith("#")
        )
        assert lines["FIBOSMS_BROKER_URL"] != base["FIBOSMS_BROKER_URL"], path
        assert set(lines) <= KNOWN_SETTINGS, path
        settings = settings_of({**base, **lines}, tmp_path)
        assert settings.redis_url == lines["FIBOSMS_REDIS_URL"], path


@pytest.mark.parametrize("override", [SENTINEL_COMPOSE, RABBITMQ_COMPOSE], ids=lambda p: p.name)
def test_the_broker_overrides_validate_against_the_compose_specification(override: Path) -> None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            done = subprocess.run(
                [docker, "compose", "-f", str(COMPOSE), "-f", str(override), "config", "--quiet"],
                capture_output=True, text=True, timeout=60,
                env={**DOT_ENV, "PATH": "/usr/bin:/bin"},
            )
            assert done.returncode == 0, done.stderr
            return
    checker = tool("check-jsonschema")
    done = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(override)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
