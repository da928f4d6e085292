"""HTTP/1.1 framing for the burst sender (:mod:`worker.gateway.burst`): pure functions.

What the gateway answers is read from the bytes received so far: not yet complete, an
answer (status, body, whether the connection may carry another request), or unreadable.
The body is framed as RFC 9112 says: ``Transfer-Encoding: chunked``, else
``Content-Length``, else everything until the server closes. A body sent compressed
(``Content-Encoding: gzip`` or ``deflate``; the request offers both, as requests does) is
inflated. Bodies stop at :data:`~worker.gateway.transport.MAX_BODY_BYTES`: an answer
larger than that is not FIBO's, and it is reported as oversize rather than read on.

A reason here is fixed text: never a header value, a URL, or a byte of the body.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from worker.gateway.transport import MAX_BODY_BYTES

#: bytes; a status line and headers longer than this are not an HTTP answer we accept
MAX_HEAD_BYTES = 64 * 1024
_END_OF_HEAD = b"\r\n\r\n"


@dataclass(frozen=True)
class Answered:
    """A whole answer (or its first :data:`MAX_BODY_BYTES`, with ``oversize``)."""

    status: int
    body: bytes
    oversize: bool = False
    #: the connection may carry another request
    keep_alive: bool = False


@dataclass(frozen=True)
class Unreadable:
    """Bytes that are not an HTTP/1.x answer, or one cut short; ``reason`` is fixed text."""

    reason: str


def request_head(method: str, target: str, host: str, headers: Mapping[str, str]) -> bytes:
    """The request line and headers, ``Host`` first, as http.client writes them."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_answer(data: bytes | bytearray, *, eof: bool) -> Answered | Unreadable | None:
    """The answer in ``data``; None while more bytes are needed (and may still come).

    ``eof``: the server closed its side after ``data``. Interim ``1xx`` answers are skipped.
    """
    start = 0
    while True:
        end = data.find(_END_OF_HEAD, start)
        if end < 0:
            if len(data) - start > MAX_HEAD_BYTES:
                return Unreadable("the answer's headers were too long")
            return _cut(data[start:], eof)
        head = _head(bytes(data[start:end]))
        if head is None:
            return Unreadable("the answer was not HTTP")
        status, version, fields = head
        if 100 <= status < 200:
            start = end + len(_END_OF_HEAD)
            continue
        framed = _body(data, end + len(_END_OF_HEAD), fields, eof=eof)
        if framed is None or isinstance(framed, Unreadable):
            return framed
        body, oversize, delimited = framed
        connection = fields.get("connection", "").lower()
        keep_alive = (
            delimited
            and not oversize
            and "close" not in connection
            and (version == "HTTP/1.1" or "keep-alive" in connection)
        )
        return _decoded(status, body, oversize, keep_alive, fields.get("content-encoding", ""))


def _cut(data: bytes | bytearray, eof: bool) -> Unreadable | None:
    if not eof:
        return None
    if data:
        return Unreadable("the answer was cut short")
    return Unreadable("connection closed after the request was sent")


def _head(raw: bytes) -> tuple[int, str, dict[str, str]] | None:
    """Status, version and fields (lower-case names) of an answer's head, or None."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any byte
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0"):
        return None
    if len(parts[1]) != 3 or not parts[1].isdigit():
        return None
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            return None
        key = name.lower()
        value = value.strip()
        # repeated fields join with a comma (RFC 9110 5.3)
        fields[key] = f"{fields[key]}, {value}" if key in fields else value
    return int(parts[1]), parts[0], fields


def _body(
    data: bytes | bytearray, at: int, fields: Mapping[str, str], *, eof: bool
) -> tuple[bytes, bool, bool] | Unreadable | None:
    """(body, oversize, delimited) from ``data[at:]``; None while incomplete."""
    encoding = fields.get("transfer-encoding", "").lower()
    if encoding:
        if encoding.rsplit(",", 1)[-1].strip() != "chunked":
            return _until_close(data, at, eof)
        return _chunked(data, at, eof)
    length = fields.get("content-length")
    if length is not None:
        values = {v.strip() for v in length.split(",")}
        if len(values) != 1 or not next(iter(values)).isdigit():
            return Unreadable("the answer's length was not a number")
        size = int(next(iter(values)))
        if size > MAX_BODY_BYTES:
            return bytes(data[at:at + MAX_BODY_BYTES]), True, False
        if len(data) - at >= size:
            return bytes(data[at:at + size]), False, True
        return _cut(data[at:], eof) if eof else None
    return _until_close(data, at, eof)


def _until_close(
    data: bytes | bytearray, at: int, eof: bool
) -> tuple[bytes, bool, bool] | None:
    if len(data) - at > MAX_BODY_BYTES:
        return bytes(data[at:at + MAX_BODY_BYTES]), True, False
    if not eof:
        return None
    return bytes(data[at:]), False, False


def _chunked(
    data: bytes | bytearray, at: int, eof: bool
) -> tuple[bytes, bool, bool] | Unreadable | None:
    chunks: list[bytes] = []
    size_so_far = 0
    pos = at
    while True:
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            return _cut(data[at:], eof) if eof else None
        size_text = bytes(data[pos:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return Unreadable("the answer's chunks were malformed")
        if size < 0:
            return Unreadable("the answer's chunks were malformed")
        pos = line_end + 2
        if size == 0:
            # the trailer: fields up to an empty line
            trailer_end = data.find(b"\r\n", pos)
            while trailer_end >= 0 and trailer_end != pos:
                pos = trailer_end + 2
                trailer_end = data.find(b"\r\n", pos)
            if trailer_end < 0:
                return _cut(data[at:], eof) if eof else None
            return b"".join(chunks), False, True
        if size_so_far + size > MAX_BODY_BYTES:
            return b"".join(chunks), True, False
        if len(data) < pos + size + 2:
            return _cut(data[at:], eof) if eof else None
        if data[pos + size:pos + size + 2] != b"\r\n":
            return Unreadable("the answer's chunks were malformed")
        chunks.append(bytes(data[pos:pos + size]))
        size_so_far += size
        pos += size + 2


def _decoded(
    status: int, body: bytes, oversize: bool, keep_alive: bool, coding: str
) -> Answered | Unreadable:
    coding = coding.strip().lower()
    if coding in ("", "identity") or oversize:
        return Answered(status, body, oversize, keep_alive)
    if coding not in ("gzip", "x-gzip", "deflate"):
        return Unreadable("the answer could not be decoded")
    # gzip or zlib framing told apart by the header (47); bare deflate streams exist too
    for wbits in ((47,) if coding != "deflate" else (15, -15)):
        inflater = zlib.decompressobj(wbits)
        try:
            plain = inflater.decompress(body, MAX_BODY_BYTES + 1)
        except zlib.error:
            continue
        if len(plain) > MAX_BODY_BYTES or inflater.unconsumed_tail:
            return Answered(status, plain[:MAX_BODY_BYTES], True, False)
        return Answered(status, plain, False, keep_alive)
    return Unreadable("the answer could not be decoded")
