"""``fibosms campaign``: send a CSV as a marketing campaign, list, show and cancel campaigns."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from fibosms.cli.output import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliError,
    database,
    emit,
    handled,
    json_option,
    publisher,
    settings,
)
from fibosms.cli.params import MOMENT

#: the bad rows the text output lists before it says how many more there are
SHOWN_ERRORS = 50


@click.group()
def campaign() -> None:
    """Marketing campaigns under Decree 91/2020/ND-CP, Article 13 (quiet hours, cap, [QC])."""


@campaign.command("send")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="The campaign's name (one message per number).")
@click.option(
    "--text", "template", help="The text, with {column} placeholders (default: the text column).",
)
@click.option("--sender", help="Brand name (default: FIBOSMS_SENDER_NAME).")
@click.option("--send-at", type=MOMENT, help="Not before this date/time (UTC unless given).")
@click.option("--dry-run", is_flag=True, help="Check and summarise; accept nothing.")
@click.option("--skip-invalid", is_flag=True, help="Accept the good rows even when some are bad.")
@json_option
@handled
def campaign_send(
    file: Path,
    name: str,
    template: str | None,
    sender: str | None,
    send_at: datetime | None,
    dry_run: bool,
    skip_invalid: bool,
    as_json: bool,
) -> None:
    """Check every row of FILE.csv (a phone column, and text or --text), then accept them."""
    from worker.campaigns import CampaignError, send_campaign

    data = file.read_bytes()
    bar = _Progress(enabled=not as_json and sys.stderr.isatty())
    try:
        report = send_campaign(
            data,
            name=name,
            settings=settings(),
            db=database(),
            publisher=_NoPublisher() if dry_run else publisher(),
            template=template,
            sender=sender,
            send_at=send_at,
            dry_run=dry_run,
            skip_invalid=skip_invalid,
            progress=bar.update,
        )
    except CampaignError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    finally:
        bar.close()
    document = report.as_dict()
    emit(document, as_json, _summary_text)
    if report.errors and not skip_invalid and not dry_run:
        if not as_json:
            click.echo(
                f"fibosms: error: {len(report.errors)} bad row(s); nothing accepted "
                "(fix them, or --skip-invalid)",
                err=True,
            )
        sys.exit(EXIT_USAGE)


class _NoPublisher:
    def publish(self, items: Any, countdown: float | None = None) -> list[int]:
        return []


class _Progress:
    """Rows, rate and time left on stderr, only on a terminal."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.monotonic()
        self.shown = False

    def update(self, done: int, total: int) -> None:
        if not self.enabled or total == 0:
            return
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        left = (total - done) / rate if rate > 0 else 0.0
        width = 30
        filled = int(width * done / total)
        click.echo(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} rows  "
            f"{rate:,.0f}/s  {left:,.0f} s left ",
            err=True,
            nl=False,
        )
        self.shown = True

    def close(self) -> None:
        if self.shown:
            click.echo(err=True)


def _summary_text(d: dict[str, Any]) -> str:
    lines = [
        f"campaign    {d['campaign']}",
        f"rows        {d['rows']}",
        f"accepted    {d['accepted']}",
        f"invalid     {d['invalid']}",
        f"suppressed  {d['suppressed']}",
        f"duplicates  {d['duplicates']}",
        f"SMS parts   {d['segments']} (the estimated cost: one charge per part)",
    ]
    for e in d["errors"][:SHOWN_ERRORS]:
        lines.append(f"line {e['line']}: {e['reason']}")
    if len(d["errors"]) > SHOWN_ERRORS:
        lines.append(f"… and {len(d['errors']) - SHOWN_ERRORS} more bad rows (--json lists all)")
    return "\n".join(lines)


@campaign.command("list")
@json_option
@handled
def campaign_list(as_json: bool) -> None:
    """Every campaign, newest first, with its counts."""
    from worker.campaigns import list_campaigns

    found = list_campaigns(database())
    emit(found, as_json, lambda items: "\n".join(_line(c) for c in items) or "no campaigns")


def _line(c: dict[str, Any]) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in c["counts"].items()) or "no messages"
    cancelled = " (cancelled)" if c["cancelled_at"] else ""
    return f"{c['campaign']}{cancelled}: {counts}"


@campaign.command("show")
@click.argument("name")
@json_option
@handled
def campaign_show(name: str, as_json: bool) -> None:
    """One campaign: counts by status and hold reason, send rate, estimated end."""
    from worker.campaigns import show_campaign

    found = show_campaign(database(), name)
    if found is None:
        raise CliError(f"no campaign named {name!r}", EXIT_NOT_FOUND)
    emit(found, as_json, _show_text)


def _show_text(c: dict[str, Any]) -> str:
    holds = ", ".join(f"{k} {v}" for k, v in c["holds"].items()) or "none"
    return "\n".join([
        _line(c),
        f"held: {holds}",
        f"SMS parts: {c['segments']}",
        f"sent per minute (last 10 min): {c['sent_per_minute']}",
        f"estimated end: {c['estimated_end'] or '-'}",
    ])


@campaign.command("cancel")
@click.argument("name")
@json_option
@handled
def campaign_cancel(name: str, as_json: bool) -> None:
    """Cancel NAME: what is not yet sent becomes cancelled; what is in flight is left alone."""
    from worker.campaigns import CampaignError, cancel

    try:
        cancelled = cancel(database(), name)
    except CampaignError as exc:
        raise CliError(str(exc), EXIT_NOT_FOUND) from None
    emit(
        {"campaign": name, "cancelled": cancelled},
        as_json,
        lambda d: f"campaign {d['campaign']}: {d['cancelled']} message(s) cancelled",
    )


#: the commands fibosms.cli.main adds to the ``fibosms`` group
COMMANDS: list[click.Command] = [campaign]
