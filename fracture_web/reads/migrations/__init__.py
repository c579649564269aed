"""Alembic's migrations of the reads' tables, run at start-up by ``store.ReadStore.upgrade``."""
