"""Analytics watermarks: end_user.updated_at, and the cached part of an interaction's prompt tokens.

Revision ID: 2026_11_22_analytics
Revises: 2026_11_22_initial
Create Date: 2026-11-22 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_11_22_analytics"
down_revision = "2026_11_22_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("end_user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("updated_at", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.create_index(batch_op.f("ix_end_user_updated_at"), ["updated_at"], unique=False)
    op.execute("UPDATE end_user SET updated_at = created_at")
    with op.batch_alter_table("interaction", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cached_prompt_tokens", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("interaction", schema=None) as batch_op:
        batch_op.drop_column("cached_prompt_tokens")
    with op.batch_alter_table("end_user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_end_user_updated_at"))
        batch_op.drop_column("updated_at")
