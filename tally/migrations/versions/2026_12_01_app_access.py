"""App access: an API token or a dashboard account may be limited to some apps (`apps`, a JSON list of app ids;
NULL, as every existing token and account gets, means every app).

Revision ID: 2026_12_01_app_access
Revises: 2026_12_01_access
Create Date: 2026-12-01 17:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_12_01_app_access"
down_revision = "2026_12_01_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("read_token", "dashboard_account"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("apps", sa.JSON(), nullable=True))


def downgrade() -> None:
    for table in ("read_token", "dashboard_account"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("apps")
