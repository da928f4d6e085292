"""The rules that span several settings, checked once the settings are read.

Pure arithmetic over a :class:`Settings`; every message is one line naming the variables
involved. The time a message may spend in ``sending`` is bounded by
``FIBOSMS_SENDING_TIMEOUT_SECONDS``: past it the sweep takes the row for an attempt whose
worker died, so everything one attempt may legitimately take — the wait for a rate-limit
token, then one gateway call up to its deadline — must fit under it, with a margin.
"""

from __future__ import annotations

import math

from worker.settings.errors import SettingsError
from worker.settings.model import Settings

#: share of the sending timeout kept free of the attempt's own time (clock differences
#: between hosts, the claim and the record of the outcome)
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


def default_rate_burst(rate_limit: float | None) -> float:
    """The bucket's size when FIBOSMS_RATE_BURST is unset: one second's worth, at least 1."""
    return max(1.0, rate_limit or 1.0)


def largest_cost(max_segments: int, per_segment: bool) -> int:
    """The most tokens one message can take."""
    return max_segments if per_segment else 1


def bucket_fits(rate: float, burst: float, reserve: float, cost: float) -> bool:
    """Whether a non-urgent message costing ``cost`` tokens can ever get them.

    The bucket holds ``burst`` tokens and refills at ``rate`` per second; a non-urgent
    message must leave ``burst * reserve`` behind for OTPs. The same arithmetic, in the same
    order, as the limiter's own check (``worker/ratelimit.py``), so the two cannot disagree.
    """
    if not rate > 0:
        return False
    return not cost > burst - burst * reserve


def batch_token_seconds(batch_size: int, cost: float, rate: float) -> float:
    """Seconds for a bucket at its reserve to refill the tokens of a whole bulk batch."""
    return batch_size * cost / rate


def batch_call_seconds(batch_size: int, concurrency: int, per_call: float) -> float:
    """Seconds a batch's calls take at most when they go out ``concurrency`` at a time."""
    return math.ceil(batch_size / concurrency) * per_call


def problems(s: Settings, *, outcomes_per_message: bool = True) -> list[str]:
    """Every cross-setting rule ``s`` breaks, each as one line.

    ``outcomes_per_message``: the bulk path records each message's outcome as its call
    returns, so a message's time in ``sending`` is its own wait and call. When False (one
    record for the whole batch), every message stays in ``sending`` until the batch's last
    call returns, and the batch's calls must fit under the sending timeout too.
    """
    out: list[str] = []
    limited = s.rate_limit is not None
    sending = s.sending_timeout_seconds

    if s.retry_max_seconds < s.retry_base_seconds:
        out.append(
            f"FIBOSMS_RETRY_MAX_SECONDS ({s.retry_max_seconds:g}) must not be below "
            f"FIBOSMS_RETRY_BASE_SECONDS ({s.retry_base_seconds:g})"
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
        if not bucket_fits(s.rate_limit, s.rate_burst, s.urgent_reserve, cost):
            usable = s.rate_burst - s.rate_burst * s.urgent_reserve
            out.append(
                f"with FIBOSMS_RATE_LIMIT ({s.rate_limit:g}/s), "
                f"FIBOSMS_RATE_BURST ({s.rate_burst:g}) less FIBOSMS_URGENT_RESERVE "
                f"({s.urgent_reserve:g}) leaves {usable:g} tokens, but a non-urgent message "
                f"can cost {cost_text}: it would never be sent; raise FIBOSMS_RATE_BURST "
                "or lower FIBOSMS_URGENT_RESERVE"
            )
        else:
            refill = batch_token_seconds(s.bulk_batch_size, cost, s.rate_limit)
            if refill > wait:
                out.append(
                    f"a bulk batch of FIBOSMS_BULK_BATCH_SIZE ({s.bulk_batch_size}) messages of "
                    f"up to {cost_text} needs {refill:g} s of tokens at FIBOSMS_RATE_LIMIT "
                    f"({s.rate_limit:g}/s), more than a message waits for one ({wait:g} s, "
                    "from FIBOSMS_SENDING_TIMEOUT_SECONDS); lower the batch size"
                )

    if not outcomes_per_message:
        calls = batch_call_seconds(
            s.bulk_batch_size, s.batch_concurrency, attempt
        )
        if calls + margin > sending:
            out.append(
                f"a bulk batch of FIBOSMS_BULK_BATCH_SIZE ({s.bulk_batch_size}) at "
                f"FIBOSMS_BATCH_CONCURRENCY ({s.batch_concurrency}) takes up to {calls:g} s "
                f"of calls (FIBOSMS_CALL_DEADLINE_SECONDS each), more than "
                f"FIBOSMS_SENDING_TIMEOUT_SECONDS ({sending:g}) less its margin"
            )
    return out


def check(s: Settings) -> None:
    """Raise :class:`SettingsError` with the first rule ``s`` breaks."""
    found = problems(s)
    if found:
        raise SettingsError(found[0])
