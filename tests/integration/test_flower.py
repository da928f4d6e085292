"""Flower as operators run it: a real Flower process, a real worker, Redis, the sandbox.

It must ask for credentials (on every page, ``/metrics`` and ``/healthcheck`` included),
listen on loopback unless told otherwise, show tasks by name, and show no phone number,
text or password anywhere in what its API returns.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.sandbox import SANDBOX_PASSWORD
from tests.fixtures.services import free_port
from tests.fixtures.stack import ROOT, Stack, statuses, wait_for

FLOWER_USER, FLOWER_PASSWORD = "ops", "Fl0wer-Pa55-QXZ"
SECOND_USER, SECOND_PASSWORD = "viewer", "Se3ond-Pa55-KWY"
#: distinctive numbers (national form) and text, searched for in Flower's output
PHONES = ["0912770011", "0389770022", "0703770033"]
TEXT = "Flower-canary-text 8c1e Ma OTP 424242"


def phone_forms(national: str) -> list[str]:
    """Every spelling a full number could take in a JSON document."""
    subscriber = national[1:]
    spaced = f"{national[:4]} {national[4:7]} {national[7:]}"
    return [national, "84" + subscriber, subscriber, spaced]


def listening_addresses(port: int) -> set[str]:
    """The IPv4 and IPv6 addresses a socket of this host listens on ``port`` at (/proc)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table, encoding="ascii") as f:
            next(f)
            for line in f:
                local, state = line.split()[1], line.split()[3]
                address, _, hex_port = local.partition(":")
                if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                    continue
                raw = bytes.fromhex(address)
                if len(raw) == 4:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


class FlowerProcess:
    def __init__(
        self, proc: subprocess.Popen[bytes], port: int, log: Path, host: str = "127.0.0.1"
    ) -> None:
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://{host}:{port}"

    def get(self, path: str, auth: tuple[str, str] | None = (FLOWER_USER, FLOWER_PASSWORD),
            timeout: float = 10) -> requests.Response:
        return requests.get(self.url + path, auth=auth, timeout=timeout)


@pytest.fixture
def start_flower(tmp_path: Path) -> Iterator[Callable[..., FlowerProcess]]:
    """Start Flower (``fibosms flower`` or ``celery -A worker flower``); stopped at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str], *, celery: bool = False, address: str | None = "127.0.0.1",
              host: str = "127.0.0.1") -> FlowerProcess:
        """``address=None``: no ``--address`` (the default applies); ``host``: where to ask."""
        port = free_port()
        log = tmp_path / f"flower-{port}.log"
        given = [] if address is None else [f"--address={address}"]
        if celery:
            args = [sys.executable, "-m", "celery", "-A", "worker", "flower",
                    f"--port={port}", *given]
        else:  # Flower's options pass through, in either spelling
            args = [sys.executable, "-m", "fibosms.cli", "flower",
                    "--port", str(port), *given]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                args, cwd=ROOT, env={**os.environ, **env}, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        started.append(proc)
        flower = FlowerProcess(proc, port, log, host)

        def answering() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"flower exited {proc.returncode}:\n{log.read_text()}")
            try:
                return flower.get("/healthcheck", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(answering, timeout=30, every=0.2)
        return flower

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def stack(make_stack: Callable[..., Stack], pg_url: str, redis_url: str) -> Stack:
    from tests.fixtures.services import clean_ledger

    s = make_stack(pg_url, redis_url)
    clean_ledger(s.db)
    return s


def with_credentials(stack: Stack) -> dict[str, str]:
    return {
        **stack.env,
        "FIBOSMS_FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD},"
                                     f"{SECOND_USER}:{SECOND_PASSWORD}",
    }


def test_flower_asks_for_credentials_and_shows_tasks_by_name_without_numbers_texts_or_secrets(
    stack: Stack, start_flower: Callable[..., FlowerProcess]
) -> None:
    # Given Flower with two users, then a worker it can see
    flower = start_flower(with_credentials(stack))
    stack.start_worker()

    def worker_seen() -> Any:
        response = flower.get("/api/workers?refresh=1")
        return response.status_code == 200 and response.json()

    wait_for(worker_seen, timeout=30, every=0.5)

    # When three messages go through the pipeline
    ids = [stack.producer.enqueue_sms(phone, TEXT, kind="otp") for phone in PHONES]
    wait_for(lambda: set(statuses(stack.db, ids).values()) == {"sent"}, timeout=30)

    def tasks_done() -> Any:
        tasks = flower.get("/api/tasks").json()
        done = [t for t in tasks.values() if t.get("state") == "SUCCESS"]
        return len(done) >= len(ids) and tasks

    tasks = wait_for(tasks_done, timeout=30, every=0.5)

    # Then the tasks show by name, with the message id as their only argument
    sends = {t["args"]: t for t in tasks.values() if t["name"] == "fibosms.send_sms"}
    assert set(sends) == {f"[{mid}]" for mid in ids}, tasks
    assert all(t["kwargs"] == "{}" for t in sends.values())

    # and nothing without the right credentials
    for path in ("/api/tasks", "/api/workers", "/"):
        assert flower.get(path, auth=None).status_code == 401, path
        assert flower.get(path, auth=(FLOWER_USER, "wrong")).status_code == 401, path
    assert flower.get("/api/tasks", auth=(SECOND_USER, SECOND_PASSWORD)).status_code == 200

    # and no number, text or password in anything the API returns
    outputs = [
        flower.get("/api/tasks").text,
        flower.get("/api/workers?refresh=1").text,
        flower.get("/api/queues/length").text,
        flower.get("/api/task/types").text,
        *(flower.get(f"/api/task/info/{uuid}").text for uuid in tasks),
    ]
    raw = "\n".join(outputs)
    json.loads(outputs[0])  # real JSON, not an error page
    forbidden = [TEXT, "Flower-canary", SANDBOX_PASSWORD, FLOWER_PASSWORD, SECOND_PASSWORD]
    for phone in PHONES:
        forbidden += phone_forms(phone)
    leaked = [item for item in forbidden if item in raw]
    assert leaked == [], f"Flower's API shows {leaked}"
    # Flower's own log neither
    log = flower.log.read_text(errors="replace")
    assert SANDBOX_PASSWORD not in log and FLOWER_PASSWORD not in log


def test_fibosms_flower_refuses_to_start_without_credentials(stack: Stack) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    done = subprocess.run(
        [sys.executable, "-m", "fibosms.cli", "flower", f"--port={free_port()}"],
        cwd=ROOT, env={**env, **stack.env}, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 3, done
    assert "FIBOSMS_FLOWER_BASIC_AUTH" in done.stderr and "--unauthenticated" in done.stderr
    assert "Traceback" not in done.stderr


def test_celery_flower_is_guarded_the_same_way(
    stack: Stack, start_flower: Callable[..., FlowerProcess]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    # without credentials: refused, with the same message
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "worker", "flower", f"--port={free_port()}"],
        cwd=ROOT, env={**env, **stack.env}, capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 3, done
    assert "FIBOSMS_FLOWER_BASIC_AUTH" in done.stderr
    # with FIBOSMS_FLOWER_BASIC_AUTH: Flower asks for them, on its open pages too
    flower = start_flower(with_credentials(stack), celery=True)
    for path in ("/api/tasks", "/metrics", "/healthcheck"):
        assert flower.get(path, auth=None).status_code == 401, path
        assert flower.get(path).status_code == 200, path
        assert flower.get(path, auth=(SECOND_USER, SECOND_PASSWORD)).status_code == 200, path


def test_flower_metrics_and_healthcheck_ask_for_the_same_credentials(
    stack: Stack, start_flower: Callable[..., FlowerProcess]
) -> None:
    # Given Flower with two users, and a message a worker has sent
    flower = start_flower(with_credentials(stack))
    stack.start_worker()
    wait_for(lambda: flower.get("/api/workers?refresh=1").json(), timeout=30, every=0.5)
    mid = stack.producer.enqueue_sms(PHONES[0], TEXT, kind="otp")
    wait_for(lambda: statuses(stack.db, [mid]) == {mid: "sent"}, timeout=30)

    def metrics_show_the_task() -> str | None:
        text = flower.get("/metrics").text
        return text if 'task="fibosms.send_sms"' in text else None

    # Then, with the credentials, /metrics shows task names and worker host names
    metrics = wait_for(metrics_show_the_task, timeout=30, every=0.5)
    assert 'worker="test-' in metrics
    assert flower.get("/metrics", auth=(SECOND_USER, SECOND_PASSWORD)).status_code == 200
    health = flower.get("/healthcheck")
    assert (health.status_code, health.text) == (200, "OK")

    # and without the right credentials /metrics and /healthcheck answer nothing
    for path in ("/metrics", "/healthcheck"):
        for auth in (None, (FLOWER_USER, "wrong"), ("nobody", FLOWER_PASSWORD)):
            response = flower.get(path, auth=auth)
            assert response.status_code == 401, (path, auth)
            assert response.headers.get("WWW-Authenticate", "").startswith("Basic")
            assert "fibosms." not in response.text and "test-" not in response.text
            assert response.text != "OK"


def test_flower_listens_on_loopback_unless_told_otherwise(
    stack: Stack, start_flower: Callable[..., FlowerProcess]
) -> None:
    # no --address: FIBOSMS_FLOWER_ADDRESS's default, loopback, not every interface
    flower = start_flower(with_credentials(stack), address=None)
    assert listening_addresses(flower.port) == {"127.0.0.1"}
    # FIBOSMS_FLOWER_ADDRESS picks another address (one more loopback address here)
    env = {**with_credentials(stack), "FIBOSMS_FLOWER_ADDRESS": "127.0.0.2"}
    other = start_flower(env, celery=True, address=None, host="127.0.0.2")
    assert listening_addresses(other.port) == {"127.0.0.2"}
    # and --address still wins over it
    given = start_flower(env, address="127.0.0.1")
    assert listening_addresses(given.port) == {"127.0.0.1"}


def test_fibosms_flower_unauthenticated_is_an_explicit_choice(
    stack: Stack, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWER_")}
    log = tmp_path / "open-flower.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fibosms.cli", "flower", "--unauthenticated",
             f"--port={port}", "--address=127.0.0.1"],
            cwd=ROOT, env={**env, **stack.env}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        def answering() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"flower exited {proc.returncode}:\n{log.read_text()}")
            try:
                return requests.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(answering, timeout=30, every=0.2)
        assert "WITHOUT authentication" in log.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_the_compose_healthcheck_passes_with_the_credentials_file_and_fails_without(
    stack: Stack, start_flower: Callable[..., FlowerProcess], tmp_path: Path
) -> None:
    import yaml

    # Given Flower reading its users from a file, as deploy/docker-compose.yml runs it
    secret = tmp_path / "flower_basic_auth"
    secret.write_text(f"{FLOWER_USER}:{FLOWER_PASSWORD}\n{SECOND_USER}:{SECOND_PASSWORD}\n")
    flower = start_flower({**stack.env, "FIBOSMS_FLOWER_BASIC_AUTH_FILE": str(secret)})
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    test = compose["services"]["flower"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    code = test[3].replace("/run/secrets/flower_basic_auth", str(secret)).replace(
        "127.0.0.1:5555", f"127.0.0.1:{flower.port}"
    )

    def probe() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=30, check=False)

    # Then the container's health check passes with the first user of the file
    assert probe().returncode == 0
    # and fails when those credentials are not Flower's
    secret.write_text(f"{FLOWER_USER}:not-the-password\n")
    failed = probe()
    assert failed.returncode != 0 and "401" in failed.stderr
