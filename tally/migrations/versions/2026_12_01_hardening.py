"""Hardening: unknown latency is NULL, malformed responses are flagged, profile fields carry their own times,
and an explicit session id may name several sessions (a timeout in the payload ends them).

Revision ID: 2026_12_01_hardening
Revises: 2026_11_25_exports
Create Date: 2026-12-01 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "2026_12_01_hardening"
down_revision = "2026_11_25_exports"
branch_labels = None
depends_on = None

PROFILE_FIELDS = ("email", "first_name", "last_name", "phone", "gender", "is_authenticated")
# Unnamed in the first migration: PostgreSQL named it by its own rule; SQLite's batch copy needs a name to drop.
_SESSION_UNIQUE = {"postgresql": "interaction_session_app_id_external_id_key"}
_NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    with op.batch_alter_table("interaction", schema=None) as batch_op:
        batch_op.alter_column("latency_ms", existing_type=sa.Integer(), nullable=True)
        batch_op.add_column(sa.Column("malformed", sa.Text(), nullable=True))
    with op.batch_alter_table("end_user", schema=None) as batch_op:
        for name in PROFILE_FIELDS:
            batch_op.add_column(sa.Column(f"{name}_at", sa.BigInteger(), nullable=True))
    for name in PROFILE_FIELDS:
        op.execute(f"UPDATE end_user SET {name}_at = profile_at WHERE {name} IS NOT NULL")
    dialect = op.get_bind().dialect.name
    with op.batch_alter_table("interaction_session", schema=None, naming_convention=_NAMING) as batch_op:
        batch_op.drop_constraint(_SESSION_UNIQUE.get(dialect, "uq_interaction_session_app_id"), type_="unique")
        batch_op.create_index("ix_interaction_session_app_external", ["app_id", "external_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("interaction_session", schema=None) as batch_op:
        batch_op.drop_index("ix_interaction_session_app_external")
        batch_op.create_unique_constraint("uq_interaction_session_app_id", ["app_id", "external_id"])
    with op.batch_alter_table("end_user", schema=None) as batch_op:
        for name in PROFILE_FIELDS:
            batch_op.drop_column(f"{name}_at")
    with op.batch_alter_table("interaction", schema=None) as batch_op:
        batch_op.drop_column("malformed")
        batch_op.alter_column("latency_ms", existing_type=sa.Integer(), nullable=False)
