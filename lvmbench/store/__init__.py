"""The results database: DuckDB schema, idempotent ingest of run directories, paper-style tables."""
from .db import connect, open_readonly, open_writer  # noqa: F401
