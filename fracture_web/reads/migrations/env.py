"""Alembic's environment: migrate over the connection ``store.upgrade`` hands in (never a URL from a file)."""
from alembic import context

from fracture_web.reads.models import Base

context.configure(connection=context.config.attributes["connection"], target_metadata=Base.metadata,
                  render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
