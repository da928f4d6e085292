"""The broker URL forms, where shared state lives, and the Celery options each broker gets."""

from __future__ import annotations

import pytest

from fibosms.celeryapp.config import build
from worker.brokers import (
    QUEUES,
    publish_options,
    sentinel_master_options,
    sentinel_nodes,
    shared_state,
    state_url,
)
from worker.settings import Settings, SettingsError

SENTINEL = "sentinel://:s3cret@10.0.0.1:26379;sentinel://10.0.0.2:26380/3"


def test_sentinel_nodes_and_the_master_database() -> None:
    assert sentinel_nodes(SENTINEL) == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert sentinel_master_options(SENTINEL) == {"db": 0, "password": "s3cret"}
    assert sentinel_master_options("sentinel://a:1/3")["db"] == 3
    with pytest.raises(ValueError):
        sentinel_nodes("sentinel://a:1;redis://b:2")


def test_a_sentinel_url_needs_the_master_name() -> None:
    with pytest.raises(SettingsError, match="FIBOSMS_BROKER_SENTINEL_MASTER"):
        Settings.from_env({"FIBOSMS_BROKER_URL": SENTINEL})
    with pytest.raises(SettingsError, match="FIBOSMS_BROKER_SENTINEL_MASTER"):
        Settings.from_env({"FIBOSMS_REDIS_URL": "sentinel://a:26379"})
    s = Settings.from_env(
        {"FIBOSMS_BROKER_URL": SENTINEL, "FIBOSMS_BROKER_SENTINEL_MASTER": "fibo"}
    )
    assert s.broker_sentinel_master == "fibo"
    assert "s3cret" not in str(s.redacted())


def test_redis_url_takes_only_redis_forms() -> None:
    with pytest.raises(SettingsError, match="FIBOSMS_REDIS_URL"):
        Settings.from_env({"FIBOSMS_REDIS_URL": "amqp://h//"})


def test_shared_state_defaults_to_the_brokers_redis_and_falls_back_without_one() -> None:
    assert state_url("redis://r:6379/0", None) == "redis://r:6379/0"
    assert state_url(SENTINEL, None) == SENTINEL
    assert state_url("amqp://h//", None) is None
    assert state_url("amqp://h//", "redis://r/1") == "redis://r/1"
    local = shared_state("amqp://h//", None)
    assert local["rate_limit"].startswith("local")
    assert local["beat_lock"].startswith("none")
    assert "not needed" in local["broker_marker"]
    shared = shared_state("amqp://h//", "redis://r/1")
    assert "FIBOSMS_REDIS_URL" in shared["rate_limit"]
    assert "not needed" in shared["broker_marker"]
    assert "beside the queues" in shared_state("redis://r/0", "redis://r/1")["broker_marker"]


def _settings(**env: str) -> Settings:
    return Settings.from_env({f"FIBOSMS_{k.upper()}": v for k, v in env.items()})


def test_rabbitmq_gets_quorum_queues_confirms_and_no_beat_lock_without_redis() -> None:
    conf = build(_settings(broker_url="amqp://guest:guest@h:5672//"))
    assert conf["broker_transport_options"] == {"confirm_publish": True}
    queues = {q.name: q for q in conf["task_queues"]}
    assert set(queues) == set(QUEUES)
    for q in queues.values():
        assert q.queue_arguments == {"x-queue-type": "quorum"}
        assert q.exchange.type == "topic"  # Celery's native delayed delivery needs it
    assert conf["beat_scheduler"] == "celery.beat:PersistentScheduler"
    assert conf["worker_send_task_events"] is True
    assert publish_options("amqp://h//") == {"confirm_timeout": 2.0, "whole_seconds": True}
    assert publish_options("redis://h/0") == {}
    with_redis = build(_settings(broker_url="amqp://h//", redis_url="redis://r:6379/1"))
    assert with_redis["beat_scheduler"].endswith("LockedScheduler")


def test_sentinel_broker_names_its_master_in_the_transport_options() -> None:
    conf = build(_settings(broker_url=SENTINEL, broker_sentinel_master="fibo"))
    options = conf["broker_transport_options"]
    assert options["master_name"] == "fibo"
    assert options["visibility_timeout"] >= 3600
    assert conf["beat_scheduler"].endswith("LockedScheduler")
    assert all(not q.queue_arguments for q in conf["task_queues"])
