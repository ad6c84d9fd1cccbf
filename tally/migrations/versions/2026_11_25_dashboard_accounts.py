"""Dashboard accounts and their logins.

Revision ID: 2026_11_25_dashboard
Revises: 2026_11_22_analytics
Create Date: 2026-11-25 09:37:41
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_11_25_dashboard"
down_revision = "2026_11_22_analytics"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dashboard_account",
        sa.Column("id", _ID, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("password_changed_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "dashboard_login",
        sa.Column("id", _ID, nullable=False),
        sa.Column("account_id", _ID, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["dashboard_account.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("dashboard_login", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dashboard_login_account_id"), ["account_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dashboard_login", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dashboard_login_account_id"))
    op.drop_table("dashboard_login")
    op.drop_table("dashboard_account")
