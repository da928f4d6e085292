"""The account's pause: after an account-wide code, nothing is sent until it is resumed.

The message that met the code is dead-lettered; every other message waits in the ledger
with its attempts untouched. After code 14 (balance) the first balance poll that sees money
resumes by itself; after the others an operator runs ``fibosms resume``.

The state lives in ``fibo_account_state``; its statements are in :mod:`worker.ledger.account`,
re-exported here for the send path and the command line.
"""

from __future__ import annotations

from worker.ledger.account import ACCOUNT_ROW, Pause, current_pause, is_paused, pause, resume

__all__ = ["ACCOUNT_ROW", "Pause", "current_pause", "is_paused", "pause", "resume"]
