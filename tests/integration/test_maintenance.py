"""Reads stay fast after big writes (SPEC section 12, issue 13): a bulk action of BIG_WRITE_ROWS
sets or more ends with a checkpoint that empties SQLite's write-ahead log and with fresh planner
statistics (SQLite `PRAGMA optimize`, PostgreSQL `ANALYZE` of the touched tables); a small one
leaves both alone."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from outreach_cli.store import maintenance
from outreach_cli.store.database import Store
from tests.conftest import Cli, initialized
from tests.helpers import PATIENT_HEADER, patient, write_csv


@pytest.fixture
def sets(cli: Cli, tmp_path: Path) -> Cli:
    pats = [patient(f"P{i}", phone=f"(617) 555-01{i:02d}") for i in range(4)]
    cli.ok("import", "patients", str(write_csv(tmp_path / "p.csv", pats, PATIENT_HEADER)))
    rows = [{"charge_id": f"C{i}", "patient_id": f"P{i}", "amount": "10"} for i in range(4)]
    cli.ok("import", "charges", str(write_csv(tmp_path / "c.csv", rows)), "--rule-set", "standard")
    return cli


def _analyze_count(store: Store, table: str) -> int:
    with store.engine.connect() as conn:
        return int(
            conn.exec_driver_sql(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = %s AND schemaname = current_schema()",
                (table,),
            ).scalar_one()
        )


@pytest.mark.parametrize("big", [True, False], ids=["big", "small"])
def test_bulk_action_checkpoints_and_refreshes_statistics(
    sets: Cli, monkeypatch: pytest.MonkeyPatch, big: bool
) -> None:
    monkeypatch.setattr(maintenance, "BIG_WRITE_ROWS", 3 if big else 1_000)
    store = Store(sets.db)
    try:
        if store.dialect == "sqlite":
            path = sets.db.removeprefix("sqlite:///")
            # A reader keeps its connection open, so closing the command's connections does not
            # checkpoint the log on its own: only the checkpoint after the big write empties it.
            reader = sqlite3.connect(path)
            reader.execute("SELECT count(*) FROM invoice_set").fetchone()
            with store.engine.begin() as conn:
                conn.exec_driver_sql("ANALYZE sqlite_schema")  # sqlite_stat1 exists, without invoice_set
                conn.exec_driver_sql("DELETE FROM sqlite_stat1")
            sets.ok("act", "pause", "-", input="1\n2\n3\n4\n")
            wal = Path(path + "-wal").stat().st_size
            stats = reader.execute("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'invoice_set'").fetchone()[0]
            reader.close()
            assert (wal == 0) is big, wal
            assert (stats > 0) is big, stats
        else:
            before = _analyze_count(store, "invoice_set")
            sets.ok("act", "pause", "-", input="1\n2\n3\n4\n")
            assert (_analyze_count(store, "invoice_set") > before) is big
    finally:
        store.engine.dispose()


def test_a_big_import_reads_every_row_for_its_statistics(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sample is the first rows of each index: for `charge.status` (one value here) it would
    say 1,000 rows a value of 1,500; an import's ANALYZE reads them all (a bulk action samples)."""
    monkeypatch.setattr(maintenance, "BIG_WRITE_ROWS", 100)
    monkeypatch.setattr(maintenance, "ANALYSIS_LIMIT", 100)  # what a sample would count on
    n = 1_500
    cli = initialized(sqlite_url)
    pats = [patient(f"P{i}") for i in range(n)]
    cli.ok("import", "patients", str(write_csv(tmp_path / "p.csv", pats, PATIENT_HEADER)))
    rows = [{"charge_id": f"C{i}", "patient_id": f"P{i}", "amount": "10"} for i in range(n)]
    cli.ok("import", "charges", str(write_csv(tmp_path / "c.csv", rows)), "--rule-set", "standard")
    con = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    try:
        (stat,) = con.execute("SELECT stat FROM sqlite_stat1 WHERE idx = 'ix_charge_status_amount'").fetchone()
    finally:
        con.close()
    assert stat.split()[:2] == [str(n), str(n)]  # 1,500 charges, all 1,500 of the one status
