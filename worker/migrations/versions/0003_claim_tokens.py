"""Claim tokens that never repeat, a replay budget that keeps history, late answers.

``claims`` counts every claim of a row and is the token a worker must hold to record an
outcome; nothing ever lowers it. ``attempts`` stays the number of calls that went (or may
have gone) out; replay no longer resets it, but moves ``attempts_at_replay`` up to it so
the retry budget starts afresh. ``guessed_claim`` names the claim whose outcome the sweep
could only guess (a stalled attempt), so a late definite answer for it can still win.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sms_messages") as batch:
        batch.add_column(sa.Column("claims", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("attempts_at_replay", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("guessed_claim", sa.Integer(), nullable=True))
    # rows claimed before this revision: their attempt number was their token
    op.execute("UPDATE sms_messages SET claims = attempts")


def downgrade() -> None:
    with op.batch_alter_table("sms_messages") as batch:
        batch.drop_column("guessed_claim")
        batch.drop_column("attempts_at_replay")
        batch.drop_column("claims")
