"""The console's operators: ``fibosms users add|list|remove``.

A password is read from the terminal (asked twice) or, when standard input is not a
terminal, from its first line: never from an argument, which ``ps`` and shell histories
show to everyone.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from fibosms.cli.output import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliError,
    database,
    emit,
    handled,
    json_option,
)

_ROLES = ("viewer", "operator")


def _operator_dict(op: Any) -> dict[str, Any]:
    return {
        "name": op.name,
        "role": op.role,
        "created_at": op.created_at.isoformat(),
        "last_sign_in_at": op.last_sign_in_at.isoformat() if op.last_sign_in_at else None,
    }


def _read_password() -> str:
    if sys.stdin is not None and sys.stdin.isatty():
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line.rstrip("\r\n")


@click.group()
def users() -> None:
    """Who may sign in to the console (/console/ on `fibosms serve`)."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(_ROLES), default="operator", show_default=True,
              help="viewer: reads every page; operator: also replays and resumes.")
@json_option
@handled
def users_add(name: str, role: str, as_json: bool) -> None:
    """Add an operator; the password comes from the prompt or standard input."""
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise CliError("NAME: 1 to 64 printable characters", EXIT_USAGE)
    from worker.ledger.operators import OperatorNameTaken, add_operator, password_problem

    password = _read_password()
    problem = password_problem(password)
    if problem is not None:
        raise CliError(problem, EXIT_USAGE)
    from worker.clock import now

    try:
        with database().transaction() as session:
            made = add_operator(session, name, password, role=role, now=now())
    except OperatorNameTaken as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    emit(_operator_dict(made), as_json, lambda d: f"added {d['name']} ({d['role']})")


@users.command("list")
@json_option
@handled
def users_list(as_json: bool) -> None:
    """Every operator and their role (never a password or its hash)."""
    from worker.ledger.operators import list_operators

    with database().sessions() as session:
        rows = [_operator_dict(op) for op in list_operators(session)]
    emit(rows, as_json, lambda d: "\n".join(
        f"{o['name']}: {o['role']}, last signed in {o['last_sign_in_at'] or 'never'}" for o in d
    ) or "no operators (add one: fibosms users add NAME)")


@users.command("remove")
@click.argument("name")
@json_option
@handled
def users_remove(name: str, as_json: bool) -> None:
    """Remove an operator: their open sessions end at once."""
    from worker.ledger.operators import remove_operator

    with database().transaction() as session:
        done = remove_operator(session, name)
    if not done:
        raise CliError(f"no operator named {name!r}", EXIT_NOT_FOUND)
    emit({"removed": name}, as_json, lambda d: f"removed {d['removed']}")


#: the commands fibosms.cli.main adds to the ``fibosms`` group
COMMANDS: list[click.Command] = [users]
