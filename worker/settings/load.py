"""Reading the settings: the environment (or a given mapping), ``.env``, secret files.

Values are strings until pydantic validates them against the declaration in
:mod:`worker.settings.model`; a failure becomes a one-line :class:`SettingsError` that names
the variable and what it must be. The process environment and the dotenv file (read with
python-dotenv) give the strings, the real environment winning.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError

from worker.brokers import sentinel_nodes
from worker.kinds import Kind
from worker.settings import rules
from worker.settings.declared import Declared, declared, env_names, number_text
from worker.settings.errors import SettingsError
from worker.settings.files import ENV_FILE_MAX_BYTES, SECRET_FILE_MAX_BYTES, read_capped
from worker.settings.model import (
    DEMO_CLIENT_NO,
    DEMO_CLIENT_PASS,
    FIBO_API_URL,
    SANDBOX_HOST,
    SANDBOX_PORT,
    Settings,
    redact_url,
)

_DB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
_BROKER_SCHEMES = (
    "sqla+sqlite", "sqla+postgresql", "sqla+postgresql+psycopg", "redis", "rediss", "memory",
    "sentinel", "amqp", "amqps",
)
_REDIS_SCHEMES = ("redis", "rediss", "sentinel")
_HTTP = ("http", "https")
#: values longer than this are cut in error messages, to keep them one readable line
_SHOWN = 40


@functools.cache
def _declarations() -> dict[str, Declared]:
    return {d.name: d for d in declared()}


@functools.cache
def _adapter() -> TypeAdapter[Settings]:
    return TypeAdapter(Settings)


def process_env() -> dict[str, str]:
    """The ``FIBOSMS_*`` variables of the process environment and the dotenv file; a
    variable set in the environment wins over the file."""
    dotenv = os.environ.get("FIBOSMS_ENV_FILE") or ".env"
    from_file: Mapping[str, str | None] = {}
    if os.path.lexists(dotenv):
        read_capped("FIBOSMS_ENV_FILE", dotenv, ENV_FILE_MAX_BYTES)  # size, kind, UTF-8
        from dotenv import dotenv_values  # here: 8 ms of import, for a file most hosts lack

        try:
            from_file = dotenv_values(dotenv, encoding="utf-8")
        except (UnicodeDecodeError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else type(exc).__name__
            raise SettingsError(
                f"FIBOSMS_ENV_FILE cannot be read ({dotenv}): {reason}"
            ) from None
    found: dict[str, str] = {}
    for name in env_names():
        value = os.environ.get(name)
        if value is None:
            value = from_file.get(name)
        if isinstance(value, str):
            found[name] = value
    return found


def read_env(env: Mapping[str, str] | None = None) -> Settings:
    """The settings of ``env``, or of the process environment and its dotenv file."""
    return parse(process_env() if env is None else env)


def parse(env: Mapping[str, str]) -> Settings:
    """The settings ``env`` describes, checked; a :class:`SettingsError` otherwise."""
    def get(name: str) -> str | None:
        value = env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    raw: dict[str, Any] = {}
    for d in _declarations().values():
        if d.env is not None and (value := get(d.env)) is not None:
            raw[d.name] = value

    data_path = Path(raw.get("data_dir", "var")).absolute()
    raw["data_dir"] = str(data_path)
    raw["database_url"] = _url(
        "FIBOSMS_DATABASE_URL", raw.get("database_url", f"sqlite:///{data_path / 'fibosms.db'}"),
        _DB_SCHEMES,
    )
    raw["broker_url"] = _url(
        "FIBOSMS_BROKER_URL", raw.get("broker_url", f"sqla+sqlite:///{data_path / 'broker.db'}"),
        _BROKER_SCHEMES,
    )
    if "redis_url" in raw:
        raw["redis_url"] = _url("FIBOSMS_REDIS_URL", raw["redis_url"], _REDIS_SCHEMES)
    for name in ("broker_url", "redis_url"):
        if str(raw.get(name, "")).startswith("sentinel://") and "broker_sentinel_master" not in raw:
            raise SettingsError(
                f"FIBOSMS_{name.upper()} is a sentinel:// URL: set "
                "FIBOSMS_BROKER_SENTINEL_MASTER to the master's name"
            )
    if "alert_webhook_url" in raw:
        raw["alert_webhook_url"] = _url(
            "FIBOSMS_ALERT_WEBHOOK_URL", raw["alert_webhook_url"], _HTTP
        )
    _account(raw, get("FIBOSMS_CLIENT_PASS_FILE"))
    for name, change in (("phone_format", str.lower), ("log_format", str.lower),
                         ("log_level", str.upper)):
        if name in raw:
            raw[name] = change(raw[name])
    if "ambiguous_retry_kinds" in raw:
        raw["ambiguous_retry_kinds"] = _kinds(raw["ambiguous_retry_kinds"])
    if "suppress_kinds" in raw:
        raw["suppress_kinds"] = _kinds(raw["suppress_kinds"], "FIBOSMS_SUPPRESS_KINDS")
    if "marketing_label" in raw:
        raw["marketing_label"] = raw["marketing_label"].lower()
    raw["flower_basic_auth"] = _flower_credentials(
        raw.pop("flower_basic_auth", None), get("FIBOSMS_FLOWER_BASIC_AUTH_FILE")
    )

    try:
        settings = _adapter().validate_python(raw)
    except ValidationError as exc:
        raise SettingsError(_one_line(exc, env)) from None

    derived: dict[str, Any] = {}
    if "call_deadline_seconds" not in raw:
        derived["call_deadline_seconds"] = rules.default_call_deadline(
            settings.sending_timeout_seconds, settings.rate_limit is not None
        )
    settings = dataclasses.replace(settings, **derived)
    rules.check(settings)
    return settings


def _account(raw: dict[str, Any], pass_file: str | None) -> None:
    """The account, the password (inline or from its file) and the gateway it implies."""
    client_no = raw.get("client_no")
    client_pass = raw.get("client_pass")
    if pass_file is not None:
        if client_pass is not None:
            raise SettingsError(
                "set only one of FIBOSMS_CLIENT_PASS and FIBOSMS_CLIENT_PASS_FILE"
            )
        client_pass = read_capped(
            "FIBOSMS_CLIENT_PASS_FILE", pass_file, SECRET_FILE_MAX_BYTES
        ).strip()
        if not client_pass:
            raise SettingsError(f"FIBOSMS_CLIENT_PASS_FILE is empty ({pass_file})")
    raw["using_sandbox"] = client_no is None
    if client_no is None:
        if client_pass is not None:
            raise SettingsError("FIBOSMS_CLIENT_PASS is set but FIBOSMS_CLIENT_NO is not")
        client_no, client_pass = DEMO_CLIENT_NO, DEMO_CLIENT_PASS
        default_api = f"http://{SANDBOX_HOST}:{raw.get('sandbox_port', SANDBOX_PORT)}"
    else:
        if client_pass is None:
            raise SettingsError(
                "FIBOSMS_CLIENT_NO is set but neither FIBOSMS_CLIENT_PASS nor "
                "FIBOSMS_CLIENT_PASS_FILE is"
            )
        default_api = FIBO_API_URL
    raw["client_no"], raw["client_pass"] = client_no, client_pass
    raw["api_url"] = _url("FIBOSMS_API_URL", raw.get("api_url", default_api), _HTTP)


def _url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    try:
        parts = urlsplit(raw)
    except ValueError as exc:  # an unclosed "[" of an IPv6 host, say
        shown = _shown(redact_url_safe(raw))
        raise SettingsError(f"{name} is not a URL ({exc}): {shown}") from None
    if parts.scheme == "sentinel" and parts.scheme in schemes:
        try:
            sentinel_nodes(raw)
        except ValueError as exc:
            raise SettingsError(f"{name}: {exc}, got {_shown(redact_url_safe(raw))}") from None
        return raw
    if parts.scheme not in schemes:
        raise SettingsError(
            f"{name} must be a URL starting with one of {', '.join(s + '://' for s in schemes)}"
            f", got {_shown(redact_url_safe(raw))}"
        )
    if parts.scheme in {"http", "https", "redis", "rediss", "amqp", "amqps"} and not parts.hostname:
        raise SettingsError(f"{name} has no host: {_shown(redact_url_safe(raw))}")
    return raw.rstrip("/") if parts.scheme in _HTTP else raw


def redact_url_safe(url: str) -> str:
    """:func:`redact_url` for a string that may not even parse: then only its scheme."""
    try:
        return redact_url(url)
    except ValueError:
        return url.partition("://")[0] + "://…"


def _kinds(raw: str, name: str = "FIBOSMS_AMBIGUOUS_RETRY_KINDS") -> frozenset[str]:
    named = {k.strip().lower() for k in raw.split(",") if k.strip()} - {"none"}
    known = {k.value for k in Kind}
    unknown = named - known
    if unknown:
        raise SettingsError(
            f"{name} names unknown kinds {sorted(unknown)}; "
            f"use a comma-separated subset of {', '.join(k.value for k in Kind)}, or 'none'"
        )
    return frozenset(named)


def _flower_credentials(inline: str | None, file: str | None) -> tuple[str, ...]:
    """``user:password`` pairs from FIBOSMS_FLOWER_BASIC_AUTH or its _FILE (comma or line
    separated); the error names the variable, never the password."""
    if inline is not None and file is not None:
        raise SettingsError(
            "set only one of FIBOSMS_FLOWER_BASIC_AUTH and FIBOSMS_FLOWER_BASIC_AUTH_FILE"
        )
    name, raw = "FIBOSMS_FLOWER_BASIC_AUTH", inline
    if file is not None:
        name = "FIBOSMS_FLOWER_BASIC_AUTH_FILE"
        raw = read_capped(name, file, SECRET_FILE_MAX_BYTES)
    if raw is None:
        return ()
    pairs = tuple(
        pair.strip() for line in raw.splitlines() for pair in line.split(",") if pair.strip()
    )
    if not pairs:
        raise SettingsError(f"{name} holds no user:password pair")
    for number, pair in enumerate(pairs, 1):
        user, sep, password = pair.partition(":")
        if not sep or not user.strip() or not password:
            raise SettingsError(
                f"{name}: entry {number} is not user:password (a user name, a colon, a "
                "password)"
            )
    return pairs


def _one_line(exc: ValidationError, env: Mapping[str, str]) -> str:
    """pydantic's first complaint, as ``FIBOSMS_X must be …, got '…'``."""
    error = exc.errors()[0]
    name = str(error["loc"][0]) if error["loc"] else ""
    d = _declarations().get(name)
    if d is None or d.env is None:
        return f"settings: {error['msg']}"
    raw = env.get(d.env)
    got = "" if d.secret or raw is None else f", got {_shown(redact_url_safe(raw.strip()))}"
    return f"{d.env} must be {expectation(d)}{got}"


def expectation(d: Declared) -> str:
    """What a valid value of ``d`` looks like, in words."""
    if d.expect is not None:
        return d.expect
    kind = base_type(d.annotation)
    if kind is bool:
        return "true or false"
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(kind))
    what = {int: "an integer", float: "a number"}.get(kind, "a value")
    return what + bounds_text(d)


def bounds_text(d: Declared) -> str:
    if d.ge is not None and d.le is not None:
        return f" between {number_text(d.ge)} and {number_text(d.le)}"
    if d.ge is not None and d.lt is not None:
        return f" from {number_text(d.ge)} to below {number_text(d.lt)}"
    if d.ge is not None:
        return f" of at least {number_text(d.ge)}"
    return ""


def base_type(annotation: Any) -> Any:
    """``float | None`` → ``float``; anything else as it is."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _shown(value: str) -> str:
    if len(value) > _SHOWN:
        value = value[:_SHOWN] + "…"
    return repr(value)
