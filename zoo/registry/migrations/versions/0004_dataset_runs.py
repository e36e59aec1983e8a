"""Dataset jobs (runs table)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 08:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('runs',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('revision', sa.String(length=100), nullable=False),
    sa.Column('artifact_target', sa.String(length=100), nullable=True),
    sa.Column('store_digest', sa.String(length=64), nullable=True),
    sa.Column('runtime_precision', sa.String(length=20), nullable=True),
    sa.Column('input_path', sa.Text(), nullable=False),
    sa.Column('input_digest', sa.String(length=64), nullable=False),
    sa.Column('output_path', sa.Text(), nullable=False),
    sa.Column('rows', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Enum('queued', 'running', 'succeeded', 'failed', 'interrupted', name='run_status', native_enum=False, length=20), nullable=False),
    sa.Column('shards_total', sa.Integer(), nullable=False),
    sa.Column('shards_done', sa.Integer(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('timings', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs'))
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_runs_model'), ['model'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_model'))
    op.drop_table('runs')
