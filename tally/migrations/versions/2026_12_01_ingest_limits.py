"""Ingest limits: an app may override the server's interactions and bytes per second (NULL: the defaults, 0: no
limit), and the limits' buckets live in the store so that every replica draws on the same ones.

Revision ID: 2026_12_01_ingest_limits
Revises: 2026_12_01_app_access
Create Date: 2026-12-01 18:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_12_01_ingest_limits"
down_revision = "2026_12_01_app_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.add_column(sa.Column("max_per_second", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("max_bytes_per_second", sa.Float(), nullable=True))
    op.create_table(
        "app_rate",
        sa.Column("app_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("tat", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["app.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("app_id", "kind"),
    )


def downgrade() -> None:
    op.drop_table("app_rate")
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.drop_column("max_bytes_per_second")
        batch_op.drop_column("max_per_second")
