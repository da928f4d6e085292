"""API keys for the HTTP API, and the index its listing by phone number walks.

``api_keys`` keeps a key's name, its scopes, a public ``prefix`` (how a presented token
finds its row) and the SHA-256 of the whole token; the token itself is shown once, at
creation, and never stored.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from worker.ledger.models import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(32), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    # GET /v1/messages?phone=…: one number's messages, newest first
    op.create_index(
        "ix_sms_messages_recipient_id", "sms_messages", ["recipient", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_sms_messages_recipient_id", table_name="sms_messages")
    op.drop_table("api_keys")
