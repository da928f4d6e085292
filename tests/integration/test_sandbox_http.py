"""The sandbox over real HTTP, driven with raw ``requests`` calls (not the FIBO client)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from xml.etree.ElementTree import Element

import pytest
import requests
from defusedxml.ElementTree import fromstring

from tests.fixtures.sandbox import SANDBOX_CLIENT_NO, SANDBOX_PASSWORD
from worker.sandbox import Action, SandboxServer
from worker.settings import BALANCE_PATH, SEND_PATH, TOTALS_PATH, Settings

pytestmark = pytest.mark.integration

TEMPURI = "{http://tempuri.org/}"
ESCAPED_SUCCESS = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<string xmlns="http://tempuri.org/">&lt;SMS&gt;&lt;Code&gt;200&lt;/Code&gt;&lt;Message&gt;'
    "Sending...&lt;/Message&gt;&lt;Time&gt;&lt;/Time&gt;&lt;/SMS&gt;</string>"
)
LITERAL_SUCCESS = (
    "<string><SMS><Code>200</Code><Message>Sending...</Message><Time></Time></SMS></string>"
)
WRONG_GUESS = "guessed-Pa55-WRONG"
ROOT = Path(__file__).resolve().parents[2]


def send_params(phone: str = "0912345678", **extra: str) -> dict[str, str]:
    base = {
        "clientNo": SANDBOX_CLIENT_NO,
        "clientPass": SANDBOX_PASSWORD,
        "senderName": "FIBOTEST",
        "phoneNumber": phone,
        "smsMessage": "Ma xac thuc: 123456 & <giu bi mat> #1 +84",
        "smsGUID": "0",
        "serviceType": "0",
    }
    base.update(extra)
    return base


def send(sandbox: SandboxServer, session: Any = requests, timeout: float = 5, **extra: str
         ) -> requests.Response:
    response: requests.Response = session.get(sandbox.url + SEND_PATH,
                                              params=send_params(**extra), timeout=timeout)
    return response


def fields(text: str) -> dict[str, str]:
    """The ``<SMS>`` children of an ASMX answer, escaped or literal."""
    outer = fromstring(text.encode())
    if outer.tag == f"{TEMPURI}string":
        assert outer.text is not None
        sms: Element = fromstring(outer.text)
    else:
        assert outer.tag == "string"
        sms = outer[0]
    assert sms.tag == "SMS"
    return {child.tag: child.text or "" for child in sms}


def code_of(response: requests.Response) -> int:
    assert response.status_code == 200, response.text
    return int(fields(response.text)["Code"])


def soap(sandbox: SandboxServer, username: str = SANDBOX_CLIENT_NO,
         password: str = SANDBOX_PASSWORD, *, action: str | None = '"http://tempuri.org/GetTotalMt"',
         body: str | None = None) -> requests.Response:
    envelope = body or (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<soap:Envelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        f'<GetTotalMt xmlns="http://tempuri.org/"><Username>{username}</Username>'
        f"<Password>{password}</Password></GetTotalMt></soap:Body></soap:Envelope>"
    )
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    if action is not None:
        headers["SOAPAction"] = action
    return requests.post(sandbox.url + TOTALS_PATH, data=envelope.encode(), headers=headers,
                         timeout=5)


def totals_result(response: requests.Response) -> str:
    assert response.status_code == 200, response.text
    root = fromstring(response.content)
    result = root.find(f".//{TEMPURI}GetTotalMtResponse/{TEMPURI}GetTotalMtResult")
    assert result is not None and isinstance(result.text, str)
    return result.text


def control(sandbox: SandboxServer, name: str, payload: Any = None) -> requests.Response:
    url = f"{sandbox.url}/_sandbox/{name}"
    if payload is None and name in ("messages", "calls", "state"):
        return requests.get(url, timeout=5)
    return requests.post(url, json=payload, timeout=5)


# -- the wire format ---------------------------------------------------------------------------


def test_send_answers_the_escaped_asmx_document(sandbox: SandboxServer) -> None:
    response = send(sandbox)

    assert response.status_code == 200
    assert response.text == ESCAPED_SUCCESS
    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert int(response.headers["Content-Length"]) == len(response.content)


def test_the_text_arrives_intact_and_the_message_is_recorded(sandbox: SandboxServer) -> None:
    send(sandbox, phone="+84912345678", smsMessage="Xin chào & tạm biệt #1 +2", serviceType="1")

    [message] = sandbox.accepted()
    assert message.phone == "+84912345678"
    assert message.text == "Xin chào & tạm biệt #1 +2"
    assert (message.sender, message.service_type) == ("FIBOTEST", 1)


def test_form_post_to_the_send_path_is_accepted(sandbox: SandboxServer) -> None:
    response = requests.post(sandbox.url + SEND_PATH, data=send_params(), timeout=5)

    assert code_of(response) == 200
    assert [c.method for c in sandbox.calls()] == ["POST"]


def test_connections_are_kept_alive(sandbox: SandboxServer) -> None:
    # Given one HTTP/1.1 connection
    conn = http.client.HTTPConnection("127.0.0.1", sandbox.port, timeout=5)
    query = requests.Request("GET", sandbox.url + SEND_PATH, params=send_params()).prepare().url
    assert query is not None
    path = query[len(sandbox.url):]
    try:
        # When two requests go over it
        conn.request("GET", path)
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        conn.request("GET", path)
        second = conn.getresponse()
        second.read()
        # Then the server answered both on the same socket
        assert (first.status, second.status) == (200, 200)
        assert sock is not None and conn.sock is sock
        assert first.getheader("Connection") != "close"
    finally:
        conn.close()
    assert len(sandbox.accepted()) == 2


def test_literal_mode_answers_the_inner_xml_unescaped(sandbox: SandboxServer) -> None:
    assert control(sandbox, "config", {"format": "literal"}).json()["format"] == "literal"

    response = send(sandbox)

    assert response.text == LITERAL_SUCCESS
    assert fields(response.text)["Code"] == "200"


def test_balance_answers_the_account_balance(sandbox: SandboxServer) -> None:
    send(sandbox)

    response = requests.get(
        sandbox.url + BALANCE_PATH,
        params={"clientNo": SANDBOX_CLIENT_NO, "clientPass": SANDBOX_PASSWORD, "serviceType": "1"},
        timeout=5,
    )

    assert fields(response.text) == {"Code": "200", "AccountBalance": "999999", "Time": ""}
    assert "&lt;AccountBalance&gt;999999&lt;/AccountBalance&gt;" in response.text


def test_paths_are_matched_without_regard_to_case(sandbox: SandboxServer) -> None:
    response = requests.get(sandbox.url + SEND_PATH.lower(), params=send_params(), timeout=5)

    assert code_of(response) == 200


# -- refusals --------------------------------------------------------------------------------


def test_wrong_password_answers_3_with_its_meaning(sandbox: SandboxServer) -> None:
    response = send(sandbox, clientPass=WRONG_GUESS)

    assert fields(response.text) == {"Code": "3", "Message": "wrong user or password", "Time": ""}
    assert sandbox.accepted() == []


def test_balance_with_wrong_password_answers_3(sandbox: SandboxServer) -> None:
    response = requests.get(sandbox.url + BALANCE_PATH,
                            params={"clientNo": SANDBOX_CLIENT_NO, "clientPass": WRONG_GUESS},
                            timeout=5)

    assert code_of(response) == 3


def test_missing_phone_number_answers_11(sandbox: SandboxServer) -> None:
    response = send(sandbox, phoneNumber="")

    assert fields(response.text)["Code"] == "11"
    assert fields(response.text)["Message"] == "invalid parameter"


def test_empty_balance_answers_14(sandbox: SandboxServer) -> None:
    # Given the balance emptied through the control endpoint
    assert control(sandbox, "balance", {"balance": 0}).json() == {"balance": 0}
    # When a message is sent
    response = send(sandbox)
    # Then FIBO's "insufficient balance" comes back and nothing is accepted
    assert code_of(response) == 14
    assert sandbox.accepted() == []


# -- GetTotalMt ------------------------------------------------------------------------------


def test_totals_answer_todays_success_failed_pending(sandbox: SandboxServer) -> None:
    sandbox.script(None, [{"delivery": "failed"}, {"delivery": "pending"}])
    for phone in ("0911111111", "0922222222", "0933333333", "0944444444"):
        assert code_of(send(sandbox, phone=phone)) == 200
    assert code_of(send(sandbox, clientPass=WRONG_GUESS)) == 3  # refused: not counted

    response = soap(sandbox)

    assert response.headers["Content-Type"] == "text/xml; charset=utf-8"
    assert totals_result(response) == "2|1|1"
    assert fromstring(response.content).tag == "{http://schemas.xmlsoap.org/soap/envelope/}Envelope"


def test_totals_with_wrong_password_answer_3(sandbox: SandboxServer) -> None:
    assert totals_result(soap(sandbox, password=WRONG_GUESS)) == "3"


@pytest.mark.parametrize(
    ("action", "body"),
    [
        (None, None),
        ('"http://tempuri.org/GetClientBalance"', None),
        ('"http://tempuri.org/GetTotalMt"', "<soap:Envelope"),
        ('"http://tempuri.org/GetTotalMt"',
         '<!DOCTYPE x [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><x>&b;</x>'),
    ],
    ids=["no SOAPAction", "other SOAPAction", "truncated", "entity bomb"],
)
def test_malformed_soap_gets_a_soap_fault(
    sandbox: SandboxServer, action: str | None, body: str | None
) -> None:
    response = soap(sandbox, action=action, body=body)

    assert response.status_code == 500
    fault = fromstring(response.content).find(".//faultstring")
    assert fault is not None and fault.text
    assert [c.outcome for c in sandbox.calls()] == ["fault"]


def test_totals_path_refuses_get(sandbox: SandboxServer) -> None:
    assert requests.get(sandbox.url + TOTALS_PATH, timeout=5).status_code == 405


# -- scripted outcomes --------------------------------------------------------------------------


def test_scripted_codes_are_answered_in_order(sandbox: SandboxServer) -> None:
    # Given a script posted to the control endpoint, matched on the last 9 digits
    script = {"phone": "+84912345678", "actions": [2, {"code": 13}, 200]}
    posted = control(sandbox, "script", script)
    assert posted.json() == {"phone": "+84912345678", "queued": 3}

    # When the number is sent to four times, once to another number in between
    result = [code_of(send(sandbox, phone="0912345678")) for _ in range(2)]
    result.append(code_of(send(sandbox, phone="0987654321")))
    result += [code_of(send(sandbox, phone="84912345678")) for _ in range(2)]

    # Then the scripted codes come in order, the other number is unaffected
    assert result == [2, 13, 200, 200, 200]
    assert control(sandbox, "state").json()["scripts"] == {}


def test_scripted_delay_holds_the_answer(sandbox: SandboxServer) -> None:
    sandbox.script(None, [{"delay": 0.4}])

    started = time.monotonic()
    response = send(sandbox)
    elapsed = time.monotonic() - started

    assert code_of(response) == 200
    assert elapsed >= 0.4


def test_a_delay_past_the_read_timeout_still_accepts_the_message(sandbox: SandboxServer) -> None:
    # Given a gateway slower than the client's read timeout
    sandbox.script(None, [{"delay": 1.5}])
    # When the client gives up
    with pytest.raises(requests.ReadTimeout):
        send(sandbox, timeout=0.3)
    # Then the message was accepted all the same: the ambiguous case
    assert len(sandbox.accepted()) == 1


def test_default_delay_applies_to_every_call(sandbox: SandboxServer) -> None:
    control(sandbox, "config", {"delay": 0.3})

    started = time.monotonic()
    response = requests.get(sandbox.url + BALANCE_PATH,
                            params={"clientNo": SANDBOX_CLIENT_NO, "clientPass": SANDBOX_PASSWORD},
                            timeout=5)

    assert code_of(response) == 200
    assert time.monotonic() - started >= 0.3


def read_trickle(url: str, path_and_query: str, count: int) -> tuple[bytes, float]:
    """The first ``count`` bytes of the answer to a raw GET, and how long they took."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(f"GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        received = b""
        started = time.monotonic()
        while len(received) < count:
            chunk = conn.recv(count - len(received))
            if not chunk:
                break
            received += chunk
        return received, time.monotonic() - started


def send_query(**extra: str) -> str:
    return SEND_PATH + "?" + urlencode(send_params(**extra))


def test_a_scripted_trickle_sends_the_answer_one_byte_at_a_time(sandbox: SandboxServer) -> None:
    # Given a send scripted over the control endpoint to trickle at 50 ms a byte
    assert control(sandbox, "script", {"phone": None, "actions": [{"trickle": 0.05}]}).ok

    # When a client reads the first 20 bytes
    received, elapsed = read_trickle(sandbox.url, send_query(), 20)

    # Then they are the start of a normal answer, status line first, at the scripted pace
    assert received == b"HTTP/1.1 200 OK\r\nSer"
    assert elapsed >= 19 * 0.05
    # and the message was accepted: only the answer is slow, the ambiguous case
    assert len(sandbox.accepted()) == 1
    assert sandbox.calls()[0].action == Action(trickle=0.05)


def test_a_configured_trickle_slows_the_balance_too(sandbox: SandboxServer) -> None:
    # Given every answer configured to trickle at 5 ms a byte
    assert control(sandbox, "config", {"trickle": 0.005}).json()["trickle"] == 0.005

    # When a client waits for the whole balance answer
    started = time.monotonic()
    response = requests.get(sandbox.url + BALANCE_PATH,
                            params={"clientNo": SANDBOX_CLIENT_NO, "clientPass": SANDBOX_PASSWORD},
                            timeout=30)
    elapsed = time.monotonic() - started

    # Then it arrives whole and well-formed, one byte per 5 ms or slower
    assert code_of(response) == 200
    assert len(response.content) > 200
    assert elapsed >= len(response.content) * 0.005
    assert control(sandbox, "config", {"trickle": 0}).json()["trickle"] == 0


def test_the_command_line_sandbox_trickles_with_its_flag(tmp_path: Path) -> None:
    # Given `fibosms sandbox --trickle 0.05` on a free port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"FIBOSMS_SANDBOX_PORT": str(port), "FIBOSMS_DATA_DIR": str(tmp_path),
           "FIBOSMS_ENV_FILE": str(tmp_path / "none")}
    env = {k: v for k, v in {**os.environ, **env}.items()
           if not k.startswith("FIBOSMS_") or k in env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fibosms.cli", "sandbox", "--trickle", "0.05"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        # When a balance call reads the first 10 bytes of its answer
        received, elapsed = read_trickle(f"http://127.0.0.1:{port}",
                                         f"{BALANCE_PATH}?clientNo=x&clientPass=y", 10)
        # Then they come at the flag's pace
        assert received == b"HTTP/1.1 2"
        assert elapsed >= 9 * 0.05
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_drop_closes_the_connection_without_an_answer(sandbox: SandboxServer) -> None:
    sandbox.script("0912345678", [{"drop": True}])

    with requests.Session() as session:
        with pytest.raises(requests.ConnectionError):
            send(sandbox, session)
        # the next call opens a fresh connection and succeeds
        assert code_of(send(sandbox, session)) == 200

    assert len(sandbox.accepted()) == 1
    assert [c.outcome for c in sandbox.calls()] == ["dropped", "answered"]


def test_a_dropped_success_was_accepted(sandbox: SandboxServer) -> None:
    sandbox.script(None, [{"code": 200, "drop": True}])

    with pytest.raises(requests.ConnectionError):
        send(sandbox)

    assert len(sandbox.accepted()) == 1


def test_http_action_answers_a_proxy_error_page(sandbox: SandboxServer) -> None:
    control(sandbox, "script", {"phone": None, "actions": [{"http": 502}]})

    response = send(sandbox)

    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<h1>502 Bad Gateway</h1>" in response.text
    assert sandbox.accepted() == []


def test_body_action_answers_the_raw_body(sandbox: SandboxServer) -> None:
    sandbox.script(None, [{"body": "<string>&lt;SMS&gt;&lt;Co", "status": 200}])

    response = send(sandbox)

    assert (response.status_code, response.text) == (200, "<string>&lt;SMS&gt;&lt;Co")


# -- concurrency -------------------------------------------------------------------------------


def test_eight_threads_hammering_lose_nothing(sandbox: SandboxServer) -> None:
    # Given 8 threads with their own keep-alive sessions, and 100 scripted 2s for any number
    sandbox.script(None, [2] * 100)
    sends_per_thread = 50

    def worker(thread: int) -> list[int]:
        with requests.Session() as session:
            return [
                code_of(send(sandbox, session, phone=f"09{thread:02d}{i:06d}",
                             smsMessage=f"t{thread} m{i}"))
                for i in range(sends_per_thread)
            ]

    # When 400 sends race
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = [code for codes in pool.map(worker, range(8)) for code in codes]

    # Then exactly 100 got the scripted 2, and the 300 others are accepted exactly once each
    assert sorted(set(results)) == [2, 200]
    assert results.count(2) == 100 and results.count(200) == 300
    accepted = sandbox.accepted()
    assert sorted(m.seq for m in accepted) == list(range(1, 301))
    assert len({m.text for m in accepted}) == 300
    assert sandbox.state.balance == 1_000_000 - 300
    assert totals_result(soap(sandbox)) == "300|0|0"
    assert len(sandbox.calls()) == 401


def test_a_slow_call_does_not_block_the_others(sandbox: SandboxServer) -> None:
    # Given a call held for 1.5 s, already inside the gateway
    sandbox.script("0900000000", [{"delay": 1.5}])
    slow = threading.Thread(target=send, args=(sandbox,), kwargs={"phone": "0900000000"})
    slow.start()
    try:
        deadline = time.monotonic() + 5
        while not sandbox.calls() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sandbox.calls(), "the slow call never reached the sandbox"
        # When another call arrives, Then it is answered at once
        started = time.monotonic()
        assert code_of(send(sandbox, phone="0911111111")) == 200
        assert time.monotonic() - started < 0.5
    finally:
        slow.join()


# -- the control endpoint ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "payload"),
    [
        ("script", {"phone": "0912345678"}),
        ("script", {"phone": "0912345678", "actions": [{"code": "two"}]}),
        ("script", {"phone": "not a number", "actions": [2]}),
        ("script", {"phone": None, "actions": "2,2"}),
        ("balance", {"balance": -1}),
        ("balance", {"balance": "100"}),
        ("balance", {}),
        ("config", {"format": "yaml"}),
        ("config", {"delay": -2}),
        ("config", {"price": 1.5}),
        ("config", {"colour": "red"}),
        ("config", [1, 2]),
    ],
)
def test_invalid_control_input_answers_400_with_an_error(
    sandbox: SandboxServer, name: str, payload: Any
) -> None:
    before = control(sandbox, "state").json()

    response = control(sandbox, name, payload)

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]
    assert control(sandbox, "state").json() == before


def test_control_body_that_is_not_json_answers_400(sandbox: SandboxServer) -> None:
    response = requests.post(sandbox.url + "/_sandbox/script", data=b"{nope", timeout=5)

    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


def test_unknown_control_endpoint_and_wrong_method(sandbox: SandboxServer) -> None:
    assert requests.get(sandbox.url + "/_sandbox/nothing", timeout=5).status_code == 404
    assert requests.get(sandbox.url + "/_sandbox/reset", timeout=5).status_code == 405
    assert requests.get(sandbox.url + "/elsewhere", timeout=5).status_code == 404


def test_messages_state_and_reset_over_http(sandbox: SandboxServer) -> None:
    send(sandbox, phone="0912345678")
    send(sandbox, phone="0987654321")

    everything = control(sandbox, "messages").json()["messages"]
    one = requests.get(sandbox.url + "/_sandbox/messages", params={"phone": "84987654321"},
                       timeout=5).json()["messages"]
    state = control(sandbox, "state").json()

    assert [m["phone"] for m in everything] == ["0912345678", "0987654321"]
    assert [m["seq"] for m in one] == [2]
    assert (state["balance"], state["today"]["success"], state["accepted"]) == (999_998, 2, 2)

    after = control(sandbox, "reset", {}).json()
    assert (after["balance"], after["accepted"]) == (1_000_000, 0)
    assert control(sandbox, "messages").json() == {"messages": []}


def test_the_password_appears_in_no_control_output(sandbox: SandboxServer) -> None:
    # Given calls of every kind, right and wrong passwords, scripted and refused
    sandbox.script(None, [2, {"http": 502}, {"delivery": "pending"}])
    for _ in range(4):
        send(sandbox)
    send(sandbox, clientPass=WRONG_GUESS)
    requests.post(sandbox.url + SEND_PATH, data=send_params(), timeout=5)
    requests.get(sandbox.url + BALANCE_PATH,
                 params={"clientNo": SANDBOX_CLIENT_NO, "clientPass": SANDBOX_PASSWORD}, timeout=5)
    soap(sandbox)
    soap(sandbox, password=WRONG_GUESS)

    # When everything the control endpoint shows is read
    outputs = [control(sandbox, name).text for name in ("messages", "calls", "state")]
    outputs += [repr(sandbox), repr(sandbox.state), repr(sandbox.calls()), repr(sandbox.accepted())]

    # Then neither the password nor a wrong guess is in it, though the calls are
    assert len(sandbox.calls()) == 9
    for text in outputs:
        assert SANDBOX_PASSWORD not in text
        assert WRONG_GUESS not in text


def test_verbose_log_hides_the_password(capfd: pytest.CaptureFixture[str]) -> None:
    with SandboxServer(SANDBOX_CLIENT_NO, SANDBOX_PASSWORD, verbose=True) as server:
        send(server)
        send(server, clientPass=WRONG_GUESS)
    err = capfd.readouterr().err

    assert SEND_PATH in err and "clientPass=***" in err
    assert SANDBOX_PASSWORD not in err and WRONG_GUESS not in err


def test_quiet_by_default(sandbox: SandboxServer, capfd: pytest.CaptureFixture[str]) -> None:
    send(sandbox)
    send(sandbox, clientPass=WRONG_GUESS)

    assert capfd.readouterr().err == ""


# -- lifecycle -------------------------------------------------------------------------------


def test_stop_cuts_kept_alive_connections(sandbox: SandboxServer) -> None:
    # Given a client holding a kept-alive connection
    with requests.Session() as session:
        assert code_of(send(sandbox, session)) == 200
        # When the gateway stops
        sandbox.stop()
        # Then the client's next call fails rather than reaching a stopped gateway
        with pytest.raises(requests.ConnectionError):
            send(sandbox, session, timeout=2)


def test_stop_cuts_a_call_held_by_a_delay(sandbox: SandboxServer) -> None:
    # Given a call the gateway holds for 10 s
    sandbox.script(None, [{"delay": 10}])
    errors: list[BaseException] = []

    def call() -> None:
        try:
            send(sandbox, timeout=20)
        except requests.RequestException as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 5
    while not sandbox.calls() and time.monotonic() < deadline:
        time.sleep(0.01)

    # When the gateway stops
    started = time.monotonic()
    sandbox.stop()
    caller.join(timeout=5)

    # Then the caller sees the connection cut at once, not after the delay
    assert not caller.is_alive()
    assert time.monotonic() - started < 2
    assert len(errors) == 1 and isinstance(errors[0], requests.ConnectionError)


def test_from_settings_serves_the_configured_paths_and_account() -> None:
    settings = Settings.from_env({
        "FIBOSMS_CLIENT_NO": "CLFROMSET",
        "FIBOSMS_CLIENT_PASS": "from-settings-pw",
        "FIBOSMS_SEND_PATH": "/gw/send",
        "FIBOSMS_BALANCE_PATH": "/gw/balance",
        "FIBOSMS_TOTALS_PATH": "/gw/totals.asmx",
    })

    with SandboxServer.from_settings(settings, port=0) as server:
        sent = requests.get(server.url + "/gw/send", timeout=5, params=send_params(
            clientNo="CLFROMSET", clientPass="from-settings-pw"))
        default_path = requests.get(server.url + SEND_PATH, timeout=5, params=send_params())

    assert code_of(sent) == 200
    assert default_path.status_code == 404


def test_sandbox_settings_point_at_the_sandbox(
    sandbox: SandboxServer, sandbox_settings: Settings
) -> None:
    assert sandbox_settings.api_url == sandbox.url
    assert (sandbox_settings.client_no, sandbox_settings.client_pass) == (
        SANDBOX_CLIENT_NO, SANDBOX_PASSWORD)
    assert sandbox_settings.read_timeout_seconds == 1
    assert not sandbox_settings.using_sandbox  # an explicit account, like production
