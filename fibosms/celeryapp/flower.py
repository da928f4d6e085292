"""Flower with authentication on by default, for ``fibosms flower`` and ``celery -A worker flower``.

Credentials come from ``FIBOSMS_FLOWER_BASIC_AUTH`` (or ``…_FILE``) and are handed to Flower
in this process — never on a command line, where ``ps`` would show them. Flower's own ways
(``--basic-auth=…``, ``--auth=…``, ``FLOWER_BASIC_AUTH``, ``FLOWER_AUTH``, a
``flowerconfig.py``) still work and win. With none of them, both commands refuse to start;
``fibosms flower --unauthenticated`` is the explicit way to run it open.

Flower's options are tornado options, set as ``--name=value``; :func:`normalize_args`
also accepts ``--name value``.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from worker.settings import Settings

#: Flower's options and environment variables that turn authentication on by themselves
AUTH_OPTIONS = ("basic_auth", "auth", "auth_provider")
AUTH_ENV = ("FLOWER_BASIC_AUTH", "FLOWER_AUTH", "FLOWER_AUTH_PROVIDER")

NO_CREDENTIALS = (
    "Flower would start without authentication: set FIBOSMS_FLOWER_BASIC_AUTH=user:password "
    "(or FIBOSMS_FLOWER_BASIC_AUTH_FILE), or run `fibosms flower --unauthenticated` to "
    "open it to anyone who reaches its port"
)


def _option_name(arg: str) -> str:
    return arg.lstrip("-").partition("=")[0].replace("-", "_")


def auth_problem(
    settings: Settings, argv: Iterable[str], env: Mapping[str, str]
) -> str | None:
    """Why Flower must not start as asked, or None when some authentication is configured."""
    if settings.flower_basic_auth:
        return None
    if any(_option_name(a) in AUTH_OPTIONS for a in argv if a.startswith("--")):
        return None
    if any(env.get(name) for name in AUTH_ENV):
        return None
    return NO_CREDENTIALS


def normalize_args(args: Sequence[str]) -> list[str]:
    """``--port 5555`` → ``--port=5555`` for Flower's valued options (tornado wants ``=``)."""
    from flower.options import options  # type: ignore[import-untyped]

    known = options._options  # tornado keeps its definitions here
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name = _option_name(arg)
        key = name.replace("_", "-")
        option = known.get(key) or known.get(name)
        takes_value = option is not None and option.type is not bool
        if arg.startswith("--") and "=" not in arg and takes_value and i + 1 < len(args):
            out.append(f"{arg}={args[i + 1]}")
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def apply_defaults(settings: Settings) -> None:
    """Give Flower this deployment's credentials; its own options, read later, still win."""
    if not settings.flower_basic_auth:
        return
    from flower.options import options

    if not options.basic_auth:
        options.basic_auth = list(settings.flower_basic_auth)


def guard_celery_command(settings: Settings) -> None:
    """When ``celery -A worker flower`` is loading this app, wrap Flower's command so it
    refuses to start without credentials and uses ``FIBOSMS_FLOWER_BASIC_AUTH``.

    Called while the app is built; anything but Celery's own ``flower`` subcommand is left
    alone (no click context, or another subcommand).
    """
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is None or ctx.invoked_subcommand != "flower" or ctx.command.name != "celery":
        return
    group: Any = ctx.command
    command = getattr(group, "commands", {}).get("flower")
    if command is None or command.callback is None:
        return
    if getattr(command.callback, "fibosms_guard", False):
        return
    command.callback = _guarded(command.callback, settings)


def _guarded(callback: Callable[..., Any], settings: Settings) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        argv = list(kwargs.get("tornado_argv") or ())
        problem = auth_problem(settings, argv, os.environ)
        if problem is not None:
            print(f"fibosms: error: {problem}", file=sys.stderr)
            sys.exit(3)
        from worker.logs import configure_logging

        configure_logging(settings)
        apply_defaults(settings)
        kwargs["tornado_argv"] = tuple(normalize_args(argv))
        return callback(*args, **kwargs)

    run.fibosms_guard = True  # type: ignore[attr-defined]
    return run
