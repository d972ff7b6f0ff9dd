"""The inference log's revisions, oldest first: ``0001`` is the schema the service created before Alembic."""
