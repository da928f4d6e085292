"""Where a secret or a phone number could end up, read back as text, and searched.

Used by test_secrets.py; :func:`flower_haystacks` is for the Flower work (issue 5): call it
with Flower's base URL after a run and pass the result to :func:`find_leaks` with the same
secret and numbers, e.g.::

    places = flower_haystacks("http://127.0.0.1:5555", auth=("admin", "pw"), task_ids=ids)
    assert find_leaks(places, PASSWORD, PHONES) == []
"""

from __future__ import annotations

import base64
import json
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

import redis
from sqlalchemy import inspect, text

from worker.ledger.db import Database


def secret_forms(secret: str) -> set[str]:
    """The ways a password shows up when leaked: as is, URL-encoded, XML-escaped, base64."""
    return {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        escape(secret),
        base64.b64encode(secret.encode()).decode(),
        json.dumps(secret)[1:-1],
    }


def phone_forms(national: str) -> set[str]:
    """0912345678 → itself, 84912345678 and 912345678 (the form any full leak contains)."""
    significant = national[1:]
    return {national, f"84{significant}", significant}


def find_leaks(
    haystacks: Mapping[str, str],
    secret: str,
    phones: Iterable[str],
    *,
    phones_allowed_in: Iterable[str] = (),
) -> list[str]:
    """Every place (``haystacks`` key) holding the secret, or a full number outside
    ``phones_allowed_in`` (keys). Empty when nothing leaked."""
    found = []
    secrets = secret_forms(secret)
    numbers = {form: p for p in phones for form in phone_forms(p)}
    allowed = set(phones_allowed_in)
    for place, content in haystacks.items():
        for form in secrets:
            if form in content:
                found.append(f"the password ({form!r}) in {place}")
        if place in allowed:
            continue
        for form, p in numbers.items():
            if form in content:
                found.append(f"the number {p} (as {form}) in {place}")
                break
    return found


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def redis_haystacks(client: redis.Redis) -> dict[str, str]:
    """Every key of every database, with its value dumped by type."""
    out: dict[str, str] = {}
    dbs = [int(k[2:]) for k in client.info("keyspace")] or [0]
    kwargs = client.connection_pool.connection_kwargs
    for db in dbs:
        with redis.Redis(host=kwargs["host"], port=kwargs["port"], db=db) as r:
            for key in r.scan_iter(count=500):
                kind = _text(r.type(key))
                value: Any
                if kind == "string":
                    value = r.get(key)
                elif kind == "list":
                    value = r.lrange(key, 0, -1)
                elif kind == "hash":
                    value = r.hgetall(key)
                elif kind == "set":
                    value = r.smembers(key)
                elif kind == "zset":
                    value = r.zrange(key, 0, -1, withscores=True)
                elif kind == "stream":
                    value = r.xrange(key)
                else:
                    value = f"<{kind}>"
                name = _text(key)
                out[f"redis db{db} key name {name}"] = name
                out[f"redis db{db} {kind} {name}"] = _deep_text(value)
    return out


def _deep_text(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(f"{_deep_text(k)}={_deep_text(v)}" for k, v in value.items())
    if isinstance(value, list | tuple | set):
        return " ".join(_deep_text(v) for v in value)
    return _text(value)


def database_haystacks(db: Database) -> dict[str, str]:
    """Every column of every table, its values joined: key ``table.column``."""
    out: dict[str, str] = {}
    insp = inspect(db.engine)
    # the schema first: on SQLite each connection takes the write lock (BEGIN IMMEDIATE)
    tables = {t: [c["name"] for c in insp.get_columns(t)] for t in insp.get_table_names()}
    with db.engine.connect() as conn:
        for table, columns in tables.items():
            rows = conn.execute(text(f'SELECT * FROM "{table}"')).all()  # noqa: S608
            for i, column in enumerate(columns):
                out[f"{table}.{column}"] = " ".join(_text(r[i]) for r in rows)
    return out


def flower_haystacks(
    base_url: str,
    *,
    auth: tuple[str, str] | None = None,
    task_ids: Iterable[str] = (),
    timeout: float = 10.0,
) -> dict[str, str]:
    """Flower's pages and API answers (for the Flower work, issue 5)."""
    paths = ["/", "/workers", "/tasks", "/broker", "/api/workers", "/api/tasks",
             "/api/task/types", "/api/queues/length", "/tasks/datatable", "/metrics"]
    paths += [f"/task/{t}" for t in task_ids] + [f"/api/task/info/{t}" for t in task_ids]
    headers = {}
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    out = {}
    for path in paths:
        request = urllib.request.Request(base_url.rstrip("/") + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                out[f"flower {path}"] = response.read().decode("utf-8", errors="replace")
        except OSError as exc:  # a page Flower does not have is no leak
            out[f"flower {path}"] = f"<{type(exc).__name__}>"
    return out
