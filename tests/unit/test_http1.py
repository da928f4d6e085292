"""HTTP/1.1 framing of the burst sender: what counts as a whole answer, and what does not."""

from __future__ import annotations

import gzip
import zlib

import pytest

from worker.gateway.http1 import (
    MAX_HEAD_BYTES,
    Answered,
    Unreadable,
    read_answer,
    request_head,
)
from worker.gateway.transport import MAX_BODY_BYTES

BODY = b"<string>&lt;SMS&gt;&lt;Code&gt;200&lt;/Code&gt;&lt;/SMS&gt;</string>"


def answer(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body


def test_the_request_head_puts_host_first_and_ends_with_an_empty_line() -> None:
    head = request_head("GET", "/a?b=1", "gw:8080", {"User-Agent": "x", "Accept": "*/*"})
    assert head == b"GET /a?b=1 HTTP/1.1\r\nHost: gw:8080\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n"


def test_a_content_length_answer_is_whole_once_its_body_is() -> None:
    data = answer(f"HTTP/1.1 200 OK\nContent-Length: {len(BODY)}", BODY)
    for cut in range(len(data)):
        assert read_answer(data[:cut], eof=False) is None
    assert read_answer(data, eof=False) == Answered(200, BODY, keep_alive=True)


def test_a_cut_answer_is_unreadable_at_eof_and_says_how_far_it_got() -> None:
    data = answer(f"HTTP/1.1 200 OK\nContent-Length: {len(BODY)}", BODY)
    cut = read_answer(data[:-3], eof=True)
    assert cut == Unreadable("the answer was cut short")
    assert read_answer(b"", eof=True) == Unreadable(
        "connection closed after the request was sent"
    )
    assert read_answer(b"HTTP/1.1 2", eof=True) == Unreadable("the answer was cut short")


@pytest.mark.parametrize(
    ("head", "keep_alive"),
    [
        ("HTTP/1.1 200 OK", True),
        ("HTTP/1.1 200 OK\nConnection: close", False),
        ("HTTP/1.1 200 OK\nConnection: Close", False),
        ("HTTP/1.0 200 OK", False),
        ("HTTP/1.0 200 OK\nConnection: keep-alive", True),
    ],
)
def test_whether_the_connection_carries_another_request(head: str, keep_alive: bool) -> None:
    got = read_answer(answer(f"{head}\nContent-Length: {len(BODY)}", BODY), eof=False)
    assert isinstance(got, Answered)
    assert got.keep_alive is keep_alive


def test_a_chunked_answer_is_joined_and_waits_for_its_last_chunk() -> None:
    body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    data = answer("HTTP/1.1 200 OK\nTransfer-Encoding: chunked", body)
    for cut in range(len(data)):
        assert read_answer(data[:cut], eof=False) is None, cut
    assert read_answer(data, eof=False) == Answered(200, b"hello, world", keep_alive=True)
    assert read_answer(data[:-2], eof=True) == Unreadable("the answer was cut short")


@pytest.mark.parametrize("body", [b"zz\r\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n"])
def test_malformed_chunks_are_unreadable(body: bytes) -> None:
    data = answer("HTTP/1.1 200 OK\nTransfer-Encoding: chunked", body)
    assert read_answer(data, eof=False) == Unreadable("the answer's chunks were malformed")


def test_an_answer_without_length_ends_when_the_server_closes() -> None:
    data = answer("HTTP/1.1 200 OK", BODY)
    assert read_answer(data, eof=False) is None
    assert read_answer(data, eof=True) == Answered(200, BODY, keep_alive=False)


def test_interim_answers_are_skipped() -> None:
    data = answer("HTTP/1.1 100 Continue") + answer(
        f"HTTP/1.1 200 OK\nContent-Length: {len(BODY)}", BODY
    )
    assert read_answer(data, eof=False) == Answered(200, BODY, keep_alive=True)


@pytest.mark.parametrize(
    "data",
    [
        b"<html>oops</html>\r\n\r\n",
        b"HTTP/1.1 OK 200\r\n\r\n",
        b"HTTP/2 200\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n Folded: x\r\n\r\n",
    ],
)
def test_what_is_not_an_http_answer_is_unreadable(data: bytes) -> None:
    assert read_answer(data, eof=False) == Unreadable("the answer was not HTTP")


def test_a_status_line_without_a_reason_is_read() -> None:
    got = read_answer(b"HTTP/1.1 502\r\nContent-Length: 0\r\n\r\n", eof=False)
    assert got == Answered(502, b"", keep_alive=True)


@pytest.mark.parametrize("length", ["abc", "-1", "5, 6"])
def test_a_length_that_is_not_one_number_is_unreadable(length: str) -> None:
    data = answer(f"HTTP/1.1 200 OK\nContent-Length: {length}", b"hello")
    assert read_answer(data, eof=False) == Unreadable("the answer's length was not a number")


def test_repeated_equal_lengths_are_one_length() -> None:
    data = answer("HTTP/1.1 200 OK\nContent-Length: 5\nContent-Length: 5", b"hello")
    assert read_answer(data, eof=False) == Answered(200, b"hello", keep_alive=True)


def test_headers_past_the_cap_are_unreadable_without_waiting_for_their_end() -> None:
    data = b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD_BYTES
    assert read_answer(data, eof=False) == Unreadable("the answer's headers were too long")


def test_a_body_over_the_cap_is_oversize_and_ends_the_connection() -> None:
    announced = answer(f"HTTP/1.1 200 OK\nContent-Length: {MAX_BODY_BYTES + 1}", b"x")
    got = read_answer(announced, eof=False)
    assert isinstance(got, Answered) and got.oversize and not got.keep_alive
    unannounced = answer("HTTP/1.1 200 OK", b"x" * (MAX_BODY_BYTES + 1))
    got = read_answer(unannounced, eof=False)
    assert isinstance(got, Answered) and got.oversize and len(got.body) == MAX_BODY_BYTES
    chunk = f"{MAX_BODY_BYTES + 1:x}".encode()
    chunked = answer("HTTP/1.1 200 OK\nTransfer-Encoding: chunked", chunk + b"\r\n")
    got = read_answer(chunked, eof=False)
    assert isinstance(got, Answered) and got.oversize


@pytest.mark.parametrize(
    ("coding", "packed"),
    [
        ("gzip", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),
        ("deflate", zlib.compress(BODY)[2:-4]),  # a bare deflate stream, as some servers send
    ],
)
def test_a_compressed_body_is_inflated(coding: str, packed: bytes) -> None:
    data = answer(f"HTTP/1.1 200 OK\nContent-Encoding: {coding}\nContent-Length: {len(packed)}",
                  packed)
    assert read_answer(data, eof=False) == Answered(200, BODY, keep_alive=True)


def test_a_body_that_does_not_inflate_is_unreadable() -> None:
    data = answer("HTTP/1.1 200 OK\nContent-Encoding: gzip\nContent-Length: 5", b"hello")
    assert read_answer(data, eof=False) == Unreadable("the answer could not be decoded")
    brotli = answer("HTTP/1.1 200 OK\nContent-Encoding: br\nContent-Length: 5", b"hello")
    assert read_answer(brotli, eof=False) == Unreadable("the answer could not be decoded")


def test_a_compressed_body_that_inflates_past_the_cap_is_oversize() -> None:
    bomb = gzip.compress(b"0" * (MAX_BODY_BYTES * 4))
    data = answer(f"HTTP/1.1 200 OK\nContent-Encoding: gzip\nContent-Length: {len(bomb)}", bomb)
    got = read_answer(data, eof=False)
    assert isinstance(got, Answered) and got.oversize and len(got.body) == MAX_BODY_BYTES
