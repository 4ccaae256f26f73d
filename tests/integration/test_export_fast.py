"""`list --format jsonl|json|tsv|csv`: the fast path (rows formatted by the query, read from the
DBAPI cursor) writes exactly what the generic path (`emit` over `list_sets`) writes, on SQLite
and PostgreSQL, for every kind of value: unicode, nulls, formula-like text, tabs and newlines,
amounts of every sign and size, times with and without a next send."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from outreach_cli.cli import cmd_list
from outreach_cli.domain.csvsafe import flat, neutralize
from outreach_cli.store.database import Store
from outreach_cli.store.queries import LIST_COLUMNS
from tests.conftest import Cli, prepared
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
def data(db_url: str) -> Cli:
    """Eight sets with awkward names, amounts and reasons (built once per run and database kind,
    a copy for each test)."""
    return prepared(db_url, "export-names", _build_data)


def _build_data(cli: Cli, tmp_path: Path) -> None:
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
        ("--status", "all", "--desc", "--format", fmt),
        ("--status", "paused,cancelled", "--format", fmt),  # a quarter of the sets: by scan (SQLite)
        ("--status", "paused", "--format", fmt),  # an eighth: through the indexes
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
    fast = "pg_json_lines" if data.db.startswith("postgresql") else "export_rows"  # JSON: COPY on PostgreSQL
    real = getattr(export, fast)
    monkeypatch.setattr(export, fast, lambda *a, **k: called.append(1) or real(*a, **k))
    data.ok("list", "--status", "all", "--format", "jsonl")
    assert called == [1]
    monkeypatch.setenv("OUTREACH_PAYMENTS_PROVIDER", "stripe")
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_x")
    out = data.ok("list", "--status", "all", "--format", "jsonl").stdout
    assert called == [1] and out.count("\n") == 8


def test_spaces_are_what_strip_removes() -> None:
    from outreach_cli.store.export import SPACES

    assert SPACES == "".join(c for c in map(chr, range(0x110000)) if c.isspace())


# Values a cell may hold that the csv module quotes, `flat` changes or `neutralize` marks, and
# ones it writes as they are: the fast path takes a line as the query wrote it only when no cell
# needs any of that, and makes the other rows in Python.
AWKWARD = [
    "a,b",
    'say "hi"',
    '"',
    ",",
    "line\nbreak",
    "tab\there",
    "cr\rend",
    "end\n",
    "=1+2",
    "+x",
    "-5",
    "-y",
    "@at",
    "\t=tab first",
    "Ünïcødé",
    "日本 太郎",
    "",
    " lead",
    "trail ",
    "\u3000wide\u3000",
    "nb\xa0sp",
    "o'neil",
    'x""y',
    "50%",
]
TEXT_COLS = ["patient_id", "first_name", "last_name", "phone", "email", "next_step", "next_methods", "status_reason"]
PLAIN = dict(
    zip(TEXT_COLS, ["P", "Ann", "Lee", "+16175550100", "a@example.com", "Statement", "sms,email", "Late"], strict=True)
)
MORE = {
    "phone": ["-12", "+1 617", "+1,2", "=1", '+12"3', "+", None, "+0012", "+١٢٣"],
    "email": [None],
    "next_methods": ["sms", "email,sms,letter", None, 'a"b', "x\ty", "=sms", 'sms,"x"', "+1"],
    "status_reason": [None],
}


def _awkward_rows() -> list[dict[str, str | None]]:
    """Cell values, a row each: plain ones; every awkward value alone in every text column; then
    several at random (seeded)."""
    import random

    rnd = random.Random(7)
    singles = [(c, v) for c in TEXT_COLS for v in AWKWARD + MORE.get(c, [])]
    rows = [dict(PLAIN) for _ in range(10)] + [{**PLAIN, c: v} for c, v in singles]
    for _ in range(40):
        rows.append({c: rnd.choice(AWKWARD + MORE.get(c, [])) if rnd.random() < 0.4 else v for c, v in PLAIN.items()})
    for i, row in enumerate(rows):
        row["patient_id"] = f"{row['patient_id']}{i}"  # unique
        row["rule_set"] = ["standard", "gentle", "final-notice"][i % 3] if i >= len(rows) - 40 else "gentle"
    return rows


@pytest.fixture
def awkward(db_url: str) -> Cli:
    """A set for each of `_awkward_rows`, its text cells updated to them (as stored, whatever
    the importer would make of them); two rule sets renamed: one whose cell is neutralized, one
    whose cell is quoted (only the random rows use that one). Built once per run and database
    kind, a copy for each test."""
    return prepared(db_url, "export-awkward", _build_awkward)


def _build_awkward(cli: Cli, tmp_path: Path) -> None:
    rows = _awkward_rows()
    pts = [patient(f"A{i}") for i in range(len(rows))]
    write_csv(tmp_path / "p.csv", pts, PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    amounts = [
        {"charge_id": f"C{i}", "patient_id": p["patient_id"], "amount": f"{i + 1}.00"} for i, p in enumerate(pts)
    ]
    write_csv(tmp_path / "c.csv", amounts)
    cli.ok("import", "charges", str(tmp_path / "c.csv"))
    patient_sql = ", ".join(f"{c} = :{c}" for c in TEXT_COLS[:5])
    set_sql = ", ".join(f"{c} = :{c}" for c in TEXT_COLS[5:])
    store = Store(cli.db)
    with store.engine.begin() as conn:
        for i, row in enumerate(rows):
            pk = {"pid": f"A{i}"}
            conn.execute(
                text(
                    f"UPDATE invoice_set SET {set_sql}, rule_set_id = (SELECT id FROM rule_set"
                    " WHERE name = :rule_set) WHERE patient_pk = (SELECT id FROM patient"
                    " WHERE patient_id = :pid)"
                ),
                {**row, **pk},
            )
            conn.execute(text(f"UPDATE patient SET {patient_sql} WHERE patient_id = :pid"), {**row, **pk})
        if store.dialect == "sqlite":  # (PostgreSQL text cannot hold a NUL character)
            for k, c in enumerate(TEXT_COLS):  # one plain row each
                table, pk = ("patient", "id") if c in TEXT_COLS[:5] else ("invoice_set", "patient_pk")
                conn.execute(text(f"UPDATE {table} SET {c} = 'nul' || char(0) || {c} WHERE {pk} = :pk"), {"pk": k + 2})
        conn.execute(text("UPDATE rule_set SET name = '=gentle' WHERE name = 'gentle'"))
        conn.execute(text("UPDATE rule_set SET name = 'final,\"notice\"' WHERE name = 'final-notice'"))
    store.engine.dispose()


def _with_csv_module(rows: list[dict[str, Any]], delim: str) -> str:
    """The TSV/CSV text of `list`'s rows written by the csv module, each cell as `emit` makes it
    (`neutralize(flat(value))`)."""
    buf = io.StringIO()
    w = csv.writer(buf, dialect="excel-tab" if delim == "\t" else "excel", lineterminator="\n")
    w.writerow(LIST_COLUMNS)
    w.writerows([neutralize(flat(row[c])) for c in LIST_COLUMNS] for row in rows)
    return buf.getvalue()


def _needs_python(row: dict[str, Any], delim: str) -> tuple[bool, bool]:
    """Whether a row's line must be made in Python (a text cell that `flat` changes, or that the
    csv module quotes or `neutralize` marks, but for next_methods, quoted by the query, and the
    rule set, whose cell comes made), and whether it may be (a cell starts like a formula: the
    query does not tell a number from one)."""
    must = may = False
    for c in ("status", "patient_id", "patient_name", "phone", "email", "next_step", "next_methods", "status_reason"):
        value, cell = row[c], flat(row[c])
        must = must or cell != (",".join(value) if isinstance(value, list) else value or "")
        must = must or neutralize(cell) != cell or "\0" in cell
        must = must or (c != "next_methods" and ('"' in cell or delim in cell))
        plain_phone = c == "phone" and re.fullmatch(r"[+-][0-9]+", cell) is not None
        may = may or (cell[:1] in ("=", "+", "-", "@") and not plain_phone)
    rule_set = neutralize(row["rule_set"])
    return must or '"' in rule_set or delim in rule_set, may


@pytest.mark.parametrize("fmt", ["tsv", "csv"])
def test_awkward_cells(awkward: Cli, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """Every awkward value in every text column: the fast path writes what the csv module writes
    for the rows `list` gives (and what the generic path writes), and makes in Python the rows
    that need it, not the others."""
    from outreach_cli.store import export

    delim = "\t" if fmt == "tsv" else ","
    args = ("--status", "all", "--sort", "amount", "--format")
    rows = [json.loads(x) for x in _generic(awkward, monkeypatch, *args, "jsonl").splitlines()]
    in_python: list[int] = []
    real = export._with_cells
    monkeypatch.setattr(export, "_with_cells", lambda c, d, b, ids: in_python.extend(ids) or real(c, d, b, ids))
    fast = awkward.ok("list", *args, fmt).stdout
    assert fast == _with_csv_module(rows, delim)
    assert fast == _generic(awkward, monkeypatch, *args, fmt)
    if not awkward.db.startswith("postgresql"):  # (PostgreSQL quotes and flattens in the query)
        must = {r["id"] for r in rows if _needs_python(r, delim)[0]}
        may = {r["id"] for r in rows if _needs_python(r, delim)[1]}
        assert must <= set(in_python) <= must | may
        assert len(rows) - len(must | may) >= 100  # most rows are taken as the query wrote them


@pytest.mark.parametrize(
    ("args", "scan"),
    [
        (("--status", "all"), True),
        ((), True),  # the open sets: six of the eight
        (("--status", "paused,cancelled"), True),  # a quarter
        (("--status", "paused"), False),
        (("--status", "all", "--limit", "5"), False),
        (("--status", "all", "--search", "ann"), False),
        (("--status", "all", "--rule-set", "standard"), False),
        (("--status", "all", "--sort", "amount"), False),
    ],
)
def test_a_broad_export_reads_the_table_in_its_order_and_sorts(
    sqlite_url: str, args: tuple[str, ...], scan: bool
) -> None:
    """SQLite (PostgreSQL plans for itself): an export of a quarter of the sets or more, by status
    alone, reads the table in its own order and sorts the scheduled sets (no random read per set
    through the next-send index); anything narrower keeps to the indexes."""
    from tests.integration.plans import captured, explain

    data = prepared(sqlite_url, "export-names", _build_data)
    with captured() as got:
        data.ok("list", *args, "--format", "jsonl")
    plan = [ln for st in explain(data.db, got) for ln in st.plan]
    scanned = "SCAN invoice_set" in plan
    assert scanned == scan, plan
    if scan:
        assert any("TEMP B-TREE FOR ORDER BY" in ln for ln in plan), plan
        assert not any("ix_invoice_set_next_send_at" in ln for ln in plan), plan
