"""Index-served `list --search` and `metrics --all`: trigram indexes, lower(patient_id), charge status

SQLite: an FTS5 table with the trigram tokenizer (`patient_search`, external content = the
patient table) kept in step with every insert, update and delete of a patient by triggers, so it
changes in the same transaction as the patient row. PostgreSQL: the `pg_trgm` extension and a GIN
index on search_text (the database user must be allowed to create the extension, or it must
already be installed). Both: an index on lower(patient_id) for the case-insensitive patient-ID
match of a search, and one on charge (status, amount_cents) for the written-off total.

Note for later migrations: a batch ("move and copy") alter of the patient table on SQLite drops
its triggers; re-create them with `create_sqlite_search_triggers()` below.

Revision ID: 0009
Revises: 0005
Create Date: 2026-11-26

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_TRIGGERS = (
    """CREATE TRIGGER patient_search_ai AFTER INSERT ON patient BEGIN
         INSERT INTO patient_search(rowid, search_text) VALUES (new.id, new.search_text);
       END""",
    """CREATE TRIGGER patient_search_ad AFTER DELETE ON patient BEGIN
         INSERT INTO patient_search(patient_search, rowid, search_text) VALUES ('delete', old.id, old.search_text);
       END""",
    """CREATE TRIGGER patient_search_au AFTER UPDATE OF search_text ON patient
       WHEN old.search_text IS NOT new.search_text BEGIN
         INSERT INTO patient_search(patient_search, rowid, search_text) VALUES ('delete', old.id, old.search_text);
         INSERT INTO patient_search(rowid, search_text) VALUES (new.id, new.search_text);
       END""",
)


def create_sqlite_search_triggers() -> None:
    for sql in SQLITE_TRIGGERS:
        op.execute(sql)


def upgrade() -> None:
    op.create_index("ix_charge_status_amount", "charge", ["status", "amount_cents"])
    op.execute("CREATE INDEX ix_patient_patient_id_lower ON patient (lower(patient_id))")
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE patient_search USING fts5("
            "search_text, content='patient', content_rowid='id', tokenize='trigram')"
        )
        op.execute("INSERT INTO patient_search(patient_search) VALUES ('rebuild')")
        create_sqlite_search_triggers()
        return
    conn = op.get_bind()
    schema = conn.exec_driver_sql(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_trgm'"
    ).scalar()
    if schema is None:
        # In `public` where there is one, so dropping some other schema never drops the extension.
        has_public = conn.exec_driver_sql("SELECT 1 FROM pg_namespace WHERE nspname = 'public'").scalar()
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm" + (" WITH SCHEMA public" if has_public else ""))
        schema = conn.exec_driver_sql(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
            " WHERE e.extname = 'pg_trgm'"
        ).scalar_one()
    quoted = '"' + str(schema).replace('"', '""') + '"'
    op.execute(f"CREATE INDEX ix_patient_search_text_trgm ON patient USING gin (search_text {quoted}.gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("patient_search_ai", "patient_search_ad", "patient_search_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS patient_search")
    else:
        op.execute("DROP INDEX IF EXISTS ix_patient_search_text_trgm")
    op.execute("DROP INDEX IF EXISTS ix_patient_patient_id_lower")
    op.drop_index("ix_charge_status_amount", table_name="charge")
