"""The declaration: every setting once, with its type, default, bounds and help text.

Each attribute of :class:`Settings` is read from ``FIBOSMS_`` + its name in capitals (a few
are not read at all, see ``env=False``). The bounds are enforced by pydantic when the
settings are read (:mod:`worker.settings.load`); rules that span several settings live in
:mod:`worker.settings.rules`. ``dataclasses.replace`` on a ``Settings`` does not validate:
it is how tests build a variant of settings that were already read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field

from worker.kinds import Kind

#: reads an environment into Settings (worker.settings.load.read_env), installed by the package
_reader: Callable[[Mapping[str, str] | None], Settings] | None = None


def install_reader(reader: Callable[[Mapping[str, str] | None], Settings]) -> None:
    """Make :meth:`Settings.from_env` use ``reader``."""
    global _reader
    _reader = reader

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

#: the message kinds, as plain strings (older callers); new code uses :class:`Kind`
KINDS: tuple[str, ...] = tuple(k.value for k in Kind)

PhoneFormat = Literal["national", "international"]
LogFormat = Literal["text", "json"]
MarketingLabel = Literal["add", "require", "off"]

#: where ``fibosms metrics`` serves /metrics by default
METRICS_PORT = 9808
#: where ``fibosms serve`` (the HTTP API) listens by default
API_PORT = 8080

PREFIX = "FIBOSMS_"

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
WEEK = 7 * DAY
MAX_PORT = 65535

_URL_PATH = r"^/[^?# ]*$"
_HHMM = r"([01][0-9]|2[0-3]):[0-5][0-9]"
_WINDOW = rf"^{_HHMM}-({_HHMM}|24:00)$"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def setting(
    help: str,
    *,
    ge: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    pattern: str | None = None,
    env: bool = True,
    default_text: str | None = None,
    expect: str | None = None,
    secret: bool = False,
) -> Any:
    """One setting's declaration, for ``Annotated[type, setting(...)]``.

    ``ge``/``le``/``lt`` are the bounds pydantic enforces; ``default_text`` describes a
    default that is computed from other settings; ``expect`` words what a valid value
    looks like when the type and bounds do not say it well; ``secret`` keeps the value
    out of error messages.
    """
    return Field(
        ge=ge,
        le=le,
        lt=lt,
        pattern=pattern,
        description=help,
        json_schema_extra={
            "env": env,
            "default_text": default_text,
            "expect": expect,
            "secret": secret,
        },
    )


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline is configured with. Times are in seconds."""

    __pydantic_config__ = ConfigDict(allow_inf_nan=False)

    database_url: Annotated[str, setting(
        "the ledger; production: `postgresql+psycopg://user:pass@host/db`",
        default_text="`sqlite:///./var/fibosms.db`",
    )]
    broker_url: Annotated[str, setting(
        "Celery's broker: `redis://host:6379/0`, Sentinel "
        "`sentinel://host:26379;sentinel://host2:26379`, or RabbitMQ `amqp://user:pass@host//`",
        default_text="`sqla+sqlite:///./var/broker.db`",
    )]
    api_url: Annotated[str, setting(
        "gateway base URL; paths are appended",
        default_text="`https://ha-api.fibosms.com` with an account; the sandbox "
        "`http://127.0.0.1:8077` without",
    )]
    client_no: Annotated[str, setting(
        "the FIBO account", default_text="none (→ the sandbox's demo account)"
    )]
    client_pass: Annotated[str, setting(
        "the API password", default_text="none", secret=True
    )] = field(repr=False)
    sender_name: Annotated[str | None, setting(
        "the default brand name (`senderName`)", default_text="none"
    )] = None
    broker_sentinel_master: Annotated[str | None, setting(
        "the Sentinel master name, needed by a `sentinel://` broker or Redis URL",
        default_text="none",
    )] = None
    redis_url: Annotated[str | None, setting(
        "the Redis for shared state that is not a queue (rate limit, breaker, beat lock); "
        "`redis://`, `rediss://` or `sentinel://`",
        default_text="the broker, when it is a Redis; with RabbitMQ and none: each falls "
        "back to one per process (`fibosms settings` says which)",
    )] = None
    #: True when no account is configured and the sandbox's demo account is used
    using_sandbox: Annotated[bool, setting("no account: the sandbox", env=False)] = False
    max_attempts: Annotated[int, setting(
        "attempts before a transient failure is dead-lettered", ge=1, le=100
    )] = 8
    retry_base_seconds: Annotated[float, setting(
        "shortest wait before a retry", ge=0, le=DAY
    )] = 30.0
    retry_max_seconds: Annotated[float, setting(
        "longest wait before a retry; not below the shortest", ge=0, le=WEEK
    )] = 3600.0
    sweep_seconds: Annotated[float, setting(
        "how often beat runs the sweep", ge=1, le=DAY
    )] = 30.0
    sending_timeout_seconds: Annotated[float, setting(
        "a row left in `sending` longer than this is taken as an ambiguous attempt (a worker "
        "died mid-call); must be above the read timeout, and leave room for the call "
        "deadline and the wait for a rate-limit token",
        ge=1, le=DAY,
    )] = 120.0
    connect_timeout_seconds: Annotated[float, setting(
        "connecting to the gateway", ge=0.001, le=600
    )] = 5.0
    read_timeout_seconds: Annotated[float, setting(
        "waiting for the gateway's answer; past it a send is ambiguous", ge=0.001, le=600
    )] = 30.0
    send_path: Annotated[str, setting(
        "the send method's path", pattern=_URL_PATH, expect="a URL path starting with '/'"
    )] = SEND_PATH
    balance_path: Annotated[str, setting(
        "the balance method's path (the provider's document says `service.aspx`, taken as "
        "a typo)",
        pattern=_URL_PATH, expect="a URL path starting with '/'",
    )] = BALANCE_PATH
    totals_path: Annotated[str, setting(
        "the daily totals method's path (the provider's spelling)",
        pattern=_URL_PATH, expect="a URL path starting with '/'",
    )] = TOTALS_PATH
    phone_format: Annotated[PhoneFormat, setting(
        "the number as sent to FIBO: `national` (`0912…`) or `international` (`84912…`)"
    )] = "national"
    max_segments: Annotated[int, setting(
        "the longest text accepted, in SMS parts", ge=1, le=10
    )] = 6
    strip_diacritics: Annotated[bool, setting(
        "strip Vietnamese diacritics by default"
    )] = False
    #: message kinds that are sent again after an ambiguous attempt; the others are
    #: dead-lettered with the reason "outcome unknown"
    ambiguous_retry_kinds: Annotated[frozenset[str], setting(
        "kinds sent again after an ambiguous attempt; the others are dead-lettered "
        "\"outcome unknown\" (`none` for none)",
        default_text="`otp,transactional`",
    )] = frozenset({Kind.OTP.value, Kind.TRANSACTIONAL.value})
    #: how many due rows one sweep pass publishes at most
    sweep_batch: Annotated[int, setting(
        "rows one sweep pass handles at most", ge=1, le=100_000
    )] = 1000
    #: a due row published this long ago and still not claimed is taken as lost by the
    #: broker and published again (a duplicate task is harmless: the claim guards)
    republish_after_seconds: Annotated[float, setting(
        "a due row published this long ago and still not claimed is published again: the "
        "fallback for a lost task the broker marker cannot see (a wiped Redis is noticed at "
        "the next sweep)",
        ge=1, le=DAY,
    )] = 300.0
    balance_poll_seconds: Annotated[float, setting(
        "how often beat polls GetClientBalance", ge=1, le=DAY
    )] = 300.0
    totals_poll_seconds: Annotated[float, setting(
        "how often beat polls GetTotalMt (and reconciles the day)", ge=1, le=DAY
    )] = 300.0
    #: alert when the balance falls below this (messages or VND); None: no alert
    low_balance: Annotated[float | None, setting(
        "alert when the balance falls below this (messages or VND, as the account counts)",
        ge=0, le=1e12, default_text="unset (no alert)",
    )] = None
    alert_webhook_url: Annotated[str | None, setting(
        "alerts are also POSTed here as JSON (`{\"source\", \"kind\", \"key\", \"message\", "
        "\"raised_at\", \"open\"}`)",
        default_text="unset",
    )] = None
    #: how far the gateway's accepted count may differ from ours before a day is a mismatch
    reconcile_tolerance: Annotated[int, setting(
        "how many messages the gateway's count may differ from ours before a day is a "
        "mismatch",
        ge=0, le=1_000_000,
    )] = 0
    #: messages (or segments) per second across every worker; None: no limit
    rate_limit: Annotated[float | None, setting(
        "messages per second across every worker and machine (a token bucket in Redis; in "
        "the process with the embedded default)",
        ge=0.001, le=10_000, default_text="unset (no limit)",
    )] = None
    #: tokens: how far calls may bunch up (1: one interval apart)
    rate_burst: Annotated[float, setting(
        "how far calls may bunch up, in tokens. At 1 calls are spaced 1/limit apart and no "
        "one-second window, wherever it starts, sees more than the limit; a burst of B lets "
        "a window see up to limit + B - 1",
        ge=1, le=100_000,
    )] = 1.0
    #: whether a long message costs one token per SMS part
    rate_per_segment: Annotated[bool, setting(
        "a long message costs one token per SMS part"
    )] = False
    #: share of the burst kept for urgent (otp) messages
    urgent_reserve: Annotated[float, setting(
        "share of the burst non-urgent messages leave for OTPs; with a burst of 1, the "
        "fraction of an interval they wait longer than an OTP, so a waiting OTP takes the "
        "next slot", ge=0, lt=1
    )] = 0.2
    #: consecutive transient failures that open the circuit breaker; 0: no breaker
    breaker_threshold: Annotated[int, setting(
        "consecutive transient failures that open the circuit breaker (0: no breaker)",
        ge=0, le=10_000,
    )] = 10
    #: seconds the breaker stays open before one probe is let through
    breaker_cooldown_seconds: Annotated[float, setting(
        "how long the breaker stays open before one probe call", ge=0.1, le=DAY
    )] = 30.0
    #: task events for Flower (Redis brokers only); they cost about a quarter of what an
    #: empty task costs a worker
    task_events: Annotated[bool, setting(
        "task events for Flower (Redis only); `false` gives a worker about a third more "
        "throughput, and Flower then shows no tasks"
    )] = True
    #: bulk (marketing) messages per send_batch task
    bulk_batch_size: Annotated[int, setting(
        "bulk (marketing) messages per `send_batch` task; with a rate limit, a batch's "
        "tokens must come within the token wait",
        ge=1, le=1000,
    )] = 50
    #: otp/transactional messages one run of send_sms may take together
    single_batch_size: Annotated[int, setting(
        "most single (otp/transactional) messages a worker takes together in one run of "
        "`send_sms` when several are waiting: one claim, concurrent calls, shared outcome "
        "transactions; 1 runs each message on its own",
        ge=1, le=256,
    )] = 16
    #: how long a worker holds a single message for others to join it
    single_batch_window_ms: Annotated[int, setting(
        "milliseconds a worker holds a received otp/transactional message for others to "
        "join its run (the most it adds to a message's latency; an idle worker never "
        "holds one); 0 sends at once",
        ge=0, le=1000,
    )] = 20
    #: messages a worker process reserves ahead, per pool slot
    prefetch_multiplier: Annotated[int, setting(
        "tasks a worker reserves ahead per pool slot (Celery's prefetch multiplier); the "
        "single path needs room for several runs of `FIBOSMS_SINGLE_BATCH_SIZE`",
        ge=1, le=64,
    )] = 4
    #: gateway calls one batch keeps in flight
    batch_concurrency: Annotated[int, setting(
        "gateway calls one batch (a bulk `send_batch`, or single messages gathered into one "
        "run) keeps in flight at once", ge=1, le=256
    )] = 32
    sandbox_port: Annotated[int, setting(
        "where `fibosms sandbox` listens, and the default gateway without an account",
        ge=1, le=MAX_PORT,
    )] = SANDBOX_PORT
    data_dir: Annotated[str, setting(
        "where the default SQLite files and beat's schedule live", default_text="`./var`"
    )] = "var"
    log_level: Annotated[str, setting(
        "the logging level",
        pattern=f"^({'|'.join(_LOG_LEVELS)})$",
        expect=f"a logging level name ({', '.join(_LOG_LEVELS)})",
    )] = "INFO"
    #: ``text`` (one readable line per event) or ``json`` (one JSON object per line)
    log_format: Annotated[LogFormat, setting(
        "`text` (one readable line per event) or `json` (one JSON object per line, for log "
        "shippers); see [Logs](#logs)"
    )] = "text"
    #: Flower's basic-auth credentials, ``user:password`` each; empty: none configured
    flower_basic_auth: Annotated[tuple[str, ...], setting(
        "Flower's users, `user:password[,user2:password2]`; without it (or the file) "
        "`fibosms flower` refuses to start",
        default_text="none", secret=True,
    )] = field(default=(), repr=False)
    #: where ``fibosms metrics`` listens
    metrics_port: Annotated[int, setting(
        "where `fibosms metrics` listens", ge=1, le=MAX_PORT
    )] = METRICS_PORT
    #: seconds of recent ledger rows the scrape-time metrics look at (latency, outcomes)
    metrics_window_seconds: Annotated[float, setting(
        "how far back the \"recent\" metrics and the enqueue-to-accepted histogram look",
        ge=MINUTE, le=WEEK,
    )] = 3600.0
    #: a worker serves its own process's metrics (gateway latency, task outcomes) on this
    #: port; 0: not served
    worker_metrics_port: Annotated[int, setting(
        "a worker serves its own metrics (gateway latency, task outcomes, sweep passes) on "
        "this port (0: off)",
        ge=0, le=MAX_PORT,
    )] = 0
    #: the longest one gateway call may take, from connecting to the last byte of the
    #: answer, retries of a send that never left included
    call_deadline_seconds: Annotated[float, setting(
        "the longest one gateway call may take, from connecting to the last byte, retries "
        "of a request that never left included: an answer still arriving then is cut, and a "
        "send cut after its request left is ambiguous; must leave room under the sending "
        "timeout",
        ge=1, le=600,
        default_text="35, or what fits under a shorter sending timeout",
    )] = 35.0
    #: the address Flower binds to
    flower_address: Annotated[str, setting(
        "the address Flower listens on", pattern=r"^\S+$", expect="a host name or IP address"
    )] = "127.0.0.1"
    #: Decree 91/2020/ND-CP, Article 13: when advertising SMS may go, Vietnam local time
    marketing_hours: Annotated[str, setting(
        "when marketing messages may be sent, Vietnam local time (`HH:MM-HH:MM`; "
        "`00:00-24:00` = always); outside it they are held, not attempted",
        pattern=_WINDOW, expect="a window HH:MM-HH:MM, such as 07:00-22:00",
    )] = "07:00-22:00"
    #: advertising SMS to one number within any 24 hours, sent or in flight; 0: no cap
    marketing_daily_cap: Annotated[int, setting(
        "marketing messages to one number within any 24 hours, sent or in flight; one over "
        "it is held until it may go (0: no cap)",
        ge=0, le=1000,
    )] = 3
    marketing_label: Annotated[MarketingLabel, setting(
        "`add`: prefix `[QC] ` to marketing text that does not start with `[QC]` or `[AD]` "
        "(counted in the parts); `require`: refuse such text; `off`"
    )] = "add"
    #: kinds never sent to a number on the suppression list
    suppress_kinds: Annotated[frozenset[str], setting(
        "kinds never sent to a number on the suppression list (`none` for none)",
        default_text="`marketing`",
    )] = frozenset({Kind.MARKETING.value})
    #: the address ``fibosms serve`` (the HTTP API) binds to; loopback: a proxy faces clients
    api_host: Annotated[str, setting(
        "the address `fibosms serve` (the HTTP API) listens on; keep loopback behind a "
        "TLS-terminating proxy", pattern=r"^\S+$", expect="a host name or IP address",
    )] = "127.0.0.1"
    api_port: Annotated[int, setting(
        "the port `fibosms serve` listens on", ge=1, le=MAX_PORT
    )] = API_PORT
    #: requests per second per API key; None: no limit
    api_rate_limit: Annotated[float | None, setting(
        "requests per second per API key (in Redis when there is one, so across every API "
        "process; otherwise per process); past it: 429 with `Retry-After`",
        ge=0.001, le=100_000, default_text="unset (no limit)",
    )] = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``env`` (default: the process environment and ``./.env``)."""
        # the reader lives in worker.settings.load, which imports this module; the package
        # installs it (worker/settings/__init__.py), so this module imports nothing back
        assert _reader is not None, "import worker.settings, not worker.settings.model alone"
        return _reader(env)

    def redacted(self) -> dict[str, object]:
        """The settings as a dict fit for printing: no password, no URL credentials."""
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):
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
    if ";" in url:  # a Sentinel URL names several hosts, each may carry a password
        return ";".join(redact_url(part) for part in url.split(";"))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


@dataclass(frozen=True)
class Input:
    """A variable that is read but is no attribute of its own (a file to read, say)."""

    env: str
    help: str
    default_text: str
    #: the attribute it is listed after in the README's table
    after: str


INPUTS: tuple[Input, ...] = (
    Input(
        "FIBOSMS_CLIENT_PASS_FILE",
        "read the password from this file instead (a mounted secret; at most 4 KiB of UTF-8)",
        "none",
        after="client_pass",
    ),
    Input(
        "FIBOSMS_FLOWER_BASIC_AUTH_FILE",
        "read Flower's users from this file instead (comma- or line-separated; a mounted "
        "secret; at most 4 KiB of UTF-8)",
        "none",
        after="flower_basic_auth",
    ),
    Input(
        "FIBOSMS_ENV_FILE",
        "the dotenv file to read (UTF-8, at most 1 MiB)",
        "`.env`",
        after="flower_address",
    ),
)
