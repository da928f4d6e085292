"""``fibosms suppress``: the numbers that get no message of the suppressed kinds."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from fibosms.cli.output import EXIT_USAGE, CliError, database, emit, handled, json_option


@click.group()
def suppress() -> None:
    """The suppression list (FIBOSMS_SUPPRESS_KINDS, default marketing, never go to it)."""


@suppress.command("add")
@click.argument("phones", nargs=-1, required=True)
@click.option("--reason", help="Why (kept with the entry).")
@json_option
@handled
def suppress_add(phones: tuple[str, ...], reason: str | None, as_json: bool) -> None:
    """Add PHONE… to the list."""
    from worker.campaigns import parse_phones
    from worker.clock import now
    from worker.ledger.suppressions import OPERATOR, add_suppressions

    numbers = parse_phones(list(phones))
    with database().transaction() as session:
        added = add_suppressions(session, numbers, reason=reason, source=OPERATOR, now=now())
    emit({"added": added, "given": len(set(numbers))}, as_json,
         lambda d: f"{d['added']} number(s) added ({d['given'] - d['added']} already listed)")


@suppress.command("remove")
@click.argument("phones", nargs=-1, required=True)
@json_option
@handled
def suppress_remove(phones: tuple[str, ...], as_json: bool) -> None:
    """Take PHONE… off the list."""
    from worker.campaigns import parse_phones
    from worker.ledger.suppressions import remove_suppressions

    numbers = parse_phones(list(phones))
    with database().transaction() as session:
        removed = remove_suppressions(session, numbers)
    emit({"removed": removed}, as_json, lambda d: f"{d['removed']} number(s) removed")


@suppress.command("list")
@json_option
@handled
def suppress_list(as_json: bool) -> None:
    """The list: phone, reason, source, when (numbers in full: it is the operator's list)."""
    from worker.ledger.suppressions import list_suppressions

    with database().sessions() as session:
        entries = list_suppressions(session)
    items = [
        {"phone": e.phone, "reason": e.reason, "source": e.source,
         "created_at": e.created_at.isoformat()}
        for e in entries
    ]
    emit(items, as_json, _list_text)


def _list_text(items: list[dict[str, Any]]) -> str:
    if not items:
        return "the suppression list is empty"
    return "\n".join(
        f"{i['phone']}  {i['source']:<8}  {i['created_at'][:19]}  {i['reason'] or ''}".rstrip()
        for i in items
    )


@suppress.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--reason", help="Why (kept with each entry).")
@json_option
@handled
def suppress_import(file: Path, reason: str | None, as_json: bool) -> None:
    """Add the phone column of FILE.csv to the list; bad rows are listed and skipped."""
    from worker.campaigns import CampaignError, import_suppressions

    show = not as_json and sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        if show:
            click.echo(f"\r{done}/{total} numbers", err=True, nl=False)

    try:
        result = import_suppressions(
            file.read_bytes(), db=database(), reason=reason, progress=progress
        )
    except CampaignError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if show:
        click.echo(err=True)
    emit(
        {
            "rows": result.rows,
            "added": result.added,
            "errors": [{"line": e.line, "reason": e.reason} for e in result.errors],
        },
        as_json,
        lambda d: "\n".join(
            [f"{d['rows']} row(s), {d['added']} number(s) added"]
            + [f"line {e['line']}: {e['reason']}" for e in d["errors"][:50]]
        ),
    )


#: the commands fibosms.cli.main adds to the ``fibosms`` group
COMMANDS: list[click.Command] = [suppress]
