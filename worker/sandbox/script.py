"""The sandbox's scripted outcomes: what one send call is to answer, and how they are written.

Pure values and parsing, shared by the state (which consumes them) and the command line
(``--script PHONE=CODE,...``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

from worker.codes import SUCCESS_CODES

#: seconds; longer scripted or default delays are refused
MAX_DELAY = 3600.0
#: seconds between two bytes of a trickled answer, at most
MAX_TRICKLE = 60.0
#: the script key for "whatever the number"
ANY = "*"

Delivery = Literal["success", "failed", "pending"]


class ScriptError(ValueError):
    """A scripted action or a control value is malformed; the message says which."""


def phone_key(phone: str) -> str:
    """The last 9 digits: ``0912345678``, ``84912345678``, ``+84912345678`` are one number."""
    return re.sub(r"\D", "", phone)[-9:]


def whole_number(name: str, value: object, *, minimum: int = 0) -> int:
    # bool is an int subclass; "balance": true is a caller's mistake, not 1
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScriptError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return value


def trickle_seconds(name: str, value: object) -> float:
    """A pause between the bytes of a trickled answer: above 0, at most :data:`MAX_TRICKLE`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScriptError(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_TRICKLE:
        raise ScriptError(
            f"{name} must be above 0 and at most {MAX_TRICKLE:g} seconds, got {value!r}"
        )
    return seconds


def delay_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScriptError(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DELAY:
        raise ScriptError(f"{name} must be between 0 and {MAX_DELAY:g} seconds, got {value!r}")
    return seconds


@dataclass(frozen=True)
class Action:
    """One scripted outcome, consumed by one send call.

    ``code`` answers that FIBO code; ``delay`` (seconds) waits first; ``drop`` closes the
    connection without a response (with a success ``code``: accepted, then cut);
    ``http`` answers an HTML error page with that status; ``body``/``status`` answer a raw
    body; ``trickle`` (seconds) sends the answer, status line and headers included, one byte
    at a time with that pause between bytes; ``delivery`` says how an accepted message ends
    in GetTotalMt's counters.
    """

    code: int | None = None
    delay: float | None = None
    drop: bool = False
    http: int | None = None
    body: str | None = None
    status: int | None = None
    content_type: str | None = None
    trickle: float | None = None
    delivery: Delivery | None = None

    def __post_init__(self) -> None:
        if self.code is not None:
            whole_number("code", self.code)
        if self.delay is not None:
            delay_seconds("delay", self.delay)
        if self.trickle is not None:
            trickle_seconds("trickle", self.trickle)
        if self.http is not None and not 400 <= whole_number("http", self.http) <= 599:
            raise ScriptError(f"http must be an HTTP error status 400-599, got {self.http!r}")
        if self.status is not None and not 200 <= whole_number("status", self.status) <= 599:
            raise ScriptError(f"status must be 200-599, got {self.status!r}")
        if (self.status is not None or self.content_type is not None) and self.body is None:
            raise ScriptError("status and content_type go with body")
        if sum(x is not None for x in (self.code, self.http, self.body)) > 1:
            raise ScriptError("an action has at most one of code, http, body")
        if self.drop and (self.http is not None or self.body is not None):
            raise ScriptError("drop cannot be combined with http or body")
        if self.drop and self.trickle is not None:
            raise ScriptError("drop cannot be combined with trickle: a drop answers nothing")
        if self.delivery is not None:
            if self.delivery not in get_args(Delivery):
                raise ScriptError(f"delivery must be success, failed or pending, got "
                                  f"{self.delivery!r}")
            if not self.accepts:
                raise ScriptError("delivery only applies to an action that accepts the message")

    @property
    def accepts(self) -> bool:
        """Whether the send goes through the normal acceptance path (balance, record)."""
        if self.http is not None or self.body is not None:
            return False
        if self.code is None:
            return not self.drop
        return self.code in SUCCESS_CODES

    @classmethod
    def parse(cls, item: object) -> Action:
        """An action from its JSON form; a bare int is ``{"code": N}``."""
        if isinstance(item, Action):
            return item
        if isinstance(item, int) and not isinstance(item, bool):
            return cls(code=item)
        if not isinstance(item, Mapping):
            raise ScriptError(f"an action must be an object or a code, got {item!r}")
        unknown = set(item) - set(cls.__dataclass_fields__)
        if unknown:
            raise ScriptError(f"unknown action keys {sorted(unknown)}")
        body, content_type = item.get("body"), item.get("content_type")
        for name, value in (("body", body), ("content_type", content_type)):
            if value is not None and not isinstance(value, str):
                raise ScriptError(f"{name} must be a string, got {value!r}")
        drop = item.get("drop", False)
        if not isinstance(drop, bool):
            raise ScriptError(f"drop must be true or false, got {drop!r}")
        return cls(
            code=item.get("code"),
            delay=item.get("delay"),
            drop=drop,
            http=item.get("http"),
            body=body,
            status=item.get("status"),
            content_type=content_type,
            trickle=item.get("trickle"),
            delivery=item.get("delivery"),
        )

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value is not None and value is not False:
                out[name] = value
        return out


#: what scripting accepts: an action, its JSON form, or a bare FIBO code
ActionLike: TypeAlias = Action | Mapping[str, Any] | int


def parse_actions(items: object) -> list[Action]:
    """A list of actions from JSON (objects or bare codes)."""
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise ScriptError(f"actions must be a list, got {items!r}")
    return [Action.parse(item) for item in items]


def parse_script_arg(arg: str) -> tuple[str | None, list[Action]]:
    """``"0912345678=2,2,200"`` → ``("0912345678", [code 2, code 2, code 200])``.

    PHONE may be ``*`` (any number: returned as ``None``). Besides codes, a step may be
    ``drop``, ``http:502``, ``delay:SECONDS`` or ``trickle:SECONDS`` (the answer one byte
    per SECONDS).
    """
    phone, sep, rest = arg.partition("=")
    phone = phone.strip()
    usage = f"--script wants PHONE=CODE[,CODE...] (PHONE may be '*'), got {arg!r}"
    if not sep or not phone or not rest.strip():
        raise ScriptError(usage)
    if phone != ANY and not phone_key(phone):
        raise ScriptError(f"--script: {phone!r} is not a phone number; {usage}")
    actions = []
    for step in (t.strip() for t in rest.split(",")):
        name, _, value = step.partition(":")
        try:
            if step == "drop":
                actions.append(Action(drop=True))
            elif name == "http" and value:
                actions.append(Action(http=int(value)))
            elif name == "delay" and value:
                actions.append(Action(delay=float(value)))
            elif name == "trickle" and value:
                actions.append(Action(trickle=float(value)))
            else:
                actions.append(Action(code=int(step)))
        except ValueError as exc:  # ScriptError is a ValueError too
            raise ScriptError(f"--script: bad step {step!r} ({exc}); {usage}") from None
    return (None if phone == ANY else phone), actions
