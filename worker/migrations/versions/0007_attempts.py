"""The attempt history: one ``sms_attempts`` row per recorded outcome of a call.

Until now the ledger kept only counters (``attempts``, ``claims``, ``ambiguous_attempts``)
and the dead letters. Each row names the claim and attempt, when the claim was taken and
the outcome recorded, the status it led to, the code, and whether the outcome was unknown
(ambiguous), the sweep's guess (guessed) or a late answer that replaced a guess (late).
Rows of messages sent before this revision have no history.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from worker.ledger.models import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sms_attempts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column(
            "message_id",
            _ID,
            sa.ForeignKey("sms_messages.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("claim", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("recorded_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("ambiguous", sa.Boolean(), nullable=False),
        sa.Column("guessed", sa.Boolean(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_sms_attempts_message_id", "sms_attempts", ["message_id"])


def downgrade() -> None:
    op.drop_index("ix_sms_attempts_message_id", "sms_attempts")
    op.drop_table("sms_attempts")
