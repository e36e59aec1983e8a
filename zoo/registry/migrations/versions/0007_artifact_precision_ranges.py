"""Compact precisions: artifacts.precision_ranges (null: not yet calibrated; computed at the gate or on first use)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 13:50:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('artifacts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('precision_ranges', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('artifacts', schema=None) as batch_op:
        batch_op.drop_column('precision_ranges')
