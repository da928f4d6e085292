"""Reading the declaration back: each attribute's variable, bounds, default and help text.

Used for the one-line error messages, the README's table and the tests.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from pydantic.fields import FieldInfo

from worker.settings.model import INPUTS, PREFIX, Settings


@dataclass(frozen=True)
class Declared:
    """What the declaration says about one attribute."""

    name: str
    env: str | None
    annotation: Any
    help: str
    default: Any
    default_text: str | None
    ge: float | None
    le: float | None
    lt: float | None
    expect: str | None
    secret: bool


def declared() -> list[Declared]:
    """Every attribute of :class:`Settings`, in declaration order."""
    hints = typing.get_type_hints(Settings, include_extras=True)
    out: list[Declared] = []
    for f in dataclasses.fields(Settings):
        hint = hints[f.name]
        info = next(m for m in hint.__metadata__ if isinstance(m, FieldInfo))
        extra = info.json_schema_extra
        assert isinstance(extra, dict)
        bounds: dict[str, float | None] = {"ge": None, "le": None, "lt": None}
        for constraint in info.metadata:
            for key in bounds:
                if hasattr(constraint, key):
                    bounds[key] = getattr(constraint, key)
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append(
            Declared(
                name=f.name,
                env=PREFIX + f.name.upper() if extra["env"] else None,
                annotation=hint.__origin__,
                help=info.description or "",
                default=default,
                default_text=_text(extra["default_text"]),
                ge=bounds["ge"],
                le=bounds["le"],
                lt=bounds["lt"],
                expect=_text(extra["expect"]),
                secret=bool(extra["secret"]),
            )
        )
    return out


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def env_names() -> list[str]:
    """Every variable the settings read, attributes and inputs alike."""
    names = [d.env for d in declared() if d.env is not None]
    return names + [i.env for i in INPUTS]


def number_text(value: float) -> str:
    """``86400.0`` → ``86400``, ``0.001`` → ``0.001``: a bound as people write it."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:g}"
