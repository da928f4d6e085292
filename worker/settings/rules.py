"""The rules that span several settings, checked once the settings are read.

Pure arithmetic over a :class:`Settings`; every message is one line naming the variables
involved. The time a message may spend in ``sending`` is bounded by
``FIBOSMS_SENDING_TIMEOUT_SECONDS``: past it the sweep takes the row for an attempt whose
worker died, so everything one attempt may legitimately take — the wait for a rate-limit
token, then one gateway call up to its deadline — must fit under it, with a margin.
"""

from __future__ import annotations

from worker.settings.errors import SettingsError
from worker.settings.model import Settings

#: share of the sending timeout kept free of the attempt's own time (the claim and the record of
#: the outcome around the call; the database's clock judges the lease, so not host skew)
SENDING_MARGIN = 0.1
#: the longest a claimed message waits for a rate-limit token (half the sending timeout
#: when that is shorter); after it, the message is given back unattempted
TOKEN_WAIT_MAX_SECONDS = 30.0
#: the call deadline when none is set, if the sending timeout leaves room for it
DEFAULT_CALL_DEADLINE_SECONDS = 35.0


def token_wait_seconds(sending_timeout: float, rate_limited: bool) -> float:
    """How long a claimed message may wait for a rate-limit token."""
    if not rate_limited:
        return 0.0
    return min(TOKEN_WAIT_MAX_SECONDS, sending_timeout / 2)


def margin_seconds(sending_timeout: float) -> float:
    return sending_timeout * SENDING_MARGIN


def call_room_seconds(sending_timeout: float, rate_limited: bool) -> float:
    """The longest gateway call the sending timeout leaves room for."""
    return (
        sending_timeout
        - margin_seconds(sending_timeout)
        - token_wait_seconds(sending_timeout, rate_limited)
    )


def default_call_deadline(sending_timeout: float, rate_limited: bool) -> float:
    """35 s, or what fits under a shorter sending timeout (never below 1 s)."""
    room = call_room_seconds(sending_timeout, rate_limited)
    return max(1.0, min(DEFAULT_CALL_DEADLINE_SECONDS, room))


def largest_cost(max_segments: int, per_segment: bool) -> int:
    """The most tokens one message can take."""
    return max_segments if per_segment else 1


def batch_token_seconds(batch_size: int, cost: float, rate: float) -> float:
    """Seconds for a bucket at its reserve to refill the tokens of a whole bulk batch."""
    return batch_size * cost / rate


def problems(s: Settings) -> list[str]:
    """Every cross-setting rule ``s`` breaks, each as one line.

    The bulk path records each message's outcome as its call returns, so a message's time
    in ``sending`` is its own token wait and call, whatever the batch around it.
    """
    out: list[str] = []
    limited = s.rate_limit is not None
    sending = s.sending_timeout_seconds

    if s.retry_max_seconds < s.retry_base_seconds:
        out.append(
            f"FIBOSMS_RETRY_MAX_SECONDS ({s.retry_max_seconds:g}) must not be below "
            f"FIBOSMS_RETRY_BASE_SECONDS ({s.retry_base_seconds:g})"
        )
    opens, _, closes = s.marketing_hours.partition("-")
    if opens == closes:
        out.append(
            f"FIBOSMS_MARKETING_HOURS ({s.marketing_hours}) is an empty window; "
            "00:00-24:00 means always"
        )
    if sending <= s.read_timeout_seconds:
        out.append(
            f"FIBOSMS_SENDING_TIMEOUT_SECONDS must be above FIBOSMS_READ_TIMEOUT_SECONDS "
            f"({sending:g} <= {s.read_timeout_seconds:g}): a slow call would be taken for a "
            "dead worker"
        )

    wait = token_wait_seconds(sending, limited)
    margin = margin_seconds(sending)
    attempt = wait + s.call_deadline_seconds
    if attempt + margin > sending:
        waiting = f" + {wait:g} s of token wait (FIBOSMS_RATE_LIMIT is set)" if limited else ""
        out.append(
            f"FIBOSMS_SENDING_TIMEOUT_SECONDS ({sending:g}) is too short for one attempt: "
            f"FIBOSMS_CALL_DEADLINE_SECONDS ({s.call_deadline_seconds:g}){waiting} + a "
            f"{SENDING_MARGIN:.0%} margin is {attempt + margin:g} s; raise the sending timeout "
            "or lower the call deadline"
        )

    if s.rate_limit is not None:
        cost = largest_cost(s.max_segments, s.rate_per_segment)
        cost_text = (
            f"{cost} token{'s' if cost != 1 else ''} (FIBOSMS_MAX_SEGMENTS with "
            "FIBOSMS_RATE_PER_SEGMENT)"
            if s.rate_per_segment
            else "1 token"
        )
        # any cost fits an idle schedule (worker/ratelimit.py), but a whole batch is claimed
        # at once and its last message must get its turn before it stops waiting
        refill = batch_token_seconds(s.bulk_batch_size, cost, s.rate_limit)
        if refill > wait:
            out.append(
                f"a bulk batch of FIBOSMS_BULK_BATCH_SIZE ({s.bulk_batch_size}) messages of "
                f"up to {cost_text} needs {refill:g} s of tokens at FIBOSMS_RATE_LIMIT "
                f"({s.rate_limit:g}/s), more than a message waits for one ({wait:g} s, "
                "from FIBOSMS_SENDING_TIMEOUT_SECONDS); lower the batch size"
            )

    return out


def check(s: Settings) -> None:
    """Raise :class:`SettingsError` with the first rule ``s`` breaks."""
    found = problems(s)
    if found:
        raise SettingsError(found[0])
