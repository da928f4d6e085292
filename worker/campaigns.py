"""Campaigns: a CSV of numbers (and texts) checked row by row, then accepted in batches.

Plain functions for the command line and, later, the HTTP API: each takes the settings, a
database and a publisher and returns a dataclass. The advertising rules themselves (the
window, the cap, suppression) are enforced at the claim; here a campaign's rows are checked,
labelled at the door, and given one idempotency key per campaign and number, so running the
same import again accepts nothing new. See ``docs/campaigns.md``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from producer.enqueue import Producer
from producer.validate import NewMessage, validate
from worker.clock import now as utcnow
from worker.errors import ValidationError
from worker.kinds import Kind
from worker.ledger.campaigns import (
    CampaignRecord,
    campaign,
    campaigns,
    cancel_campaign,
    sent_since,
)
from worker.ledger.db import Database
from worker.ledger.outbox import ids_for_keys
from worker.ledger.suppressions import (
    IMPORT,
    add_suppressions,
    suppressed_among,
)
from worker.publish import Publishes
from worker.rules.phone import normalize_phone
from worker.settings import Settings

#: rows per transaction when accepting a campaign
BATCH_ROWS = 2000
#: how far back ``campaign show`` looks to measure the send rate
RATE_WINDOW = timedelta(minutes=10)

#: the key a row carries when its field count differs from the header's (a NUL never
#: occurs in a decoded file: read_csv refuses it)
_WIDTH = "\x00width"
#: called with (rows done, rows in all) as the import goes
Progress = Callable[[int, int], None]


class CampaignError(Exception):
    """A campaign command that cannot go ahead (unknown, cancelled, unreadable file)."""


class CampaignCancelled(CampaignError):
    """Rows sent to a campaign that was cancelled: its name cannot be used again."""


@dataclass(frozen=True)
class RowError:
    #: the file's line number (the header is line 1)
    line: int
    reason: str


@dataclass
class CampaignReport:
    """What ``campaign send`` did, or would do with ``dry_run``."""

    campaign: str
    rows: int = 0
    accepted: int = 0
    invalid: int = 0
    suppressed: int = 0
    duplicates: int = 0
    segments: int = 0
    errors: list[RowError] = field(default_factory=list)
    #: rows already accepted by an earlier run of the same campaign
    already: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "rows": self.rows,
            "accepted": self.accepted,
            "invalid": self.invalid,
            "suppressed": self.suppressed,
            "duplicates": self.duplicates,
            "segments": self.segments,
            "errors": [{"line": e.line, "reason": e.reason} for e in self.errors],
        }


@dataclass(frozen=True)
class CsvTable:
    """A CSV file's columns and its rows, each with its line number."""

    columns: list[str]
    rows: list[tuple[int, dict[str, str]]]


def read_csv(data: bytes, *, required: tuple[str, ...] = ("phone",)) -> CsvTable:
    """Decode (UTF-8, with or without BOM) and split (comma or semicolon) a CSV file.

    Raises :class:`CampaignError` naming the line when the file as a whole cannot be read.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CampaignError(f"line {line}: the file is not UTF-8 text") from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise CampaignError(f"line {line}: a NUL byte; the file is not CSV text")
    header = text.split("\n", 1)[0]
    delimiter = ";" if header.count(";") > header.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        columns = [c.strip().lower() for c in next(reader, [])]
        missing = [c for c in required if c not in columns]
        if missing:
            raise CampaignError(
                f"line 1: the header has no {', '.join(repr(c) for c in missing)} column"
                f" (found: {', '.join(repr(c) for c in columns[:10]) or 'nothing'})"
            )
        rows: list[tuple[int, dict[str, str]]] = []
        for values in reader:
            if not values or not any(v.strip() for v in values):
                continue
            rows.append((reader.line_num, dict(zip(columns, values, strict=False))))
            if len(values) != len(columns):
                rows[-1][1][_WIDTH] = str(len(values))
    except csv.Error as exc:
        raise CampaignError(f"line {reader.line_num}: not valid CSV ({exc})") from None
    return CsvTable(columns, rows)


def template_fields(template: str) -> list[str]:
    """The ``{column}`` placeholders of a template (ValidationError when malformed).

    A placeholder is a column's name and nothing else: a format spec (``{name:>99999999}``
    would make each row a 100 MB string), a conversion, an attribute or an index is refused.
    """
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValidationError("text", f"the template is malformed: {exc}") from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if (spec or conversion or not name.strip() or name.isdigit()
                or any(ch in name for ch in ".[]")):
            raise ValidationError(
                "text", "a placeholder is a column's name in braces, like {name}, and "
                "nothing more")
        names.append(name)
    return names


def campaign_key(name: str, recipient: str) -> str:
    """The idempotency key of a campaign's message to one number.

    A digest, not the number: keys are shown by ``fibosms status`` and the API.
    """
    digest = hashlib.sha256(f"{name}\n{recipient}".encode()).hexdigest()[:32]
    return f"campaign:{name}:{digest}"


def check_rows(
    table: CsvTable,
    *,
    name: str,
    template: str | None,
    sender: str | None,
    send_at: datetime | None,
    settings: Settings,
) -> tuple[list[tuple[int, NewMessage]], list[RowError], int]:
    """Every row checked: the messages (with their lines), the errors, the duplicates."""
    if template is None and "text" not in table.columns:
        raise CampaignError("line 1: the header has no 'text' column and no --text was given")
    fields = template_fields(template) if template is not None else []
    unknown = [f for f in fields if f.lower() not in table.columns]
    if unknown:
        raise CampaignError(
            f"the template names {', '.join(repr(f) for f in unknown)}, which the header "
            "does not have"
        )
    at = utcnow()
    good: list[tuple[int, NewMessage]] = []
    errors: list[RowError] = []
    seen: set[str] = set()
    duplicates = 0
    for line, row in table.rows:
        if _WIDTH in row:
            width, expected = row[_WIDTH], len(table.columns)
            errors.append(RowError(line, f"{width} fields, the header has {expected}"))
            continue
        try:
            text = (
                template.format_map({f: row.get(f.lower(), "") for f in fields})
                if template is not None
                else row.get("text", "")
            )
            message = validate(
                row.get("phone", ""),
                text,
                settings=settings,
                now=at,
                kind=Kind.MARKETING.value,
                sender=sender,
                send_at=send_at,
                campaign=name,
            )
        except ValidationError as exc:
            errors.append(RowError(line, f"{exc.field}: {exc.reason}"))
            continue
        except (KeyError, IndexError, ValueError) as exc:
            errors.append(RowError(line, f"text: the template cannot be filled ({exc})"))
            continue
        if message.recipient in seen:
            duplicates += 1
            continue
        seen.add(message.recipient)
        good.append((line, _keyed(message, name)))
    return good, errors, duplicates


def _keyed(message: NewMessage, name: str) -> NewMessage:
    return replace(message, idempotency_key=campaign_key(name, message.recipient))


def send_campaign(
    data: bytes,
    *,
    name: str,
    settings: Settings,
    db: Database,
    publisher: Publishes,
    template: str | None = None,
    sender: str | None = None,
    send_at: datetime | None = None,
    dry_run: bool = False,
    skip_invalid: bool = False,
    progress: Progress | None = None,
) -> CampaignReport:
    """Check a campaign's CSV and accept its rows; the report of what was (or would be) done.

    With a bad row and without ``skip_invalid`` nothing is accepted (``report.errors`` says
    why, line by line). Rows whose number is suppressed are recorded as ``suppressed`` and
    never sent; a number given twice is accepted once.
    """
    _check_name(name)
    return send_table(
        read_csv(data), name=name, settings=settings, db=db, publisher=publisher,
        template=template, sender=sender, send_at=send_at, dry_run=dry_run,
        skip_invalid=skip_invalid, progress=progress,
    )


def table_of(rows: list[dict[str, str]]) -> CsvTable:
    """Rows given as mappings (the API's JSON rows) as a table; each row's "line" is its
    index in ``rows``. Column names are matched without regard to case, as in a header."""
    columns: dict[str, None] = {"phone": None}
    table_rows: list[tuple[int, dict[str, str]]] = []
    for index, row in enumerate(rows):
        lowered = {k.strip().lower(): v for k, v in row.items()}
        columns.update(dict.fromkeys(lowered))
        table_rows.append((index, lowered))
    return CsvTable(list(columns), table_rows)


def send_table(
    table: CsvTable,
    *,
    name: str,
    settings: Settings,
    db: Database,
    publisher: Publishes,
    template: str | None = None,
    sender: str | None = None,
    send_at: datetime | None = None,
    dry_run: bool = False,
    skip_invalid: bool = False,
    progress: Progress | None = None,
) -> CampaignReport:
    """:func:`send_campaign` for rows already read (a CSV file's, or :func:`table_of`)."""
    report = CampaignReport(campaign=name, dry_run=dry_run)
    _check_name(name)
    good, errors, duplicates = check_rows(
        table, name=name, template=template, sender=sender, send_at=send_at, settings=settings
    )
    report.rows = len(table.rows)
    report.errors, report.invalid, report.duplicates = errors, len(errors), duplicates
    report.segments = sum(m.segments for _, m in good)
    with db.sessions() as session:
        known = campaign(session, name, with_counts=False)
        listed = suppressed_among(session, [m.recipient for _, m in good])
    if known is not None and known.cancelled_at is not None:
        raise CampaignCancelled(f"campaign {name!r} was cancelled; choose another name")
    report.suppressed = sum(1 for _, m in good if m.recipient in listed)
    if dry_run or (errors and not skip_invalid):
        return report
    producer = Producer(settings=settings, db=db, publisher=publisher)
    done = 0
    for batch in _batches([m for _, m in good], BATCH_ROWS):
        with db.sessions() as session:
            existing = ids_for_keys(session, [str(m.idempotency_key) for m in batch])
        # what an earlier run accepted is left as it is, even if the text changed since
        fresh = [m for m in batch if m.idempotency_key not in existing]
        producer.accept(fresh)
        report.already += len(batch) - len(fresh)
        report.accepted += sum(1 for m in fresh if m.recipient not in listed)
        done += len(batch)
        if progress is not None:
            progress(done, len(good))
    return report


def _batches(items: list[NewMessage], size: int) -> Iterator[list[NewMessage]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _check_name(name: str) -> None:
    if not name.strip() or len(name) > 64 or any(not ch.isprintable() for ch in name):
        raise CampaignError("a campaign name is 1 to 64 printable characters")


# -- show, list, cancel ---------------------------------------------------------------------


def campaign_summary(
    record: CampaignRecord, *, sent_recently: int, now: datetime
) -> dict[str, Any]:
    """A campaign as ``campaign show --json`` prints it: counts, holds, rate, estimated end."""
    waiting = sum(record.counts.get(s, 0) for s in ("queued", "retrying", "sending"))
    per_minute = sent_recently / (RATE_WINDOW.total_seconds() / 60)
    end: str | None = None
    if waiting == 0:
        end = None
    elif per_minute > 0:
        end = (now + timedelta(minutes=waiting / per_minute)).isoformat()
    return {
        "campaign": record.name,
        "created_at": record.created_at.isoformat(),
        "cancelled_at": record.cancelled_at.isoformat() if record.cancelled_at else None,
        "messages": sum(record.counts.values()),
        "counts": dict(sorted(record.counts.items())),
        "holds": dict(sorted(record.holds.items())),
        "segments": record.segments,
        "waiting": waiting,
        "sent_per_minute": round(per_minute, 2),
        "estimated_end": end,
    }


def show_campaign(db: Database, name: str) -> dict[str, Any] | None:
    """``campaign show``: None when there is no campaign ``name``."""
    at = utcnow()
    with db.sessions() as session:
        record = campaign(session, name)
        if record is None:
            return None
        recent = sent_since(session, name, at - RATE_WINDOW)
    return campaign_summary(record, sent_recently=recent, now=at)


def list_campaigns(db: Database) -> list[dict[str, Any]]:
    """``campaign list``: every campaign, newest first."""
    at = utcnow()
    with db.sessions() as session:
        records = campaigns(session)
        recent = {r.name: sent_since(session, r.name, at - RATE_WINDOW) for r in records}
    return [campaign_summary(r, sent_recently=recent[r.name], now=at) for r in records]


def cancel(db: Database, name: str) -> int:
    """``campaign cancel``: how many messages were cancelled; CampaignError when unknown."""
    with db.transaction() as session:
        cancelled = cancel_campaign(session, name, utcnow())
    if cancelled is None:
        raise CampaignError(f"no campaign named {name!r}")
    return cancelled


# -- the suppression list --------------------------------------------------------------------


@dataclass
class SuppressImport:
    """What ``suppress import`` did."""

    rows: int = 0
    added: int = 0
    errors: list[RowError] = field(default_factory=list)


def parse_phones(phones: list[str]) -> list[str]:
    """Numbers as given → national form; ValidationError naming the first bad one."""
    out = []
    for index, raw in enumerate(phones):
        try:
            out.append(normalize_phone(raw))
        except ValidationError as exc:
            raise ValidationError(f"phones[{index}]", exc.reason) from None
    return out


def import_suppressions(
    data: bytes, *, db: Database, reason: str | None = None, progress: Progress | None = None
) -> SuppressImport:
    """Add a CSV file's ``phone`` column to the list; bad rows are reported and skipped."""
    table = read_csv(data)
    result = SuppressImport(rows=len(table.rows))
    phones: list[str] = []
    for line, row in table.rows:
        try:
            phones.append(normalize_phone(row.get("phone", "")))
        except ValidationError as exc:
            result.errors.append(RowError(line, f"phone: {exc.reason}"))
    for start in range(0, len(phones), BATCH_ROWS):
        with db.transaction() as session:
            result.added += add_suppressions(
                session, phones[start : start + BATCH_ROWS], reason=reason, source=IMPORT,
                now=utcnow(),
            )
        if progress is not None:
            progress(min(start + BATCH_ROWS, len(phones)), len(phones))
    return result

