"""The HTTP API's commands: ``fibosms keys create|list|revoke`` and ``fibosms serve``."""

from __future__ import annotations

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
    settings,
)

_SCOPES = ("send", "read", "admin")


def _scopes(value: str) -> frozenset[str]:
    chosen = frozenset(s.strip() for s in value.split(",") if s.strip())
    unknown = sorted(chosen - set(_SCOPES))
    if unknown or not chosen:
        raise CliError(f"--scope: choose from {', '.join(_SCOPES)}, comma-separated", EXIT_USAGE)
    return chosen


def _key_dict(key: Any) -> dict[str, Any]:
    return {
        "name": key.name,
        "scopes": [s for s in _SCOPES if s in key.scopes],
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


@click.group()
def keys() -> None:
    """API keys for the HTTP API (`fibosms serve`)."""


@keys.command("create")
@click.argument("name")
@click.option("--scope", "scope", default="send,read", show_default=True, metavar="SCOPES",
              help="Comma-separated: send, read, admin.")
@json_option
@handled
def keys_create(name: str, scope: str, as_json: bool) -> None:
    """Make a key and print its token, once: only a hash of it is kept."""
    chosen = _scopes(scope)
    name = name.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise CliError("NAME: 1 to 64 printable characters", EXIT_USAGE)
    from worker.clock import now
    from worker.ledger.apikeys import KeyNameTaken, create_key

    try:
        with database().transaction() as session:
            key, token = create_key(session, name, chosen, now=now())
    except KeyNameTaken as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    emit(
        {"name": key.name, "token": token, "scopes": [s for s in _SCOPES if s in key.scopes]},
        as_json,
        lambda d: f"{d['token']}\n(key {d['name']!r}, scopes {','.join(d['scopes'])}; "
        "the token is shown only now: store it)",
    )


@keys.command("list")
@json_option
@handled
def keys_list(as_json: bool) -> None:
    """Every key (never a token), revoked ones too."""
    from worker.ledger.apikeys import list_keys

    with database().sessions() as session:
        rows = [_key_dict(k) for k in list_keys(session)]
    emit(rows, as_json, lambda d: "\n".join(
        f"{k['name']}: {','.join(k['scopes'])} created {k['created_at']} "
        f"last used {k['last_used_at'] or 'never'}"
        + (f" REVOKED {k['revoked_at']}" if k["revoked_at"] else "")
        for k in d
    ) or "no API keys")


@keys.command("revoke")
@click.argument("name")
@json_option
@handled
def keys_revoke(name: str, as_json: bool) -> None:
    """Revoke a key: every API process refuses it within two seconds."""
    from worker.clock import now
    from worker.ledger.apikeys import revoke_key

    with database().transaction() as session:
        done = revoke_key(session, name, now=now())
    if not done:
        raise CliError(f"no API key named {name!r} that is not revoked already", EXIT_NOT_FOUND)
    emit({"revoked": name}, as_json, lambda d: f"revoked {d['revoked']}")


@click.command()
@click.option("--host", help="Address to listen on. Default: FIBOSMS_API_HOST (127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535),
              help="Default: FIBOSMS_API_PORT (8080).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes sharing the port.")
@click.option("--forwarded-allow-ips", default="127.0.0.1", show_default=True,
              help="Proxies whose X-Forwarded-For/-Proto are trusted.")
@handled
def serve(host: str | None, port: int | None, workers: int, forwarded_allow_ips: str) -> None:
    """Serve the HTTP API (behind a TLS-terminating proxy in production)."""
    s = settings()  # a bad setting stops here, with one line, before any process starts
    from fibosms.web.serve import serve as run

    run(host=host or s.api_host, port=port or s.api_port, workers=workers,
        forwarded_allow_ips=forwarded_allow_ips)


#: the commands fibosms.cli.main adds to the ``fibosms`` group
COMMANDS: list[click.Command] = [keys, serve]
