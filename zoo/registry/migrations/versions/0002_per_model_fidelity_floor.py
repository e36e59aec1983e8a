"""Per-model fidelity floor overrides (models.fidelity_floor).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 11:00:36.718352
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fidelity_floor', sa.JSON(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_column('fidelity_floor')

