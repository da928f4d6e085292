"""Campaigns and the suppression list through the HTTP API, over real HTTP on PostgreSQL and
Redis: JSON rows and CSV bodies, all or nothing, dry runs, re-runs, cancel, the listing's
campaign filter, and the list's add, look-up, pages and removal."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select

from tests.fixtures.api import assert_problem, count_messages, make_token
from tests.fixtures.stack import Stack
from worker.ledger.models import Message

CSV = {"Content-Type": "text/csv"}


def _rows(*phones: str) -> list[dict[str, str]]:
    return [{"phone": p, "name": f"Khach {i}"} for i, p in enumerate(phones)]


def _statuses(stack: Stack, campaign: str) -> dict[str, int]:
    with stack.db.sessions() as session:
        rows = session.execute(
            select(Message.status, func.count()).where(Message.campaign == campaign)
            .group_by(Message.status)
        )
        return {status: int(n) for status, n in rows}


def test_the_listing_filters_by_campaign_with_its_pages_unchanged(api: httpx.Client) -> None:
    spring = api.post("/v1/campaigns", json={
        "name": "spring", "text": "Chao {name}", "rows": _rows(
            "0912000001", "0912000002", "0912000003")})
    assert spring.status_code == 201, spring.text
    assert api.post("/v1/campaigns", json={
        "name": "autumn", "text": "Chao {name}", "rows": _rows("0912000004")}).status_code == 201
    api.post("/v1/messages", json={"phone": "0912000001", "text": "OTP 1", "kind": "otp"})
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"campaign": "spring", "limit": 2}
    while True:
        page = api.get("/v1/messages", params=params).json()
        seen += page["items"]
        if page["next"] is None:
            break
        params["cursor"] = page["next"]
    assert [m["campaign"] for m in seen] == ["spring"] * 3
    assert [m["id"] for m in seen] == sorted((m["id"] for m in seen), reverse=True)
    assert api.get("/v1/messages", params={"campaign": "winter"}).json()["items"] == []
    assert len(api.get("/v1/messages").json()["items"]) == 5


def test_json_rows_are_all_or_nothing_dry_run_writes_nothing_and_a_rerun_adds_nothing(
    api: httpx.Client, api_stack: Stack
) -> None:
    rows = [*_rows("0912000001", "84912000002"), {"phone": "024 3826 1234", "name": "x"},
            {"phone": "0912000001", "name": "again"}]
    body = {"name": "tet", "text": "Chao {name}", "rows": rows}
    refused = assert_problem(api.post("/v1/campaigns", json=body), 422)
    assert [e["field"] for e in refused["errors"]] == ["rows[2]"]
    assert refused["errors"][0]["reason"].startswith("phone:")
    assert refused["report"]["invalid"] == 1 and refused["report"]["accepted"] == 0
    assert "3826" not in str(refused["errors"])
    assert count_messages(api_stack) == 0

    padded = assert_problem(api.post("/v1/campaigns", json={**body, "text": "{name:>99999999}"}),
                            422)
    assert [e["field"] for e in padded["errors"]] == ["text"]

    dry = api.post("/v1/campaigns", json={**body, "dry_run": True, "skip_invalid": True})
    assert dry.status_code == 200, dry.text
    assert {k: dry.json()[k] for k in ("rows", "accepted", "invalid", "duplicates")} == {
        "rows": 4, "accepted": 0, "invalid": 1, "duplicates": 1}
    assert count_messages(api_stack) == 0

    done = api.post("/v1/campaigns", json={**body, "skip_invalid": True})
    assert done.status_code == 201, done.text
    assert (done.json()["accepted"], done.json()["segments"]) == (2, 2)
    again = api.post("/v1/campaigns", json={**body, "skip_invalid": True})
    assert again.json()["accepted"] == 0
    assert _statuses(api_stack, "tet") == {"queued": 2}


def test_a_csv_body_is_checked_line_by_line_like_the_command_line(
    api: httpx.Client, api_stack: Stack
) -> None:
    good = "\ufeffphone;text\n0912000001;[QC] Giam 20%\n+84 912 000 002;[QC] Giam 30%\n"
    bad = good + "0912000003;\n"
    doc = assert_problem(api.post("/v1/campaigns", params={"name": "csv"}, content=bad.encode(),
                                  headers=CSV), 422)
    assert [e["field"] for e in doc["errors"]] == ["line 4"]
    assert count_messages(api_stack) == 0
    r = api.post("/v1/campaigns", params={"name": "csv"}, content=good.encode(), headers=CSV)
    assert r.status_code == 201, r.text
    assert (r.json()["campaign"], r.json()["accepted"]) == ("csv", 2)
    for content, params, field in [
        (b"phone\n0912000001\n", {"name": "x"}, "body"),  # no text, no template
        (b"number,text\n1,a\n", {"name": "x"}, "body"),  # no phone column
        (b"phone,text\n\xff\xfe,a\n", {"name": "x"}, "body"),  # not UTF-8
        (good.encode(), {}, "name"),
    ]:
        doc = assert_problem(api.post("/v1/campaigns", params=params, content=content,
                                      headers=CSV), 422)
        assert doc["errors"][0]["field"] == field
    doc = assert_problem(api.post("/v1/campaigns", params={"name": "x"},
                                  json={"name": "x", "rows": _rows("0912000001")}), 422)
    assert doc["errors"][0]["field"] == "name"
    huge = b"phone,text\n" + b"0912000001,x\n" * 90_000
    assert_problem(api.post("/v1/campaigns", params={"name": "big"}, content=huge,
                            headers=CSV), 413)
    assert_problem(api.post("/v1/campaigns", content=b"a", headers={"Content-Type":
                                                                    "text/plain"}), 415)
    assert count_messages(api_stack) == 2


def test_campaigns_are_listed_shown_and_cancelled_by_an_admin_key(
    api: httpx.Client, api_stack: Stack
) -> None:
    api.post("/v1/campaigns", json={"name": "sale", "text": "Chao {name}",
                                    "rows": _rows("0912000001", "0912000002")})
    listed = api.get("/v1/campaigns").json()["items"]
    assert [c["campaign"] for c in listed] == ["sale"]
    shown = api.get("/v1/campaigns/sale").json()
    assert (shown["messages"], shown["counts"], shown["cancelled_at"]) == (
        2, {"queued": 2}, None)
    assert_problem(api.get("/v1/campaigns/nothing"), 404)

    token = make_token(api_stack.db, "sender", "send", "read")
    refused = api.post("/v1/campaigns/sale/cancel", headers={"Authorization": f"Bearer {token}"})
    assert_problem(refused, 403)
    assert _statuses(api_stack, "sale") == {"queued": 2}
    r = api.post("/v1/campaigns/sale/cancel")
    assert r.json() == {"campaign": "sale", "cancelled": 2}
    assert api.get("/v1/campaigns/sale").json()["counts"] == {"cancelled": 2}
    assert_problem(api.post("/v1/campaigns/nothing/cancel"), 404)
    again = api.post("/v1/campaigns", json={"name": "sale", "rows": _rows("0912000003"),
                                            "text": "x"})
    assert_problem(again, 409)
    assert count_messages(api_stack) == 2


def test_the_suppression_list_is_added_to_paged_looked_up_and_removed_from(
    api: httpx.Client, api_stack: Stack
) -> None:
    r = api.post("/v1/suppressions", json={"phones": ["0912000001", "+84 912 000 002",
                                                      "84912000001"], "reason": "STOP"})
    assert r.json() == {"added": 2, "given": 2}
    bad = assert_problem(api.post("/v1/suppressions", json={"phones": ["0912000003", "024"]}),
                         422)
    assert bad["errors"][0]["field"] == "phones[1]"
    page = api.get("/v1/suppressions", params={"limit": 1}).json()
    assert [e["phone"] for e in page["items"]] == ["0912000001"]
    assert page["items"][0]["source"] == "api" and page["items"][0]["reason"] == "STOP"
    rest = api.get("/v1/suppressions", params={"cursor": page["next"]}).json()
    assert ([e["phone"] for e in rest["items"]], rest["next"]) == (["0912000002"], None)
    one = api.get("/v1/suppressions", params={"phone": "(+84) 912-000-002"}).json()
    assert [e["phone"] for e in one["items"]] == ["0912000002"]
    assert api.get("/v1/suppressions", params={"phone": "0912000009"}).json()["items"] == []
    assert_problem(api.get("/v1/suppressions", params={"cursor": "bTox"}), 422)

    # a campaign to a listed number records it suppressed, never sent
    sent = api.post("/v1/campaigns", json={"name": "c", "text": "[QC] {name}",
                                           "rows": _rows("0912000002", "0912000005")})
    assert (sent.json()["accepted"], sent.json()["suppressed"]) == (1, 1)

    token = make_token(api_stack.db, "reader", "read", "send")
    assert_problem(api.delete("/v1/suppressions/0912000002",
                              headers={"Authorization": f"Bearer {token}"}), 403)
    assert api.delete("/v1/suppressions/+84%20912%20000%20002").status_code == 204
    assert_problem(api.delete("/v1/suppressions/0912000002"), 404)
    assert_problem(api.delete("/v1/suppressions/12ab"), 422)
    assert [e["phone"] for e in api.get("/v1/suppressions").json()["items"]] == ["0912000001"]


def test_the_openapi_document_lists_the_campaign_and_suppression_endpoints(
    api: httpx.Client,
) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert set(paths["/v1/campaigns"]) == {"get", "post"}
    assert set(paths["/v1/campaigns"]["post"]["requestBody"]["content"]) == {
        "application/json", "text/csv"}
    assert "post" in paths["/v1/campaigns/{name}/cancel"]
    assert set(paths["/v1/suppressions"]) == {"get", "post"}
    assert "delete" in paths["/v1/suppressions/{phone}"]
