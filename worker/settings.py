"""One frozen settings object, read once from the ``FIBOSMS_*`` environment.

Nothing deep in the code reads ``os.environ``: entry points call :func:`get_settings`
(or :meth:`Settings.from_env` with an explicit mapping, as the tests do) and pass the
object down. A bad value stops start-up with a :class:`SettingsError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

#: the real gateway, used once an account is configured
FIBO_API_URL = "https://ha-api.fibosms.com"
#: where ``fibosms sandbox`` listens by default, and what the client talks to when no
#: account is configured
SANDBOX_PORT = 8077
SANDBOX_HOST = "127.0.0.1"
#: credentials the sandbox and the client share when no account is configured
DEMO_CLIENT_NO = "DEMO0001"
DEMO_CLIENT_PASS = "demo-pass"  # noqa: S105 - a public demo value for the local sandbox

SEND_PATH = "/SendMT/service.asmx/SendMaskedSMS"
BALANCE_PATH = "/SendMT/service.asmx/GetClientBalance"
TOTALS_PATH = "/WebserivceFibo/PartnerMtTotal.asmx"  # the provider's spelling

KINDS = ("otp", "transactional", "marketing")

PhoneFormat = Literal["national", "international"]
LogFormat = Literal["text", "json"]

#: where ``fibosms metrics`` serves /metrics by default
METRICS_PORT = 9808


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline is configured with. Times are in seconds."""

    database_url: str
    broker_url: str
    api_url: str
    client_no: str
    client_pass: str = field(repr=False)
    sender_name: str | None = None
    #: True when no account is configured and the sandbox's demo account is used
    using_sandbox: bool = False
    max_attempts: int = 8
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 3600.0
    sweep_seconds: float = 30.0
    sending_timeout_seconds: float = 120.0
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 30.0
    #: seconds one gateway call may take in all (connect, retries, reading the answer); the
    #: send tasks' time limits and so a worker's warm shutdown are derived from it
    call_deadline_seconds: float = 35.0
    send_path: str = SEND_PATH
    balance_path: str = BALANCE_PATH
    totals_path: str = TOTALS_PATH
    phone_format: PhoneFormat = "national"
    max_segments: int = 6
    strip_diacritics: bool = False
    #: message kinds that are sent again after an ambiguous attempt; the others are
    #: dead-lettered with the reason "outcome unknown"
    ambiguous_retry_kinds: frozenset[str] = frozenset({"otp", "transactional"})
    #: how many due rows one sweep pass publishes at most
    sweep_batch: int = 1000
    #: a due row published this long ago and still not claimed is taken as lost by the
    #: broker and published again (a duplicate task is harmless: the claim guards)
    republish_after_seconds: float = 300.0
    balance_poll_seconds: float = 300.0
    totals_poll_seconds: float = 300.0
    #: alert when the balance falls below this (messages or VND); None: no alert
    low_balance: float | None = None
    alert_webhook_url: str | None = None
    #: how far the gateway's accepted count may differ from ours before a day is a mismatch
    reconcile_tolerance: int = 0
    #: messages (or segments) per second across every worker; None: no limit
    rate_limit: float | None = None
    #: the bucket's size: the largest burst the gateway may see
    rate_burst: float = 1.0
    #: whether a long message costs one token per SMS part
    rate_per_segment: bool = False
    #: share of the bucket kept for urgent (otp) messages
    urgent_reserve: float = 0.2
    #: consecutive transient failures that open the circuit breaker; 0: no breaker
    breaker_threshold: int = 10
    #: seconds the breaker stays open before one probe is let through
    breaker_cooldown_seconds: float = 30.0
    #: task events for Flower (Redis brokers only); they cost about a quarter of what an
    #: empty task costs a worker
    task_events: bool = True
    #: bulk (marketing) messages per send_batch task
    bulk_batch_size: int = 50
    #: concurrent gateway calls inside one batch
    batch_concurrency: int = 32
    sandbox_port: int = SANDBOX_PORT
    data_dir: str = "var"
    log_level: str = "INFO"
    #: ``text`` (one readable line per event) or ``json`` (one JSON object per line)
    log_format: LogFormat = "text"
    #: Flower's basic-auth credentials, ``user:password`` each; empty: none configured
    flower_basic_auth: tuple[str, ...] = field(default=(), repr=False)
    #: where Flower listens unless given ``--address``; loopback: reach it through a proxy
    flower_address: str = "127.0.0.1"
    #: where ``fibosms metrics`` listens
    metrics_port: int = METRICS_PORT
    #: seconds of recent ledger rows the scrape-time metrics look at (latency, outcomes)
    metrics_window_seconds: float = 3600.0
    #: a worker serves its own process's metrics (gateway latency, task outcomes) on this
    #: port; 0: not served
    worker_metrics_port: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default: the process environment and ``./.env``)."""
        if env is None:
            env = _process_env()
        return _parse(env)

    def redacted(self) -> dict[str, object]:
        """The settings as a dict fit for printing: no password, no URL credentials."""
        out: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "client_pass":
                value = "***" if value else ""
            elif f.name == "flower_basic_auth":
                value = [f"{pair.split(':', 1)[0]}:***" for pair in value]
            elif f.name == "alert_webhook_url" and value:
                # webhook URLs often carry their token in the path or the query
                parts = urlsplit(value)
                value = f"{parts.scheme}://{parts.hostname}/***"
            elif isinstance(value, str) and "://" in value:
                value = redact_url(value)
            elif isinstance(value, frozenset):
                value = sorted(value)
            out[f.name] = value
        return out


def redact_url(url: str) -> str:
    """``scheme://user:secret@host/db`` → ``scheme://user:***@host/db``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


_cached: Settings | None = None


def get_settings() -> Settings:
    """The process's settings, read once on first use."""
    global _cached
    if _cached is None:
        _cached = Settings.from_env()
    return _cached


def _process_env() -> dict[str, str]:
    env = dict(os.environ)
    dotenv_path = Path(env.get("FIBOSMS_ENV_FILE", ".env"))
    if dotenv_path.is_file():
        from dotenv import dotenv_values

        for key, value in dotenv_values(dotenv_path).items():
            if value is not None:
                env.setdefault(key, value)  # the real environment wins
    return env


def _parse(env: Mapping[str, str]) -> Settings:
    def get(name: str) -> str | None:
        value = env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def number(name: str, default: float, *, minimum: float = 0.0) -> float:
        raw = get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if value != value or value < minimum:  # NaN or too small
            raise SettingsError(f"{name} must be at least {minimum:g}, got {raw!r}")
        return value

    def integer(name: str, default: int, *, minimum: int = 1) -> int:
        raw = get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {raw!r}")
        return value

    def boolean(name: str, default: bool) -> bool:
        raw = get(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")

    def url(name: str, default: str, schemes: tuple[str, ...]) -> str:
        raw = get(name) or default
        parts = urlsplit(raw)
        if parts.scheme not in schemes:
            raise SettingsError(
                f"{name} must be a URL starting with one of {', '.join(s + '://' for s in schemes)}"
                f", got {redact_url(raw)!r}"
            )
        if parts.scheme in {"http", "https", "redis", "rediss"} and not parts.hostname:
            raise SettingsError(f"{name} has no host: {redact_url(raw)!r}")
        return raw.rstrip("/") if parts.scheme in {"http", "https"} else raw

    def path(name: str, default: str) -> str:
        raw = get(name) or default
        if not raw.startswith("/") or any(c in raw for c in "?# "):
            raise SettingsError(f"{name} must be a URL path starting with '/', got {raw!r}")
        return raw

    data_dir = get("FIBOSMS_DATA_DIR") or "var"
    data_path = Path(data_dir).absolute()

    client_no = get("FIBOSMS_CLIENT_NO")
    client_pass = get("FIBOSMS_CLIENT_PASS")
    pass_file = get("FIBOSMS_CLIENT_PASS_FILE")
    if pass_file is not None:
        if client_pass is not None:
            raise SettingsError(
                "set only one of FIBOSMS_CLIENT_PASS and FIBOSMS_CLIENT_PASS_FILE"
            )
        try:
            client_pass = Path(pass_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(
                f"FIBOSMS_CLIENT_PASS_FILE cannot be read ({pass_file}): {exc.strerror}"
            ) from None
        if not client_pass:
            raise SettingsError(f"FIBOSMS_CLIENT_PASS_FILE is empty ({pass_file})")

    sandbox_port = integer("FIBOSMS_SANDBOX_PORT", SANDBOX_PORT)
    using_sandbox = client_no is None
    if using_sandbox:
        if client_pass is not None:
            raise SettingsError("FIBOSMS_CLIENT_PASS is set but FIBOSMS_CLIENT_NO is not")
        client_no, client_pass = DEMO_CLIENT_NO, DEMO_CLIENT_PASS
        default_api = f"http://{SANDBOX_HOST}:{sandbox_port}"
    else:
        if client_pass is None:
            raise SettingsError(
                "FIBOSMS_CLIENT_NO is set but neither FIBOSMS_CLIENT_PASS nor "
                "FIBOSMS_CLIENT_PASS_FILE is"
            )
        default_api = FIBO_API_URL
    assert client_no is not None and client_pass is not None

    phone_format = (get("FIBOSMS_PHONE_FORMAT") or "national").lower()
    if phone_format not in ("national", "international"):
        raise SettingsError(
            f"FIBOSMS_PHONE_FORMAT must be 'national' or 'international', got {phone_format!r}"
        )

    kinds_raw = get("FIBOSMS_AMBIGUOUS_RETRY_KINDS")
    if kinds_raw is None:
        ambiguous_kinds = frozenset({"otp", "transactional"})
    else:
        ambiguous_kinds = frozenset(
            k.strip().lower() for k in kinds_raw.split(",") if k.strip() and k.strip() != "none"
        )
        unknown = ambiguous_kinds - set(KINDS)
        if unknown:
            raise SettingsError(
                f"FIBOSMS_AMBIGUOUS_RETRY_KINDS names unknown kinds {sorted(unknown)}; "
                f"use a comma-separated subset of {', '.join(KINDS)}, or 'none'"
            )

    retry_base = number("FIBOSMS_RETRY_BASE_SECONDS", 30.0)
    retry_max = number("FIBOSMS_RETRY_MAX_SECONDS", 3600.0)
    if retry_max < retry_base:
        raise SettingsError(
            "FIBOSMS_RETRY_MAX_SECONDS must not be below FIBOSMS_RETRY_BASE_SECONDS"
        )
    read_timeout = number("FIBOSMS_READ_TIMEOUT_SECONDS", 30.0, minimum=0.001)
    sending_timeout = number("FIBOSMS_SENDING_TIMEOUT_SECONDS", 120.0, minimum=1.0)
    if sending_timeout <= read_timeout:
        raise SettingsError(
            "FIBOSMS_SENDING_TIMEOUT_SECONDS must be above FIBOSMS_READ_TIMEOUT_SECONDS "
            f"({sending_timeout:g} <= {read_timeout:g}): a slow call would be taken for a dead "
            "worker"
        )

    rate_limit = (
        number("FIBOSMS_RATE_LIMIT", 0.0, minimum=0.001)
        if get("FIBOSMS_RATE_LIMIT") is not None
        else None
    )

    log_level = (get("FIBOSMS_LOG_LEVEL") or "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise SettingsError(f"FIBOSMS_LOG_LEVEL must be a logging level name, got {log_level!r}")

    log_format = (get("FIBOSMS_LOG_FORMAT") or "text").lower()
    if log_format not in ("text", "json"):
        raise SettingsError(f"FIBOSMS_LOG_FORMAT must be 'text' or 'json', got {log_format!r}")

    flower_basic_auth = _flower_credentials(
        get("FIBOSMS_FLOWER_BASIC_AUTH"), get("FIBOSMS_FLOWER_BASIC_AUTH_FILE")
    )

    return Settings(
        database_url=url(
            "FIBOSMS_DATABASE_URL",
            f"sqlite:///{data_path / 'fibosms.db'}",
            ("sqlite", "postgresql", "postgresql+psycopg"),
        ),
        broker_url=url(
            "FIBOSMS_BROKER_URL",
            f"sqla+sqlite:///{data_path / 'broker.db'}",
            ("sqla+sqlite", "sqla+postgresql", "sqla+postgresql+psycopg", "redis", "rediss",
             "memory"),
        ),
        api_url=url("FIBOSMS_API_URL", default_api, ("http", "https")),
        client_no=client_no,
        client_pass=client_pass,
        sender_name=get("FIBOSMS_SENDER_NAME"),
        using_sandbox=using_sandbox,
        max_attempts=integer("FIBOSMS_MAX_ATTEMPTS", 8),
        retry_base_seconds=retry_base,
        retry_max_seconds=retry_max,
        sweep_seconds=number("FIBOSMS_SWEEP_SECONDS", 30.0, minimum=1.0),
        sending_timeout_seconds=sending_timeout,
        connect_timeout_seconds=number("FIBOSMS_CONNECT_TIMEOUT_SECONDS", 5.0, minimum=0.001),
        read_timeout_seconds=read_timeout,
        call_deadline_seconds=number("FIBOSMS_CALL_DEADLINE_SECONDS", 35.0, minimum=0.1),
        send_path=path("FIBOSMS_SEND_PATH", SEND_PATH),
        balance_path=path("FIBOSMS_BALANCE_PATH", BALANCE_PATH),
        totals_path=path("FIBOSMS_TOTALS_PATH", TOTALS_PATH),
        phone_format=phone_format,  # type: ignore[arg-type]
        max_segments=integer("FIBOSMS_MAX_SEGMENTS", 6),
        strip_diacritics=boolean("FIBOSMS_STRIP_DIACRITICS", False),
        ambiguous_retry_kinds=ambiguous_kinds,
        sweep_batch=integer("FIBOSMS_SWEEP_BATCH", 1000),
        republish_after_seconds=number("FIBOSMS_REPUBLISH_AFTER_SECONDS", 300.0, minimum=1.0),
        balance_poll_seconds=number("FIBOSMS_BALANCE_POLL_SECONDS", 300.0, minimum=1.0),
        totals_poll_seconds=number("FIBOSMS_TOTALS_POLL_SECONDS", 300.0, minimum=1.0),
        low_balance=(
            number("FIBOSMS_LOW_BALANCE", 0.0) if get("FIBOSMS_LOW_BALANCE") is not None else None
        ),
        alert_webhook_url=(
            url("FIBOSMS_ALERT_WEBHOOK_URL", "", ("http", "https"))
            if get("FIBOSMS_ALERT_WEBHOOK_URL") is not None
            else None
        ),
        reconcile_tolerance=integer("FIBOSMS_RECONCILE_TOLERANCE", 0, minimum=0),
        rate_limit=rate_limit,
        rate_burst=(
            number("FIBOSMS_RATE_BURST", 1.0, minimum=1.0)
            if get("FIBOSMS_RATE_BURST") is not None
            else max(1.0, rate_limit or 1.0)
        ),
        rate_per_segment=boolean("FIBOSMS_RATE_PER_SEGMENT", False),
        urgent_reserve=_fraction(get("FIBOSMS_URGENT_RESERVE"), "FIBOSMS_URGENT_RESERVE", 0.2),
        breaker_threshold=integer("FIBOSMS_BREAKER_THRESHOLD", 10, minimum=0),
        breaker_cooldown_seconds=number("FIBOSMS_BREAKER_COOLDOWN_SECONDS", 30.0, minimum=0.1),
        task_events=boolean("FIBOSMS_TASK_EVENTS", True),
        bulk_batch_size=integer("FIBOSMS_BULK_BATCH_SIZE", 50),
        batch_concurrency=integer("FIBOSMS_BATCH_CONCURRENCY", 32),
        sandbox_port=sandbox_port,
        data_dir=str(data_path),
        log_level=log_level,
        log_format=log_format,  # type: ignore[arg-type]
        flower_basic_auth=flower_basic_auth,
        flower_address=get("FIBOSMS_FLOWER_ADDRESS") or "127.0.0.1",
        metrics_port=integer("FIBOSMS_METRICS_PORT", METRICS_PORT),
        metrics_window_seconds=number("FIBOSMS_METRICS_WINDOW_SECONDS", 3600.0, minimum=60.0),
        worker_metrics_port=integer("FIBOSMS_WORKER_METRICS_PORT", 0, minimum=0),
    )


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
        try:
            raw = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"{name} cannot be read ({file}): {exc.strerror}") from None
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


def _fraction(raw: str | None, name: str, default: float) -> float:
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number between 0 and 1, got {raw!r}") from None
    if not 0.0 <= value < 1.0:
        raise SettingsError(f"{name} must be at least 0 and below 1, got {raw!r}")
    return value
