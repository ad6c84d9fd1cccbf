"""Exports: CSV export schedules, their run history, and APScheduler's job table that keeps them across restarts.

Revision ID: 2026_11_25_exports
Revises: 2026_11_25_dashboard
Create Date: 2026-11-25 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_11_25_exports"
down_revision = "2026_11_25_dashboard"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "export_schedule",
        sa.Column("id", _ID, nullable=False),
        sa.Column("dataset", sa.String(length=32), nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("app_id", _ID, nullable=True),
        sa.Column("directory", sa.Text(), nullable=False),
        sa.Column("include_raw", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["app.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "export_run",
        sa.Column("id", _ID, nullable=False),
        sa.Column("schedule_id", _ID, nullable=False),
        sa.Column("period", sa.String(length=32), nullable=False),
        sa.Column("period_start", sa.BigInteger(), nullable=False),
        sa.Column("period_end", sa.BigInteger(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("file", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["schedule_id"], ["export_schedule.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("export_run", schema=None) as batch_op:
        batch_op.create_index("ix_export_run_schedule_started", ["schedule_id", "started_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_export_run_started_at"), ["started_at"], unique=False)
    # The columns of APScheduler 3's SQLAlchemyJobStore table, exactly: the server passes it this table's name.
    op.create_table(
        "export_job",
        sa.Column("id", sa.Unicode(length=191), nullable=False),
        sa.Column("next_run_time", sa.Float(precision=25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("export_job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_export_job_next_run_time"), ["next_run_time"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("export_job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_export_job_next_run_time"))
    op.drop_table("export_job")
    with op.batch_alter_table("export_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_export_run_started_at"))
        batch_op.drop_index("ix_export_run_schedule_started")
    op.drop_table("export_run")
    op.drop_table("export_schedule")
