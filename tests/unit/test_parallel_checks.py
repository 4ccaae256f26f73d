"""A big import's rows are checked by worker processes (imports/parallel.py): the staged rows and
the problems must be exactly those of checking them here, in file order."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from outreach_cli.imports.importer import _RowCheck
from outreach_cli.imports.parallel import checked_batches
from outreach_cli.imports.readers import Record


def _records(n: int) -> list[Record]:
    out = []
    for i in range(n):
        phone = "(617) 555-01" if i % 11 == 3 else f"(617) 200-{i:04d}"  # every 11th is too short
        email = "ann@@example.com" if i % 13 == 5 else f"ann{i}@Example.COM"  # every 13th is bad
        state = "MA" if i % 17 else "ZZ"  # every 17th is not a state
        values = {"patient_id": f"P{i}", "first_name": "Ann", "last_name": f"Lee{i}", "phone": phone}
        values |= {"email": email, "state": state}
        out.append(Record(line=i + 2, values=values))
    return out


def _run(workers: int) -> tuple[list[tuple[object, ...]], list[str]]:
    check = _RowCheck("patients", ZoneInfo("America/New_York"), datetime(2026, 3, 2, tzinfo=UTC))
    errs: list[str] = []
    rows = [r for batch in checked_batches(iter(_records(200)), check, errs, workers=workers, batch=7) for r in batch]
    return rows, errs


def test_worker_processes_check_rows_exactly_as_one_process_does() -> None:
    rows_here, errs_here = _run(workers=1)
    rows_pool, errs_pool = _run(workers=2)
    assert rows_pool == rows_here
    assert errs_pool == errs_here
    bad = {i for i in range(200) if i % 11 == 3 or i % 13 == 5 or i % 17 == 0}
    assert [r[0] for r in rows_here] == [i + 2 for i in range(200) if i not in bad]  # file order, lines
    assert len({e.split(":")[0] for e in errs_here}) == len(bad)
    assert errs_here == sorted(errs_here, key=lambda e: int(e.split(":")[0].split()[1]))  # in line order


def test_a_small_file_starts_no_processes() -> None:
    import multiprocessing

    check = _RowCheck("patients", ZoneInfo("America/New_York"), datetime(2026, 3, 2, tzinfo=UTC))
    before = multiprocessing.active_children()
    errs: list[str] = []
    batches = list(checked_batches(iter(_records(5)), check, errs, workers=4, batch=7))
    assert len(batches) == 1 and multiprocessing.active_children() == before
