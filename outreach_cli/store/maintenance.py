"""Keep reads fast after big writes (SPEC section 12, issue 13).

A large import or bulk action leaves SQLite with a big write-ahead log (every read then searches
it) and both databases with planner statistics from before the write. After such a write, in its
own step once the data is committed: SQLite analyses the tables the write touched (sampled),
then checkpoints the log into the database file and truncates it; PostgreSQL analyses
the tables the write touched and merges the pending entries of the patient search index (a GIN
index queues new entries in a pending list that makes searches slower until it is merged).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from outreach_cli.store.database import Store

# Below this many rows a write leaves nothing worth the extra work (a checkpoint also happens on
# its own every 1,000 pages of log).
BIG_WRITE_ROWS = 10_000
# Rows per index SQLite's ANALYZE reads after a big bulk action (`PRAGMA analysis_limit`); 0 = all.
# A sample is the *first* rows of each index, so an index led by a column of few values (a status)
# looks selective when it is not: after a million charges were imported with a sample of 1,000,
# SQLite took `charge.status` (1,001 rows a value, it thought; a million in fact) over the patient
# index to find a payment's charges, and the payments import read 67 GB. Imports therefore read
# every row (0.3-0.9 s a table at a million rows); a bulk action, which moves statuses between
# values that are there already, samples.
ANALYSIS_LIMIT = 1_000


def after_big_write(
    store: Store, tables: list[str], rows: int, *, threshold: int | None = None, sample: bool = True
) -> bool:
    """Checkpoint and refresh statistics when ``rows`` reached ``threshold`` (every row of the
    tables read unless ``sample``). True if it ran.

    Best effort: the write itself is committed already, so a failure here (a reader holding the
    log, a lock) is left for the next big write or SQLite's own automatic checkpoint.
    """
    if rows < (BIG_WRITE_ROWS if threshold is None else threshold):
        return False
    try:
        with store.engine.connect() as conn:
            if store.dialect == "sqlite":
                # `PRAGMA optimize` on a fresh connection (before SQLite 3.46) only looks at tables
                # this connection queried, so none: analyse the touched tables (see ANALYSIS_LIMIT),
                # then checkpoint (after, so the new statistics leave the log too).
                conn.exec_driver_sql(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT if sample else 0}")
                for t in tables:
                    conn.exec_driver_sql(f'ANALYZE "{t}"')
                conn.commit()
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            else:
                with conn.begin():
                    for t in tables:
                        conn.exec_driver_sql(f'ANALYZE "{t}"')
                    if "patient" in tables:
                        conn.exec_driver_sql("SELECT gin_clean_pending_list('ix_patient_search_text_trgm'::regclass)")
    except Exception:  # best effort, see the docstring
        return False
    return True
