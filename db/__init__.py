"""Alembic environment and migrations for outreach (installed as the `outreach_db` package)."""
