"""The console's pure parts: session cookies, CSRF tokens, the sign-in throttle, the
balance's run-out day, and charts that escape what they print."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fibosms.web.console import charts
from fibosms.web.console.session import (
    SignInThrottle,
    csrf_token,
    make_cookie,
    read_cookie,
    same_token,
)

KEY = "k" * 64
T0 = 1_800_000_000.0


def test_a_cookie_verifies_under_its_key_until_it_expires() -> None:
    claim = read_cookie(make_cookie(7, KEY, now=T0, seconds=60))
    assert claim is not None and claim.operator_id == 7
    assert claim.valid_for(KEY, now=T0 + 59)
    assert not claim.valid_for(KEY, now=T0 + 60)
    assert not claim.valid_for("other" * 10, now=T0)


def test_a_changed_cookie_does_not_verify() -> None:
    value = make_cookie(7, KEY, now=T0)
    ident, expires, nonce, mac = value.split(".")
    for forged in (f"8.{expires}.{nonce}.{mac}", f"{ident}.{int(expires) + 999}.{nonce}.{mac}",
                   f"{ident}.{expires}.{nonce}x.{mac}"):
        claim = read_cookie(forged)
        assert claim is not None and not claim.valid_for(KEY, now=T0)


def test_malformed_cookies_are_not_read() -> None:
    for value in (None, "", "a.b.c.d", "1.2.3", "1.2.3.4.5", "1" * 400, "-1.5.n.m",
                  "99999999999999999999.1.n.m"):
        assert read_cookie(value) is None


def test_the_csrf_token_belongs_to_one_session() -> None:
    one = read_cookie(make_cookie(1, KEY, now=T0))
    two = read_cookie(make_cookie(1, KEY, now=T0))
    assert one is not None and two is not None
    assert csrf_token(KEY, one) != csrf_token(KEY, two)
    assert same_token(csrf_token(KEY, one), csrf_token(KEY, one))
    assert not same_token(None, csrf_token(KEY, one))
    assert not same_token("", csrf_token(KEY, one))


def test_failed_sign_ins_slow_the_next_ones_down_and_a_success_clears_the_name() -> None:
    clock = [0.0]
    throttle = SignInThrottle(free=3, base=0.5, ceiling=4.0, window=900, clock=lambda: clock[0])
    delays = []
    for _ in range(7):
        delays.append(throttle.delay("name:a", "ip:1"))
        throttle.failed("name:a", "ip:1")
    assert delays == [0, 0, 0, 0.5, 1.0, 2.0, 4.0]
    assert throttle.delay("name:b", "ip:1") == 4.0  # the same address, another name
    assert throttle.delay("name:b", "ip:2") == 0
    throttle.succeeded("name:a")
    assert throttle.delay("name:a", "ip:2") == 0
    clock[0] = 901.0  # the window passed
    assert throttle.delay("name:a", "ip:1") == 0


def at(hours: float) -> datetime:
    return datetime(2026, 11, 20, tzinfo=UTC) + timedelta(hours=hours)


def test_the_run_out_day_follows_the_spending_and_ignores_top_ups() -> None:
    # 100 spent per day, a top-up of 500 in between: the 1,100 left last eleven more days
    readings = [(at(0), Decimal(1000)), (at(24), Decimal(900)), (at(25), Decimal(1400)),
                (at(48), Decimal(1300)), (at(72), Decimal(1200)), (at(96), Decimal(1100))]
    assert charts.runout(readings) == at(96) + timedelta(days=11)
    assert charts.runout(readings[:1]) is None
    assert charts.runout([(at(0), Decimal(5)), (at(30), Decimal(5))]) is None  # nothing spent
    assert charts.runout([(at(0), Decimal(5)), (at(0.5), Decimal(4))]) is None  # under an hour


def test_charts_escape_their_labels_and_title_every_bar() -> None:
    svg = str(charts.stacked_bars([charts.Bar("<b>", (3, 1), "x&y")], ("sent", "dead"),
                                  (charts.SENT, charts.DEAD), label="l"))
    assert "<b>" not in svg and "&lt;b&gt;: 3 sent, 1 dead" in svg and "x&amp;y" in svg
    assert "style=" not in svg
    bars = str(charts.hbars([("code 5 (permanent)", 4)], label="dead"))
    assert "code 5 (permanent): 4" in bars
