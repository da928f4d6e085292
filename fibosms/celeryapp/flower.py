"""Flower with authentication on by default, for ``fibosms flower`` and ``celery -A worker flower``.

Credentials come from ``FIBOSMS_FLOWER_BASIC_AUTH`` (or ``…_FILE``) and are handed to Flower
in this process — never on a command line, where ``ps`` would show them. Flower's own ways
(``--basic-auth=…``, ``--auth=…``, ``FLOWER_BASIC_AUTH``, ``FLOWER_AUTH``, a
``flowerconfig.py``) still work and win. With none of them, both commands refuse to start;
``fibosms flower --unauthenticated`` is the explicit way to run it open.

Flower answers ``/metrics`` (task names, worker host names) and ``/healthcheck`` to anyone;
here they ask for the same credentials as every other page. Flower listens on
``FIBOSMS_FLOWER_ADDRESS`` (loopback by default) unless given ``--address``.

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
    """Give Flower this deployment's credentials and address, and guard its open pages.

    Flower's own options (its command line, ``FLOWER_*``, ``flowerconfig.py``), read later,
    still win.
    """
    from flower.options import options

    protect_open_endpoints()
    if not options.address:
        options.address = settings.flower_address
    if settings.flower_basic_auth and not options.basic_auth:
        options.basic_auth = list(settings.flower_basic_auth)


#: Flower's pages that answer without asking who is there
OPEN_ENDPOINTS = ("/metrics", "/healthcheck")


def protect_open_endpoints() -> None:
    """Make Flower's ``/metrics`` and ``/healthcheck`` ask for credentials like its other
    pages (idempotent; before Flower's web application is built).

    Flower 2.x routes them to handlers without ``tornado.web.authenticated``; the routes
    are swapped for subclasses with it. With basic auth a request without the right
    credentials gets 401; with OAuth, the login page; run ``--unauthenticated``, they stay
    open like everything else.
    """
    import tornado.web
    from flower import urls  # type: ignore[import-untyped]
    from flower.views import monitor  # type: ignore[import-untyped]

    class AuthenticatedMetrics(monitor.Metrics):  # type: ignore[misc]
        @tornado.web.authenticated
        async def get(self) -> None:
            await super().get()

    class AuthenticatedHealthcheck(monitor.Healthcheck):  # type: ignore[misc]
        @tornado.web.authenticated
        async def get(self) -> None:
            await super().get()

    guarded = {"/metrics": AuthenticatedMetrics, "/healthcheck": AuthenticatedHealthcheck}
    handlers: list[Any] = urls.handlers  # the list Flower's application is built from
    for i, handler in enumerate(handlers):
        if isinstance(handler, tuple) and handler[0] in guarded:
            current = handler[1]
            if getattr(current, "fibosms_guarded", False):
                continue
            replacement: Any = guarded[handler[0]]
            replacement.fibosms_guarded = True
            handlers[i] = (handler[0], replacement, *handler[2:])
    missing = [
        path for path in OPEN_ENDPOINTS
        if not any(
            isinstance(h, tuple) and h[0] == path and getattr(h[1], "fibosms_guarded", False)
            for h in handlers
        )
    ]
    if missing:  # a Flower release that routes them elsewhere: refuse rather than leak
        raise RuntimeError(f"cannot guard Flower's {', '.join(missing)}: routes not found")


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
