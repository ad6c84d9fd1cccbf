"""Initial schema: apps, keys, read tokens, end users, sessions, interactions and images.

Revision ID: 2026_11_22_initial
Revises:
Create Date: 2026-11-22 04:43:38.336505
"""

import sqlalchemy as sa
from alembic import op

revision = '2026_11_22_initial'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('app',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('app_key', sa.String(length=64), nullable=False),
    sa.Column('session_timeout_minutes', sa.Float(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('app_key'),
    sa.UniqueConstraint('name')
    )
    op.create_table('read_token',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('revoked_at', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_table('api_key',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('app_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('revoked_at', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['app_id'], ['app.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key_hash')
    )
    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_key_app_id'), ['app_id'], unique=False)

    op.create_table('end_user',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('app_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=True),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('email_key', sa.String(length=320), nullable=True),
    sa.Column('first_name', sa.String(length=200), nullable=True),
    sa.Column('last_name', sa.String(length=200), nullable=True),
    sa.Column('phone', sa.String(length=64), nullable=True),
    sa.Column('gender', sa.String(length=64), nullable=True),
    sa.Column('is_authenticated', sa.Boolean(), nullable=True),
    sa.Column('profile_at', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['app.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('app_id', 'external_id')
    )
    with op.batch_alter_table('end_user', schema=None) as batch_op:
        batch_op.create_index('ix_end_user_app_email', ['app_id', 'email_key'], unique=False)

    op.create_table('interaction_session',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('app_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('external_id', sa.String(length=255), nullable=True),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('merged_into', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['app.id'], ),
    sa.ForeignKeyConstraint(['merged_into'], ['interaction_session.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['end_user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('app_id', 'external_id')
    )
    op.create_table('interaction',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('app_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('session_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('session_key', sa.String(length=300), nullable=False),
    sa.Column('session_timeout_ms', sa.BigInteger(), nullable=True),
    sa.Column('provider', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=True),
    sa.Column('input_text', sa.Text(), nullable=False),
    sa.Column('output_text', sa.Text(), nullable=False),
    sa.Column('prompt_tokens', sa.Integer(), nullable=True),
    sa.Column('completion_tokens', sa.Integer(), nullable=True),
    sa.Column('total_tokens', sa.Integer(), nullable=True),
    sa.Column('usage_source', sa.String(length=16), nullable=False),
    sa.Column('finish_reason', sa.String(length=64), nullable=True),
    sa.Column('request_at', sa.BigInteger(), nullable=False),
    sa.Column('response_at', sa.BigInteger(), nullable=False),
    sa.Column('latency_ms', sa.Integer(), nullable=False),
    sa.Column('image_count', sa.Integer(), nullable=False),
    sa.Column('is_error', sa.Boolean(), nullable=False),
    sa.Column('response_ref', sa.String(length=255), nullable=True),
    sa.Column('client_version', sa.String(length=64), nullable=True),
    sa.Column('request_json', sa.Text(), nullable=False),
    sa.Column('response_json', sa.Text(), nullable=False),
    sa.Column('received_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['app.id'], ),
    sa.ForeignKeyConstraint(['session_id'], ['interaction_session.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['end_user.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('app_id', 'response_ref')
    )
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.create_index('ix_interaction_grouping', ['app_id', 'session_key', 'request_at', 'id'], unique=False)
        batch_op.create_index('ix_interaction_session_time', ['session_id', 'request_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_interaction_updated_at'), ['updated_at'], unique=False)
        batch_op.create_index('ix_interaction_user_time', ['user_id', 'request_at'], unique=False)

    op.create_table('interaction_image',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('app_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('interaction_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('path', sa.String(length=500), nullable=True),
    sa.Column('size_bytes', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['app.id'], ),
    sa.ForeignKeyConstraint(['interaction_id'], ['interaction.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('app_id', 'filename')
    )
    with op.batch_alter_table('interaction_image', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_interaction_image_interaction_id'), ['interaction_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('interaction_image', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_interaction_image_interaction_id'))

    op.drop_table('interaction_image')
    with op.batch_alter_table('interaction', schema=None) as batch_op:
        batch_op.drop_index('ix_interaction_user_time')
        batch_op.drop_index(batch_op.f('ix_interaction_updated_at'))
        batch_op.drop_index('ix_interaction_session_time')
        batch_op.drop_index('ix_interaction_grouping')

    op.drop_table('interaction')
    op.drop_table('interaction_session')
    with op.batch_alter_table('end_user', schema=None) as batch_op:
        batch_op.drop_index('ix_end_user_app_email')

    op.drop_table('end_user')
    with op.batch_alter_table('api_key', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_key_app_id'))

    op.drop_table('api_key')
    op.drop_table('read_token')
    op.drop_table('app')
