"""``fibosms dev`` (what ``make run`` starts): stopped by a signal, it stops what it started.

The stack is real: migrations on SQLite files of the test's own, the sandbox, a worker and
beat, each a process. Ctrl-C reaches the whole process group from a terminal; a service
manager, ``timeout`` or ``kill`` sends SIGTERM to the command alone, and a closed terminal
SIGHUP, so those are the ones tested here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import pytest

from tests.fixtures.services import free_port
from tests.fixtures.stack import ROOT

#: seconds the stack may take to come up, and to stop (its children get 15 s)
START_SECONDS = 60
STOP_SECONDS = 30


@contextmanager
def dev_stack(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[psutil.Process]]]:
    """``fibosms dev`` on the defaults in ``tmp_path``, once it says it is running; with the
    processes it started. Whatever is left is killed afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIBOSMS_")}
    env.update({
        "FIBOSMS_ENV_FILE": str(tmp_path / "none.env"),
        "FIBOSMS_DATA_DIR": str(tmp_path / "var"),
        "FIBOSMS_SANDBOX_PORT": str(free_port()),
        "PYTHONPATH": str(ROOT),
    })
    proc = subprocess.Popen(
        [sys.executable, "-m", "fibosms.cli", "dev", "--concurrency", "1"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + START_SECONDS
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("running."):
                break
            assert time.monotonic() < deadline, "fibosms dev did not come up:\n" + "".join(seen)
        else:
            pytest.fail("fibosms dev ended before it was running:\n" + "".join(seen))
        children = psutil.Process(proc.pid).children()
        assert len(children) == 3, children  # the sandbox, the worker and beat
        yield proc, children
    finally:
        # the session it leads holds every process it started, left over or not
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        except psutil.NoSuchProcess:
            pass
    return left


@pytest.mark.timeout(180)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_to_fibosms_dev_stops_the_processes_it_started(
    tmp_path: Path, signum: signal.Signals
) -> None:
    with dev_stack(tmp_path) as (proc, children):
        time.sleep(1)  # the children past their own start-up
        proc.send_signal(signum)
        returncode = proc.wait(timeout=STOP_SECONDS)
        # by the time it has returned, it has waited for each of them
        assert alive(children) == [], [c.cmdline() for c in alive(children)]
        assert returncode == 0
