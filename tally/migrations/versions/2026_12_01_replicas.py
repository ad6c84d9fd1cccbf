"""Replicas: export fires claimed in the store (each schedule's next run time, each run's replica and heartbeat),
the cookie secret and the login throttle shared through it; APScheduler's job table goes. Schedule folders are
now relative to the exports folder (by default the data directory's `exports`), so existing ones are rewritten to
name the same place.

Revision ID: 2026_12_01_replicas
Revises: 2026_12_01_hardening
Create Date: 2026-12-01 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_12_01_replicas"
down_revision = "2026_12_01_hardening"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("export_schedule", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_run_at", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("export_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("replica", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.BigInteger(), nullable=True))
    op.execute("UPDATE export_schedule SET directory = '.' WHERE directory = 'exports'")
    op.execute("UPDATE export_schedule SET directory = '../' || directory "
               "WHERE directory <> '.' AND directory NOT LIKE '/%'")
    with op.batch_alter_table("export_job", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_export_job_next_run_time"))
    op.drop_table("export_job")
    op.create_table(
        "instance_secret",
        sa.Column("name", sa.Unicode(length=64), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.Unicode(length=400), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("blocked_until", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("login_throttle")
    op.drop_table("instance_secret")
    op.create_table(
        "export_job",
        sa.Column("id", sa.Unicode(length=191), nullable=False),
        sa.Column("next_run_time", sa.Float(precision=25), nullable=True),
        sa.Column("job_state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("export_job", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_export_job_next_run_time"), ["next_run_time"], unique=False)
    with op.batch_alter_table("export_run", schema=None) as batch_op:
        batch_op.drop_column("heartbeat_at")
        batch_op.drop_column("replica")
    with op.batch_alter_table("export_schedule", schema=None) as batch_op:
        batch_op.drop_column("next_run_at")
