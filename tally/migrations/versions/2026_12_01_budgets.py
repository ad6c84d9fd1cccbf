"""Budgets: a cap on an app's tokens or cost per hour, day, week or month, for the app or for each end user.

Revision ID: 2026_12_01_budgets
Revises: 2026_12_01_ingest_limits
Create Date: 2026-12-01 18:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_12_01_budgets"
down_revision = "2026_12_01_ingest_limits"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "budget",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("app_id", BIG_ID, nullable=False),
        sa.Column("per_user", sa.Boolean(), nullable=False),
        sa.Column("metric", sa.String(length=8), nullable=False),
        sa.Column("limit_value", sa.Float(), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("warn_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.Unicode(length=400), nullable=True),
        sa.ForeignKeyConstraint(["app_id"], ["app.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_budget_app_id"), "budget", ["app_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_budget_app_id"), table_name="budget")
    op.drop_table("budget")
