"""The console's campaigns and suppression-list pages over real HTTP on PostgreSQL: the
progress bars, cancel after a confirmation (operators only, with the CSRF token), the
campaign filter of the message search, and adding, looking up and removing numbers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import func, select

from tests.fixtures.api import make_token, serve_api
from tests.fixtures.console import add_operators, csrf_of, sign_in
from tests.fixtures.stack import Stack
from worker.ledger.models import Message
from worker.ledger.suppressions import list_suppressions


@pytest.fixture
def stack(make_stack: Callable[..., Stack], pg_url: str, redis_url: str) -> Stack:
    from tests.fixtures.services import clean_ledger

    s = make_stack(pg_url, redis_url)
    clean_ledger(s.db)
    add_operators(s.db)
    return s


@pytest.fixture
def url(stack: Stack) -> Iterator[str]:
    with serve_api(stack.settings) as base:
        yield base


@contextmanager
def _client(url: str, who: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30, follow_redirects=False) as c:
        assert sign_in(c, who).status_code == 303
        yield c


def _campaign(stack: Stack, url: str, name: str, *phones: str) -> None:
    token = make_token(stack.db, f"app-{name}", "send", "read")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as api:
        r = api.post("/v1/campaigns", json={"name": name, "text": "[QC] Giam gia",
                                            "rows": [{"phone": p} for p in phones]})
        assert r.status_code == 201, r.text


def _statuses(stack: Stack, campaign: str) -> dict[str, int]:
    with stack.db.sessions() as session:
        rows = session.execute(select(Message.status, func.count())
                               .where(Message.campaign == campaign).group_by(Message.status))
        return {s: int(n) for s, n in rows}


def _ids(html: str) -> set[int]:
    return {int(i) for i in re.findall(r'href="/console/messages/(\d+)"', html)}


def test_campaigns_show_a_progress_bar_and_an_operator_cancels_after_confirming(
    stack: Stack, url: str
) -> None:
    _campaign(stack, url, "tet", "0912000001", "0912000002", "0912000003")
    _campaign(stack, url, "he", "0912000004")
    with _client(url, "olga") as olga, _client(url, "vera") as vera:
        page = olga.get("/console/campaigns").text
        assert page.index('data-campaign="he"') < page.index('data-campaign="tet"')
        assert '<svg class="progress"' in page and "<title>queued: 3</title>" in page
        assert "0 of 3 messages finished" in page
        assert "Cancel…" in page and "Cancel…" not in vera.get("/console/campaigns").text
        one = olga.get("/console/campaigns/tet").text
        assert 'data-campaign="tet"' in one and 'data-campaign="he"' not in one
        assert olga.get("/console/campaigns/nope").status_code == 404

        # the campaign filter: a link from the campaigns page, and a field of the search
        listed = _ids(olga.get("/console/messages", params={"campaign": "tet"}).text)
        token = csrf_of(page)
        searched = _ids(olga.post("/console/messages",
                                  data={"csrf_token": token, "campaign": "tet"}).text)
        assert len(listed) == 3 and searched == listed
        assert len(_ids(olga.get("/console/messages").text)) == 4

        confirm = olga.get("/console/campaigns", params={"cancel": "tet"}).text
        assert re.search(r"<strong>3</strong> messages not yet sent", confirm)
        assert 'id="confirm"' not in vera.get("/console/campaigns",
                                               params={"cancel": "tet"}).text
        form = {"csrf_token": token, "name": "tet", "confirm": "3"}
        assert olga.post("/console/campaigns/cancel", data={**form, "csrf_token": ""}
                         ).status_code == 403
        assert olga.post("/console/campaigns/cancel", data={**form, "confirm": ""}
                         ).status_code == 400
        viewer = vera.post("/console/campaigns/cancel",
                           data={**form, "csrf_token": csrf_of(vera.get("/console/").text)})
        assert viewer.status_code == 403 and "cannot act" in viewer.text
        assert _statuses(stack, "tet") == {"queued": 3}
        done = olga.post("/console/campaigns/cancel", data=form)
        assert done.status_code == 200 and "3 message(s) cancelled" in done.text
        assert "<title>cancelled: 3</title>" in done.text
        assert _statuses(stack, "tet") == {"cancelled": 3}
        assert _statuses(stack, "he") == {"queued": 1}
        assert olga.post("/console/campaigns/cancel", data={**form, "name": "nope"}
                         ).status_code == 404


def test_operators_add_look_up_and_remove_numbers_and_viewers_only_read(
    stack: Stack, url: str
) -> None:
    with _client(url, "olga") as olga, _client(url, "vera") as vera:
        token = csrf_of(olga.get("/console/suppressions").text)
        added = olga.post("/console/suppressions/add", data={
            "csrf_token": token, "phones": "+84 912 000 001\n0912000002, 84912000001",
            "reason": "STOP"})
        assert added.status_code == 200 and "2 number(s) added (0 already listed)" in added.text
        assert "0912000001" in added.text and "STOP" in added.text
        bad = olga.post("/console/suppressions/add", data={
            "csrf_token": token, "phones": "0912000003\n12345"})
        assert bad.status_code == 400 and "Line 2" in bad.text

        seen = vera.get("/console/suppressions").text
        assert "0912***001" in seen and "0912000001" not in seen
        assert 'id="add"' not in seen and "Remove" not in seen
        vtoken = csrf_of(seen)
        refused = vera.post("/console/suppressions/add",
                            data={"csrf_token": vtoken, "phones": "0912000009"})
        assert refused.status_code == 403
        looked = vera.post("/console/suppressions",
                           data={"csrf_token": vtoken, "lookup": "(+84) 912-000-002"}).text
        assert "0912***002" in looked and "0912***001" not in looked
        assert olga.post("/console/suppressions/remove",
                         data={"phone": "0912000001"}).status_code == 403  # no CSRF token
        removed = olga.post("/console/suppressions/remove",
                            data={"csrf_token": token, "phone": "0912000001"})
        assert removed.status_code == 200 and "1 number removed." in removed.text
    with stack.db.sessions() as session:
        assert [(e.phone, e.source, e.reason) for e in list_suppressions(session)] == [
            ("0912000002", "operator", "STOP")]
