"""The kinds of message and the queue each goes to."""

from __future__ import annotations

from enum import StrEnum


class Kind(StrEnum):
    """What a message is for; it picks the queue and the retry policy."""

    OTP = "otp"
    TRANSACTIONAL = "transactional"
    MARKETING = "marketing"


#: the broker queue each kind is published to
QUEUE_OF: dict[Kind, str] = {
    Kind.OTP: "urgent",
    Kind.TRANSACTIONAL: "default",
    Kind.MARKETING: "bulk",
}
