"""Keep reads fast after big writes (SPEC section 12, issue 13).

A large import or bulk action leaves SQLite with a big write-ahead log (every read then searches
it) and both databases with planner statistics from before the write. After such a write, in its
own step once the data is committed: SQLite checkpoints the log into the database file and
truncates it, then runs `PRAGMA optimize` (re-analyses what changed enough); PostgreSQL analyses
the tables the write touched and merges the pending entries of the patient search index (a GIN
index queues new entries in a pending list that makes searches slower until it is merged).
"""

from __future__ import annotations

from typing import Any

# Below this many rows a write leaves nothing worth the extra work (a checkpoint also happens on
# its own every 1,000 pages of log).
BIG_WRITE_ROWS = 10_000


def after_big_write(store: Any, tables: list[str], rows: int, *, threshold: int | None = None) -> bool:
    """Checkpoint and refresh statistics when ``rows`` reached ``threshold``. True if it ran.

    Best effort: the write itself is committed already, so a failure here (a reader holding the
    log, a lock) is left for the next big write or SQLite's own automatic checkpoint.
    """
    if rows < (BIG_WRITE_ROWS if threshold is None else threshold):
        return False
    try:
        with store.engine.connect() as conn:
            if store.dialect == "sqlite":
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
                conn.exec_driver_sql("PRAGMA optimize")
            else:
                with conn.begin():
                    for t in tables:
                        conn.exec_driver_sql(f'ANALYZE "{t}"')
                    if "patient" in tables:
                        conn.exec_driver_sql("SELECT gin_clean_pending_list('ix_patient_search_text_trgm'::regclass)")
    except Exception:  # best effort, see the docstring
        return False
    return True
