"""`act` on many sets at once (IDs in a temporary table, set-based statements), on SQLite and
PostgreSQL: all-or-nothing, the events in the order given, the dry run, the ID-stream reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import text

from outreach_cli.domain.idstream import parse_ids, parse_lines
from outreach_cli.store.database import Store
from tests.conftest import Cli
from tests.helpers import PATIENT_HEADER, patient, write_csv

N = 10_000


def _sets(cli: Cli, tmp_path: Path, n: int) -> None:
    pts = [patient(f"P{i:05d}", phone=f"+1617555{i % 10000:04d}", email="") for i in range(n)]
    write_csv(tmp_path / "p.csv", pts, PATIENT_HEADER)
    cli.ok("-q", "import", "patients", str(tmp_path / "p.csv"))
    charges = [{"charge_id": f"C{i:05d}", "patient_id": f"P{i:05d}", "amount": f"{10 + i % 90}.25"} for i in range(n)]
    write_csv(tmp_path / "c.csv", charges)
    cli.ok("-q", "import", "charges", str(tmp_path / "c.csv"))


def _query(cli: Cli, sql: str) -> list[tuple[object, ...]]:
    store = Store(cli.db)
    try:
        with store.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        store.engine.dispose()


def _state(cli: Cli) -> list[tuple[object, ...]]:
    return _query(cli, "SELECT status, count(*) FROM invoice_set GROUP BY status ORDER BY status") + _query(
        cli, "SELECT count(*), max(id) FROM event"
    )


@pytest.mark.parametrize("n", [1_000, pytest.param(N, marks=pytest.mark.slow)], ids=["1000", "10000"])
def test_thousands_of_ids_with_one_unknown_change_nothing(cli: Cli, tmp_path: Path, n: int) -> None:
    _sets(cli, tmp_path, n)
    before = _state(cli)
    ids = [str(i) for i in range(n, 0, -1)]  # every set, in reverse order
    ids[n - 10] = "999999"  # one unknown ID near the end (set 10 is left out)
    r = cli("act", "pause", "-", input="\n".join(ids) + "\n")
    assert r.code == 3, r
    assert r.stdout.splitlines()[1:] == ["999999\tpause\tnot-found\t\t\tno invoice set with this ID"]
    assert r.stderr == (
        f"pause: nothing changed: 1 set is ineligible or not found (999999); {n - 1} would change, 0 unchanged,"
        " 0 ineligible, 1 not found; use --skip-ineligible to apply the rest\n"
    )
    assert _state(cli) == before
    dry = cli("act", "pause", "-", "--dry-run", "--skip-ineligible", input="\n".join(ids))
    assert dry.code == 3 and dry.stdout.count("\tchanged\t") == n - 1 and _state(cli) == before
    assert dry.stderr == f"pause (dry run): {n - 1} would change, 0 unchanged, 0 ineligible, 1 not found\n"
    missing = "999999\tpause\tnot-found\t\t\tno invoice set with this ID"
    changed = [f"{i}\tpause\tchanged\tactive\tpaused\t" for i in ids]
    assert dry.stdout.splitlines()[1:] == [missing if i == "999999" else x for i, x in zip(ids, changed, strict=True)]

    ids[n - 10] = "10"
    r = cli.ok("act", "pause", "-", "--reason", "bulk", "--actor", "ann", input=" ".join(ids))
    assert r.stdout.count("\tpause\tchanged\tactive\tpaused\tbulk") == n
    assert r.stderr == f"pause: {n} changed, 0 unchanged, 0 ineligible, 0 not found\n"
    assert _query(cli, "SELECT status, count(*) FROM invoice_set GROUP BY status") == [("paused", n)]
    events = _query(
        cli,
        "SELECT invoice_set_id, kind, actor, action, from_status, to_status, reason, detail FROM event"
        " WHERE kind = 'action' ORDER BY id",
    )
    assert [e[0] for e in events] == [int(i) for i in ids]  # the order given
    assert {e[1:] for e in events} == {("action", "ann", "pause", "active", "paused", "bulk", None)}
    paused_at = _query(cli, "SELECT count(*) FROM invoice_set WHERE paused_at IS NULL OR next_send_at IS NOT NULL")
    assert paused_at == [(0,)]


def test_some_unchanged_write_off_in_sql(cli: Cli, tmp_path: Path) -> None:
    _sets(cli, tmp_path, 40)
    cli.ok("act", "write-off", "3", "7", "--yes")
    r = cli(
        "act",
        "write-off",
        "-",
        "--yes",
        "--format",
        "jsonl",
        "--reason",
        "small",
        input="\n".join(map(str, range(1, 21))),
    )
    assert r.code == 0, r
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(x["id"], x["result"]) for x in rows] == [
        (i, "unchanged" if i in (3, 7) else "changed") for i in range(1, 21)
    ]
    assert r.stderr == "write-off: 18 changed, 2 unchanged, 0 ineligible, 0 not found\n"
    events = _query(
        cli,
        "SELECT invoice_set_id, from_status, to_status, reason, detail FROM event WHERE action = 'write-off'"
        " AND reason = 'small' ORDER BY id",
    )
    changed = [i for i in range(1, 21) if i not in (3, 7)]
    assert [e[0] for e in events] == changed
    amounts = {i: 1000 + (i - 1) % 90 * 100 + 25 for i in changed}
    assert [json.loads(str(e[4])) for e in events] == [{"written_off_cents": amounts[i]} for i in changed]
    assert all(e[4] == json.dumps({"written_off_cents": amounts[e[0]]}) for e in events)  # type: ignore[index]
    assert _query(cli, "SELECT count(*) FROM charge WHERE status = 'written-off' AND outstanding_cents = 0") == [(20,)]
    assert _query(cli, "SELECT sum(amount_outstanding_cents) FROM invoice_set WHERE id <= 20") == [(0,)]
    assert _query(cli, "SELECT count(*) FROM invoice_set WHERE id > 20 AND status = 'written-off'") == [(0,)]


@pytest.mark.parametrize(
    "text",
    [
        "1\n2\n3\n",
        "3 2 1 2 3\r\n007 8\n\n",
        "",
        "  \n",
        "1234567890123456789\n",  # 19 digits: the line reader's error
        "1\t2\n",
        "id\n1\n",
        '{"id": 4}\n5\n',
    ],
)
def test_plain_id_reader_equals_the_line_reader(text: str) -> None:
    from outreach_cli.domain.errors import InvalidInput

    try:
        expected: object = parse_lines(text)
    except InvalidInput as exc:
        expected = str(exc)
    try:
        got: object = parse_ids(text)
    except InvalidInput as exc:
        got = str(exc)
    assert got == expected


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl"])
def test_result_rows_as_emit_writes_them(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    from outreach_cli.cli import cmd_act

    _sets(cli, tmp_path, 6)
    cli.ok("act", "cancel", "2", "--yes")
    cli.ok("act", "pause", "3")
    args = ("act", "pause", "-", "--dry-run", "--skip-ineligible", "--format", fmt)
    for reason in ('=SUM(A1)\t"quoted", with comma\nnext line', "plain", "-5"):
        ids = "\n".join(["1", "2", "3", "4", "99", "5", "6"])
        fast = cli(*args, "--reason", reason, input=ids)
        with monkeypatch.context() as m:
            m.setattr(cmd_act, "ROW_TAIL_FORMATS", ())
            generic = cli(*args, "--reason", reason, input=ids)
        assert fast.code == generic.code == 3
        assert fast.stdout == generic.stdout and fast.stdout.count("\n") == 7 + (fmt != "jsonl")
