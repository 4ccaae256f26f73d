"""A new user's first hour (findings D2, D8, D10, D11, D14, D17, D18, D20, D23 and the rough
edges of summaries and waiting): each test is named after the finding it covers."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from outreach_cli.cli.context import default_actor
from outreach_cli.domain.rulesets import shipped_dir
from tests.conftest import Cli, Terminal, copy_built_once, write
from tests.helpers import (
    PATIENT_HEADER,
    csv_text,
    doctor_database,
    doctor_output,
    hide_secret,
    patient,
    refused,
    skipped,
    write_csv,
)

PY = sys.executable


def seed(cli: Cli, tmp_path: Path, n: int) -> None:
    write_csv(tmp_path / "p.csv", [patient(f"P{i:05d}", first_name=f"Pat{i}") for i in range(n)], PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    write_csv(
        tmp_path / "c.csv",
        [{"charge_id": f"C{i:05d}", "patient_id": f"P{i:05d}", "amount": "100.00"} for i in range(n)],
    )
    cli.ok("import", "charges", str(tmp_path / "c.csv"))


def patient_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT patient_id FROM patient ORDER BY patient_id")]


def demo_refusal(path: Path) -> str:
    return (
        f"error: {path} exists and was not created by `outreach demo`; the demo will not replace it "
        "(choose another --db, or pass --force to replace it and lose its data)\n"
    )


def fake_terminal(cli: Cli, stdin: Any, *, stdin_tty: bool = True) -> None:
    """stdin and stderr are a terminal (a person can answer a prompt); stdout is captured."""
    cli.terminal = Terminal(stdin=stdin_tty, stderr=True, no_color_env=True, stdin_stream=stdin)


# --- D2: demo never replaces a database it did not create ------------------------------------


def test_D2_demo_refuses_a_database_it_did_not_create(tmp_path: Path) -> None:
    real = tmp_path / "prod.db"
    c = Cli(str(real))
    c.ok("init")
    seed(c, tmp_path, 3)
    before = patient_ids(real)

    r = c("demo", "--patients", "5", "--days", "1")
    assert (r.code, r.stdout, r.stderr) == (2, "", demo_refusal(real)), r
    assert patient_ids(real) == before  # the patients are still there
    assert not list(tmp_path.glob(".prod.db.demo-building*"))

    # A text file is not replaced either.
    notes = write(tmp_path / "notes.db", "my notes\n")
    r = Cli(str(notes))("demo", "--patients", "5", "--days", "1")
    assert (r.code, r.stderr) == (2, demo_refusal(notes)) and notes.read_text() == "my notes\n"

    # --force replaces it; a demo database is then replaced by the next demo without --force.
    c.ok("demo", "--patients", "5", "--days", "1", "--force")
    assert before == ["P00000", "P00001", "P00002"]
    assert patient_ids(real) == [f"P00000{i}" for i in range(1, 6)]  # only the demo's
    c.ok("demo", "--patients", "4", "--days", "1")
    assert patient_ids(real) == [f"P00000{i}" for i in range(1, 5)]


def test_D2_interrupted_demo_leaves_no_half_built_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach_cli.cli import cmd_demo

    def interrupted(*_a: Any, **_kw: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cmd_demo, "simulate", interrupted)
    fresh = tmp_path / "demo.db"
    r = Cli(str(fresh))("demo", "--patients", "5", "--days", "1")
    assert (r.code, r.stdout, r.stderr) == (130, "", "\ninterrupted\n")
    assert not fresh.exists()  # nothing that looks like a valid (empty) demo
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    monkeypatch.undo()
    Cli(str(fresh)).ok("demo", "--patients", "3", "--days", "1")
    before = patient_ids(fresh)
    monkeypatch.setattr(cmd_demo, "simulate", interrupted)
    r = Cli(str(fresh))("demo", "--patients", "7", "--days", "1")
    assert (r.code, r.stdout, r.stderr) == (130, "", "\ninterrupted\n")
    assert patient_ids(fresh) == before  # the earlier demo is untouched
    assert sorted(p.name for p in tmp_path.iterdir() if "building" in p.name) == []


# --- D8: a reader that stops early (`| head`) ----------------------------------------------------


@pytest.fixture
def demo_db(tmp_path: Path) -> Path:
    """A copy of one demo database (40 patients, 2 days), built once per run."""
    path = tmp_path / "demo.db"
    copy_built_once("demo-40x2.db", lambda p: Cli(str(p)).ok("demo", "--patients", "40", "--days", "2"), path)
    return path


@pytest.mark.parametrize(
    "command",
    ["list --format ids", "list --status all", "audit", "forecast", "rulesets list", "show 5", "metrics --all"],
)
def test_D8_head_exits_0_silently(demo_db: Path, command: str) -> None:
    for reader in ("head -1", "true"):  # `true` never reads: every write meets a closed pipe
        script = f"set -o pipefail; {PY} -m outreach_cli --db {demo_db} {command} | {reader} >/dev/null"
        r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
        assert (r.returncode, r.stderr) == (0, ""), (command, reader, r)


def test_D8_head_feeding_act_in_a_pipefail_script(demo_db: Path) -> None:
    script = (
        f"set -o pipefail; {PY} -m outreach_cli --db {demo_db} list --status active --format ids | head -n 2 "
        f"| {PY} -m outreach_cli --db {demo_db} act pause - --format ids"
    )
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (
        0,
        "5\n8\n",  # the first two active sets of the demo
        "pause: 2 changed, 0 unchanged, 0 ineligible, 0 not found\n",
    ), r


def test_D8_a_closed_reader_never_hides_the_exit_code(demo_db: Path) -> None:
    """`act ... | true` (the reader is gone before act writes): an all-or-nothing refusal still exits 3."""
    script = (
        f"set -o pipefail; printf '1\\n999999\\n' | {PY} -m outreach_cli --db {demo_db} act pause - --yes "
        '--format ids | true; echo "rc=${PIPESTATUS[1]}"'
    )
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert (r.stdout, r.stderr) == (
        "rc=3\n",
        "pause: nothing changed: 1 set is ineligible or not found (999999); 0 would change, 1 unchanged, "
        "0 ineligible, 1 not found; use --skip-ineligible to apply the rest\n",
    ), r


# --- D10 / D14: read commands never create a database; read-only databases can be read --------


@pytest.mark.parametrize(
    "command", [["list"], ["show", "1"], ["metrics"], ["audit"], ["forecast"], ["rulesets", "list"], ["doctor"]]
)
def test_D10_read_commands_never_create_a_database(tmp_path: Path, command: list[str]) -> None:
    def refusal(problem: str) -> tuple[int, str, str]:
        """(exit code, stdout, stderr): doctor reports the problem among its checks, the others as an error."""
        if command == ["doctor"]:
            return 4, doctor_output(tmp_path / "mail-outbox", f"FAIL database: {problem}"), ""
        return 4, "", f"error: {problem}\n"

    typo = tmp_path / "typo.db"
    r = Cli(str(typo))(*command)
    problem = f"no database at {typo}; run `outreach init` (or check --db / OUTREACH_DATABASE)"
    assert (r.code, r.stdout, r.stderr) == refusal(problem), r
    assert not typo.exists()

    r = Cli(str(tmp_path / "nodir" / "x.db"))(*command)
    problem = f"database directory {tmp_path / 'nodir'} does not exist; create it or fix --db / OUTREACH_DATABASE"
    assert (r.code, r.stdout, r.stderr) == refusal(problem), r
    assert not (tmp_path / "nodir").exists()


def test_D10_default_database_is_not_created_by_list(tmp_path: Path) -> None:
    r = Cli("unused")("list", "--status", "failed,expired,paused,will-fail", db=False)
    assert (r.code, r.stdout, r.stderr) == (
        4,
        "",
        "error: no database at outreach.db; run `outreach init` (or check --db / OUTREACH_DATABASE)\n",
    )
    assert not (tmp_path / "outreach.db").exists()


def test_D10_demo_hint_names_the_database(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    r = Cli(str(db)).ok("demo", "--patients", "40", "--days", "3")
    [line] = [x for x in r.stdout.splitlines() if x.startswith("Sets needing attention")]
    assert line == (
        f"Sets needing attention (the largest 3 of each; `outreach --db {db} list --status "
        "failed,expired,paused,will-fail` for all):"
    )
    assert r.stderr == (
        f"demo: 40 patients, 66 charges, 40 invoice sets in {db}\n"
        "demo: simulated 3 days of outreach ending 2026-03-02 14:00 UTC\n"
        f"explore it: outreach --db {db} list   |   outreach --db {db} show ID   |   "
        f"outreach --db {db} metrics   |   outreach --db {db} report --experiment\n"
    )


def test_D14_read_only_database_can_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "ro"
    d.mkdir()
    path = d / "ro.db"
    c = Cli(str(path))
    c.ok("init")
    seed(c, tmp_path, 2)
    os.chmod(path, 0o444)
    os.chmod(d, 0o555)
    if os.geteuid() == 0:  # root ignores permission bits: let outreach see them as a user would
        import outreach_cli.store.database as store_mod

        real_access = os.access

        def access(p: Any, mode: int) -> bool:
            if mode == os.W_OK:
                return not os.stat(p).st_mode & stat.S_IWUSR == 0
            return real_access(p, mode)

        monkeypatch.setattr(store_mod.os, "access", access)
    try:
        assert json.loads(c.ok("metrics", "--all", "--format", "json").stdout)["active"]["count"] == 2
        assert c.ok("list", "--format", "ids").stdout.split() == ["1", "2"]
        r = c("act", "pause", "1")
        assert (r.code, r.stdout, r.stderr) == (
            4,
            "",
            f"error: the database {path} (or its directory) is read-only: this command writes; "
            "run it as a user who can write there\n",
        )
        r = c("doctor")
        assert r.code == 4  # the practice is not configured
        outbox = tmp_path / "mail-outbox"
        assert hide_secret(r.stdout) == doctor_output(outbox, *doctor_database(f"sqlite:///{path}", read_only=True))
    finally:
        os.chmod(d, 0o755)
        os.chmod(path, 0o644)


def test_writes_leave_a_complete_file_and_readers_leave_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy of the `.db` file after a command holds everything (the log is checkpointed when
    the command ends), and a read-only reporting account never creates `-wal`/`-shm` files that
    the owner's cron jobs could not write afterwards."""
    import shutil
    import sqlite3

    path = tmp_path / "o.db"
    c = Cli(str(path))
    c.ok("init")
    seed(c, tmp_path, 2)
    c.ok("act", "pause", "1")
    assert not (tmp_path / "o.db-wal").exists() and not (tmp_path / "o.db-shm").exists()
    shutil.copy(path, tmp_path / "copy.db")
    with sqlite3.connect(tmp_path / "copy.db") as conn:
        assert conn.execute("SELECT count(*) FROM invoice_set WHERE status = 'paused'").fetchone() == (1,)

    import outreach_cli.store.database as store_mod

    real_access = os.access
    # The reader may not write the file (as a reporting account); the directory stays writable.
    monkeypatch.setattr(
        store_mod.os,
        "access",
        lambda p, mode: False if mode == os.W_OK and str(p) == str(path) else real_access(p, mode),
    )
    assert sorted(c.ok("list", "--format", "ids").stdout.split()) == ["1", "2"]
    assert not (tmp_path / "o.db-wal").exists() and not (tmp_path / "o.db-shm").exists()


# --- D11: clear messages and documented exit codes instead of internal errors ------------------


def test_D11_not_an_sqlite_database(tmp_path: Path) -> None:
    notes = write(tmp_path / "notsqlite.db", "hello, this is text\n")
    problem = f"{notes} is not an SQLite database; check --db / OUTREACH_DATABASE"
    for command in (["list"], ["metrics"], ["init"], ["act", "pause", "1"]):
        r = Cli(str(notes))(*command)
        assert (r.code, r.stdout, r.stderr) == (4, "", f"error: {problem}\n"), r
    r = Cli(str(notes))("doctor")
    assert (r.code, r.stdout, r.stderr) == (4, doctor_output(tmp_path / "mail-outbox", f"FAIL database: {problem}"), "")


def test_D11_unreadable_user_config_is_skipped_with_a_warning(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "xdg" / "outreach" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('timezone = "America/New_York"\n')
    os.chmod(cfg, 0)
    real_read = Path.read_text

    def read_text(self: Path, *a: Any, **kw: Any) -> str:
        if self == cfg:  # root can read anything: refuse as the OS would for a service user
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", read_text)
    c = Cli(sqlite_url)
    c.ok("init")
    r = c("metrics")
    assert (r.code, r.stderr) == (0, f"warning: skipping the user config file {cfg}: permission denied\n"), r


def test_D11_schema_from_a_newer_outreach(sqlite_url: str, tmp_path: Path) -> None:
    c = Cli(sqlite_url)
    c.ok("init")
    with sqlite3.connect(tmp_path / "outreach.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    problem = "the database schema is at revision 9999, created by a newer outreach (this one knows up to 0022); upgrade outreach"
    for command in (["list"], ["init"], ["act", "pause", "1"], ["metrics"]):
        r = c(*command)
        assert (r.code, r.stdout, r.stderr) == (4, "", f"error: {problem}\n"), r
    r = c("doctor")
    assert (r.code, r.stderr) == (4, "")
    outbox = tmp_path / "mail-outbox"
    assert r.stdout == doctor_output(outbox, f"ok   database: {sqlite_url} reachable", f"FAIL schema: {problem}")


# --- D17: IDs from stdin ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("20,27\n", [20, 27]),
        ("20 27 30\n", [20, 27, 30]),
        ("20, 27,\n", [20, 27]),
        ("5\n6\n5\n", [5, 6]),
        ("id\n3\n", [3]),
        ("id\tstatus\n3\tactive\n4\tpaused\n", [3, 4]),
        ('"id","status"\n"7","paused"\n', [7]),
        ("id,status,amount\n8,active,100.00\n", [8]),
        ("invoice_set_id,patient_id\n9,P1\n", [9]),
        ('{"id": 11}\n{"id": "12"}\n', [11, 12]),
        ("\ufeff# comment\n\n  13  \r\n", [13]),
    ],
)
def test_D17_stdin_id_forms(text: str, ids: list[int]) -> None:
    from outreach_cli.domain.idstream import parse_ids

    assert parse_ids(text) == ids


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"id": 27.0}\n', "line 1: not an invoice set ID: '27.0' (IDs are whole numbers)"),
        ('1\n{"id": true}\n', "line 2: not an invoice set ID: 'true' (IDs are whole numbers)"),
        ('{"id": null}\n', "line 1: not an invoice set ID: 'null' (IDs are whole numbers)"),
        ('{"id": "27a"}\n', "line 1: not an invoice set ID: '27a' (IDs are whole numbers)"),
        ("20 abc\n", "line 1: not an invoice set ID: 'abc' (IDs are whole numbers)"),
        ("1\n2.5\n", "line 2: not an invoice set ID: '2.5' (IDs are whole numbers)"),
        ("P000007,active\n", "line 1: not an invoice set ID: 'P000007' (IDs are whole numbers)"),
        ('{"status": "x"}\n', 'line 1: JSON object without an "id" key'),
        ("[1, 2]\n", "line 1: a JSON array; use --format jsonl or ids to pipe sets"),
    ],
)
def test_D17_unreadable_stdin_names_the_line_and_value(text: str, problem: str) -> None:
    from outreach_cli.domain.errors import InvalidInput
    from outreach_cli.domain.idstream import parse_ids

    with pytest.raises(InvalidInput) as err:
        parse_ids(text)
    assert (err.value.message, err.value.details) == ("<stdin>: 1 unreadable line(s); nothing was changed", [problem])


def test_D17_act_reads_every_id_on_a_line(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 3)
    r = cli.ok("act", "pause", "-", "--dry-run", "--format", "ids", input="1,3\n")
    assert (r.stdout, r.stderr) == (
        "1\n3\n",
        "pause (dry run): 2 would change, 0 unchanged, 0 ineligible, 0 not found\n",
    )
    r = cli.ok("act", "pause", "-", "--format", "ids", input="1 2 3\n")
    assert (r.stdout, r.stderr) == ("1\n2\n3\n", "pause: 3 changed, 0 unchanged, 0 ineligible, 0 not found\n")
    r = cli("act", "resume", "-", input='{"id": 2.0}\n')
    assert (r.code, r.stdout, r.stderr) == (
        2,
        "",
        "error: <stdin>: 1 unreadable line(s); nothing was changed\n"
        "  line 1: not an invoice set ID: '2.0' (IDs are whole numbers)\n",
    )


# --- D18: global options after the command ------------------------------------------------------


def test_D18_global_options_after_the_command(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    c = Cli(db, now=None)
    c.ok("init")
    seed(c, tmp_path, 2)
    r = c("list", "--db", db, "--format", "ids", db=False)
    assert (r.code, r.stdout.split()) == (0, ["1", "2"]), r
    r = c("metrics", "--db=" + db, "-q", "--format", "json", db=False)
    none = {"count": 0, "amount_outstanding_cents": 0, "amount_outstanding": "0.00"}
    assert (r.code, r.stderr) == (0, "")
    assert json.loads(r.stdout) == {"failed": none, "expired": none, "paused": none, "will-fail": none}
    r = c("list", "--no-color", "--db", db, "--limit", "1", "--format", "ids", "--now", "2026-03-02", db=False)
    assert (r.code, r.stdout) == (0, "1\n")
    # A command's own option value that looks like a global option stays its value.
    r = c("act", "pause", "1", "--reason", "-q", "--dry-run", "--format", "jsonl", "--db", db, db=False)
    assert r.code == 0 and json.loads(r.stdout) == {
        "id": 1,
        "action": "pause",
        "result": "changed",
        "from_status": "active",
        "to_status": "paused",
        "reason": "-q",
    }
    r = c("import", "patients", "-", "--db", db, "-q", input=csv_text([patient("P9")]), db=False)
    assert (r.code, r.stderr) == (0, "")


@pytest.mark.parametrize(
    ("argv", "hoisted"),
    [
        (["list", "--db", "d.db"], ["--db", "d.db", "list"]),
        (["-v", "list", "-q", "--limit", "3"], ["-v", "-q", "list", "--limit", "3"]),
        (["act", "pause", "--reason", "--db", "5"], ["act", "pause", "--reason", "--db", "5"]),
        (["act", "pause", "-", "--", "--db"], ["act", "pause", "-", "--", "--db"]),
        (["import", "patients", "f.csv", "--now=2026-01-01"], ["--now=2026-01-01", "import", "patients", "f.csv"]),
        (["--db", "list", "list"], ["--db", "list", "list"]),
        (["lst", "--db", "x"], ["lst", "--db", "x"]),
    ],
)
def test_D18_hoisting_table(argv: list[str], hoisted: list[str]) -> None:
    from typer.main import get_command

    from outreach_cli.cli.app import app, hoist_global_options

    assert hoist_global_options(argv, get_command(app)) == hoisted


# --- D20: -q silences every summary line -----------------------------------------------------


def test_D20_quiet_silences_every_summary(tmp_path: Path) -> None:
    db = str(tmp_path / "q.db")
    c = Cli(db)
    assert c.ok("-q", "init").stderr == ""
    write_csv(tmp_path / "p.csv", [patient("P1"), patient("P2")], PATIENT_HEADER)
    assert c.ok("-q", "import", "patients", str(tmp_path / "p.csv")).stderr == ""
    write_csv(tmp_path / "c.csv", [{"charge_id": "C1", "patient_id": "P1", "amount": "5"}])
    assert c.ok("-q", "import", "charges", str(tmp_path / "c.csv")).stderr == ""
    r = c.ok("-q", "act", "pause", "1", "--format", "ids")
    assert (r.stdout, r.stderr) == ("1\n", "")
    assert c.ok("-q", "act", "collections", "1", "--yes").stderr == ""
    r = c.ok("-q", "collections", "export")
    assert r.stderr == ""
    assert r.stdout == (
        "id,patient_id,first_name,last_name,phone,email,address_line1,address_line2,city,state,postal_code,country,"
        "amount_outstanding,amount_outstanding_cents,escalated_at,payment_after_escalation,paid_after_escalation,"
        "charge_id,service_date,description,charge_amount,charge_outstanding,charge_status\n"
        "1,P1,Jane,Doe,+16175550100,p1@example.com,1 Main St,,Boston,MA,02118,US,5.00,500,2026-03-02T14:00:00Z,no,,"
        "C1,2026-03-02,,5.00,5.00,collections\n"
    )
    assert c.ok("-q", "rulesets", "sync").stderr == ""
    assert c.ok("-q", "run-outreach").stderr == ""
    r = Cli(str(tmp_path / "demo.db")).ok("-q", "demo", "--patients", "3", "--days", "1")
    assert r.stderr == ""
    assert r.stdout == (  # the metrics still print: they are the data
        "Status            ┃ Sets ┃ Outstanding\n"
        "━━━━━━━━━━━━━━━━━━╇━━━━━━╇━━━━━━━━━━━━\n"
        "Active            │    3 │   $3,074.64\n"
        "Paused            │    0 │       $0.00\n"
        "Expired           │    0 │       $0.00\n"
        "Failed            │    0 │       $0.00\n"
        "Will Fail         │    0 │       $0.00\n"
        "Paid              │    0 │       $0.00\n"
        "Cancelled         │    0 │       $0.00\n"
        "Written Off       │    0 │       $0.00\n"
        "Collections       │    0 │       $0.00\n"
        "Total             │    3 │   $3,074.64\n"
        "Written off, net  │      │       $0.00\n"
        "Credit (patients) │    0 │       $0.00\n"
        "\n"
        "Open, days since created ┃ Sets ┃ Outstanding\n"
        "━━━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━╇━━━━━━━━━━━━\n"
        "0-30                     │    3 │   $3,074.64\n"
        "31-60                    │    0 │       $0.00\n"
        "61-90                    │    0 │       $0.00\n"
        "91-120                   │    0 │       $0.00\n"
        "120+                     │    0 │       $0.00\n"
        "\n"
        "No sets need attention (none failed, expired, paused or will-fail).\n"
    )
    # Errors still print.
    r = c("-q", "act", "pause", "99")
    assert (r.code, r.stdout, r.stderr) == (
        3,
        "id\taction\tresult\tfrom_status\tto_status\treason\n99\tpause\tnot-found\t\t\tno invoice set with this ID\n",
        "pause: nothing changed: 1 set is ineligible or not found (99); 0 would change, 0 unchanged, 0 ineligible, "
        "1 not found; use --skip-ineligible to apply the rest\n",
    )


# --- (c) summaries, prompts and waiting -----------------------------------------------------------


def test_summaries_import_counts_what_happened(cli: Cli, tmp_path: Path) -> None:
    rows = [patient("P1"), patient("P2"), patient("P2"), patient("P3", email="nope")]
    r = cli("import", "patients", str(write_csv(tmp_path / "p.csv", rows, PATIENT_HEADER)), "--skip-invalid")
    assert r.code == 3
    assert r.stderr == skipped(
        tmp_path / "p.csv", "line 5: email: not a valid address: An email address must have an @-sign."
    ) + (
        "patients: 2 imported (2 created, 0 updated), 0 unchanged, 1 identical duplicate row ignored, "
        "1 skipped as invalid\n"
    )
    rows = [patient("P1", first_name="Janet"), patient("P2")]
    r = cli.ok("import", "patients", str(write_csv(tmp_path / "p.csv", rows, PATIENT_HEADER)), "--dry-run")
    assert r.stderr == "patients (dry run): 1 would be imported (0 created, 1 updated), 1 unchanged\n"
    write_csv(tmp_path / "c.csv", [{"charge_id": "C1", "patient_id": "P1", "amount": "5"}])
    r = cli.ok("import", "charges", str(tmp_path / "c.csv"))
    assert r.stderr == "charges: 1 imported (1 created, 0 updated), 0 unchanged; 1 new invoice set\n"


def test_summaries_act_dry_run_says_would_change(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 4)
    cli.ok("act", "pause", "4")
    r = cli.ok("act", "pause", "1", "2", "3", "4", "--dry-run")
    assert r.stderr == "pause (dry run): 3 would change, 1 unchanged, 0 ineligible, 0 not found\n"
    r = cli("act", "cancel", "1")
    assert r.code == 5
    assert r.stderr == "aborted: cancel would change 1 set: add --yes to confirm (nothing was changed)\n"


def test_summaries_declining_the_prompt_is_aborted_not_an_error(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 2)
    fake_terminal(cli, io.StringIO("n\n"))
    r = cli("act", "write-off", "1", "2")
    assert r.code == 5
    assert r.stderr == "write-off: 2 invoice sets, $200.00 outstanding. Proceed? [y/N] aborted: nothing was changed\n"


def test_summaries_ctrl_c_at_the_prompt_ends_the_line(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 1)

    class CtrlC(io.StringIO):
        def readline(self, *_a: Any) -> str:
            raise KeyboardInterrupt

    fake_terminal(cli, CtrlC())
    r = cli("act", "cancel", "1")
    assert (r.code, r.stderr) == (130, "cancel: 1 invoice set, $100.00 outstanding. Proceed? [y/N] \ninterrupted\n")
    assert cli.ok("list", "--format", "ids").stdout == "1\n"  # still active


def test_summaries_stdin_hint_on_a_terminal(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 1)
    fake_terminal(cli, io.StringIO("1\n"))
    r = cli.ok("act", "pause", "-", "--format", "ids")
    # The empty line: the spinner (transient) ending on a StringIO, which rich does not take for a
    # terminal; on a real terminal it is erased.
    assert (r.stdout, r.stderr) == (
        "1\n",
        "reading invoice set IDs from stdin (one or more per line; Ctrl-D to end)\n"
        "\npause: 1 changed, 0 unchanged, 0 ineligible, 0 not found\n",
    )
    fake_terminal(cli, io.StringIO("1\n"), stdin_tty=False)
    assert cli.ok("act", "resume", "-").stderr == "\nresume: 1 changed, 0 unchanged, 0 ineligible, 0 not found\n"


def test_summaries_act_says_it_waits_for_a_locked_database(sqlite_url: str, tmp_path: Path) -> None:
    c = Cli(sqlite_url)
    fake_terminal(c, io.StringIO(""), stdin_tty=False)
    c.ok("init")
    seed(c, tmp_path, 1)
    holder = sqlite3.connect(tmp_path / "outreach.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release() -> None:
        released.wait(60)
        holder.execute("COMMIT")

    t = threading.Thread(target=release)
    t.start()
    from outreach_cli.cli import context

    notice = context.App._lock_wait_notice

    def notice_then_release(self: context.App) -> None:
        notice(self)
        released.set()  # the other writer finishes once we have said we are waiting

    try:
        context.App._lock_wait_notice = notice_then_release  # type: ignore[method-assign]
        r = c.ok("act", "pause", "1")
    finally:
        context.App._lock_wait_notice = notice  # type: ignore[method-assign]
        released.set()
        t.join()
        holder.close()
    assert r.stderr == (  # the empty line: the spinner ending on a StringIO (see above)
        "waiting for the database: another outreach process is writing (up to 30 s)...\n"
        "\npause: 1 changed, 0 unchanged, 0 ineligible, 0 not found\n"
    )


def test_summaries_collections_export_twice(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 1)
    cli.ok("act", "collections", "1", "--yes")
    assert cli.ok("collections", "export").stderr == "collections export: 1 set (now marked exported)\n"
    r = cli.ok("collections", "export")
    assert r.stderr == "collections export: no new sets in collections to export (--all exports every one again)\n"


# --- D23: smaller correctness issues -----------------------------------------------------------


def test_D23_bad_filter_values_are_usage_errors(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 1)
    r = cli("list", "--status", "all", "--rule-set", "")
    assert (r.code, r.stdout, r.stderr) == (
        2,
        "",
        "error: --rule-set is empty: give a rule-set name (see `outreach rulesets list`)\n",
    )
    forms = "accepted forms: 100..500, 100.., ..50, 75 (dollars, inclusive)"
    for value in ("-5", "..-1", "-10..5"):
        r = cli("list", "--amount", value)
        assert (r.code, r.stderr) == (2, f"error: --amount {value!r}: amounts are never negative; {forms}\n")
    r = cli("list", "--amount", "100...500")
    assert (r.code, r.stderr) == (2, f"error: --amount '100...500': not a range: use A..B (two dots); {forms}\n")
    r = cli("audit", "--since", "garbage")
    assert (r.code, r.stderr) == (
        2,
        "error: --since 'garbage': not a date or datetime; accepted forms: A..B with dates (2026-03-01), "
        "datetimes (2026-03-01T14:30, "
        "...Z or +02:00), today, yesterday, tomorrow, -7d, +3d, -2w; open ends allowed (2026-03-01.., ..today); "
        "a single value means from then on\n",
    )
    actor = default_actor(os.environ)  # the user running the tests
    events = [json.loads(x) for x in cli.ok("audit", "--since", "-1d", "--format", "jsonl").stdout.splitlines()]
    at = "2026-03-02T14:00:00Z"
    assert events == [
        {
            "id": 1,
            "event_id": 1,
            "at": at,
            "kind": "created",
            "actor": actor,
            "action": None,
            "from_status": None,
            "to_status": "active",
            "reason": None,
            "detail": {"rule_set": "standard"},
        },
        {
            "id": 1,
            "event_id": 2,
            "at": at,
            "kind": "charge_added",
            "actor": actor,
            "action": None,
            "from_status": None,
            "to_status": None,
            "reason": None,
            "detail": {"amount_cents": 10000, "charge_id": "C00000"},
        },
    ]


def test_D23_bad_global_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = Cli(str(tmp_path / "x.db"), now=None)
    c.ok("init")
    r = c("--config", ".", "list")
    assert (r.code, r.stderr) == (4, "error: config file . is a directory; give the path of a .toml file\n")
    cfg = tmp_path / "xdg" / "outreach" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('timezone = "Bad/Zone"\n')
    r = c("list")
    assert (r.code, r.stderr) == (
        4,
        f"error: {cfg}: timezone: unknown time zone 'Bad/Zone' (use an IANA name like America/New_York)\n",
    )
    cfg.unlink()
    monkeypatch.setenv("OUTREACH_NOW", "garbage")
    r = c("list")
    assert (r.code, r.stderr) == (
        2,
        "error: OUTREACH_NOW 'garbage': not a date or datetime (use 2026-03-01, 2026-03-01T14:30 or "
        "2026-03-01T14:30:00Z)\n",
    )
    monkeypatch.delenv("OUTREACH_NOW")
    r = c("--now", "", "list")
    assert (r.code, r.stderr) == (2, "error: --now is empty: give a value or leave --now out\n")
    r = c("--db", "", "list", db=False)
    assert (r.code, r.stderr) == (2, "error: --db is empty: give a value or leave --db out\n")
    assert not (tmp_path / "outreach.db").exists()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    assert Cli("~/h.db", now=None)("init").code == 0
    assert (tmp_path / "home" / "h.db").is_file() and not (tmp_path / "~").exists()


def test_D23_rulesets_validate_and_sync_use_the_shipped_rule_sets(sqlite_url: str) -> None:
    c = Cli(sqlite_url)
    c.ok("init")
    r = c.ok("rulesets", "validate")
    d = shipped_dir()
    ucs2 = "segment(s) UCS-2 with a non-GSM name (2 GSM-7)"
    assert r.stdout == (
        f"{d / 'final-notice.toml'}: ok; sms step 1: 3 {ucs2}, step 3: 4 {ucs2}\n"
        f"{d / 'gentle.toml'}: ok; sms step 3: 4 {ucs2}\n"
        f"{d / 'standard.toml'}: ok; sms step 1: 3 {ucs2}, step 2: 4 {ucs2}, step 6: 4 {ucs2}\n"
    )
    shipped = "rule sets: rulesets does not exist; using the rule sets shipped with outreach\n"
    assert r.stderr == shipped
    r = c.ok("rulesets", "sync")
    assert r.stderr == shipped + "".join(
        f"rule set {name}: unchanged (version 1)\n" for name in ("final-notice", "gentle", "standard")
    )


def test_D23_patient_import_rejects_what_cannot_be_used(cli: Cli, tmp_path: Path) -> None:
    rows = [
        patient("A1", phone="555-CALL-NOW"),
        patient("A2", phone="+1 (415) 555-0177 ext. 5"),
        patient("A3", state="ZZ"),
        patient("A4", postal_code="ABCDE"),
        patient("A5", postal_code="2134"),
        patient("A6", state="ZZ", postal_code="ABCDE", country=""),
        patient("A7", state="ON", postal_code="K1A 0B1", country="CA"),  # not US: not checked
        patient("A8", postal_code="02134-1234"),
    ]
    r = cli("import", "patients", str(write_csv(tmp_path / "p.csv", rows, PATIENT_HEADER)))
    assert r.code == 2
    assert r.stderr == refused(
        tmp_path / "p.csv",
        "line 2: phone: contains letters (like 555-CALL-NOW); give the number in digits "
        "(use a format like (617) 555-0100 or +16175550100)",
        "line 3: phone: has an extension, which texts and calls cannot dial; give the number without it "
        "(use a format like (617) 555-0100 or +16175550100)",
        "line 4: state: not a US state code (use the two-letter code, e.g. MA)",
        "line 5: postal_code: not a US ZIP code (use 12345 or 12345-6789)",
        "line 6: postal_code: not a US ZIP code (use 12345 or 12345-6789; a spreadsheet may have dropped a leading zero)",
        "line 7: state: not a US state code (use the two-letter code, e.g. MA)",
        "line 7: postal_code: not a US ZIP code (use 12345 or 12345-6789)",
    )
    assert "0177" not in r.stderr and "CALL" not in r.stderr.replace("555-CALL-NOW)", "")  # numbers are not echoed


def test_D23_import_only_an_email_updates_existing_patients(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 2)
    r = cli.ok("import", "patients", "-", input="patient_id,email\nP00001,new1@example.com\n")
    assert r.stderr == "patients: 1 imported (0 created, 1 updated), 0 unchanged\n"
    shown = json.loads(cli.ok("show", "2", "--format", "json").stdout)["patient"]
    assert (shown["email"], shown["first_name"], shown["phone"]) == ("new1@example.com", "Pat1", "+16175550100")
    r = cli("import", "patients", "-", input="patient_id,email\nP00001,a@example.com\nNEW9,b@example.com\n")
    assert (r.code, r.stderr) == (
        2,
        refused("<stdin>", "line 3: first_name: required for a new patient ('NEW9' is not in the database)"),
    )
    r = cli("import", "patients", "-", input="patient_id,first_name\nP00001,\n")
    # No --skip-invalid hint: no row is valid.
    assert (r.code, r.stderr) == (
        2,
        "error: <stdin>: 1 problem(s); nothing was imported\n  line 2: first_name: required\n",
    )


def test_D23_show_of_a_missing_set_is_exit_3(cli: Cli) -> None:
    r = cli("show", "99999")
    assert (r.code, r.stdout, r.stderr) == (3, "", "error: no invoice set with ID 99999\n")
