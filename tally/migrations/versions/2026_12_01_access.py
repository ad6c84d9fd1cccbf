"""Access: each API token says what it may do (`read`, `export`, `admin`), may expire, and records when it was
last used (tokens made before keep working as `read` tokens); an audit trail of changes and logins; export
schedules say who made them (their number per token or account is limited); dashboard accounts get a role
(admins stay admins, the other accounts become viewers: `tally users set-role EMAIL analyst` gives back CSV
downloads) and can be disabled.

Revision ID: 2026_12_01_access
Revises: 2026_12_01_replicas
Create Date: 2026-12-01 14:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_12_01_access"
down_revision = "2026_12_01_replicas"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("read_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scope", sa.String(length=16), nullable=False, server_default="read"))
        batch_op.add_column(sa.Column("expires_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("last_used_at", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("export_schedule", schema=None) as batch_op:
        batch_op.add_column(sa.Column("created_by", sa.Unicode(length=400), nullable=True))
    with op.batch_alter_table("dashboard_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=16), nullable=False, server_default="viewer"))
        batch_op.add_column(sa.Column("disabled_at", sa.BigInteger(), nullable=True))
    op.execute("UPDATE dashboard_account SET role = 'admin' WHERE is_admin")
    with op.batch_alter_table("dashboard_account", schema=None) as batch_op:
        batch_op.drop_column("is_admin")
    op.create_table(
        "audit_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.Unicode(length=400), nullable=False),
        sa.Column("action", sa.Unicode(length=64), nullable=False),
        sa.Column("target", sa.Unicode(length=400), nullable=True),
        sa.Column("address", sa.Unicode(length=64), nullable=True),
        sa.Column("detail", sa.Unicode(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_at"), ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_at"))
    op.drop_table("audit_event")
    with op.batch_alter_table("dashboard_account", schema=None) as batch_op:
        batch_op.add_column(sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE dashboard_account SET is_admin = (role = 'admin')")
    with op.batch_alter_table("dashboard_account", schema=None) as batch_op:
        batch_op.drop_column("disabled_at")
        batch_op.drop_column("role")
    with op.batch_alter_table("export_schedule", schema=None) as batch_op:
        batch_op.drop_column("created_by")
    with op.batch_alter_table("read_token", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("expires_at")
        batch_op.drop_column("scope")
