"""The sandbox's decisions, without HTTP: credentials, balance, scripts, day counters."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

import worker.sandbox
from worker.sandbox import Action, SandboxServer, SandboxState, ScriptError, parse_script_arg
from worker.sandbox.render import render, render_sms
from worker.sandbox.server import parse_totals_request, redact
from worker.sandbox.state import Reply, phone_key, vietnam_day

CLIENT_NO = "CLUNIT01"
PASSWORD = "unit-Pa55-QZX"


class FakeClock:
    """A clock a test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def params(phone: str = "0912345678", **extra: str) -> dict[str, str]:
    base = {
        "clientNo": CLIENT_NO,
        "clientPass": PASSWORD,
        "senderName": "FIBOTEST",
        "phoneNumber": phone,
        "smsMessage": "Ma OTP cua ban la 123456",
        "smsGUID": "0",
        "serviceType": "0",
    }
    base.update(extra)
    return base


def make_state(**kwargs: Any) -> SandboxState:
    return SandboxState(CLIENT_NO, PASSWORD, **kwargs)


def codes(state: SandboxState, *phones: str) -> list[int | None]:
    return [state.send(params(phone)).code for phone in phones]


# -- balance --------------------------------------------------------------------------------


def test_each_accepted_message_costs_the_price() -> None:
    state = make_state(balance=100, price=7)

    reply = state.send(params())

    assert (reply.kind, reply.code) == ("sms", 200)
    assert state.balance == 93
    assert [m.phone for m in state.messages()] == ["0912345678"]


def test_insufficient_balance_answers_14_and_charges_nothing() -> None:
    # Given a balance that covers exactly one message
    state = make_state(balance=2, price=2)
    # When two are sent
    first, second = state.send(params()), state.send(params())
    # Then the second is refused with 14, and neither balance nor records move for it
    assert (first.code, second.code) == (200, 14)
    assert state.balance == 0
    assert len(state.messages()) == 1
    assert state.totals().success == 1
    assert [c.code for c in state.calls()] == [200, 14]


def test_balance_can_be_topped_up_and_price_changed() -> None:
    state = make_state(balance=0)
    assert state.send(params()).code == 14

    state.set_balance(10)
    state.configure(price=0)

    assert state.send(params()).code == 200
    assert state.balance == 10


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override",
    [{"clientPass": "wrong"}, {"clientNo": "CL-OTHER"}, {"clientPass": ""}],
    ids=["wrong password", "wrong account", "empty password"],
)
def test_wrong_credentials_answer_3(override: dict[str, str]) -> None:
    state = make_state(balance=10)

    reply = state.send(params(**override))

    assert reply.code == 3
    assert state.balance == 10 and state.messages() == []


def test_missing_credentials_answer_3() -> None:
    state = make_state()
    incomplete = params()
    del incomplete["clientPass"]

    assert state.send(incomplete).code == 3


@pytest.mark.parametrize(
    "change",
    [
        {"phoneNumber": None},
        {"phoneNumber": "  "},
        {"smsMessage": None},
        {"smsMessage": ""},
        {"serviceType": "2"},
        {"serviceType": "unicode"},
    ],
)
def test_missing_or_invalid_parameters_answer_11(change: dict[str, str | None]) -> None:
    state = make_state(balance=10)
    request = params()
    for key, value in change.items():
        if value is None:
            del request[key]
        else:
            request[key] = value

    assert state.send(request).code == 11
    assert state.balance == 10


def test_service_type_defaults_to_plain_text() -> None:
    state = make_state()
    request = params()
    del request["serviceType"]

    assert state.send(request).code == 200
    assert state.messages()[0].service_type == 0


def test_calls_record_refusals_but_never_the_password() -> None:
    state = make_state()
    state.send(params(clientPass="a-wrong-guess"))
    state.send(params())
    state.balance_query({"clientNo": CLIENT_NO, "clientPass": PASSWORD})
    state.totals_query(CLIENT_NO, PASSWORD)

    calls = state.calls()

    assert [(c.operation, c.code) for c in calls] == [
        ("SendMaskedSMS", 3), ("SendMaskedSMS", 200), ("GetClientBalance", 200),
        ("GetTotalMt", None),
    ]
    dumped = repr(calls) + repr(state) + repr(state.snapshot()) + repr(state.messages())
    assert PASSWORD not in dumped and "a-wrong-guess" not in dumped


# -- records ---------------------------------------------------------------------------------


def test_accepted_message_keeps_what_was_sent() -> None:
    clock = FakeClock(datetime(2024, 5, 1, 3, 0, tzinfo=UTC))
    state = make_state(clock=clock)

    state.send(params("+84912345678", smsMessage="Xin chào", serviceType="1", smsGUID="m-42",
                      senderName="BRAND"))
    state.send(params("0987654321"))

    first, second = state.messages()
    assert (first.seq, second.seq) == (1, 2)
    assert first.phone == "+84912345678"  # as received, not normalised
    assert (first.text, first.sender, first.service_type, first.sms_guid) == (
        "Xin chào", "BRAND", 1, "m-42")
    assert first.time == clock.now
    assert [m.seq for m in state.messages(phone="0987654321")] == [2]


def test_reset_restores_start_up_balance_and_clears_everything() -> None:
    state = make_state(balance=50)
    state.send(params())
    state.script(None, [2])
    state.configure(response_format="literal", price=5)

    state.reset()

    snapshot = state.snapshot()
    assert snapshot["balance"] == 50 and snapshot["price"] == 1
    assert snapshot["format"] == "escaped" and snapshot["scripts"] == {}
    assert state.messages() == [] and state.calls() == []
    assert state.totals().success == 0


# -- the Vietnam day --------------------------------------------------------------------------


def test_counters_roll_over_at_vietnam_midnight_not_utc() -> None:
    # Given 23:59 in Hanoi on 1 March (16:59 UTC)
    clock = FakeClock(datetime(2024, 3, 1, 16, 59, tzinfo=UTC))
    state = make_state(clock=clock)
    state.send(params())
    state.send(params())
    assert state.totals_query(CLIENT_NO, PASSWORD).totals == "2|0|0"

    # When the clock passes 17:00 UTC, midnight in Hanoi, still 1 March in UTC
    clock.now += timedelta(minutes=1)
    state.send(params())

    # Then GetTotalMt counts the new Vietnam day only
    assert state.totals_query(CLIENT_NO, PASSWORD).totals == "1|0|0"
    assert state.totals(date(2024, 3, 1)).success == 2
    assert state.totals(date(2024, 3, 2)).success == 1


def test_vietnam_day_of_utc_and_naive_times() -> None:
    assert vietnam_day(datetime(2024, 3, 1, 16, 59, 59, tzinfo=UTC)) == date(2024, 3, 1)
    assert vietnam_day(datetime(2024, 3, 1, 17, 0, 0, tzinfo=UTC)) == date(2024, 3, 2)
    assert vietnam_day(datetime(2024, 3, 1, 17, 0, 0)) == date(2024, 3, 2)  # naive is UTC


def test_scripted_deliveries_count_as_failed_and_pending() -> None:
    state = make_state()
    state.script(None, [{"delivery": "failed"}, {"code": 200, "delivery": "pending"}, 2])

    assert codes(state, "0911111111", "0922222222", "0933333333", "0944444444") == [
        200, 200, 2, 200]

    assert state.totals().wire == "1|1|1"
    assert [m.delivery for m in state.messages()] == ["failed", "pending", "success"]


def test_totals_with_wrong_credentials_answer_3() -> None:
    state = make_state()
    state.send(params())

    assert state.totals_query(CLIENT_NO, "nope").totals == "3"
    assert state.totals_query(None, None).totals == "3"


# -- scripts ---------------------------------------------------------------------------------


def test_a_numbers_queue_is_consumed_in_order_then_sends_succeed() -> None:
    state = make_state(balance=10)
    state.script("0912345678", [2, 13, 200])

    assert codes(state, *["0912345678"] * 4) == [2, 13, 200, 200]
    # scripted failures are neither charged nor recorded
    assert state.balance == 8
    assert len(state.messages()) == 2


@pytest.mark.parametrize("sent", ["0912345678", "84912345678", "+84912345678", " 84912345678"])
def test_scripts_match_on_the_last_nine_digits(sent: str) -> None:
    state = make_state()
    state.script("+84 912 345 678", [7])

    assert codes(state, "0987654321", sent, sent) == [200, 7, 200]


def test_any_number_queue_serves_every_number_after_the_numbers_own() -> None:
    # Given a script for one number and one for any number
    state = make_state()
    state.script(None, [13, 27])
    state.script("0912345678", [10])

    # When three sends arrive, the scripted number first
    result = codes(state, "0912345678", "0987654321", "0912345678", "0900000000")

    # Then the number's own queue wins, then the any-number queue, then normal answers
    assert result == [10, 13, 27, 200]


def test_refused_calls_do_not_consume_scripts() -> None:
    state = make_state()
    state.script(None, [2])

    assert state.send(params(clientPass="bad")).code == 3
    assert state.send(params(smsMessage="")).code == 11
    assert state.send(params()).code == 2


def test_scripted_success_code_1_is_answered_and_charged() -> None:
    state = make_state(balance=5)
    state.script(None, [1])

    assert state.send(params()).code == 1
    assert state.balance == 4 and state.messages()[0].code == 1


def test_delay_drop_http_and_raw_replies() -> None:
    state = make_state(balance=10)
    state.configure(delay=0.25)
    state.script(None, [
        {"delay": 2, "code": 2},
        {"drop": True},
        {"code": 200, "drop": True},
        {"http": 502},
        {"body": "<html>maintenance</html>", "status": 503, "content_type": "text/html"},
        {},
    ])

    replies = [state.send(params()) for _ in range(6)]

    assert (replies[0].kind, replies[0].code, replies[0].delay) == ("sms", 2, 2)
    assert replies[1].kind == "drop" and replies[2].kind == "drop"
    assert (replies[3].kind, replies[3].status) == ("http", 502)
    assert (replies[4].kind, replies[4].status, replies[4].body) == (
        "raw", 503, "<html>maintenance</html>")
    assert (replies[5].kind, replies[5].code, replies[5].delay) == ("sms", 200, 0.25)
    # a bare drop never accepted the message; a dropped success did
    assert len(state.messages()) == 2 and state.balance == 8
    assert [c.outcome for c in state.calls()] == [
        "answered", "dropped", "dropped", "http", "raw", "answered"]


def test_a_trickle_is_carried_to_every_kind_of_reply() -> None:
    # Given answers scripted to trickle, and one that keeps the default
    state = make_state(balance=10)
    state.script(None, [
        {"trickle": 0.5},
        {"trickle": 0.25, "code": 7},
        {"trickle": 0.1, "http": 502},
        {"trickle": 0.2, "body": "<html>", "status": 200},
        {"code": 2},
    ])

    replies = [state.send(params()) for _ in range(5)]

    assert [(r.kind, r.trickle) for r in replies] == [
        ("sms", 0.5), ("sms", 0.25), ("http", 0.1), ("raw", 0.2), ("sms", 0.0)]
    # a trickled success is still accepted: the slowness is in the answer, not the gateway
    assert replies[0].code == 200 and len(state.messages()) == 1


def test_the_configured_trickle_slows_every_operation() -> None:
    state = make_state(trickle=0.3)
    assert state.config.trickle == 0.3
    assert state.send(params()).trickle == 0.3
    assert state.balance_query(params()).trickle == 0.3
    assert state.totals_query(CLIENT_NO, PASSWORD).trickle == 0.3
    assert state.totals_query(CLIENT_NO, "wrong").trickle == 0.3

    state.configure(trickle=0)
    assert state.balance_query(params()).trickle == 0.0
    assert state.snapshot()["trickle"] == 0.0
    state.configure(trickle=1.5)
    state.reset()
    assert state.config.trickle == 0.3  # the start-up value


@pytest.mark.parametrize("trickle", [-0.1, 61, float("inf"), "0.5", True])
def test_a_configured_trickle_out_of_bounds_is_refused(trickle: object) -> None:
    state = make_state()
    with pytest.raises(ScriptError, match="trickle"):
        state.configure(trickle=trickle)  # type: ignore[arg-type]
    assert state.config.trickle == 0.0


def test_literal_format_is_carried_to_the_reply() -> None:
    state = make_state()
    state.configure(response_format="literal")

    reply = state.send(params())

    assert reply.literal
    assert render(reply)[2] == render_sms(200, literal=True)


def test_snapshot_lists_pending_scripts() -> None:
    state = make_state()
    state.script("84912345678", [2, {"delay": 1.5}])
    state.script("*", [{"http": 502}])

    assert state.snapshot()["scripts"] == {
        "912345678": [{"code": 2}, {"delay": 1.5}],
        "*": [{"http": 502}],
    }


@pytest.mark.parametrize(
    "action",
    [
        {"code": -1},
        {"code": "2"},
        {"delay": -1},
        {"delay": float("nan")},
        {"delay": 10_000},
        {"http": 200},
        {"drop": "yes"},
        {"status": 500},
        {"code": 2, "http": 502},
        {"drop": True, "http": 502},
        {"trickle": 0},
        {"trickle": -1},
        {"trickle": 61},
        {"trickle": float("nan")},
        {"drop": True, "trickle": 0.5},
        {"code": 3, "delivery": "failed"},
        {"delivery": "lost"},
        {"colour": "red"},
        "200",
        True,
    ],
)
def test_malformed_actions_are_refused(action: object) -> None:
    state = make_state()

    with pytest.raises(ScriptError):
        state.script(None, [action])
    assert state.snapshot()["scripts"] == {}


@pytest.mark.parametrize("phone", ["", "abc", 912345678])
def test_script_needs_a_phone_number(phone: object) -> None:
    with pytest.raises(ScriptError):
        make_state().script(phone, [2])  # type: ignore[arg-type]


def test_phone_key_is_the_last_nine_digits() -> None:
    assert {phone_key(p) for p in ("0912345678", "84912345678", "+84912345678", "091 234 5678")} \
        == {"912345678"}


# -- the --script argument ---------------------------------------------------------------------


def test_parse_script_arg_for_one_number() -> None:
    assert parse_script_arg("0912345678=2,2,200") == (
        "0912345678", [Action(code=2), Action(code=2), Action(code=200)])


def test_parse_script_arg_for_any_number_with_transport_steps() -> None:
    assert parse_script_arg("*=drop, http:502, delay:1.5, 13") == (
        None, [Action(drop=True), Action(http=502), Action(delay=1.5), Action(code=13)])


def test_parse_script_arg_reads_a_trickle_step() -> None:
    assert parse_script_arg("0912345678=trickle:0.5,200") == (
        "0912345678", [Action(trickle=0.5), Action(code=200)])
    assert Action(trickle=0.5).to_json() == {"trickle": 0.5}


@pytest.mark.parametrize("arg", ["0912345678", "=2", "0912345678=", "0912345678=two",
                                 "phone=2", "*=http:200", "*=delay:-1", "*=trickle:0",
                                 "*=trickle:x"])
def test_parse_script_arg_refuses_malformed_input(arg: str) -> None:
    with pytest.raises(ScriptError, match="--script"):
        parse_script_arg(arg)


def test_startup_scripts_are_queued() -> None:
    server = SandboxServer(CLIENT_NO, PASSWORD, scripts=[parse_script_arg("*=2,13")])

    assert server.state.snapshot()["scripts"] == {"*": [{"code": 2}, {"code": 13}]}
    assert "listen" not in repr(server) and PASSWORD not in repr(server)


# -- SOAP parsing ------------------------------------------------------------------------------

ENVELOPE = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
    '<GetTotalMt xmlns="http://tempuri.org/"><Username>{u}</Username>'
    "<Password>{p}</Password></GetTotalMt></soap:Body></soap:Envelope>"
)


def test_parse_totals_request_reads_username_and_password() -> None:
    assert parse_totals_request(ENVELOPE.format(u="CL1", p="x&amp;y").encode()) == ("CL1", "x&y")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<not xml",
        b"<Envelope/>",
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"/>',
        ENVELOPE.replace("GetTotalMt", "GetBalance").format(u="a", p="b").encode(),
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
        b"<x>&b;</x>",
    ],
    ids=["empty", "truncated", "not soap", "no body", "other operation", "entity bomb"],
)
def test_parse_totals_request_refuses_anything_else(body: bytes) -> None:
    from worker.sandbox.server import SoapError

    with pytest.raises(SoapError):
        parse_totals_request(body)


def test_unqualified_parameters_arrive_as_missing() -> None:
    body = ENVELOPE.replace("<Username>", '<Username xmlns="">').format(u="CL1", p="x")

    assert parse_totals_request(body.encode()) == (None, "x")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('"GET /s?clientNo=CL1&clientPass=pw1&x=2 HTTP/1.1" 200 -',
         '"GET /s?clientNo=CL1&clientPass=***&x=2 HTTP/1.1" 200 -'),
        ('"GET /s?clientPass=two words HTTP/1.1" 400 -', '"GET /s?clientPass=*** HTTP/1.1" 400 -'),
        ("Password=pw1\nnext line", "Password=***\nnext line"),
        ("CLIENTPASS=pw1", "CLIENTPASS=***"),
    ],
)
def test_redact_hides_passwords_in_printed_text(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_render_refuses_a_reply_it_cannot_draw() -> None:
    with pytest.raises(ValueError):
        render(Reply("sms"))


def test_public_api() -> None:
    assert set(worker.sandbox.__all__) == {
        "AcceptedMessage", "Action", "CallRecord", "Config", "SandboxServer", "SandboxState",
        "ScriptError", "Totals", "parse_script_arg", "phone_key",
    }
