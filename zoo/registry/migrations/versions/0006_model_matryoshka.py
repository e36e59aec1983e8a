"""Matryoshka: models.matryoshka_dims (null: the model declares no Matryoshka training)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 11:20:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('matryoshka_dims', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_column('matryoshka_dims')
