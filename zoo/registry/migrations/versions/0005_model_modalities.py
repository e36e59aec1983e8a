"""Multimodal models: models.modalities and models.image_preprocessing

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 11:00:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('modalities', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('image_preprocessing', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_column('image_preprocessing')
        batch_op.drop_column('modalities')
