"""Errors, split by what the caller must do.

::

    FiboError                  anything the gateway call ended with other than success
    ├── TransientError         try again later (codes 2, 13, 24, 27; HTTP 5xx / 429; a body
    │   │                      that is not the expected XML)
    │   ├── BadResponse        the gateway answered, but not with FIBO's XML: any status
    │   │                      but 2xx, or a balance / totals answer we cannot read
    │   └── NotSent            the request never left (refused, DNS, connect timeout, the
    │                          call's deadline passed first): always safe to repeat
    ├── PermanentError         this message will never succeed as it is: dead-letter it
    │   └── AccountError       every message will fail so until a person acts: pause sending
    └── AmbiguousError         the request may have been accepted (read timeout, connection
        │                      cut or the call's deadline passed after the request was sent)
        └── UnreadableReply    a send answered 2xx with a body we cannot read (empty, HTML,
                               not XML, no result code): the gateway did process it

    ValidationError            a message was refused at the door; ``field`` names the input
    └── IdempotencyConflict    its idempotency key is already taken by a message with other
                               content; ``message_id`` is that message

Every :class:`FiboError` carries the FIBO ``code`` (``None`` for transport failures), its
``meaning`` and the ``http_status`` where there was one. No message built here contains
the password or the request URL.
"""

from __future__ import annotations

from worker.codes import CodeClass, lookup


class FiboError(Exception):
    """A gateway call that did not succeed."""

    cls: CodeClass = CodeClass.PERMANENT

    def __init__(
        self,
        meaning: str,
        *,
        code: int | None = None,
        meaning_vi: str | None = None,
        http_status: int | None = None,
    ) -> None:
        self.code = code
        self.meaning = meaning
        self.meaning_vi = meaning_vi
        self.http_status = http_status
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = []
        if self.code is not None:
            parts.append(f"FIBO code {self.code}")
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        head = ", ".join(parts)
        return f"{head}: {self.meaning}" if head else self.meaning

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, meaning={self.meaning!r}, "
            f"http_status={self.http_status!r})"
        )

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # keyword-only arguments do not survive the default pickling of exceptions
        return _rebuild, (type(self), self.meaning, self.code, self.meaning_vi, self.http_status)


def _rebuild(
    cls: type[FiboError],
    meaning: str,
    code: int | None,
    meaning_vi: str | None,
    http_status: int | None,
) -> FiboError:
    return cls(meaning, code=code, meaning_vi=meaning_vi, http_status=http_status)


class TransientError(FiboError):
    """Try again later: the same request may well succeed."""

    cls = CodeClass.TRANSIENT


class BadResponse(TransientError):
    """The gateway (or a proxy in front of it) answered with something that is not FIBO's XML."""


class NotSent(TransientError):
    """The request never reached the gateway; repeating it cannot send twice."""


class PermanentError(FiboError):
    """The gateway refused this message for good: dead-letter it."""

    cls = CodeClass.PERMANENT


class AccountError(PermanentError):
    """The account itself is refused (password, IP, balance, expiry): stop sending for it."""

    cls = CodeClass.ACCOUNT


class AmbiguousError(FiboError):
    """The request may have been accepted: sending again may deliver a second SMS."""

    cls = CodeClass.TRANSIENT


class UnreadableReply(AmbiguousError):
    """A send answered 2xx, but with a body we cannot read: it may have been accepted."""


def error_for_code(code: int, *, http_status: int | None = None) -> FiboError:
    """The exception a non-success result code stands for."""
    row = lookup(code)
    kind: type[FiboError] = {
        CodeClass.TRANSIENT: TransientError,
        CodeClass.PERMANENT: PermanentError,
        CodeClass.ACCOUNT: AccountError,
    }.get(row.cls, PermanentError)
    return kind(row.meaning, code=code, meaning_vi=row.meaning_vi, http_status=http_status)


class ValidationError(ValueError):
    """A message refused before it was recorded; ``field`` names the offending input."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class IdempotencyConflict(ValidationError):
    """An idempotency key that names a message with other content: nothing was written.

    The same key with the same content is not an error (the first message's id comes back);
    a different phone, text, sender, kind, expiry or encoding under the same key is.
    """

    def __init__(self, field: str, message_id: int) -> None:
        self.message_id = message_id
        super().__init__(
            field, f"already used by message {message_id} with different content"
        )
