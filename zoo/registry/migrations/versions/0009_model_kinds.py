"""Model kinds: models.kind ("embedding", "reranker"; every existing row becomes "embedding") and
models.activation (a reranker's score activation: sigmoid, identity, tanh, relu; null for embedding models)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 00:10:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=20), nullable=False, server_default='embedding'))
        batch_op.add_column(sa.Column('activation', sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_column('activation')
        batch_op.drop_column('kind')
