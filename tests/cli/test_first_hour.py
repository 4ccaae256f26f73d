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

from tests.conftest import Cli, Terminal, copy_built_once, write
from tests.helpers import PATIENT_HEADER, csv_text, patient, write_csv

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
    assert r.code == 2, r
    assert "prod.db exists and was not created by `outreach demo`" in r.stderr and "--force" in r.stderr
    assert patient_ids(real) == before  # the patients are still there
    assert not list(tmp_path.glob(".prod.db.demo-building*"))

    # A text file is not replaced either.
    notes = write(tmp_path / "notes.db", "my notes\n")
    r = Cli(str(notes))("demo", "--patients", "5", "--days", "1")
    assert r.code == 2 and notes.read_text() == "my notes\n"

    # --force replaces it; a demo database is then replaced by the next demo without --force.
    c.ok("demo", "--patients", "5", "--days", "1", "--force")
    after = patient_ids(real)
    assert len(after) == 5 and set(after).isdisjoint(before)
    c.ok("demo", "--patients", "4", "--days", "1")
    assert len(patient_ids(real)) == 4


def test_D2_interrupted_demo_leaves_no_half_built_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach_cli.cli import cmd_demo

    def interrupted(*_a: Any, **_kw: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cmd_demo, "simulate", interrupted)
    fresh = tmp_path / "demo.db"
    r = Cli(str(fresh))("demo", "--patients", "5", "--days", "1")
    assert r.code == 130
    assert not fresh.exists()  # nothing that looks like a valid (empty) demo
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    monkeypatch.undo()
    Cli(str(fresh)).ok("demo", "--patients", "3", "--days", "1")
    before = patient_ids(fresh)
    monkeypatch.setattr(cmd_demo, "simulate", interrupted)
    assert Cli(str(fresh))("demo", "--patients", "7", "--days", "1").code == 130
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
    assert r.returncode == 0, r
    assert len(r.stdout.split()) == 2 and "pause: 2 changed" in r.stderr


def test_D8_a_closed_reader_never_hides_the_exit_code(demo_db: Path) -> None:
    """`act ... | true` (the reader is gone before act writes): an all-or-nothing refusal still exits 3."""
    script = (
        f"set -o pipefail; printf '1\\n999999\\n' | {PY} -m outreach_cli --db {demo_db} act pause - --yes "
        '--format ids | true; echo "rc=${PIPESTATUS[1]}"'
    )
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert "rc=3" in r.stdout, r
    assert "unexpected internal error" not in r.stderr


# --- D10 / D14: read commands never create a database; read-only databases can be read --------


@pytest.mark.parametrize(
    "command", [["list"], ["show", "1"], ["metrics"], ["audit"], ["forecast"], ["rulesets", "list"], ["doctor"]]
)
def test_D10_read_commands_never_create_a_database(tmp_path: Path, command: list[str]) -> None:
    typo = tmp_path / "typo.db"
    r = Cli(str(typo))(*command)
    assert r.code == 4, r
    assert f"no database at {typo}; run `outreach init` (or check --db" in r.stderr + r.stdout
    assert not typo.exists()

    r = Cli(str(tmp_path / "nodir" / "x.db"))(*command)
    assert r.code == 4 and f"database directory {tmp_path / 'nodir'} does not exist" in r.stderr + r.stdout
    assert not (tmp_path / "nodir").exists()


def test_D10_default_database_is_not_created_by_list(tmp_path: Path) -> None:
    r = Cli("unused")("list", "--status", "failed,expired,paused,will-fail", db=False)
    assert r.code == 4 and "no database at outreach.db" in r.stderr
    assert not (tmp_path / "outreach.db").exists()


def test_D10_demo_hint_names_the_database(tmp_path: Path) -> None:
    r = Cli(str(tmp_path / "demo.db")).ok("demo", "--patients", "40", "--days", "3")
    assert f"`outreach --db {tmp_path / 'demo.db'} list --status failed,expired,paused,will-fail` for all" in r.stdout


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
        assert r.code == 4 and f"the database {path} (or its directory) is read-only" in r.stderr
        r = c("doctor")
        assert "ok   database:" in r.stdout and "(read-only)" in r.stdout
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
    for command in (["list"], ["metrics"], ["init"], ["act", "pause", "1"]):
        r = Cli(str(notes))(*command)
        assert r.code == 4, r
        assert f"{notes} is not an SQLite database" in r.stderr
    r = Cli(str(notes))("doctor")
    assert r.code == 4 and "FAIL database: " in r.stdout and "is not an SQLite database" in r.stdout


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
    assert r.code == 0, r
    assert f"warning: skipping the user config file {cfg}: permission denied" in r.stderr


def test_D11_schema_from_a_newer_outreach(sqlite_url: str, tmp_path: Path) -> None:
    c = Cli(sqlite_url)
    c.ok("init")
    with sqlite3.connect(tmp_path / "outreach.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    for command in (["list"], ["init"], ["act", "pause", "1"], ["metrics"]):
        r = c(*command)
        assert r.code == 4, r
        assert "schema is at revision 9999, created by a newer outreach" in r.stderr
        assert r.stderr.rstrip().endswith("upgrade outreach")
    r = c("doctor")
    assert r.code == 4 and "FAIL schema: " in r.stdout and "created by a newer outreach" in r.stdout


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
        ('{"id": 27.0}\n', "line 1: not an invoice set ID: '27.0'"),
        ('1\n{"id": true}\n', "line 2: not an invoice set ID: 'true'"),
        ('{"id": null}\n', "line 1: not an invoice set ID: 'null'"),
        ('{"id": "27a"}\n', "line 1: not an invoice set ID: '27a'"),
        ("20 abc\n", "line 1: not an invoice set ID: 'abc'"),
        ("1\n2.5\n", "line 2: not an invoice set ID: '2.5'"),
        ("P000007,active\n", "line 1: not an invoice set ID: 'P000007'"),
        ('{"status": "x"}\n', 'line 1: JSON object without an "id" key'),
        ("[1, 2]\n", "line 1: a JSON array; use --format jsonl or ids"),
    ],
)
def test_D17_unreadable_stdin_names_the_line_and_value(text: str, problem: str) -> None:
    from outreach_cli.domain.errors import InvalidInput
    from outreach_cli.domain.idstream import parse_ids

    with pytest.raises(InvalidInput) as err:
        parse_ids(text)
    assert any(d.startswith(problem) for d in err.value.details), err.value.details


def test_D17_act_reads_every_id_on_a_line(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 3)
    r = cli.ok("act", "pause", "-", "--dry-run", "--format", "ids", input="1,3\n")
    assert r.stdout.split() == ["1", "3"]
    r = cli.ok("act", "pause", "-", "--format", "ids", input="1 2 3\n")
    assert r.stdout.split() == ["1", "2", "3"] and "pause: 3 changed" in r.stderr
    r = cli("act", "resume", "-", input='{"id": 2.0}\n')
    assert r.code == 2 and "line 1: not an invoice set ID: '2.0'" in r.stderr


# --- D18: global options after the command ------------------------------------------------------


def test_D18_global_options_after_the_command(tmp_path: Path) -> None:
    db = str(tmp_path / "x.db")
    c = Cli(db, now=None)
    c.ok("init")
    seed(c, tmp_path, 2)
    r = c("list", "--db", db, "--format", "ids", db=False)
    assert (r.code, r.stdout.split()) == (0, ["1", "2"]), r
    r = c("metrics", "--db=" + db, "-q", "--format", "json", db=False)
    assert r.code == 0 and json.loads(r.stdout)["failed"]["count"] == 0
    r = c("list", "--no-color", "--db", db, "--limit", "1", "--format", "ids", "--now", "2026-03-02", db=False)
    assert (r.code, r.stdout) == (0, "1\n")
    # A command's own option value that looks like a global option stays its value.
    r = c("act", "pause", "1", "--reason", "-q", "--dry-run", "--format", "jsonl", "--db", db, db=False)
    assert r.code == 0 and json.loads(r.stdout)["reason"] == "-q"
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
    assert r.stderr == "" and r.stdout.count("\n") == 2
    assert c.ok("-q", "rulesets", "sync").stderr == ""
    assert c.ok("-q", "run-outreach").stderr == ""
    r = Cli(str(tmp_path / "demo.db")).ok("-q", "demo", "--patients", "3", "--days", "1")
    assert r.stderr == "" and "Status" in r.stdout  # the metrics still print: they are the data
    # Errors still print.
    r = c("-q", "act", "pause", "99")
    assert r.code == 3 and "nothing changed" in r.stderr


# --- (c) summaries, prompts and waiting -----------------------------------------------------------


def test_summaries_import_counts_what_happened(cli: Cli, tmp_path: Path) -> None:
    rows = [patient("P1"), patient("P2"), patient("P2"), patient("P3", email="nope")]
    r = cli("import", "patients", str(write_csv(tmp_path / "p.csv", rows, PATIENT_HEADER)), "--skip-invalid")
    assert r.code == 3
    assert r.stderr.splitlines()[-1] == (
        "patients: 2 imported (2 created, 0 updated), 0 unchanged, 1 identical duplicate row ignored, "
        "1 skipped as invalid"
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
    assert r.code == 130
    assert r.stderr.startswith("cancel: 1 invoice set, $100.00 outstanding. Proceed? [y/N] \n")
    assert r.stderr.rstrip().endswith("interrupted")
    assert cli.ok("list", "--format", "ids").stdout == "1\n"  # still active


def test_summaries_stdin_hint_on_a_terminal(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 1)
    fake_terminal(cli, io.StringIO("1\n"))
    r = cli.ok("act", "pause", "-", "--format", "ids")
    assert r.stderr.startswith("reading invoice set IDs from stdin (one or more per line; Ctrl-D to end)\n")
    fake_terminal(cli, io.StringIO("1\n"), stdin_tty=False)
    assert "reading invoice set IDs" not in cli.ok("act", "resume", "-").stderr


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
    assert r.stderr.startswith("waiting for the database: another outreach process is writing (up to 30 s)...\n")
    assert "pause: 1 changed" in r.stderr


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
    assert r.code == 2 and "--rule-set is empty" in r.stderr and r.stdout == ""
    for value in ("-5", "..-1", "-10..5"):
        r = cli("list", "--amount", value)
        assert r.code == 2 and f"--amount {value!r}: amounts are never negative" in r.stderr
    r = cli("list", "--amount", "100...500")
    assert r.code == 2 and "--amount '100...500': not a range: use A..B" in r.stderr
    r = cli("audit", "--since", "garbage")
    assert r.code == 2 and r.stderr.startswith("error: --since 'garbage': ")
    assert cli.ok("audit", "--since", "-1d", "--format", "jsonl").stdout.count("\n") >= 2


def test_D23_bad_global_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = Cli(str(tmp_path / "x.db"), now=None)
    c.ok("init")
    r = c("--config", ".", "list")
    assert r.code == 4 and "config file . is a directory" in r.stderr
    cfg = tmp_path / "xdg" / "outreach" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('timezone = "Bad/Zone"\n')
    r = c("list")
    assert r.code == 4 and r.stderr.startswith(f"error: {cfg}: timezone: ")
    cfg.unlink()
    monkeypatch.setenv("OUTREACH_NOW", "garbage")
    r = c("list")
    assert r.code == 2 and r.stderr.startswith("error: OUTREACH_NOW 'garbage': ")
    monkeypatch.delenv("OUTREACH_NOW")
    r = c("--now", "", "list")
    assert r.code == 2 and "--now is empty" in r.stderr
    r = c("--db", "", "list", db=False)
    assert r.code == 2 and "--db is empty" in r.stderr
    assert not (tmp_path / "outreach.db").exists()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    assert Cli("~/h.db", now=None)("init").code == 0
    assert (tmp_path / "home" / "h.db").is_file() and not (tmp_path / "~").exists()


def test_D23_rulesets_validate_and_sync_use_the_shipped_rule_sets(sqlite_url: str) -> None:
    c = Cli(sqlite_url)
    c.ok("init")
    r = c.ok("rulesets", "validate")
    assert "standard.toml: ok" in r.stdout and "gentle.toml: ok" in r.stdout
    assert "rulesets does not exist; using the rule sets shipped with outreach" in r.stderr
    r = c.ok("rulesets", "sync")
    assert "rule set standard: unchanged (version 1)" in r.stderr


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
    lines = [x.strip() for x in r.stderr.splitlines()[1:]]
    assert lines == [
        "line 2: phone: contains letters (like 555-CALL-NOW); give the number in digits "
        "(use a format like (617) 555-0100 or +16175550100)",
        "line 3: phone: has an extension, which texts and calls cannot dial; give the number without it "
        "(use a format like (617) 555-0100 or +16175550100)",
        "line 4: state: not a US state code (use the two-letter code, e.g. MA)",
        "line 5: postal_code: not a US ZIP code (use 12345 or 12345-6789)",
        "line 6: postal_code: not a US ZIP code (use 12345 or 12345-6789; a spreadsheet may have dropped a leading zero)",
        "line 7: state: not a US state code (use the two-letter code, e.g. MA)",
        "line 7: postal_code: not a US ZIP code (use 12345 or 12345-6789)",
    ]
    assert "0177" not in r.stderr and "CALL" not in r.stderr.replace("555-CALL-NOW)", "")  # numbers are not echoed


def test_D23_import_only_an_email_updates_existing_patients(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 2)
    r = cli.ok("import", "patients", "-", input="patient_id,email\nP00001,new1@example.com\n")
    assert "1 imported (0 created, 1 updated)" in r.stderr
    shown = json.loads(cli.ok("show", "2", "--format", "json").stdout)["patient"]
    assert (shown["email"], shown["first_name"], shown["phone"]) == ("new1@example.com", "Pat1", "+16175550100")
    r = cli("import", "patients", "-", input="patient_id,email\nP00001,a@example.com\nNEW9,b@example.com\n")
    assert r.code == 2
    assert "line 3: first_name: required for a new patient ('NEW9' is not in the database)" in r.stderr
    r = cli("import", "patients", "-", input="patient_id,first_name\nP00001,\n")
    assert r.code == 2 and "line 2: first_name: required" in r.stderr


def test_D23_show_of_a_missing_set_is_exit_3(cli: Cli) -> None:
    r = cli("show", "99999")
    assert r.code == 3 and "99999" in r.stderr and r.stdout == ""
