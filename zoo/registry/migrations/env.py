"""Alembic environment: runs on the connection zoo hands over (see zoo.registry)."""

from alembic import context

from zoo.registry.schema import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # `alembic` CLI use, e.g. autogenerate during development
    from sqlalchemy import create_engine

    connection = create_engine(config.get_main_option("sqlalchemy.url")).connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # ALTERs that SQLite cannot do run as copy-and-move
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
