"""Operators of the console, and the indexes its pages read through.

``console_operators`` keeps an operator's name, role (``viewer`` or ``operator``), the
argon2 hash of the password, and a random ``session_key`` that signs the operator's
session cookies: changing it (sign-out, a new password) ends every session at once.

The indexes: the oldest waiting message of each queue (status, queue, due time), and the
open dead letters by code (the failures page and the replay by code).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from worker.ledger.models import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "console_operators",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("session_key", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_sign_in_at", UTCDateTime(), nullable=True),
    )
    op.create_index(
        "ix_sms_messages_status_queue_due", "sms_messages", ["status", "queue", "next_attempt_at"]
    )
    op.create_index("ix_sms_failures_code_failed_at", "sms_failures", ["code", "failed_at"])


def downgrade() -> None:
    op.drop_index("ix_sms_failures_code_failed_at", table_name="sms_failures")
    op.drop_index("ix_sms_messages_status_queue_due", table_name="sms_messages")
    op.drop_table("console_operators")
