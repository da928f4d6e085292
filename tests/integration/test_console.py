"""The console over real HTTP (no browser): the session and CSRF rules, roles, headers, the
slowed-down sign-in, the phone search in a POST body, and the ``fibosms users`` commands."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.fixtures.api import make_token, serve_api
from tests.fixtures.console import PASSWORDS, add_operators, csrf_of, sign_in
from tests.fixtures.stack import Stack

PHONE = "0912345678"
PAGES = ["/console/", "/console/messages", "/console/messages/1", "/console/failures",
         "/console/account", "/console/campaigns", "/console/suppressions", "/console/no/such"]
POSTS = ["/console/messages", "/console/failures/replay", "/console/resume", "/console/logout"]
HTML = {"Accept": "text/html,application/xhtml+xml"}


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


@pytest.fixture
def client(url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, timeout=30, follow_redirects=False) as c:
        yield c


def test_without_a_session_browsers_are_sent_to_sign_in_and_the_rest_get_401(
    client: httpx.Client,
) -> None:
    for path in PAGES:
        r = client.get(path, headers=HTML)
        assert r.status_code == 303 and r.headers["location"] == "/console/login", path
        assert client.get(path).status_code == 401, path
    for path in POSTS:
        assert client.post(path, data={"csrf_token": "x"}).status_code == 401, path
    # only the sign-in page and its static files answer
    assert client.get("/console/login").status_code == 200
    assert client.get("/console/static/console.css").status_code == 200


def test_sign_in_gives_a_strict_http_only_cookie_secure_behind_tls_and_sign_out_ends_it(
    client: httpx.Client, url: str,
) -> None:
    # a wrong password: the form again, 401, no session
    wrong = sign_in(client, "olga", "not-her-password")
    assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
    assert "fibosms_console=" not in wrong.headers.get("set-cookie", "")
    r = sign_in(client, "olga")
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("fibosms_console="))
    attrs = {a.strip().lower() for a in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/console"} <= attrs
    assert "secure" not in attrs and any(a.startswith("max-age=") for a in attrs)
    stolen = client.cookies.get("fibosms_console")
    page = client.get("/console/")
    assert page.status_code == 200 and "olga" in page.text
    # behind a TLS proxy (X-Forwarded-Proto from a trusted address) the cookie is Secure
    # (the test client speaks plain HTTP, so it is handed the Secure form cookie itself)
    proxied = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=url, timeout=30) as tls:
        form = tls.get("/console/login", headers=proxied)
        form_cookie = form.headers["set-cookie"]
        assert "secure" in {a.strip().lower() for a in form_cookie.split(";")}
        behind = tls.post("/console/login", headers={
            **proxied, "Cookie": form_cookie.split(";", 1)[0]}, data={
            "username": "olga", "password": PASSWORDS["olga"], "csrf_token": csrf_of(form.text)})
        assert behind.status_code == 303
        secure = next(c for c in behind.headers.get_list("set-cookie")
                      if c.startswith("fibosms_console="))
        assert "secure" in {a.strip().lower() for a in secure.split(";")}
    # signing out ends the session: the old cookie no longer opens a page
    out = client.post("/console/logout", data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 303
    with httpx.Client(base_url=url, timeout=30, cookies={"fibosms_console": stolen or ""}) as c:
        assert c.get("/console/").status_code == 401


def test_every_post_needs_the_csrf_token(client: httpx.Client, stack: Stack) -> None:
    # the sign-in form itself: no token, or one that is not the cookie's, is refused
    client.get("/console/login")
    bare = client.post("/console/login", data={"username": "olga", "password": PASSWORDS["olga"]})
    assert bare.status_code == 403
    forged = client.post("/console/login", data={"username": "olga",
                                                 "password": PASSWORDS["olga"],
                                                 "csrf_token": "forged"})
    assert forged.status_code == 403 and "fibosms_console=" not in forged.headers.get(
        "set-cookie", "")
    assert sign_in(client, "olga").status_code == 303
    token = csrf_of(client.get("/console/").text)
    for path in POSTS:
        assert client.post(path, data={}).status_code == 403, path
        assert client.post(path, data={"csrf_token": token[:-2] + "xx"}).status_code == 403
    # a JSON body carries no form token either
    assert client.post("/console/resume", json={"csrf_token": token}).status_code == 403
    # with the token, the same request is done
    r = client.post("/console/resume", data={"csrf_token": token})
    assert r.status_code == 200 and "not paused" in r.text


def test_viewers_read_every_page_but_cannot_act_nor_see_full_numbers(
    client: httpx.Client, stack: Stack, url: str,
) -> None:
    api_token = make_token(stack.db, "app", "send", "read")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {api_token}"}) as api:
        mid = api.post("/v1/messages", json={"phone": PHONE, "text": "Xin chào"}).json()["id"]
    assert sign_in(client, "vera").status_code == 303
    for path in PAGES:
        assert client.get(path).status_code in (200, 404), path
    page = client.get(f"/console/messages/{mid}")
    assert "0912***678" in page.text and PHONE not in page.text
    assert "Xin chào" not in page.text  # the text is on no page
    token = csrf_of(page.text)
    for path in ("/console/failures/replay", "/console/resume"):
        r = client.post(path, data={"csrf_token": token, "message_id": str(mid)})
        assert r.status_code == 403 and "cannot act" in r.text, path
    # an operator sees the full number on the message's own page, never on a list
    with httpx.Client(base_url=url, timeout=30) as olga:
        sign_in(olga, "olga")
        assert PHONE in olga.get(f"/console/messages/{mid}").text
        listing = olga.get("/console/messages").text
        assert "0912***678" in listing and PHONE not in listing


def test_a_messages_page_shows_each_attempt_with_its_marks(
    client: httpx.Client, stack: Stack,
) -> None:
    from worker.clock import now
    from worker.ledger.claims import claim, finish_attempt, finish_late
    from worker.states import Status, Transition

    # Given a message whose call stalled, was guessed by the sweep, then answered late
    mid = stack.producer.enqueue_sms(PHONE, "Ma OTP 123456", kind="transactional")
    with stack.db.transaction() as session:
        claimed = claim(session, mid, now())
        assert claimed is not None
        guess = Transition(Status.DEAD, None, "outcome unknown", ambiguous=True, guessed=True,
                           failure_class="ambiguous", meaning="outcome unknown")
        assert finish_attempt(session, claimed.holder, guess, now())
    with stack.db.transaction() as session:
        assert finish_late(session, claimed.holder, Transition(Status.SENT, 200), now())
    # When an operator opens its page
    sign_in(client, "vera")
    page = client.get(f"/console/messages/{mid}").text
    # Then the attempt table has the guess and the late answer, both of claim 1
    table = page.split('id="attempts-history"', 1)[1].split("</table>", 1)[0]
    rows = [
        [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in re.findall(
            r"<td[^>]*>(.*?)</td>", row)]
        for row in table.split("<tr>")[2:]
    ]
    # attempt, claim, outcome, code, marks, error (the times left out)
    assert [[r[i] for i in (0, 1, 4, 5, 6, 7)] for r in rows] == [
        ["1", "1", "dead", "", "ambiguous guessed", "outcome unknown"],
        ["1", "1", "sent", "200", "late", ""],
    ]


def test_every_console_answer_sends_the_security_headers(client: httpx.Client) -> None:
    sign_in(client, "olga")
    answers = [client.get(p) for p in ("/console/login", "/console/", "/console/account",
                                       "/console/static/console.css", "/console/messages/0")]
    answers.append(client.post("/console/resume", data={}))  # a refusal too
    for r in answers:
        assert r.headers["x-frame-options"] == "DENY", r.url
        assert r.headers["referrer-policy"] == "no-referrer"
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
    assert "no-store" in answers[1].headers["cache-control"]


def test_repeated_wrong_passwords_are_slowed_down(client: httpx.Client) -> None:
    took = []
    for _ in range(5):
        started = time.monotonic()
        assert sign_in(client, "olga", "wrong-password").status_code == 401
        took.append(time.monotonic() - started)
    # three free tries, then 0.5 s, then 1 s on top of argon2's own time (tens of ms on a
    # quiet machine, more on a loaded one: so the free tries are judged against the slowed)
    assert max(took[:3]) < took[3] < took[4], took
    assert took[3] >= 0.5 and took[4] >= 1.0, took
    # an unknown name is slowed down alike, from the same address
    started = time.monotonic()
    assert sign_in(client, "nobody", "wrong-password").status_code == 401
    assert time.monotonic() - started >= 2.0


def test_a_phone_search_finds_any_written_form_in_a_post_and_no_log_holds_the_number(
    client: httpx.Client, stack: Stack, url: str, caplog: pytest.LogCaptureFixture,
) -> None:
    api_token = make_token(stack.db, "app", "send", "read")
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {api_token}"}) as api:
        mine = {api.post("/v1/messages", json={"phone": PHONE, "text": f"m{i}"}).json()["id"]
                for i in range(3)}
        api.post("/v1/messages", json={"phone": "0987654321", "text": "other"})
    sign_in(client, "vera")
    token = csrf_of(client.get("/console/messages").text)
    caplog.set_level(logging.DEBUG)
    for written in ("+84 912 345 678", "84912345678", "0912.345.678", "(+84) 912-345-678"):
        r = client.post("/console/messages", data={"csrf_token": token, "phone": written})
        assert r.status_code == 200
        found = {int(i) for i in re.findall(r'href="/console/messages/(\d+)"', r.text)}
        assert found == mine, written
        assert "0912***678" in r.text and "0987***321" not in r.text
    bad = client.post("/console/messages", data={"csrf_token": token, "phone": "12345"})
    assert "not a Vietnamese mobile number" in bad.text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "POST /console/messages 200" in logged
    assert "912345678" not in logged and "912 345 678" not in logged


def fibosms(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fibosms.cli", *args],
                          env={**os.environ, **env}, input=stdin, capture_output=True,
                          text=True, timeout=60)


def test_the_users_commands_add_list_and_remove_operators(
    stack: Stack, client: httpx.Client,
) -> None:
    made = fibosms("users", "add", "nam", "--role", "viewer", "--json", env=stack.env,
                   stdin="nam-password-1\n")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["role"] == "viewer"
    short = fibosms("users", "add", "tuan", env=stack.env, stdin="short\n")
    assert short.returncode == 2 and "at least 8" in short.stderr
    again = fibosms("users", "add", "nam", env=stack.env, stdin="nam-password-2\n")
    assert again.returncode == 2 and "exists" in again.stderr
    listed = json.loads(fibosms("users", "list", "--json", env=stack.env).stdout)
    assert [(u["name"], u["role"]) for u in listed] == [
        ("nam", "viewer"), ("olga", "operator"), ("vera", "viewer")]
    assert "password" not in json.dumps(listed)
    assert client.post("/console/login", data={}).status_code == 403  # sanity: no token
    PASSWORDS["nam"] = "nam-password-1"
    try:
        assert sign_in(client, "nam").status_code == 303
        assert client.get("/console/").status_code == 200
        removed = fibosms("users", "remove", "nam", env=stack.env)
        assert removed.returncode == 0, removed.stderr
        assert client.get("/console/").status_code == 401  # the session ended with the row
    finally:
        del PASSWORDS["nam"]
    assert fibosms("users", "remove", "nam", env=stack.env).returncode == 4
