"""Account watch: balance and totals history, the account's pause, reconciliations, alerts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from worker.ledger.models import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "fibo_balance_history",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("balance", sa.Numeric(20, 2), nullable=False),
        sa.Column("polled_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_fibo_balance_history_polled_at", "fibo_balance_history", ["polled_at"])
    op.create_table(
        "fibo_totals_history",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("success", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("polled_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_fibo_totals_history_day", "fibo_totals_history", ["day"])
    op.create_index("ix_fibo_totals_history_polled_at", "fibo_totals_history", ["polled_at"])
    state = op.create_table(
        "fibo_account_state",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("pause_code", sa.Integer(), nullable=True),
        sa.Column("pause_reason", sa.Text(), nullable=True),
        sa.Column("paused_at", UTCDateTime(), nullable=True),
        sa.Column("paused_by_message", Id, nullable=True),
        sa.Column("resumed_at", UTCDateTime(), nullable=True),
        sa.Column("resumed_by", sa.String(64), nullable=True),
    )
    op.bulk_insert(state, [{"id": 1, "paused": False}])
    op.create_table(
        "fibo_reconciliations",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("local_sent", sa.Integer(), nullable=False),
        sa.Column("local_dead", sa.Integer(), nullable=False),
        sa.Column("local_in_flight", sa.Integer(), nullable=False),
        sa.Column("gateway_success", sa.Integer(), nullable=False),
        sa.Column("gateway_failed", sa.Integer(), nullable=False),
        sa.Column("gateway_pending", sa.Integer(), nullable=False),
        sa.Column("difference", sa.Integer(), nullable=False),
        sa.Column("mismatch", sa.Boolean(), nullable=False),
        sa.Column("checked_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "fibo_alerts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("raised_at", UTCDateTime(), nullable=False),
        sa.Column("cleared_at", UTCDateTime(), nullable=True),
        sa.Column("notified_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_fibo_alerts_key", "fibo_alerts", ["key"])


def downgrade() -> None:
    for table in ("fibo_alerts", "fibo_reconciliations", "fibo_account_state",
                  "fibo_totals_history", "fibo_balance_history"):
        op.drop_table(table)
