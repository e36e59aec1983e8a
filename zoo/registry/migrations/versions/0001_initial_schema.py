"""Initial schema: models, revisions, artifacts, benchmarks, aliases.

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 10:35:10.183240
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=1000), nullable=False),
    sa.Column('task', sa.String(length=50), nullable=False),
    sa.Column('dim', sa.Integer(), nullable=False),
    sa.Column('max_seq_length', sa.Integer(), nullable=False),
    sa.Column('pooling', sa.String(length=50), nullable=False),
    sa.Column('normalize', sa.Boolean(), nullable=False),
    sa.Column('query_prompt', sa.Text(), nullable=True),
    sa.Column('document_prompt', sa.Text(), nullable=True),
    sa.Column('license', sa.String(length=100), nullable=True),
    sa.Column('current_revision_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_models')),
    sa.UniqueConstraint('name', name=op.f('uq_models_name'))
    )
    op.create_table('revisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=1000), nullable=False),
    sa.Column('requested_ref', sa.String(length=200), nullable=True),
    sa.Column('resolved_id', sa.String(length=100), nullable=False),
    sa.Column('manifest', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['model_id'], ['models.id'], name=op.f('fk_revisions_model_id_models'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_revisions')),
    sa.UniqueConstraint('model_id', 'resolved_id', name=op.f('uq_revisions_model_id'))
    )
    with op.batch_alter_table('revisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_revisions_model_id'), ['model_id'], unique=False)
    # models <-> revisions is a cycle: the pointer's FK can only exist once both tables do
    # (PostgreSQL refuses a forward reference; SQLite runs this as a table copy).
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.create_foreign_key(batch_op.f('fk_models_current_revision_id_revisions'), 'revisions',
                                    ['current_revision_id'], ['id'], ondelete='SET NULL')

    op.create_table('aliases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('revision_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['revision_id'], ['revisions.id'], name=op.f('fk_aliases_revision_id_revisions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_aliases')),
    sa.UniqueConstraint('name', name=op.f('uq_aliases_name'))
    )
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_aliases_revision_id'), ['revision_id'], unique=False)

    op.create_table('artifacts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('revision_id', sa.Integer(), nullable=False),
    sa.Column('target', sa.String(length=100), nullable=False),
    sa.Column('format', sa.String(length=50), nullable=False),
    sa.Column('precision', sa.String(length=20), nullable=False),
    sa.Column('variant', sa.String(length=100), nullable=True),
    sa.Column('store_digest', sa.String(length=64), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.Enum('pending', 'building', 'ready', 'failed', 'rejected', name='artifact_status', native_enum=False, length=20), nullable=False),
    sa.Column('provenance', sa.JSON(), nullable=False),
    sa.Column('fidelity', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['revision_id'], ['revisions.id'], name=op.f('fk_artifacts_revision_id_revisions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_artifacts')),
    sa.UniqueConstraint('revision_id', 'target', name=op.f('uq_artifacts_revision_id'))
    )
    with op.batch_alter_table('artifacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_artifacts_revision_id'), ['revision_id'], unique=False)

    op.create_table('benchmarks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('artifact_id', sa.Integer(), nullable=False),
    sa.Column('hardware_fingerprint', sa.String(length=64), nullable=False),
    sa.Column('figures', sa.JSON(), nullable=False),
    sa.Column('measured_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['artifact_id'], ['artifacts.id'], name=op.f('fk_benchmarks_artifact_id_artifacts'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_benchmarks'))
    )
    with op.batch_alter_table('benchmarks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_benchmarks_artifact_id'), ['artifact_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_benchmarks_hardware_fingerprint'), ['hardware_fingerprint'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('benchmarks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_benchmarks_hardware_fingerprint'))
        batch_op.drop_index(batch_op.f('ix_benchmarks_artifact_id'))

    op.drop_table('benchmarks')
    with op.batch_alter_table('artifacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_artifacts_revision_id'))

    op.drop_table('artifacts')
    with op.batch_alter_table('aliases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_aliases_revision_id'))

    op.drop_table('aliases')
    with op.batch_alter_table('revisions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_revisions_model_id'))

    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_models_current_revision_id_revisions'), type_='foreignkey')
    op.drop_table('revisions')
    op.drop_table('models')
