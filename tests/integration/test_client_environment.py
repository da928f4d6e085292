"""The client reads the proxy settings of its environment once, when it is built.

The sandbox serves as the proxy: a forward proxy receives the gateway's whole URL in its
request line, and the sandbox answers by the URL's path. A gateway host that does not
resolve (``.invalid``) is reachable only through the proxy.
"""

from __future__ import annotations

import dataclasses
import socket

import pytest

from worker.errors import NotSent
from worker.gateway import FiboClient
from worker.sandbox import SandboxServer
from worker.settings import Settings

PHONE = "0912345678"
UNRESOLVABLE = "http://fibo-gateway.invalid"


def _proxy_vars() -> list[str]:
    names = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
    return [n for name in names for n in (name, name.upper())]


@pytest.fixture
def clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in _proxy_vars():
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_send_goes_through_the_proxy_the_environment_names(
    sandbox: SandboxServer, sandbox_settings: Settings, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    clean_proxy_env.setenv("HTTP_PROXY", sandbox.url)
    settings = dataclasses.replace(sandbox_settings, api_url=UNRESOLVABLE)
    with FiboClient(settings) as client:
        receipt = client.send(PHONE, "through the proxy")
    assert receipt.code == 200
    assert [c.operation for c in sandbox.calls()] == ["SendMaskedSMS"]


def test_no_proxy_sends_directly(
    sandbox_settings: Settings, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a proxy address where nothing listens
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    clean_proxy_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{dead}")
    clean_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    with FiboClient(sandbox_settings) as client:
        assert client.send(PHONE, "direct").code == 200


def test_the_environment_is_read_when_the_client_is_built(
    sandbox: SandboxServer, sandbox_settings: Settings, clean_proxy_env: pytest.MonkeyPatch
) -> None:
    settings = dataclasses.replace(sandbox_settings, api_url=UNRESOLVABLE)
    with FiboClient(settings) as client:
        clean_proxy_env.setenv("HTTP_PROXY", sandbox.url)  # too late for this client
        with pytest.raises(NotSent):
            client.send(PHONE, "no proxy known")
    assert sandbox.calls() == []
