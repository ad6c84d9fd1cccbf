"""Alerts: rules (what to watch, which webhook), the state of each watched subject, and the events with their
deliveries.

Revision ID: 2026_12_01_alerts
Revises: 2026_12_01_budgets
Create Date: 2026-12-01 19:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_12_01_alerts"
down_revision = "2026_12_01_budgets"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_rule",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("app_id", BIG_ID, nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("window_minutes", sa.Float(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("secret", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.Unicode(length=400), nullable=True),
        sa.ForeignKeyConstraint(["app_id"], ["app.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "alert_state",
        sa.Column("rule_id", BIG_ID, nullable=False),
        sa.Column("subject", sa.Unicode(length=400), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("since", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["rule_id"], ["alert_rule.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("rule_id", "subject"),
    )
    op.create_table(
        "alert_event",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("rule_id", BIG_ID, nullable=False),
        sa.Column("subject", sa.Unicode(length=400), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("delivery", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["rule_id"], ["alert_rule.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_alert_event_rule_id"), "alert_event", ["rule_id"], unique=False)
    op.create_index("ix_alert_event_due", "alert_event", ["delivery", "next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alert_event_due", table_name="alert_event")
    op.drop_index(op.f("ix_alert_event_rule_id"), table_name="alert_event")
    op.drop_table("alert_event")
    op.drop_table("alert_state")
    op.drop_table("alert_rule")
