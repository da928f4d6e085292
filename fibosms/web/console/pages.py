"""The console's pages and actions: overview, messages, dead letters, account (campaigns and
the suppression list are in :mod:`fibosms.web.console.marketing`).

Every handler first asks :func:`~fibosms.web.console.guard.signed_in` (GET) or
:func:`~fibosms.web.console.guard.acting` (POST: CSRF token, and the operator role for an
action). A phone number typed into the search travels in a POST body, never in a URL.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from fibosms.web.console import reads
from fibosms.web.console.charts import VIETNAM
from fibosms.web.console.guard import (
    PREFIX,
    Form,
    acting,
    console_state,
    render,
    resources,
    signed_in,
)
from worker.errors import ValidationError
from worker.kinds import Kind
from worker.replay import replay
from worker.rules.phone import normalize_phone
from worker.states import Status
from worker.watch.control import resume_sending

router = APIRouter(prefix=PREFIX, include_in_schema=False)
log = logging.getLogger("fibosms.console")

CLASSES = ("transient", "permanent", "account", "ambiguous")
#: characters of a campaign's name
CAMPAIGN_LENGTH = 64
#: the largest id or code the forms take
_MAX_INT = 2**62


def _int(value: str | None, *, low: int = -_MAX_INT, high: int = _MAX_INT) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > 20:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if low <= number <= high else None


def _when(value: str) -> datetime | None:
    """A ``datetime-local`` field, read as Vietnam time."""
    value = value.strip()
    if not value or len(value) > 32:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=VIETNAM) if moment.tzinfo is None else moment


def _breaker_client(request: Request) -> Any:
    state = console_state(request)
    res = resources(request)
    if state.breaker_client is None and res.redis is not None:
        state.breaker_client = res.redis
    if state.breaker_client is None:
        from worker.brokers import is_redis

        if is_redis(res.settings.broker_url):
            import redis

            with state.lock:
                if state.breaker_client is None:
                    state.breaker_client = redis.Redis.from_url(
                        res.settings.broker_url, socket_timeout=1.0,
                        socket_connect_timeout=1.0)
    return state.breaker_client


@router.get("/")
async def overview(request: Request) -> Response:
    who = await signed_in(request)
    data = await run_in_threadpool(reads.overview, resources(request), _breaker_client(request))
    return render(request, "overview.html", who=who, **data)


# -- messages -------------------------------------------------------------------------------


def _search(form: Form | None) -> Any:
    """The filters of a search form: a redirect (an id was given), or (fields, search, error)."""
    form = form or Form()
    fields = {name: form.one(name) for name in
              ("id", "phone", "status", "kind", "campaign", "since", "until")}
    error = None
    if fields["id"]:
        wanted = _int(fields["id"], low=1)
        if wanted is not None:
            return RedirectResponse(f"{PREFIX}/messages/{wanted}", status_code=303)
        error = "An id is a whole number."
    recipient = None
    if fields["phone"]:
        try:
            recipient = normalize_phone(fields["phone"])
        except ValidationError:
            error = "That is not a Vietnamese mobile number."
    status = fields["status"] if fields["status"] in {s.value for s in Status} else None
    kind = fields["kind"] if fields["kind"] in {k.value for k in Kind} else None
    campaign = fields["campaign"].strip()[:CAMPAIGN_LENGTH] or None
    search = reads.Search(recipient=recipient, status=status, kind=kind, campaign=campaign,
                          since=_when(fields["since"]), until=_when(fields["until"]),
                          before_id=_int(form.one("before"), low=1))
    return fields, search, error


@router.get("/messages")
async def messages(request: Request) -> Response:
    who = await signed_in(request)
    # a campaign's name may sit in a URL (the campaigns page links here); a number never
    wanted = request.query_params.get("campaign")
    return await _messages(request, who, Form(campaign=[wanted]) if wanted else None)


@router.post("/messages")
async def search_messages(request: Request) -> Response:
    """The search: a POST, so that a phone number never sits in a URL or an access log."""
    who, form = await acting(request, operator_only=False)
    return await _messages(request, who, form)


async def _messages(request: Request, who: Any, form: Form | None) -> Response:
    found = _search(form)
    if isinstance(found, Response):
        return found
    fields, search, error = found
    rows, next_before = ([], None) if error else await run_in_threadpool(
        reads.messages, resources(request), search)
    return render(request, "messages.html", who=who, fields=fields, rows=rows,
                  next_before=next_before, error=error, statuses=[s.value for s in Status],
                  kinds=[k.value for k in Kind])


@router.get("/messages/{message_id}")
async def message(request: Request, message_id: str) -> Response:
    who = await signed_in(request)
    wanted = _int(message_id, low=1)
    found = None if wanted is None else await run_in_threadpool(
        reads.message, resources(request), wanted)
    if found is None:
        return render(request, "error.html", status=404, who=who, title="No such message",
                      detail="The ledger has no message with that id.")
    record, history, attempts = found
    return render(request, "message.html", who=who, m=record, history=history,
                  attempts=attempts, full_number=who.operator.may_act)


# -- dead letters ---------------------------------------------------------------------------


@router.get("/failures")
async def failures(request: Request) -> Response:
    who = await signed_in(request)
    code = _int(request.query_params.get("code"))
    cls = request.query_params.get("class")
    cls = cls if cls in CLASSES else None
    before = None
    at, fid = request.query_params.get("before_at"), _int(request.query_params.get("before_id"))
    if at and fid is not None:
        try:
            before = (datetime.fromisoformat(at), fid)
        except ValueError:
            before = None
    data = await run_in_threadpool(
        lambda: reads.failures(resources(request), code=code, cls=cls, before=before))
    confirm = None
    if request.query_params.get("confirm") == "code" and code is not None:
        confirm = await run_in_threadpool(reads.open_count, resources(request), code)
    return render(request, "failures.html", who=who, code=code, cls=cls, classes=CLASSES,
                  confirm=confirm, **data)


@router.post("/failures/replay")
async def replay_failures(request: Request) -> Response:
    """Replay the selected messages (``message_id``, repeated), or every open dead letter of
    ``code`` (with ``confirm`` = the count the operator was shown)."""
    who, form = await acting(request)
    res = resources(request)
    by = f"console:{who.operator.name}"[:64]
    ids = [i for i in (_int(v, low=1) for v in form.get("message_id", [])) if i is not None]
    code = _int(form.one("code") or None)
    if ids:
        done = await run_in_threadpool(
            lambda: replay(res.db, res.publisher, message_ids=ids, by=by))
    elif code is not None and form.one("confirm"):
        done = await run_in_threadpool(
            lambda: replay(res.db, res.publisher, code=code, by=by))
    else:
        return render(request, "error.html", status=400, who=who, title="Nothing to replay",
                      detail="Select dead letters, or choose a code and confirm.")
    log.info("console replay by %s: %d message(s)", who.operator.name, len(done))
    return render(request, "replayed.html", who=who, done=done, asked=len(ids) or None,
                  code=code if not ids else None)


# -- the account ----------------------------------------------------------------------------


@router.get("/account")
async def account(request: Request) -> Response:
    who = await signed_in(request)
    data = await run_in_threadpool(reads.account, resources(request))
    return render(request, "account.html", who=who, **data)


@router.post("/resume")
async def resume(request: Request) -> Response:
    who, _form = await acting(request)
    res = resources(request)
    was_paused, published = await run_in_threadpool(
        lambda: resume_sending(settings=res.settings, db=res.db, publisher=res.publisher,
                               by=f"console:{who.operator.name}"[:64]))
    log.info("console resume by %s: was paused %s", who.operator.name, was_paused)
    return render(request, "resumed.html", who=who, was_paused=was_paused,
                  published=published)


@router.get("/{rest:path}")
async def unknown(request: Request, rest: str) -> Response:
    """Any other console URL: a session first (sign in, or 401), then "not found"."""
    who = await signed_in(request)
    return render(request, "error.html", status=404, who=who, title="Not found",
                  detail="The console has no such page.")
