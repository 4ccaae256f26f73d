"""`list --format jsonl|json|tsv|csv`: the fast path (rows formatted by the query, read from the
DBAPI cursor) writes exactly what the generic path (`emit` over `list_sets`) writes, on SQLite
and PostgreSQL, for every kind of value: unicode, nulls, formula-like text, tabs and newlines,
amounts of every sign and size, times with and without a next send."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from outreach_cli.cli import cmd_list
from outreach_cli.store.database import Store
from tests.conftest import Cli
from tests.helpers import PATIENT_HEADER, patient, write_csv

FORMATS = ("jsonl", "json", "tsv", "csv")

NAMES = [
    ("José", "Núñez"),
    ("日本", "太郎"),
    ("Zoë 🎉", 'O\'Brien "Jr"'),
    ("=cmd", "-2+3"),
    ("", "@mention"),
    ("Tab\there", "Line\nbreak\r"),
    ("+1", "back\\slash"),
    ("Ann", "Lee"),
]


@pytest.fixture
def data(cli: Cli, tmp_path: Path) -> Cli:
    pts = [patient(f"P-{i}", email="" if i % 3 == 0 else f"p{i}@example.com") for i in range(len(NAMES))]
    pts[4]["phone"] = ""
    pts[5]["patient_id"] = "=HYPERLINK(1)"  # set 6
    write_csv(tmp_path / "p.csv", pts, PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    amounts = ["0.01", "1.00", "1234567.89", "99.99", "0.10", "42.00", "7.07", "100.00"]
    charges = [
        {"charge_id": f"C{i}", "patient_id": p["patient_id"], "amount": a}
        for i, (p, a) in enumerate(zip(pts, amounts, strict=True))
    ]
    write_csv(tmp_path / "c.csv", charges)
    cli.ok("import", "charges", str(tmp_path / "c.csv"))
    cli.ok("act", "pause", "2", "--reason", 'disputed\t"bill"\nsee =notes')
    cli.ok("act", "cancel", "3", "--yes", "--reason", "-moved away")
    store = Store(cli.db)
    with store.engine.begin() as conn:
        for i, (first, last) in enumerate(NAMES):  # as stored, whatever the importer would make of them
            conn.execute(
                text("UPDATE patient SET first_name = :f, last_name = :l WHERE id = :i"),
                {"f": first, "l": last, "i": i + 1},
            )
        conn.execute(text("UPDATE invoice_set SET amount_outstanding_cents = -5 WHERE id = 4"))
        conn.execute(text("UPDATE invoice_set SET amount_outstanding_cents = 0, next_methods = '' WHERE id = 5"))
        conn.execute(text("UPDATE invoice_set SET next_step = '@step\tone', status_reason = '+x' WHERE id = 6"))
        conn.execute(text("UPDATE patient SET needs_review = true WHERE id = 7"))
        if store.dialect == "sqlite":  # a time stored in another text form than the tool writes
            conn.execute(text("UPDATE invoice_set SET created_at = '2026-03-01 10:11:12' WHERE id = 7"))
    store.engine.dispose()
    return cli


def _generic(cli: Cli, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    with monkeypatch.context() as m:
        m.setattr(cmd_list, "EXPORT_FORMATS", ())
        return cli.ok("list", *args).stdout


@pytest.mark.parametrize("fmt", FORMATS)
def test_fast_path_equals_generic_path(data: Cli, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    for args in (
        ("--status", "all", "--format", fmt),
        ("--format", fmt),  # open sets, by next send (two ordered scans)
        ("--status", "all", "--sort", "amount", "--desc", "--format", fmt, "--limit", "3", "--offset", "2"),
        ("--search", "josé", "--format", fmt),
        ("--created", "2026-03-01..2026-03-03", "--status", "all", "--format", fmt),
        ("--status", "failed", "--format", fmt),  # no rows
    ):
        fast = data.ok("list", *args).stdout
        assert fast == _generic(data, monkeypatch, *args), args
    everything = data.ok("list", "--status", "all", "--format", fmt).stdout
    assert "José" in everything and "日本" in everything


def test_fast_path_cells(data: Cli) -> None:
    """What the comparison above relies on, checked directly."""
    import csv
    import io
    import json

    rows = [json.loads(x) for x in data.ok("list", "--status", "all", "--format", "jsonl").stdout.splitlines()]
    assert len(rows) == 8
    by_id = {r["id"]: r for r in rows}
    assert by_id[4]["amount_outstanding"] == "-0.05" and by_id[3]["amount_outstanding"] == "1234567.89"
    assert by_id[2]["status_reason"] == 'disputed\t"bill"\nsee =notes'
    assert by_id[5]["next_methods"] == [] and by_id[7]["needs_review"] is True
    assert by_id[1]["email"] is None and by_id[2]["next_send_at"] is None
    assert all(r["created_at"].endswith("Z") and "T" in r["created_at"] for r in rows)
    tsv = list(
        csv.reader(io.StringIO(data.ok("list", "--status", "all", "--format", "tsv").stdout), dialect="excel-tab")
    )
    cells = {int(r[0]): dict(zip(tsv[0], r, strict=True)) for r in tsv[1:]}
    assert cells[6]["patient_id"] == "'=HYPERLINK(1)"
    assert cells[4]["patient_name"] == "'=cmd -2+3"
    assert cells[2]["status_reason"] == 'disputed "bill" see =notes'
    assert cells[6]["next_step"] == "'@step one" and cells[3]["status_reason"] == "'-moved away"
    assert cells[1]["phone"] == "+16175550100"


def test_stripe_links_take_the_generic_path(data: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach_cli.store import export

    called: list[int] = []
    real = export.export_rows
    monkeypatch.setattr(export, "export_rows", lambda *a, **k: called.append(1) or real(*a, **k))
    data.ok("list", "--status", "all", "--format", "jsonl")
    assert called == [1]
    monkeypatch.setenv("OUTREACH_PAYMENTS_PROVIDER", "stripe")
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    out = data.ok("list", "--status", "all", "--format", "jsonl").stdout
    assert called == [1] and out.count("\n") == 8


def test_spaces_are_what_strip_removes() -> None:
    from outreach_cli.store.export import SPACES

    assert SPACES == "".join(c for c in map(chr, range(0x110000)) if c.isspace())
