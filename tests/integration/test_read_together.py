"""`Store.read_together`: connections that read one snapshot, for the report's reads side by side.
On SQLite their read transactions begin under the write lock, held for a moment and released
before the reads; a writer at work leaves one connection, without waiting. On PostgreSQL they import the first
one's exported snapshot. The report read side by side equals the one read in turn."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from outreach_cli.domain.report import Options, Report
from outreach_cli.store.database import Store, sqlite_path
from outreach_cli.store.models import invoice_set_t
from outreach_cli.store.report_queries import read_report
from tests.conftest import Cli
from tests.helpers import patient, seed_patients, write_csv

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _owed(conn: object) -> int:
    return int(conn.execute(select(func.sum(invoice_set_t.c.owed_cents))).scalar_one())  # type: ignore[attr-defined]


def test_the_connections_read_one_snapshot_and_leave_writers_free(sqlite_cli: Cli) -> None:
    store = Store(sqlite_cli.db)
    path = sqlite_path(sqlite_cli.db)
    assert path
    with store.read_together(4) as conns:
        assert len(conns) == 4 and len({id(c) for c in conns}) == 4
        # The lock is released before the reads: a writer that will not wait writes now.
        writer = sqlite3.connect(path, timeout=0)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE invoice_set SET owed_cents = owed_cents + 100")
        writer.commit()
        writer.close()
        # Each began its snapshot before the write: none sees it.
        assert [_owed(c) for c in conns] == [3 * 25000] * 4
    with store.read() as conn:
        assert _owed(conn) == 3 * 25000 + 300


def test_a_writer_at_work_leaves_one_connection_at_once(sqlite_cli: Cli) -> None:
    path = sqlite_path(sqlite_cli.db)
    assert path
    writer = sqlite3.connect(path, timeout=0)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with Store(sqlite_cli.db).read_together(4) as conns:
            assert len(conns) == 1
            assert _owed(conns[0]) == 3 * 25000
    finally:
        writer.rollback()
        writer.close()


def test_postgresql_connections_share_the_first_ones_snapshot() -> None:
    from tests.conftest import _reset_pg, initialized, pg_url_or_skip

    url = pg_url_or_skip()
    _reset_pg(url)
    cli = initialized(url)
    store = Store(cli.db)
    with store.read_together(4) as conns:
        assert len(conns) == 4
        sql = "SELECT count(*) FROM rule_set WHERE name = 'xgentle'"
        with store.write() as w:  # committed after the snapshot, before the others' first read
            w.exec_driver_sql("UPDATE rule_set SET name = 'x' || name WHERE name = 'gentle'")
        assert [c.exec_driver_sql(sql).scalar_one() for c in conns] == [0] * 4
    with store.read() as conn:
        assert conn.exec_driver_sql(sql).scalar_one() == 1


@pytest.fixture
def sqlite_cli(sqlite_url: str, tmp_path: Path) -> Cli:
    """Three sets of $250.00 each."""
    from tests.conftest import initialized

    cli = initialized(sqlite_url)
    people = [patient(p, phone=f"(617) 555-01{i:02d}") for i, p in enumerate("ABC")]
    seed_patients(cli, tmp_path, people, rule_set="standard", amount="250.00", now=z(T0))
    return cli


def test_the_report_read_side_by_side_equals_the_one_read_in_turn(sqlite_cli: Cli, tmp_path: Path) -> None:
    for day in (0, 8):
        sqlite_cli.ok("run-outreach", "--format", "json", now=z(T0 + timedelta(days=day, minutes=5)))
    pays = [{"payment_id": "P1", "patient_id": "A", "amount": "250.00", "paid_at": z(T0 + timedelta(days=1))}]
    sqlite_cli.ok("import", "payments", str(write_csv(tmp_path / "p.csv", pays)), now=z(T0 + timedelta(days=9)))
    store = Store(sqlite_cli.db)
    with store.write() as conn:  # an A/B arm: the experiment's reads too
        conn.execute(update(invoice_set_t).where(invoice_set_t.c.id == 2).values(experiment="x", arm="a"))
    opts = Options(T0 - timedelta(days=30), T0 + timedelta(days=10), ZoneInfo("America/New_York"), experiment=True)
    docs = []
    for n in (1, 4):
        with store.read_together(n) as conns:
            assert len(conns) == n
            data = read_report(
                conns[0],
                since=opts.since,
                until=opts.until,
                tz=opts.tz,
                by=opts.by,
                experiment=True,
                attribution="last",
                attribution_days=7,
                others=conns[1:],
            )
        docs.append(Report(data, opts).as_dict())
    assert docs[0] == docs[1]
    assert (docs[0]["total"]["collected_cents"], docs[0]["total"]["sets_entered"]) == (25000, 3)
