"""``fibosms settings`` and ``fibosms health`` with the brokers beyond one Redis."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fixtures.brokers import RabbitVhost, SentinelGroup
from tests.integration.test_cli import fibosms


def test_settings_say_where_shared_state_lives_with_rabbitmq(tmp_path: Path) -> None:
    base = {"FIBOSMS_DATA_DIR": str(tmp_path), "FIBOSMS_ENV_FILE": str(tmp_path / "no.env"),
            "FIBOSMS_BROKER_URL": "amqp://fibo:hunter2@rabbit:5672/fibo"}
    alone = fibosms("settings", "--json", env=base)
    assert alone.returncode == 0, alone.stderr
    state = json.loads(alone.stdout)["shared_state"]
    assert state["rate_limit"].startswith("local")
    assert state["beat_lock"].startswith("none")
    assert "hunter2" not in alone.stdout
    shared = fibosms("settings", env={**base, "FIBOSMS_REDIS_URL": "redis://r:6379/1"})
    assert shared.returncode == 0, shared.stderr
    assert "shared_state.rate_limit: shared by every worker, in FIBOSMS_REDIS_URL" in shared.stdout


def test_a_sentinel_url_without_its_master_stops_start_up(tmp_path: Path) -> None:
    result = fibosms("settings", env={
        "FIBOSMS_DATA_DIR": str(tmp_path), "FIBOSMS_ENV_FILE": str(tmp_path / "no.env"),
        "FIBOSMS_BROKER_URL": "sentinel://:s3cret@a:26379;sentinel://b:26379",
    })
    assert result.returncode != 0
    assert "FIBOSMS_BROKER_SENTINEL_MASTER" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


def test_health_reaches_the_broker_through_sentinel_and_rabbitmq(
    tmp_path: Path, sentinel_broker: SentinelGroup, rabbit_vhost: RabbitVhost
) -> None:
    base = {"FIBOSMS_DATA_DIR": str(tmp_path), "FIBOSMS_ENV_FILE": str(tmp_path / "no.env")}
    for env in (sentinel_broker.env(), {"FIBOSMS_BROKER_URL": rabbit_vhost.url}):
        result = fibosms("health", "--check", "broker", "--json", env={**base, **env})
        assert result.returncode == 0, (env, result.stdout, result.stderr)
        assert json.loads(result.stdout)["checks"]["broker"]["ok"] is True


def test_metrics_read_queue_depth_through_sentinel(
    tmp_path: Path, sentinel_broker: SentinelGroup
) -> None:
    sentinel_broker.master().flushall()
    sentinel_broker.master().rpush("urgent", "a", "b")
    env = {"FIBOSMS_DATA_DIR": str(tmp_path), "FIBOSMS_ENV_FILE": str(tmp_path / "no.env"),
           "FIBOSMS_DATABASE_URL": f"sqlite:///{tmp_path}/m.db", **sentinel_broker.env()}
    assert fibosms("db", "upgrade", env=env).returncode == 0
    result = fibosms("metrics", "--once", env=env)
    assert result.returncode == 0, result.stderr
    assert "fibosms_broker_up 1.0" in result.stdout
    assert 'fibosms_queue_depth{queue="urgent"} 2.0' in result.stdout
    sentinel_broker.master().flushall()
