"""Campaigns and the advertising rules (Decree 91/2020/ND-CP, Article 13).

``sms_messages`` gains ``campaign`` and ``hold_reason`` (a queued marketing message waiting for
the quiet hours to end or for its number's daily cap to free up). ``sms_suppressions`` lists
numbers that get no message of the suppressed kinds; ``sms_campaigns`` remembers each campaign
and whether it was cancelled; ``sms_cap_counters`` holds one row per number (a digest of it,
not the number), the lock the daily cap is counted under.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from worker.ledger.models import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sms_messages") as batch:
        batch.add_column(sa.Column("campaign", sa.String(64), nullable=True))
        batch.add_column(sa.Column("hold_reason", sa.String(16), nullable=True))
    op.create_index("ix_sms_messages_campaign_status", "sms_messages", ["campaign", "status"])
    op.create_index("ix_sms_messages_recipient_kind", "sms_messages", ["recipient", "kind"])
    op.create_table(
        "sms_suppressions",
        sa.Column("phone", sa.String(16), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "sms_campaigns",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "sms_cap_counters",
        sa.Column("number_key", sa.String(64), primary_key=True),
        sa.Column("locked_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sms_cap_counters")
    op.drop_table("sms_campaigns")
    op.drop_table("sms_suppressions")
    op.drop_index("ix_sms_messages_recipient_kind", "sms_messages")
    op.drop_index("ix_sms_messages_campaign_status", "sms_messages")
    with op.batch_alter_table("sms_messages") as batch:
        batch.drop_column("hold_reason")
        batch.drop_column("campaign")
