"""The one holder of per-process resources and its fork rule (no services: nothing connects)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fibosms.celeryapp import make_app
from fibosms.celeryapp.resources import close_process, resources_of
from worker.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({
        "FIBOSMS_DATA_DIR": str(tmp_path),
        "FIBOSMS_BROKER_URL": "memory://",
        "FIBOSMS_ENV_FILE": str(tmp_path / "no.env"),
    })


def test_one_set_of_resources_per_app_in_a_process(settings: Settings) -> None:
    app, other = make_app(settings), make_app(settings)
    try:
        first = resources_of(app)
        assert resources_of(app) is first
        assert resources_of(other) is not first
        assert first.settings is settings and first.publisher.app is app
        assert first.publisher.batch_size == settings.bulk_batch_size
    finally:
        close_process()
    # closed and forgotten: the next use builds afresh
    assert resources_of(app) is not first
    close_process()


def test_a_forked_child_builds_its_own_and_the_parent_keeps_its_own(settings: Settings) -> None:
    app = make_app(settings)
    parent = resources_of(app)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without running the parent's clean-up
        try:
            child = resources_of(app)
            answer = "".join((
                "n" if child is not parent else "s",
                "n" if child.db is not parent.db else "s",
                "n" if child.client is not parent.client else "s",
                "s" if resources_of(app) is child else "n",
            ))
            os.write(write, answer.encode())
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 16).decode()
    os.close(read)
    os.waitpid(pid, 0)
    try:
        # new resources, database pool and client in the child, then kept there
        assert answer == "nnns"
        assert resources_of(app) is parent
    finally:
        close_process()
