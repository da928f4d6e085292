"""The HTTP API's endpoints over real HTTP, on PostgreSQL and Redis: keys and scopes, each
resource, and the problem documents of every refusal."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from fibosms.web.resources import KEY_CACHE_SECONDS
from tests.fixtures.api import assert_problem, count_messages, make_token
from tests.fixtures.stack import Stack
from worker.clock import now
from worker.ledger.account import pause
from worker.ledger.apikeys import ApiKey, revoke_key

PHONE = "0912345678"


# -- sending ---------------------------------------------------------------------------------


def test_a_message_is_recorded_and_answered_with_its_status_fields(
    api: httpx.Client, api_stack: Stack
) -> None:
    r = api.post("/v1/messages", json={"phone": "+84 912 345 678", "text": "Ma OTP 123456",
                                       "kind": "otp", "sender": "SHOP"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["status"], body["kind"], body["queue"], body["recipient"], body["sender"]) == (
        "queued", "otp", "urgent", "0912***678", "SHOP"
    )
    assert set(body) >= {"id", "attempts", "last_code", "created_at", "next_attempt_at"}
    assert api.get(f"/v1/messages/{body['id']}").json() == body
    assert count_messages(api_stack) == 1


def test_the_same_key_answers_200_with_the_same_message_and_other_content_409(
    api: httpx.Client, api_stack: Stack
) -> None:
    send = {"phone": PHONE, "text": "Don hang #42 da giao"}
    first = api.post("/v1/messages", json=send, headers={"Idempotency-Key": "order-42"})
    again = api.post("/v1/messages", json={**send, "phone": "84912345678"},
                     headers={"Idempotency-Key": "order-42"})
    other = api.post("/v1/messages", json={**send, "text": "Don hang #43 da giao"},
                     headers={"Idempotency-Key": "order-42"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    doc = assert_problem(other, 409)
    assert doc["message_id"] == first.json()["id"]
    assert "Don hang" not in other.text and "0912345678" not in other.text
    assert count_messages(api_stack) == 1


def test_a_batch_is_accepted_in_order_or_refused_whole_naming_every_bad_item(
    api: httpx.Client, api_stack: Stack
) -> None:
    good = [{"phone": f"09123{i:05d}", "text": f"Khuyen mai {i}"} for i in range(5)]
    r = api.post("/v1/messages/batch", json={"messages": good})
    assert r.status_code == 201, r.text
    ids = r.json()["ids"]
    assert len(ids) == 5 and ids == sorted(ids)
    assert api.get(f"/v1/messages/{ids[0]}").json()["kind"] == "marketing"
    bad = [*good, {"phone": "024 3826 1234", "text": "landline"}, {"phone": PHONE, "text": ""},
           {"phone": PHONE, "text": "ok", "kind": "spam"}]
    doc = assert_problem(api.post("/v1/messages/batch", json={"messages": bad}), 422)
    assert [e["field"] for e in doc["errors"]] == ["messages[7].kind"]  # the types first
    bad[7]["kind"] = "otp"
    doc = assert_problem(api.post("/v1/messages/batch", json={"messages": bad}), 422)
    assert [e["field"] for e in doc["errors"]] == ["messages[5].phone", "messages[6].text"]
    assert "3826" not in str(doc["errors"])
    assert count_messages(api_stack) == 5


def test_a_batch_of_more_than_ten_thousand_is_refused(api: httpx.Client, api_stack: Stack) -> None:
    many = [{"phone": PHONE, "text": "x"}] * 10_001
    doc = assert_problem(api.post("/v1/messages/batch", json={"messages": many}), 422)
    assert doc["errors"][0]["field"] == "messages"
    assert count_messages(api_stack) == 0


# -- reading ---------------------------------------------------------------------------------


def test_the_listing_pages_newest_first_by_any_written_form_of_the_number(
    api: httpx.Client,
) -> None:
    ids = api.post("/v1/messages/batch", json={"kind": "transactional", "messages": [
        {"phone": PHONE if i % 2 == 0 else "0987654321", "text": f"m{i}"} for i in range(7)
    ]}).json()["ids"]
    mine = [mid for i, mid in enumerate(ids) if i % 2 == 0][::-1]  # newest first
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"phone": "(+84) 912.345.678", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/v1/messages", params=params).json()
        seen += [m["id"] for m in page["items"]]
        assert all(m["recipient"] == "0912***678" for m in page["items"])
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert (seen, pages) == (mine, 2)
    assert api.get("/v1/messages", params={"status": "sent"}).json() == {"items": [], "next": None}
    assert len(api.get("/v1/messages", params={"kind": "transactional"}).json()["items"]) == 7
    future = api.get("/v1/messages", params={"since": "2999-01-01T00:00:00+00:00"})
    assert future.json()["items"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "Zjox"}, "cursor"),  # a failures cursor's head
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"status": "lost"}, "status"),
        ({"phone": "12345"}, "phone"),
        ({"since": "2026-01-01T00:00:00"}, "since"),  # no offset: ambiguous
        ({"until": "9999-12-31T23:59:59-10:00"}, "until"),
    ],
)
def test_bad_listing_parameters_are_a_422_naming_them(
    api: httpx.Client, params: dict[str, Any], field: str
) -> None:
    doc = assert_problem(api.get("/v1/messages", params=params), 422)
    assert [e["field"] for e in doc["errors"]] == [field]


def test_an_unknown_message_is_404_and_a_bad_id_422(api: httpx.Client) -> None:
    assert_problem(api.get("/v1/messages/999999"), 404)
    assert_problem(api.get("/v1/messages/0"), 422)
    assert_problem(api.get("/v1/messages/99999999999999999999"), 422)
    assert_problem(api.get("/v1/nothing-here"), 404)
    assert_problem(api.delete("/v1/messages/1"), 405)


# -- keys and scopes -------------------------------------------------------------------------


def test_keys_are_required_checked_and_scoped(api: httpx.Client, api_stack: Stack) -> None:
    url = str(api.base_url)
    reader = make_token(api_stack.db, "reader", "read")
    sender = make_token(api_stack.db, "sender", "send")
    with httpx.Client(base_url=url, timeout=30) as anon:
        r = anon.get("/v1/messages")
        assert_problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
        for bad in (reader[:-1] + ("A" if reader[-1] != "A" else "B"), "fsk_x_y", "garbage",
                    "ü" * 10, "a" * 5000):
            header = f"Bearer {bad}".encode()
            assert_problem(anon.get("/v1/messages", headers={"Authorization": header}), 401)
        assert_problem(anon.get("/v1/messages", headers={"Authorization": f"Basic {reader}"}),
                       401)
        as_reader = {"Authorization": f"Bearer {reader}"}
        as_sender = {"Authorization": f"Bearer {sender}"}
        assert anon.get("/v1/messages", headers=as_reader).status_code == 200
        assert_problem(anon.post("/v1/messages", json={"phone": PHONE, "text": "x"},
                                 headers=as_reader), 403)
        assert_problem(anon.get("/v1/messages", headers=as_sender), 403)
        assert_problem(anon.post("/v1/failures/replay", json={"code": 5}, headers=as_sender),
                       403)
        assert_problem(anon.post("/v1/account/resume", headers=as_reader), 403)
        # revoked: refused once the process's short cache of the key has lapsed
        with api_stack.db.transaction() as session:
            assert revoke_key(session, "reader", now=now())
        time.sleep(KEY_CACHE_SECONDS + 0.2)
        assert_problem(anon.get("/v1/messages", headers=as_reader), 401)
    assert count_messages(api_stack) == 0
    with api_stack.db.sessions() as session:
        used = {k.name: k.last_used_at for k in session.scalars(select(ApiKey))}
    assert used["reader"] is not None and used["sender"] is not None
    with api_stack.db.sessions() as session:
        stored = " ".join(k.token_hash + k.prefix for k in session.scalars(select(ApiKey)))
    assert reader not in stored and reader.rsplit("_", 1)[1] not in stored


# -- failures and the account ----------------------------------------------------------------


def test_replay_needs_ids_or_a_code_and_answers_what_it_replayed(api: httpx.Client) -> None:
    assert_problem(api.post("/v1/failures/replay", json={}), 422)
    assert_problem(api.post("/v1/failures/replay", json={"ids": [1], "code": 5}), 422)
    assert_problem(api.post("/v1/failures/replay", json={"ids": [0]}), 422)
    mid = api.post("/v1/messages", json={"phone": PHONE, "text": "x"}).json()["id"]
    r = api.post("/v1/failures/replay", json={"ids": [mid]})
    assert r.json() == {"replayed": [], "not_dead": [mid]}
    assert api.get("/v1/failures").json() == {"items": [], "next": None}
    assert_problem(api.get("/v1/failures", params={"cursor": "bm9wZQ"}), 422)


def test_the_account_shows_the_pause_and_resume_lifts_it(
    api: httpx.Client, api_stack: Stack
) -> None:
    account = api.get("/v1/account").json()
    assert (account["paused"], account["balance"], account["today"]["timezone"]) == (
        False, None, "Asia/Ho_Chi_Minh"
    )
    with api_stack.db.transaction() as session:
        pause(session, code=3, reason="wrong password", message_id=None, now=now())
    account = api.get("/v1/account").json()
    assert (account["paused"], account["pause_code"], account["pause_reason"]) == (
        True, 3, "wrong password"
    )
    assert api.post("/v1/account/resume").json() == {"resumed": True, "published": 0}
    assert api.get("/v1/account").json()["paused"] is False
    assert api.post("/v1/account/resume").json()["resumed"] is False


# -- health, documents, metrics --------------------------------------------------------------


def test_health_needs_no_key_and_the_openapi_document_lists_every_endpoint(
    api: httpx.Client,
) -> None:
    with httpx.Client(base_url=str(api.base_url), timeout=30) as anon:
        health = anon.get("/v1/health")
        assert health.status_code == 200, health.text
        assert set(health.json()["checks"]) == {"broker", "database", "polls"}
        assert anon.get("/v1/health/live").json() == {"live": True}
        assert anon.get("/v1/health/ready").status_code == 200
        paths = anon.get("/openapi.json").json()["paths"]
        docs = anon.get("/docs")
        assert docs.status_code == 200
        # the interactive docs load their script and styles from this server, not a CDN
        assert "cdn." not in docs.text and "https://" not in docs.text
        for asset in ("/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"):
            assert asset in docs.text
            fetched = anon.get(asset)
            assert fetched.status_code == 200 and len(fetched.content) > 10_000, asset
    assert {
        "/v1/messages", "/v1/messages/batch", "/v1/messages/{message_id}", "/v1/failures",
        "/v1/failures/replay", "/v1/account", "/v1/account/resume", "/v1/health",
    } <= set(paths)


def test_requests_are_counted_by_route_and_logged_without_numbers_or_tokens(
    api: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    token = api.headers["Authorization"].split()[1]
    with caplog.at_level("INFO", logger="fibosms.api.access"):
        mid = api.post("/v1/messages", json={"phone": PHONE, "text": "x"}).json()["id"]
        api.get(f"/v1/messages/{mid}")
        api.get("/v1/messages", params={"phone": PHONE})
    lines = [r.getMessage() for r in caplog.records if r.name == "fibosms.api.access"]
    assert "GET /v1/messages/{message_id} 200" in " ".join(lines)
    assert all("key=all" in line for line in lines)
    text = "\n".join(lines)
    assert PHONE not in text and "912345678" not in text and token not in text
    scrape = api.get("/metrics").text
    posted = 'fibosms_api_requests_total{method="POST",route="/v1/messages",status="201"} 1.0'
    assert posted in scrape
    assert 'route="/v1/messages/{message_id}"' in scrape
