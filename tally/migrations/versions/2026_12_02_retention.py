"""Retention: per app, the days raw content and uploaded images are kept; when an interaction's content was
removed; the nightly runs, claimed by one replica a day; and indexes for the session foreign keys an erasure
follows.

Revision ID: 2026_12_02_retention
Revises: 2026_12_02_erasure
Create Date: 2026-12-02 11:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_12_02_retention"
down_revision = "2026_12_02_erasure"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.add_column(sa.Column("raw_retention_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("upload_retention_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("interaction", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expired_at", sa.BigInteger(), nullable=True))
    # Deleting a user or a session (an erasure) checks the rows that name it through these foreign keys.
    op.create_index("ix_interaction_session_user_id", "interaction_session", ["user_id"])
    op.create_index("ix_interaction_session_merged_into", "interaction_session", ["merged_into"])
    op.create_table(
        "retention_run",
        sa.Column("day", sa.Unicode(length=10), nullable=False),
        sa.Column("replica", sa.Unicode(length=200), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("interactions", sa.Integer(), nullable=True),
        sa.Column("images", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("day"),
    )


def downgrade() -> None:
    op.drop_table("retention_run")
    op.drop_index("ix_interaction_session_merged_into", table_name="interaction_session")
    op.drop_index("ix_interaction_session_user_id", table_name="interaction_session")
    with op.batch_alter_table("interaction", schema=None) as batch_op:
        batch_op.drop_column("expired_at")
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.drop_column("upload_retention_days")
        batch_op.drop_column("raw_retention_days")
