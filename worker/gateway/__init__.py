"""The FIBO gateway: its answers parsed (:mod:`.parse`) and the HTTP client (:mod:`.client`)."""

from worker.gateway.client import FiboClient
from worker.gateway.parse import SendReceipt, Totals, parse_balance, parse_send, parse_totals

__all__ = [
    "FiboClient",
    "SendReceipt",
    "Totals",
    "parse_balance",
    "parse_send",
    "parse_totals",
]
