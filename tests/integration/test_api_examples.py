"""The README's HTTP examples run against a served API: the curl block with bash, the Node
program with node (skipped, saying so, where node is not installed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.api import make_token, serve_api
from tests.fixtures.services import clean_ledger
from tests.fixtures.stack import Stack

README = Path(__file__).resolve().parents[2] / "README.md"


def block_after(marker: str, language: str) -> str:
    """The first fenced ``language`` block after ``marker`` in the README."""
    text = README.read_text(encoding="utf-8")
    start = text.index(marker)
    match = re.compile(rf"```{language}\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no {language} block after {marker!r}"
    return match.group(1)


@pytest.fixture
def served(
    make_stack: Callable[..., Stack], pg_url: str, redis_url: str
) -> Iterator[tuple[str, str, Stack]]:
    stack = make_stack(pg_url, redis_url)
    clean_ledger(stack.db)
    token = make_token(stack.db, "example", "send", "read", "admin")
    with serve_api(stack.settings) as url:
        yield url, token, stack


def test_the_readme_curl_examples_run(served: tuple[str, str, Stack]) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed here")
    url, token, _stack = served
    script = block_after("Field names are those\nof `fibosms status --json`", "sh")
    script = script.replace("localhost:8080", url.removeprefix("http://"))
    done = subprocess.run(
        ["bash", "-e", "-c", script], env={**os.environ, "T": token, "ADMIN": token},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    documents = _documents(done.stdout)
    first = documents[0]
    assert (first["status"], first["recipient"]) == ("queued", "0912***678")
    assert any(isinstance(d.get("ids"), list) and len(d["ids"]) == 2  # type: ignore[arg-type]
               for d in documents)  # the batch
    assert any("replayed" in d for d in documents)
    assert any("paths" in d for d in documents)  # the OpenAPI document
    assert any("healthy" in d for d in documents)
    reports = [d for d in documents if "accepted" in d and "segments" in d]
    assert [(d["campaign"], d["accepted"], d["rows"]) for d in reports] == [
        ("tet-2027", 2, 2), ("tet-2027", 0, 2)]  # the JSON rows, then the CSV's dry run
    assert {"campaign": "tet-2027", "cancelled": 2} in documents
    assert {"added": 2, "given": 2} in documents


def _documents(text: str) -> list[dict[str, object]]:
    """The JSON objects curl printed back to back (its answers end without a newline)."""
    decoder = json.JSONDecoder()
    found: list[dict[str, object]] = []
    at = 0
    while (at := text.find("{", at)) != -1:
        try:
            doc, end = decoder.raw_decode(text, at)
        except json.JSONDecodeError:
            at += 1
            continue
        if isinstance(doc, dict):
            found.append(doc)
        at = end
    return found


def test_the_readme_node_example_sends_reads_lists_and_replays(
    served: tuple[str, str, Stack], tmp_path: Path
) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed here; the curl examples still ran")
    url, token, stack = served
    program = tmp_path / "send.mjs"
    program.write_text(block_after("**Node**", "js"), encoding="utf-8")
    done = subprocess.run(
        [node, str(program)], env={**os.environ, "FIBOSMS_TOKEN": token, "FIBOSMS_API": url},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    message_id, status = done.stdout.split()[:2]
    assert status == "queued"
    with stack.db.sessions() as session:
        from worker.ledger.views import message_record

        record = message_record(session, int(message_id))
    assert record is not None and record.idempotency_key == "order-42-shipped"
