"""The console in a real browser: Debian's chromium driven by Playwright.

An operator signs in, reads the overview's figures (checked against the ledger), finds a
message by a number written another way, replays dead letters (one selected, then the rest
by code after a confirmation that names how many) and sees them sent through the sandbox,
and resumes a paused account. A session-less visit, a forged CSRF token and a form posted
from another site are refused. Each page's screenshot is saved under
``var/artifacts/console/`` (not committed).

The browser is the system's (``apt-get install chromium``; ``.ci/run`` installs it): the
tests skip, saying so, where it is missing, and fail instead under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.api import make_token, serve_api
from tests.fixtures.console import PASSWORDS, add_operators
from tests.fixtures.stack import Stack, statuses, wait_for
from worker.clock import now
from worker.ledger.account import current_pause, pause
from worker.ledger.views import day_counts
from worker.watch.days import day_bounds, vietnam_day

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "var" / "artifacts" / "console"
DEAD = ["0912000001", "0912000002", "0912000003"]


def _missing(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}: CI must have it (.ci/run installs chromium)")
    pytest.skip(f"{why}: install it with `apt-get install -y chromium` to run the browser tests")


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        _missing("chromium is not installed")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM,
                                     args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def stack(make_stack: Callable[..., Stack], pg_url: str, redis_url: str) -> Stack:
    from tests.fixtures.services import clean_ledger

    s = make_stack(pg_url, redis_url)
    clean_ledger(s.db)
    add_operators(s.db)
    return s


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, base: str, name: str) -> None:
    page.goto(f"{base}/console/")
    assert page.url.endswith("/console/login")  # sent there: no session yet
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console/")


@contextmanager
def other_site(html: str) -> Iterator[str]:
    """``html`` served at http://localhost:PORT/ (another site than 127.0.0.1)."""
    body = html.encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def figure(page: Any, selector: str) -> int:
    return int(page.inner_text(selector).replace(",", ""))


def test_an_operator_finds_a_message_replays_dead_letters_and_resumes_in_the_browser(
    browser: Any, stack: Stack, sandbox: Any,
) -> None:
    # Given a worker, one message sent and three dead letters (code 5, once each)
    for phone in DEAD:
        sandbox.script(phone, [{"code": 5}])
    stack.start_worker()
    token = make_token(stack.db, "app", "send", "read")
    import httpx

    with serve_api(stack.settings) as base:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as api:
            sent = api.post("/v1/messages", json={"phone": "0912345678", "text": "OTP 1"})
            dead = [api.post("/v1/messages", json={"phone": p, "text": "x"}).json()["id"]
                    for p in DEAD]
        ids = [sent.json()["id"], *dead]
        expected = {ids[0]: "sent", **dict.fromkeys(dead, "dead")}
        wait_for(lambda: statuses(stack.db, ids) == expected)
        page = browser.new_page(viewport={"width": 1280, "height": 900})

        # When olga signs in, the overview's figures are the ledger's
        sign_in(page, base, "olga")
        start, end = day_bounds(vietnam_day(now()))
        with stack.db.sessions() as session:
            counts = day_counts(session, start, end)
        assert (figure(page, "#sent-today"), figure(page, "#dead-today"),
                figure(page, "#in-flight")) == (counts.sent, counts.dead, counts.in_flight)
        assert (counts.sent, counts.dead) == (1, 3)
        cells = page.locator("#today td").all_inner_texts()
        assert sum(int(c.replace(",", "")) for c in cells) == 4  # accepted today, anywhere now
        assert "code 5 (permanent): 3" in page.inner_html("svg[aria-label^='open dead']")
        shot(page, "overview")

        # She finds a dead message by its number written another way, and opens it
        page.click("nav >> text=Messages")
        page.fill("input[name=phone]", "+84 (912) 000-001")
        page.click("#search button[type=submit]")
        assert page.url.endswith("/console/messages")  # a POST: the number is in no URL
        rows = page.locator("#results tbody tr")
        assert rows.count() == 1 and "0912***001" in rows.inner_text()
        shot(page, "messages")
        rows.locator("a").click()
        page.wait_for_url(f"{base}/console/messages/{dead[0]}")
        assert page.inner_text("#phone") == "0912000001"  # in full, for an operator
        assert "permanent" in page.inner_text("#history")
        # with its one call in the attempt table: claim 1, dead, code 5
        tried = page.locator("#attempts-history tbody tr")
        assert tried.count() == 1
        assert tried.locator("td").all_inner_texts()[:2] == ["1", "1"]
        assert tried.locator("td").all_inner_texts()[4:6] == ["dead", "5"]
        shot(page, "message")

        # She replays it from the dead letters, by selection: the sandbox sends it
        page.click("nav >> text=Dead letters")
        assert page.locator("#failures tbody tr").count() == 3
        shot(page, "failures")
        page.check(f"input[name=message_id][value='{dead[0]}']")
        page.click("#selection button[type=submit]")
        assert "1 message put back" in page.inner_text("#replayed")
        wait_for(lambda: statuses(stack.db, [dead[0]]) == {dead[0]: "sent"})
        assert any(m.phone == DEAD[0] for m in sandbox.accepted())
        # and its page now lists both calls: the dead one, then the replay's under claim 2
        page.goto(f"{base}/console/messages/{dead[0]}")
        tried = page.locator("#attempts-history tbody tr")
        assert [row.locator("td").all_inner_texts()[1:6:3] for row in tried.all()] == [
            ["1", "dead"], ["2", "sent"]
        ]

        # and the other two by code, after a confirmation that says how many
        page.goto(f"{base}/console/failures?code=5")
        page.click("text=Replay every one with code 5")
        assert "Replay 2 open dead letters with code 5" in page.inner_text("#confirm")
        page.click("#confirm button[type=submit]")
        assert "2 messages put back" in page.inner_text("#replayed")
        wait_for(lambda: set(statuses(stack.db, dead).values()) == {"sent"})

        # A paused account shows its banner with a Resume button that resumes it
        with stack.db.transaction() as session:
            pause(session, code=10, reason="account locked", message_id=dead[0], now=now())
        page.goto(f"{base}/console/")
        assert "Sending is paused" in page.inner_text(".banner")
        shot(page, "paused")
        page.click(".banner button")
        assert "Sending resumed" in page.inner_text("h1")
        with stack.db.sessions() as session:
            assert not current_pause(session).paused
        page.goto(f"{base}/console/account")
        shot(page, "account")


def test_an_operator_cancels_a_campaign_and_edits_the_suppression_list_in_the_browser(
    browser: Any, stack: Stack,
) -> None:
    # Given a campaign of three numbers accepted through the API (no worker: all queued)
    token = make_token(stack.db, "app", "send", "read")
    import httpx

    with serve_api(stack.settings) as base:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as api:
            r = api.post("/v1/campaigns", json={"name": "tet", "text": "[QC] Giam 20%",
                                                "rows": [{"phone": p} for p in DEAD]})
            assert r.status_code == 201, r.text
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        sign_in(page, base, "olga")

        # The campaigns page shows its progress bar; its link opens its messages
        page.click("nav >> text=Campaigns")
        row = page.locator("#campaigns tr[data-campaign='tet']")
        assert "queued: 3" in row.locator("svg.progress").inner_html()
        shot(page, "campaigns")
        row.locator("a >> text=tet").click()
        assert page.locator("#results tbody tr").count() == 3
        assert page.input_value("input[name=campaign]") == "tet"

        # Cancel asks first, saying how many, then cancels them all
        page.click("nav >> text=Campaigns")
        page.click("#campaigns tr[data-campaign='tet'] >> text=Cancel…")
        assert "3 messages not yet sent" in page.inner_text("#confirm")
        page.click("#confirm button[type=submit]")
        assert "3 message(s) cancelled" in page.inner_text(".notice")
        ids = [m.id for m in _campaign_messages(stack, "tet")]
        assert statuses(stack.db, ids) == dict.fromkeys(ids, "cancelled")

        # The suppression list: add two numbers written any way, look one up, remove it
        page.click("nav >> text=Suppressions")
        page.fill("#add textarea[name=phones]", "+84 912 000 001\n0912.000.002")
        page.fill("#add input[name=reason]", "STOP")
        page.click("#add button[type=submit]")
        assert "2 number(s) added" in page.inner_text(".notice")
        assert page.locator("#suppressions tbody tr").count() == 2
        shot(page, "suppressions")
        page.fill("#lookup input[name=lookup]", "(+84) 912-000-002")
        page.click("#lookup button[type=submit]")
        assert page.url.endswith("/console/suppressions")  # a POST: the number is in no URL
        assert page.locator("#suppressions tbody tr").count() == 1
        page.click("#suppressions form.remove button")
        assert "1 number removed." in page.inner_text(".notice")
        assert page.inner_text("#suppressions tbody").strip().startswith("0912000001")


def _campaign_messages(stack: Stack, name: str) -> list[Any]:
    from sqlalchemy import select

    from worker.ledger.models import Message

    with stack.db.sessions() as session:
        return list(session.scalars(select(Message).where(Message.campaign == name)))


def test_the_browser_is_refused_without_a_session_a_csrf_token_or_from_another_site(
    browser: Any, stack: Stack,
) -> None:
    with serve_api(stack.settings) as base:
        with stack.db.transaction() as session:
            pause(session, code=10, reason="account locked", message_id=1, now=now())
        page = browser.new_page()
        page.goto(f"{base}/console/account")
        assert page.url == f"{base}/console/login"  # no session: the sign-in page
        shot(page, "login")
        sign_in(page, base, "olga")
        # a forged token on a real form: 403, still paused
        page.evaluate("document.querySelector('.banner input[name=csrf_token]').value = 'x'")
        with page.expect_response(f"{base}/console/resume") as answer:
            page.click(".banner button")
        assert answer.value.status == 403
        # a form on another site (localhost is not 127.0.0.1) posting to the console: the
        # Strict cookie stays home, so the request arrives without a session
        form = (f'<form method="post" action="{base}/console/resume">'
                '<input name="csrf_token" value="guess"><button>go</button></form>')
        with other_site(form) as elsewhere:
            page.goto(elsewhere)
            with page.expect_response(f"{base}/console/resume") as answer:
                page.click("button")
        assert answer.value.status == 401
        with stack.db.sessions() as session:
            assert current_pause(session).paused
        # a viewer sees the banner but no Resume button
        viewer = browser.new_page()
        sign_in(viewer, base, "vera")
        assert "Sending is paused" in viewer.inner_text(".banner")
        assert viewer.locator(".banner button").count() == 0
