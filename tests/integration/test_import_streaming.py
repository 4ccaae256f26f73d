"""Imports stream (issue 13, SPEC section 12): memory stays bounded by the page size, not the
file, and a file of many pages is still all-or-nothing, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import multiprocessing
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from outreach_cli.imports import parallel
from outreach_cli.imports import stage as import_stage
from outreach_cli.imports.importer import run_import
from tests.conftest import Cli
from tests.helpers import dump, patient, refused, setup_patients, skipped, write_csv

MEMORY_CAP = 3 * 1024 * 1024  # bytes of Python allocations at the peak of the import


@pytest.fixture(autouse=True)
def _workers_forked_from_a_loaded_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """The files here are many pages, so their rows are checked by worker processes. The tool
    starts them with `spawn`: each imports the importer afresh, about a second a pool, and every
    import here starts a pool. Here they come from a `forkserver` that imported it once per run:
    still processes that get the rows and the check pickled and answer in pages (the tool's own
    `spawn` pool runs in tests/unit/test_parallel_checks.py)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["outreach_cli.imports.importer"])

    def get_context(method: str) -> multiprocessing.context.BaseContext:
        assert method == "spawn"  # what the tool asks for
        return ctx

    monkeypatch.setattr(parallel, "multiprocessing", SimpleNamespace(get_context=get_context))


def _charges_file(path: Path, rows: int, patients: int) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["charge_id", "patient_id", "amount", "created_at", "description"])
        for i in range(rows):
            w.writerow([f"C{i:07d}", f"P{i % patients}", f"{1 + i % 500}.25", "2026-01-05", "Visit " + "x" * 100])
    return path


@pytest.mark.slow  # 30,000 charges (the file must exceed the 3 MB cap)
def test_a_file_larger_than_the_memory_cap_imports_within_it(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from outreach_cli.domain.context import Context
    from outreach_cli.domain.scheduling import Window
    from outreach_cli.store.database import Store

    monkeypatch.setattr(import_stage, "PAGE", 500)
    setup_patients(cli, tmp_path, [patient(f"P{i}") for i in range(40)])
    big = _charges_file(tmp_path / "big.csv", 30_000, 40)
    assert big.stat().st_size > MEMORY_CAP  # the file does not fit under the cap
    store = Store(cli.db)
    ctx = Context(now=datetime(2026, 3, 2, 14, tzinfo=UTC), window=Window(), practice_tz="America/New_York")
    # Warm up: lazy imports, statement caches and the checking pool's machinery (a file of more
    # than one page is checked by worker processes) are not the file.
    small = _charges_file(tmp_path / "small.csv", 1_200, 40)
    with small.open("rb") as fh:
        run_import(store, "charges", fh, source="small.csv", ctx=ctx, rule_set="standard", dry_run=True)
    tracemalloc.start()
    try:
        with big.open("rb") as fh:
            report = run_import(store, "charges", fh, source="big.csv", ctx=ctx, rule_set="standard")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        store.engine.dispose()
    assert report.created == 30_000 and report.sets_created == 40
    assert peak < MEMORY_CAP, f"peak {peak / 1e6:.1f} MB for a {big.stat().st_size / 1e6:.1f} MB file"
    assert len(dump(cli.db)["charge"]) == 30_000


def test_bad_rows_near_the_end_of_many_pages_write_nothing(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(import_stage, "PAGE", 100)
    setup_patients(cli, tmp_path, [patient(f"P{i}") for i in range(30)])
    rows = [
        {"charge_id": f"C{i:05d}", "patient_id": f"P{i % 30}", "amount": "10.00", "created_at": "2026-01-05"}
        for i in range(1500)
    ]
    rows[1490]["patient_id"] = "NOPE"  # found by the check against the database, after staging
    rows[1495]["amount"] = "ten"  # found while reading
    rows[1497] = dict(rows[3], amount="11.00")  # the same charge again with other values
    write_csv(tmp_path / "c.csv", rows)
    before = dump(cli.db)
    r = cli("import", "charges", str(tmp_path / "c.csv"))
    assert r.code == 2, r
    f = tmp_path / "c.csv"
    problems = [
        "line 1492: patient_id: unknown patient 'NOPE' (import patients first)",
        "line 1497: amount: not an amount: 'ten' (use dollars like 120.50 or $1,200.00)",
        "line 1499: charge_id: 'C00003' appears again (first on line 5) with other values",
    ]
    assert r.stderr == refused(f, *problems)
    assert dump(cli.db) == before

    r = cli("import", "charges", str(tmp_path / "c.csv"), "--skip-invalid")
    assert r.code == 3, r
    assert r.stderr == skipped(f, *problems) + (
        "charges: 1,497 imported (1,497 created, 0 updated), 0 unchanged, 3 skipped as invalid; 30 new invoice sets\n"
    )
    after = dump(cli.db)
    assert len(after["charge"]) == 1497 and len(after["invoice_set"]) == 30
    for extra, head in ((["--dry-run"], "charges (dry run): 0 would be imported"), ([], "charges: 0 imported")):
        # re-imports change nothing; the staging tables left no trace
        r = cli("import", "charges", str(tmp_path / "c.csv"), "--skip-invalid", *extra)
        assert r.code == 3, r
        assert r.stderr == skipped(f, *problems) + (
            f"{head} (0 created, 0 updated), 1,497 unchanged, 3 skipped as invalid; 0 new invoice sets\n"
        )
    assert dump(cli.db) == after


def test_many_problems_show_the_first_fifty_by_line_and_count_the_rest(cli: Cli, tmp_path: Path) -> None:
    setup_patients(cli, tmp_path, [patient("P1")])
    rows = [{"charge_id": f"C{i}", "patient_id": "P1" if i % 2 else "GONE", "amount": "1"} for i in range(240)]
    write_csv(tmp_path / "c.csv", rows)
    r = cli("import", "charges", str(tmp_path / "c.csv"))
    assert r.code == 2, r
    # Rows 0, 2, 4, ... name GONE: lines 2, 4, ..., 100 are the first fifty; 70 more follow.
    gone = [f"line {n}: patient_id: unknown patient 'GONE' (import patients first)" for n in range(2, 101, 2)]
    assert r.stderr == refused(tmp_path / "c.csv", *gone, more=70)


def test_patients_and_payments_stream_all_or_nothing(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(import_stage, "PAGE", 50)
    people = [patient(f"P{i}", phone=f"(617) 555-{1000 + i:04d}") for i in range(400)]
    people[390]["email"] = "broken@"
    f = write_csv(tmp_path / "p.csv", people, list(people[0]))
    before = dump(cli.db)
    r = cli("import", "patients", str(f))
    email = "line 392: email: not a valid address: There must be something after the @-sign."
    assert (r.code, r.stderr) == (2, refused(f, email))
    assert "broken@" not in r.stderr
    assert dump(cli.db) == before
    people[390]["email"] = ""
    write_csv(tmp_path / "p.csv", people, list(people[0]))
    cli.ok("import", "patients", str(f))
    assert len(dump(cli.db)["patient"]) == 400
    write_csv(tmp_path / "c.csv", [{"charge_id": f"C{i}", "patient_id": f"P{i}", "amount": "20"} for i in range(400)])
    cli.ok("import", "charges", str(tmp_path / "c.csv"))
    pays = [{"payment_id": f"Y{i}", "patient_id": f"P{i}", "amount": "20"} for i in range(400)]
    pays[399]["charge_id"] = "C0"  # another patient's charge
    write_csv(tmp_path / "y.csv", pays, ["payment_id", "patient_id", "amount", "charge_id"])
    before = dump(cli.db)
    r = cli("import", "payments", str(tmp_path / "y.csv"))
    y = tmp_path / "y.csv"
    other = "line 401: charge_id: charge 'C0' belongs to another patient"
    assert (r.code, r.stderr) == (2, refused(y, other))
    assert dump(cli.db) == before
    r = cli("import", "payments", str(tmp_path / "y.csv"), "--skip-invalid")
    assert (r.code, r.stderr) == (
        3,
        skipped(y, other) + "payments: 399 imported (399 created, 0 updated), 0 unchanged, 1 skipped as invalid\n",
    )
    statuses = dump(cli.db)["invoice_set"]
    assert len(statuses) == 400


def test_stdin_is_streamed_too(cli: Cli, tmp_path: Path) -> None:
    setup_patients(cli, tmp_path, [patient("P1")])
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(["charge_id", "patient_id", "amount"])
    for i in range(300):
        w.writerow([f"C{i}", "P1", "1.00"])
    r = cli.ok("import", "charges", "-", "--input-format", "csv", input=text.getvalue())
    assert r.stderr == "charges: 300 imported (300 created, 0 updated), 0 unchanged; 1 new invoice set\n"


def test_rows_into_a_table_with_an_insert_trigger_go_many_to_a_statement(sqlite_url: str, tmp_path: Path) -> None:
    """SQLite opens a statement journal for every execution of a statement that fires a trigger
    (the search index's on `patient`, the tally's on `invoice_set`): an import writes those rows
    200 to an INSERT, not one per execution, and every row arrives, in order."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from outreach_cli.imports.stage import MULTI_ROWS
    from outreach_cli.store.database import Store
    from tests.conftest import Cli
    from tests.helpers import PATIENT_HEADER, patient, write_csv

    cli = Cli(sqlite_url)
    cli.ok("init")
    n = 2 * MULTI_ROWS + 7
    write_csv(tmp_path / "p.csv", [patient(f"P{i:04d}") for i in range(n)], PATIENT_HEADER)
    write_csv(
        tmp_path / "c.csv", [{"charge_id": f"C{i}", "patient_id": f"P{i:04d}", "amount": "10.00"} for i in range(n)]
    )
    runs: dict[str, list[int]] = {"patient": [], "invoice_set": []}

    def grab(conn: object, cursor: object, statement: str, params: object, context: object, many: bool) -> None:
        for table, got in runs.items():
            if statement.startswith(f"INSERT INTO {table} ("):
                got.append(statement.count("), (") + 1)

    event.listen(Engine, "before_cursor_execute", grab)
    try:
        cli.ok("import", "patients", str(tmp_path / "p.csv"))
        cli.ok("import", "charges", str(tmp_path / "c.csv"), "--rule-set", "standard")
    finally:
        event.remove(Engine, "before_cursor_execute", grab)
    assert runs == {"patient": [MULTI_ROWS, MULTI_ROWS, 7], "invoice_set": [MULTI_ROWS, MULTI_ROWS, 7]}
    store = Store(sqlite_url)
    try:
        with store.read() as conn:
            got = conn.exec_driver_sql(
                "SELECT p.patient_id, s.id FROM invoice_set s JOIN patient p ON p.id = s.patient_pk ORDER BY p.id"
            ).all()
    finally:
        store.engine.dispose()
    assert [r[0] for r in got] == [f"P{i:04d}" for i in range(n)]
    assert [r[1] for r in got] == list(range(1, n + 1))
