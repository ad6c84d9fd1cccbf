"""Redaction: an app may have a redaction policy of its own (NULL: the server's, TALLY_REDACTION_*).

Revision ID: 2026_12_02_redaction
Revises: 2026_12_01_alerts
Create Date: 2026-12-02 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_12_02_redaction"
down_revision = "2026_12_01_alerts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.add_column(sa.Column("redaction", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.drop_column("redaction")
