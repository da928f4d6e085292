"""The commands an application (or a person trying it) uses: ``send`` and ``status``."""

from __future__ import annotations

from typing import Any

import click

from fibosms.cli.output import (
    EXIT_NOT_FOUND,
    CliError,
    database,
    emit,
    format_status,
    handled,
    json_option,
    publisher,
    settings,
)
from fibosms.cli.params import MESSAGE_ID
from worker.kinds import Kind


@click.command()
@click.argument("phone")
@click.argument("text")
@click.option("--sender", help="Brand name (default: FIBOSMS_SENDER_NAME).")
@click.option(
    "--kind",
    type=click.Choice([kind.value for kind in Kind]),
    default=Kind.TRANSACTIONAL.value,
    show_default=True,
    help="Sets the queue: otp → urgent, transactional → default, marketing → bulk.",
)
@click.option("--key", "idempotency_key", help="Idempotency key: the same key never sends twice.")
@click.option(
    "--unicode/--plain",
    "unicode",
    default=None,
    help="Force serviceType 1 (Unicode) or 0 (plain); chosen from the text by default.",
)
@click.option(
    "--strip-diacritics",
    is_flag=True,
    default=None,
    help="Remove Vietnamese diacritics (đ→d) and send plain, which is cheaper.",
)
@json_option
@handled
def send(
    phone: str,
    text: str,
    sender: str | None,
    kind: str,
    idempotency_key: str | None,
    unicode: bool | None,
    strip_diacritics: bool | None,
    as_json: bool,
) -> None:
    """Accept one SMS for sending; prints its id. A worker sends it."""
    from producer.oneshot import send_once

    options: dict[str, Any] = {
        "sender": sender,
        "kind": kind,
        "idempotency_key": idempotency_key,
        "unicode": unicode,
        "strip_diacritics": strip_diacritics,
    }
    # a plain message on PostgreSQL and Redis without importing SQLAlchemy (start-up time)
    message_id = send_once(settings(), phone, text, **options)
    if message_id is None:
        from producer.enqueue import Producer

        p = Producer(settings=settings(), db=database(), publisher=publisher())
        message_id = p.enqueue_sms(phone, text, **options)
    emit({"id": message_id}, as_json, lambda d: str(d["id"]))


@click.command()
@click.argument("message_id", type=MESSAGE_ID)
@json_option
@handled
def status(message_id: int, as_json: bool) -> None:
    """Show one message's status, attempts and last code."""
    from worker.inspect import message_status

    with database().sessions() as session:
        found = message_status(session, message_id, with_attempts=True)
    if found is None:
        raise CliError(f"no message with id {message_id}", EXIT_NOT_FOUND)
    emit(found, as_json, format_status)


#: the commands fibosms.cli.main adds to the ``fibosms`` group
COMMANDS: list[click.Command] = [send, status]
