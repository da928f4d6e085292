"""The ledger (sms_messages) and the dead letters (sms_failures).

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from worker.ledger.models import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sms_messages",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("recipient", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("sender", sa.String(64), nullable=True),
        sa.Column("service_type", sa.SmallInteger(), nullable=False),
        sa.Column("segments", sa.SmallInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("queue", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("ambiguous_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("first_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("idempotency_key", name="uq_sms_messages_idempotency_key"),
    )
    op.create_index("ix_sms_messages_status_due", "sms_messages", ["status", "next_attempt_at"])
    op.create_index("ix_sms_messages_sent_at", "sms_messages", ["sent_at"])
    op.create_index("ix_sms_messages_created_at", "sms_messages", ["created_at"])

    op.create_table(
        "sms_failures",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "message_id",
            Id,
            sa.ForeignKey("sms_messages.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("meaning", sa.Text(), nullable=False),
        sa.Column("class", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failed_at", UTCDateTime(), nullable=False),
        sa.Column("replayed_at", UTCDateTime(), nullable=True),
        sa.Column("replayed_by", sa.String(64), nullable=True),
    )
    op.create_index("ix_sms_failures_message_id", "sms_failures", ["message_id"])
    op.create_index("ix_sms_failures_failed_at", "sms_failures", ["failed_at"])


def downgrade() -> None:
    op.drop_table("sms_failures")
    op.drop_table("sms_messages")
