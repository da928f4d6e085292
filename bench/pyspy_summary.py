"""Read py-spy's ``--format raw`` output (collapsed stacks) and say where the samples went.

Two views:

* **self time by area** — the innermost frame's file decides: SQLAlchemy, psycopg, kombu,
  redis-py, Celery, requests / urllib3 / http.client, logging (with fibosms's redaction),
  fibosms's own code, …;
* **inclusive time of named steps** — the share of samples with that function anywhere on
  the stack: ``process_message``, ``claim``, ``call_gateway``, ``record``, a commit, a log call…

    python -m bench.pyspy_summary profile.raw [--top 25]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

#: (area, substring of the file path) — first match wins, innermost frame decides
AREAS: tuple[tuple[str, str], ...] = (
    ("logging (fibosms redaction)", "worker/logs.py"),
    ("logging (fibosms redaction)", "worker/gateway/redact.py"),
    ("fibosms: gateway client/parse", "worker/gateway/"),
    ("fibosms: rules (phone, text)", "worker/rules/"),
    ("fibosms: producer", "producer/"),
    ("fibosms: other", "/worker/"),
    ("SQLAlchemy", "sqlalchemy/"),
    ("psycopg", "psycopg"),
    ("kombu", "kombu/"),
    ("redis-py", "redis/"),
    ("celery", "celery/"),
    ("billiard", "billiard/"),
    ("vine/amqp", "vine/"),
    ("requests", "requests/"),
    ("urllib3", "urllib3/"),
    ("http.client", "http/client.py"),
    ("email/header parsing", "email/"),
    ("tenacity", "tenacity/"),
    ("defusedxml / xml", "xml/"),
    ("defusedxml / xml", "defusedxml/"),
    ("json", "json/"),
    ("logging", "logging/"),
    ("socket/ssl/selectors", "socket.py"),
    ("socket/ssl/selectors", "ssl.py"),
    ("socket/ssl/selectors", "selectors.py"),
    ("threading/queue", "threading.py"),
    ("threading/queue", "queue.py"),
    ("threading/queue", "concurrent/futures"),
    ("datetime/zoneinfo", "datetime"),
    ("re", "/re/"),
    ("uuid", "uuid.py"),
)

#: (label, regex on "func (file)") — the share of samples where it is on the stack. Names of
#: both the first send path (process_message → claim / call_gateway / record) and the batched
#: one (_run → claim_many / _attempt / _record); a step absent from the profile is not shown.
STEPS: tuple[tuple[str, str], ...] = (
    ("celery task trace (whole task, worker threads)", r"^trace_task \(.*celery/app/trace\.py"),
    ("worker event loop (main thread: consume, ack, events)",
     r"^(asynloop|synloop) \(.*celery/worker/loops\.py"),
    ("fibosms send task body", r"^(process_message|process_batch) \(.*worker/sending\.py"),
    ("  claim (expire / claim statements + commit)",
     r"^(expire_if_due|claim|claim_many|_unclaimed) \(.*worker/"),
    ("  gateway call (client.send, requests, tenacity)", r"^(call_gateway|_attempt) \("),
    ("    FiboClient HTTP exchange", r"^_exchange \(.*worker/gateway/client\.py"),
    ("    parse_send", r"^parse_send \("),
    ("  record outcome (finish_attempt + commit)", r"^(record|_record) \(.*worker/sending\.py"),
    ("  circuit breaker", r"^\w*Breaker\.\w+ \(.*worker/breaker\.py"),
    ("  rate limiter", r"^\w*(RateLimiter|Limit|_Bucket)\.\w+ \(.*worker/ratelimit\.py"),
    ("any SQLAlchemy Session.execute", r"^Session\.execute \(.*sqlalchemy/orm/session\.py"),
    ("any DB commit", r"^commit \(.*sqlalchemy"),
    ("  of which psycopg (wire, wait)", r"\(.*psycopg/"),
    ("logging (any log call)", r"^Logger\._log \(.*logging/__init__\.py"),
    ("fibosms redaction filter",
     r"^\w*\.?(filter|redact|scrub) \(.*worker/(logs|gateway/redact)\.py"),
    ("celery task events (Flower)", r"^(EventDispatcher\.\w+|Consumer\._flush_events) \("),
    ("kombu ack (acks_late)", r"^(Message\.ack|QoS\.ack) \(.*kombu/"),
    ("kombu receive (BRPOP, QoS.append)", r"^(Channel\._brpop_read|QoS\.append) \(.*kombu/"),
    ("kombu creating redis clients", r"^Channel\._create_client \(.*kombu/"),
    ("celery send_task (publish)", r"^Celery\.send_task \(.*celery/app/base\.py"),
    ("tenacity retry wrapper", r"^Retrying\.__call__ \(.*tenacity/"),
)

#: roots of the call-tree view (the outermost one on a stack wins): thread-pool threads (Celery's
#: threads pool and fibosms's batch executor), a prefork child's task, the worker's event loop
TREE_ROOTS: tuple[str, ...] = ("_WorkItem.run", "fast_trace_task", "asynloop", "synloop")


def _frames(stack: str) -> list[str]:
    # --subprocesses puts a "process N:cmdline" pseudo-frame first
    return [f for f in stack.split(";") if f and not f.startswith("process ")]


def parse(text: str) -> tuple[list[tuple[list[str], int]], int]:
    stacks: list[tuple[list[str], int]] = []
    total = 0
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        try:
            n = int(count)
        except ValueError:
            continue
        frames = _frames(stack)
        if not frames:
            continue
        stacks.append((frames, n))
        total += n
    return stacks, total


def func_name(frame: str) -> str:
    m = _FRAME.match(frame)
    return m.group("func") if m else frame


class _Node:
    __slots__ = ("kids", "n")

    def __init__(self) -> None:
        self.n = 0
        self.kids: dict[str, _Node] = {}


def call_tree(stacks: list[tuple[list[str], int]], total: int, *, min_share: float = 1.0,
              max_depth: int = 14) -> list[tuple[int, str, float]]:
    """Top-down inclusive shares under :data:`TREE_ROOTS`: (depth, function, % of samples).

    A chain of frames that only pass the call on is printed as one line; the depth limit and
    ``min_share`` keep the listing short.
    """
    roots: dict[str, _Node] = {}
    for frames, n in stacks:
        names = [func_name(f) for f in frames]
        at = next((i for i, name in enumerate(names) if name in TREE_ROOTS), None)
        if at is None:
            continue
        node = roots.setdefault(names[at], _Node())
        node.n += n
        for name in names[at + 1 :]:
            node = node.kids.setdefault(name, _Node())
            node.n += n
    out: list[tuple[int, str, float]] = []

    def walk(name: str, node: _Node, depth: int) -> None:
        share = 100.0 * node.n / total if total else 0.0
        if share < min_share or depth > max_depth:
            return
        # a chain of calls that only pass the work on is shown on one line: a › b › c
        chain = [name]
        while len(node.kids) >= 1:
            kid, child = max(node.kids.items(), key=lambda kv: kv[1].n)
            if child.n < 0.97 * node.n:
                break
            chain.append(kid)
            node = child
        label = " › ".join(chain) if len(chain) <= 3 else f"{chain[0]} › … › {chain[-1]}"
        out.append((depth, label, round(share, 1)))
        for kid, child in sorted(node.kids.items(), key=lambda kv: -kv[1].n):
            walk(kid, child, depth + 1)

    for root, node in sorted(roots.items(), key=lambda kv: -kv[1].n):
        walk(root, node, 0)
    return out


def area_of(frame: str) -> str:
    m = _FRAME.match(frame)
    path = m.group("file") if m else frame
    for area, needle in AREAS:
        if needle in path:
            return area
    if path.endswith(".py") and ("site-packages" in path or "/lib/python" in path):
        # any other library: name it by its top folder
        parts = path.split("site-packages/")[-1].split("/")
        return parts[0] if len(parts) > 1 else path.rsplit("/", 1)[-1]
    return path.rsplit("/", 1)[-1] or "?"


def summarize(text: str, top: int = 25) -> dict[str, object]:
    stacks, total = parse(text)
    by_area: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    steps: Counter[str] = Counter()
    compiled = [(label, re.compile(rx)) for label, rx in STEPS]
    for frames, n in stacks:
        # py-spy puts the outermost frame first
        leaf = frames[-1]
        by_area[area_of(leaf)] += n
        m = _FRAME.match(leaf)
        by_leaf[f"{m.group('func')} ({m.group('file').rsplit('site-packages/', 1)[-1]})"
                if m else leaf] += n
        for label, rx in compiled:
            if any(rx.search(f) for f in frames):
                steps[label] += n
    def pct(n: int) -> float:
        return round(100.0 * n / total, 1) if total else 0.0

    return {
        "samples": total,
        "self_by_area": [(a, pct(n)) for a, n in by_area.most_common(top)],
        "self_by_function": [(f, pct(n)) for f, n in by_leaf.most_common(top)],
        "inclusive_steps": [(label, pct(steps[label])) for label, _ in STEPS if steps[label]],
        "call_tree": call_tree(stacks, total),
    }


def render(summary: dict[str, object]) -> str:
    lines = [f"py-spy samples: {summary['samples']}"]
    for title, key in (("self time by area", "self_by_area"),
                       ("inclusive time of steps (share of samples on the stack)",
                        "inclusive_steps"),
                       ("self time by function", "self_by_function")):
        lines.append(f"  {title}:")
        rows = summary[key]
        assert isinstance(rows, list)
        for name, share in rows:
            lines.append(f"    {share:5.1f}%  {name}")
    tree = summary.get("call_tree") or []
    assert isinstance(tree, list)
    if tree:
        lines.append("  call tree (inclusive, ≥ 1% of samples):")
        for depth, name, share in tree:
            lines.append(f"    {share:5.1f}%  {'  ' * depth}{name}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pyspy_summary")
    p.add_argument("raw", type=Path, help="py-spy record --format raw output")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    print(render(summarize(args.raw.read_text(errors="replace"), args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
