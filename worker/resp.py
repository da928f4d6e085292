"""Redis's wire protocol (RESP2), just enough to send one pipeline of commands and read the
replies: for a process that publishes once and exits (``fibosms send``).

redis-py takes about 50 ms to import here (its asyncio client, cluster and keyspace
notification modules come with it), a sixth of what the whole command may take. Only a plain
``redis://[[user]:password@]host[:port][/db]`` URL is spoken here; anything else (TLS,
Sentinel, a Unix socket, query options) gets ``None`` from :func:`endpoint`, and the caller
goes through redis-py.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO
from urllib.parse import unquote, urlsplit

Reply = bytes | int | None | list["Reply"]

#: the longest reply line read (a simple string, error or length): far above any we expect
_MAX_LINE = 64 * 1024


class RespError(Exception):
    """Redis answered a command with an error (``-ERR …``, ``-NOAUTH …``)."""


class ProtocolError(ConnectionError):
    """The server's bytes were not RESP: the connection is unusable."""


@dataclass(frozen=True)
class Endpoint:
    """Where a plain ``redis://`` URL points, and how to log in and choose the database."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None


def endpoint(url: str) -> Endpoint | None:
    """The endpoint of a plain ``redis://`` URL, or None when this module does not speak it."""
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError:
        return None
    if parts.scheme != "redis" or parts.query or parts.fragment or not parts.hostname:
        return None
    path = parts.path.strip("/")
    if path and not path.isdigit():
        return None
    return Endpoint(
        host=parts.hostname,
        port=port,
        db=int(path or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def encode(*args: str | bytes | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def pipeline(
    where: Endpoint, commands: Sequence[Sequence[str | bytes | int]], *, timeout: float
) -> list[Reply]:
    """Send ``commands`` in one write on a new connection (after AUTH and SELECT, when the
    URL asks for them) and return their replies in order.

    Raises :class:`RespError` for the first command Redis refused (the others were still
    carried out: Redis runs a pipeline's commands one by one), ``OSError`` when the server
    cannot be reached or the connection breaks.
    """
    setup: list[tuple[str | bytes | int, ...]] = []
    if where.password is not None:
        setup.append(
            ("AUTH", where.username, where.password) if where.username else ("AUTH", where.password)
        )
    if where.db:
        setup.append(("SELECT", where.db))
    everything = [*setup, *(tuple(c) for c in commands)]
    with socket.create_connection((where.host, where.port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"".join(encode(*c) for c in everything))
        with sock.makefile("rb") as stream:
            replies = [_read(stream) for _ in everything]
    out: list[Reply] = []
    for command, reply in zip(everything, replies, strict=True):
        if isinstance(reply, RespError):
            # the command's name only: AUTH's arguments are the password, LPUSH's a message
            raise RespError(f"{command[0]!s}: {reply}")
        out.append(reply)
    return out[len(setup) :]


def _read(stream: IO[bytes]) -> Reply | RespError:
    line = stream.readline(_MAX_LINE)
    if not line.endswith(b"\r\n"):
        raise ProtocolError("the connection closed before a whole reply arrived")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return bytes(rest)
    if kind == b"-":
        return RespError(rest.decode("utf-8", "replace"))
    if kind == b":":
        return _number(rest)
    if kind == b"$":
        size = _number(rest)
        if size < 0:
            return None
        data = stream.read(size + 2)
        if len(data) != size + 2:
            raise ProtocolError("the connection closed before a whole reply arrived")
        return bytes(data[:-2])
    if kind == b"*":
        count = _number(rest)
        if count < 0:
            return None
        items: list[Reply] = []
        for _ in range(count):
            item = _read(stream)
            if isinstance(item, RespError):
                raise ProtocolError("an error inside an array reply")
            items.append(item)
        return items
    raise ProtocolError(f"not a RESP reply (first byte {kind!r})")


def _number(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise ProtocolError("a RESP length or integer that is not a number") from None
