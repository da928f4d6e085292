"""The console's campaigns and suppression-list pages.

Campaigns: one progress bar per campaign (its messages by outcome, and what is held back),
and, for operators, a cancel that first says how many messages it would cancel. The
suppression list: paged by number, a look-up, and for operators adding and removing. A
number typed here travels in a POST body, never in a URL; viewers see numbers masked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from fibosms.web.console.guard import PREFIX, Form, Signed, acting, render, resources, signed_in
from fibosms.web.resources import Resources
from worker.campaigns import CampaignError, cancel, list_campaigns, parse_phones, show_campaign
from worker.clock import now as utcnow
from worker.errors import ValidationError
from worker.ledger.suppressions import (
    OPERATOR,
    SuppressionRecord,
    add_suppressions,
    count_suppressions,
    list_suppressions,
    remove_suppressions,
    suppression,
)
from worker.rules.phone import normalize_phone

router = APIRouter(prefix=PREFIX, include_in_schema=False)
log = logging.getLogger("fibosms.console")

#: suppression entries per page
PAGE = 100
#: numbers one "add" form may carry
MAX_ADD = 1000
#: the progress bar's segments, in order, with their colours
SEGMENTS: tuple[tuple[str, str], ...] = (
    ("sent", "#2e7d32"),
    ("sending", "#1565c0"),
    ("retrying", "#f9a825"),
    ("queued", "#90a4ae"),
    ("suppressed", "#6a1b9a"),
    ("cancelled", "#616161"),
    ("expired", "#ef6c00"),
    ("dead", "#c62828"),
)


def progress_bar(counts: Mapping[str, int], *, width: int = 420, height: int = 18) -> Markup:
    """A campaign's messages by status as one stacked SVG bar (presentation attributes
    only), each segment titled with its count."""
    total = sum(counts.values())
    parts: list[str] = []
    x = 0.0
    for status, colour in SEGMENTS:
        n = counts.get(status, 0)
        if not n or not total:
            continue
        w = width * n / total
        parts.append(
            f'<rect class="seg {status}" x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" '
            f'fill="{colour}"><title>{status}: {n:,}</title></rect>'
        )
        x += w
    if not parts:
        parts.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#eceff1"/>')
    done = sum(counts.get(s, 0) for s in ("sent", "suppressed", "cancelled", "expired", "dead"))
    label = escape(f"{done:,} of {total:,} messages finished")
    return Markup(  # noqa: S704 - statuses are fixed words, numbers formatted, the label escaped
        f'<svg class="progress" role="img" aria-label="{label}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" preserveAspectRatio="none">'
        f'{"".join(parts)}</svg>'
    )


# -- campaigns ------------------------------------------------------------------------------


@router.get("/campaigns")
async def campaigns(request: Request) -> Response:
    who = await signed_in(request)
    return await _campaigns(request, who)


async def _campaigns(request: Request, who: Signed, *, notice: str | None = None,
                     status: int = 200) -> Response:
    res = resources(request)
    found = await run_in_threadpool(list_campaigns, res.db)
    confirm = None
    wanted = request.query_params.get("cancel")
    if wanted and who.operator.may_act and request.method == "GET":
        confirm = next((c for c in found if c["campaign"] == wanted
                        and c["cancelled_at"] is None), None)
    for c in found:
        c["bar"] = progress_bar(c["counts"])
    return render(request, "campaigns.html", status=status, who=who, campaigns=found,
                  confirm=confirm, notice=notice, segments=[s for s, _ in SEGMENTS])


@router.post("/campaigns/cancel")
async def cancel_campaign(request: Request) -> Response:
    """Cancel ``name``: only with ``confirm`` (the count the operator was shown)."""
    who, form = await acting(request)
    name = form.one("name")[:64]
    res = resources(request)
    if not name or not form.one("confirm"):
        return render(request, "error.html", status=400, who=who, title="Nothing cancelled",
                      detail="Choose a campaign and confirm.")
    try:
        done = await run_in_threadpool(cancel, res.db, name)
    except CampaignError:
        return render(request, "error.html", status=404, who=who, title="No such campaign",
                      detail="The ledger has no campaign with that name.")
    log.info("console cancel by %s: %d message(s)", who.operator.name, done)
    return await _campaigns(request, who, notice=f"Campaign {name}: {done:,} message(s) "
                            "cancelled; anything in flight was left to finish.")


@router.get("/campaigns/{name}")
async def campaign(request: Request, name: str) -> Response:
    """One campaign's summary: the messages page filtered by it has the rows."""
    who = await signed_in(request)
    found = await run_in_threadpool(show_campaign, resources(request).db, name[:64])
    if found is None:
        return render(request, "error.html", status=404, who=who, title="No such campaign",
                      detail="The ledger has no campaign with that name.")
    found["bar"] = progress_bar(found["counts"])
    return render(request, "campaigns.html", who=who, campaigns=[found], confirm=None,
                  notice=None, segments=[s for s, _ in SEGMENTS])


# -- the suppression list -------------------------------------------------------------------


def _page(res: Resources, *, after: str | None, phone: str | None
          ) -> tuple[list[SuppressionRecord], str | None, int]:
    with res.db.sessions() as session:
        total = count_suppressions(session)
        if phone is not None:
            one = suppression(session, phone)
            return ([] if one is None else [one]), None, total
        rows = list_suppressions(session, after=after, limit=PAGE + 1)
    more = len(rows) > PAGE
    return rows[:PAGE], (rows[PAGE - 1].phone if more else None), total


async def _suppressions(request: Request, who: Signed, form: Form | None, *,
                        notice: str | None = None, error: str | None = None,
                        status: int = 200) -> Response:
    form = form or Form()
    after = form.one("after") or None
    after = after if after is not None and after.isdigit() and len(after) <= 15 else None
    looked = form.one("lookup").strip()
    phone = None
    if looked:
        try:
            phone = normalize_phone(looked)
        except ValidationError:
            error = error or "That is not a Vietnamese mobile number."
    rows, next_after, total = await run_in_threadpool(
        lambda: _page(resources(request), after=after, phone=phone))
    return render(request, "suppressions.html", status=status, who=who, rows=rows,
                  next_after=next_after, total=total, notice=notice, error=error,
                  looked=bool(looked), full=who.operator.may_act)


@router.get("/suppressions")
async def suppressions(request: Request) -> Response:
    who = await signed_in(request)
    return await _suppressions(request, who, None)


@router.post("/suppressions")
async def suppressions_page(request: Request) -> Response:
    """A look-up or the next page: a POST, so that no number sits in a URL."""
    who, form = await acting(request, operator_only=False)
    return await _suppressions(request, who, form)


@router.post("/suppressions/add")
async def suppress_add(request: Request) -> Response:
    who, form = await acting(request)
    given = [p for p in re.split(r"[\n,;]+", form.one("phones")) if p.strip()]
    reason = form.one("reason").strip()[:200] or None
    if not given or len(given) > MAX_ADD:
        return await _suppressions(request, who, None, status=400,
                                   error=f"Give 1 to {MAX_ADD:,} numbers, one a line.")
    try:
        numbers = parse_phones(given)
    except ValidationError as exc:
        line = exc.field.removeprefix("phones[").rstrip("]")
        where = int(line) + 1 if line.isdigit() else "?"
        return await _suppressions(request, who, None, status=400,
                                   error=f"Line {where} is not a Vietnamese mobile number; "
                                   "nothing was added.")
    res = resources(request)

    def add() -> int:
        with res.db.transaction() as session:
            return add_suppressions(session, numbers, reason=reason, source=OPERATOR,
                                    now=utcnow())

    added = await run_in_threadpool(add)
    log.info("console suppress by %s: %d number(s) added", who.operator.name, added)
    return await _suppressions(request, who, None, notice=f"{added:,} number(s) added "
                               f"({len(set(numbers)) - added:,} already listed).")


@router.post("/suppressions/remove")
async def suppress_remove(request: Request) -> Response:
    who, form = await acting(request)
    try:
        number = normalize_phone(form.one("phone"))
    except ValidationError:
        return await _suppressions(request, who, None, status=400,
                                   error="That is not a Vietnamese mobile number.")
    res = resources(request)

    def remove() -> int:
        with res.db.transaction() as session:
            return remove_suppressions(session, [number])

    removed = await run_in_threadpool(remove)
    log.info("console unsuppress by %s: %d number(s) removed", who.operator.name, removed)
    notice = "1 number removed." if removed else "That number was not on the list."
    return await _suppressions(request, who, None, notice=notice)
