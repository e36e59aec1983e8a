"""A model's own code, trusted by the operator: models.trusted_code ({path: sha256}; null: none); and
models.include_prompt (false: the Pooling module leaves prompt tokens out; null: true, as before 0008)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 17:05:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('trusted_code', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('include_prompt', sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_column('include_prompt')
        batch_op.drop_column('trusted_code')
