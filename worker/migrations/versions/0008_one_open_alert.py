"""One open alert per condition key, enforced by the database.

``open_alert`` looked for an open row, then inserted one: two transactions raising the same
key at once (worker threads recording the same account-wide code, two balance polls) both
found none and both inserted, so the condition alerted, and reached the webhook, twice. A
partial unique index on the open rows' keys lets the insert itself decide. Open duplicates
left by the old code are closed first (the oldest of each key stays open), at the time they
were raised.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = sa.text("cleared_at IS NULL")


def upgrade() -> None:
    op.execute(
        "UPDATE fibo_alerts SET cleared_at = raised_at "
        "WHERE cleared_at IS NULL AND id NOT IN ("
        "SELECT MIN(id) FROM fibo_alerts WHERE cleared_at IS NULL GROUP BY key)"
    )
    op.create_index(
        "uq_fibo_alerts_open_key", "fibo_alerts", ["key"], unique=True,
        postgresql_where=_OPEN, sqlite_where=_OPEN,
    )


def downgrade() -> None:
    op.drop_index("uq_fibo_alerts_open_key", "fibo_alerts")
