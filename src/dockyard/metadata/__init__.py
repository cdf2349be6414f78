"""Registry metadata in SQLite: schema, migrations and queries."""

from dockyard.metadata.db import Database

__all__ = ["Database"]
