"""The command line as a whole: help, exit codes, configuration, doctor, rule-set commands."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from outreach_cli import __version__
from outreach_cli.cli.app import app
from tests.conftest import Cli, Terminal, write
from tests.helpers import doctor_database, doctor_output, hide_secret


def _commands() -> list[list[str]]:
    from typer.main import get_command

    root = get_command(app)
    out: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            out.append(path)

    walk(root, [])
    return out


def test_every_command_has_help_text() -> None:
    from typer.main import get_command

    root = get_command(app)
    cmds = _commands()
    assert len(cmds) >= 15
    for path in cmds:
        cmd = root
        for p in path:
            cmd = cmd.commands[p]  # type: ignore[attr-defined]
        assert (cmd.help or "").strip(), f"`outreach {' '.join(path)}` has no help text"


def test_help_lists_commands(sqlite_url: str) -> None:
    r = Cli(sqlite_url)("--help", db=False)
    assert r.code == 0
    for name in (
        "init",
        "import",
        "rulesets",
        "list",
        "metrics",
        "show",
        "act",
        "audit",
        "collections",
        "doctor",
        "demo",
    ):
        assert f"  {name} " in r.stdout  # the page's wrapping follows the terminal width: by name
    h = Cli(sqlite_url)("-h", db=False)
    assert (h.code, h.stdout, h.stderr) == (0, r.stdout, "")


def test_help_as_a_process_imports_no_heavy_modules() -> None:
    code = (
        "import sys, runpy; sys.argv=['outreach','--help']\n"
        "try:\n    runpy.run_module('outreach_cli', run_name='__main__')\nexcept SystemExit: pass\n"
        "heavy=[m for m in ('sqlalchemy','sqlmodel','twilio','alembic','psycopg','phonenumbers','fpdf') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stderr) == (0, "HEAVY []\n"), r.stderr


def test_version(sqlite_url: str) -> None:
    r = Cli(sqlite_url)("--version", db=False)
    assert (r.code, r.stdout, r.stderr) == (0, f"outreach {__version__}\n", "")


def test_usage_error_is_exit_2(sqlite_url: str) -> None:
    c = Cli(sqlite_url)
    c.ok("init")
    r = c("list", "--bogus")
    assert (r.code, r.stdout, r.stderr) == (
        2,
        "",
        "Usage: outreach list [OPTIONS]\nTry 'outreach list -h' for help.\n\nError: No such option: --bogus\n",
    )
    r = c("list", "--amount", "lots")
    assert (r.code, r.stdout, r.stderr) == (
        2,
        "",
        "error: --amount 'lots': not an amount: 'lots' (use dollars like 120.50 or $1,200.00); "
        "accepted forms: 100..500, 100.., ..50, 75 (dollars, inclusive)\n",
    )
    r = c("list", "--status", "sleeping")
    assert (r.code, r.stdout, r.stderr) == (
        2,
        "",
        "error: unknown status 'sleeping'; accepted: active, paused, expired, failed, will-fail, paid, cancelled, "
        "written-off, collections (any case; '_' or space for '-'), open, all\n",
    )


def test_schema_missing_or_behind_is_exit_4(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    c = Cli(f"sqlite:///{tmp_path / 'fresh.db'}")
    r = c("list")
    assert (r.code, r.stderr) == (
        4,
        f"error: no database at {tmp_path / 'fresh.db'}; run `outreach init` (or check --db / OUTREACH_DATABASE)\n",
    )
    c.ok("init")
    import outreach_cli.store.database as store_mod

    # This outreach pretends to know a later revision, so the database is behind.
    monkeypatch.setattr(store_mod, "SCHEMA_HEAD", "9990")
    monkeypatch.setattr(store_mod, "KNOWN_REVISIONS", store_mod.KNOWN_REVISIONS | {"9990"})
    r = c("metrics")
    assert (r.code, r.stderr) == (
        4,
        "error: database schema is at revision 0022, this outreach needs 9990; run `outreach init`\n",
    )
    r = c("doctor")
    assert (r.code, r.stderr) == (4, "")
    assert r.stdout == doctor_output(
        tmp_path / "mail-outbox",
        f"ok   database: {c.db} reachable",
        "FAIL schema: revision 0022, need 9990: run `outreach init`",
    )


def test_unreachable_database_is_exit_4(tmp_path: Path) -> None:
    r = Cli(str(tmp_path / "no" / "such" / "dir" / "x.db"))("list")
    assert (r.code, r.stderr) == (
        4,
        f"error: database directory {tmp_path / 'no' / 'such' / 'dir'} does not exist; "
        "create it or fix --db / OUTREACH_DATABASE\n",
    )
    r = Cli("postgresql://nobody:secretpw@127.0.0.1:1/x")("list")
    assert r.code == 4 and "secretpw" not in r.stderr
    # The driver's own words (libpq's, which vary with its version) stand between the two fixed parts.
    assert re.fullmatch(
        r"error: cannot open database postgresql://nobody:\*\*\*@127\.0\.0\.1:1/x: connection failed: "
        r"[^\n]*Connection refused; check --db / OUTREACH_DATABASE\n",
        r.stderr,
    ), r.stderr


def test_init_is_repeatable_and_doctor_passes(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTREACH_PRACTICE_NAME", "Harbor Clinic")  # letters (outbox) need the practice
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "+16175550123")
    c = Cli(sqlite_url)
    r1 = c.ok("init")
    shipped = "rule sets: rulesets does not exist; using the rule sets shipped with outreach\n"
    assert r1.stderr == (
        f"schema: {sqlite_url} created at revision 0022\n"
        "secret: generated a payment-link secret and stored it in the database\n"
        + shipped
        + "".join(f"rule set {name}: created (version 1)\n" for name in ("final-notice", "gentle", "standard"))
    )
    r2 = c.ok("init")
    assert r2.stderr == (
        f"schema: {sqlite_url} is up to date (revision 0022)\n"
        + shipped
        + "".join(f"rule set {name}: unchanged (version 1)\n" for name in ("final-notice", "gentle", "standard"))
    )
    r = c.ok("doctor")
    assert hide_secret(r.stdout) == doctor_output(
        tmp_path / "mail-outbox", *doctor_database(sqlite_url), practice="ok   practice: Harbor Clinic, +16175550123"
    )


def test_config_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach_cli.config import load_settings

    cfg = write(tmp_path / "outreach.toml", 'timezone = "America/Chicago"\n[sending]\nwindow = "10:00-16:00"\n')
    s = load_settings(cwd=tmp_path, environ={})
    assert s.timezone == "America/Chicago" and s.sending.window == "10:00-16:00"
    s = load_settings(
        cwd=tmp_path, environ={"OUTREACH_TIMEZONE": "America/Denver", "OUTREACH_SENDING_WEEKENDS": "true"}
    )
    assert s.timezone == "America/Denver" and s.sending.weekends is True
    s = load_settings(cwd=tmp_path, environ={"OUTREACH_DATABASE": "a.db"}, overrides={"database": "b.db"})
    assert s.database == "sqlite:///b.db"
    other = write(tmp_path / "other.toml", 'timezone = "Europe/Paris"\n')
    s = load_settings(cwd=tmp_path, environ={"OUTREACH_CONFIG": str(other)})
    assert s.timezone == "Europe/Paris"
    assert cfg.exists()


def test_config_errors_are_exit_4(tmp_path: Path) -> None:
    write(tmp_path / "outreach.toml", 'timezone = "Nowhere/Land"\n')
    r = Cli(f"sqlite:///{tmp_path / 'x.db'}")("list")
    cfg = tmp_path / "outreach.toml"
    assert (r.code, r.stderr) == (
        4,
        f"error: {cfg}: timezone: unknown time zone 'Nowhere/Land' (use an IANA name like America/New_York)\n",
    )
    write(tmp_path / "outreach.toml", '[sending]\nwindoww = "1"\n')
    r = Cli(f"sqlite:///{tmp_path / 'x.db'}")("list")
    assert (r.code, r.stderr) == (4, f"error: {cfg}: unknown setting 'sending.windoww'\n")


def test_secret_in_world_readable_config_refused(tmp_path: Path) -> None:
    p = write(tmp_path / "outreach.toml", 'secret = "abc"\n')
    os.chmod(p, 0o644)
    r = Cli(f"sqlite:///{tmp_path / 'x.db'}")("list")
    assert (r.code, r.stderr) == (
        4,
        f"error: config file {p} holds a secret but is readable by others; run `chmod 600 {p}`\n",
    )
    assert "abc" not in r.stderr


def test_rulesets_commands(sqlite_url: str, tmp_path: Path) -> None:
    c = Cli(sqlite_url)
    c.ok("init")
    r = c.ok("rulesets", "list", "--format", "tsv")
    names = [line.split("\t")[0] for line in r.stdout.splitlines()[1:]]
    assert names == ["final-notice", "gentle", "standard"]
    r = c.ok("rulesets", "show", "standard")
    # The header, then each step's day, methods and title, each message under it (the shipped file's).
    steps = [x for x in r.stdout.splitlines() if not x.startswith("          ")]
    assert steps == [
        "standard (version 1): Standard Follow-Up",
        "Text first, then email, a call, a letter, and a final card charge.",
        "expiry day 60; fallback: email, sms, mail",
        "",
        "day   0  sms, email       Statement",
        "day   7  sms              Friendly reminder",
        "day  14  email            Second statement",
        "day  21  call             Reminder call  [balance $25.00..]",
        "day  30  mail             Statement letter",
        "day  45  sms, email       Final notice",
        "day  52  charge_card      Card on file  [balance ..$2,500.00]",
    ]
    bad = write(tmp_path / "bad.toml", 'expiry_day = 1\n[[step]]\nday = 0\nmethods = ["sms"]\n')
    r = c("rulesets", "validate", str(bad))
    assert (r.code, r.stdout, r.stderr) == (
        2,
        f"{bad}: 1 error(s)\n",
        f"{bad}: step 1 (day 0): message: required for sms (or give [step.messages] sms)\n"
        "error: 1 error(s) in 1 rule-set file(s)\n",
    )
    d = tmp_path / "rs"
    d.mkdir()
    write(d / "quick.toml", 'expiry_day = 5\n[[step]]\nday = 0\nmethods = ["mail"]\n')
    c.ok("rulesets", "sync", str(d))
    write(d / "quick.toml", 'expiry_day = 6\n[[step]]\nday = 1\nmethods = ["mail"]\n')
    r = c.ok("rulesets", "sync", str(d))
    assert r.stderr == "rule set quick: updated (version 2)\n"
    write(d / "broken.toml", "expiry_day = 6\n")
    r = c("rulesets", "sync", str(d))
    assert (r.code, r.stderr) == (
        2,
        f"error: 1 rule-set problem(s); nothing was synced\n  {d / 'broken.toml'}: step: at least one [[step]] is required\n",
    )


def test_internal_error_has_no_traceback_without_v(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    c = Cli(sqlite_url)
    c.ok("init")
    import outreach_cli.store.metrics as q

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(q, "metrics", boom)
    r = c("metrics")
    assert (r.code, r.stdout, r.stderr) == (
        1,
        "",
        "error: unexpected internal error (RuntimeError: kaboom); run again with -v for details\n",
    )


def test_demo_runs(tmp_path: Path) -> None:
    r = Cli(f"sqlite:///{tmp_path / 'demo.db'}", now=None)("demo", "--patients", "40", "--days", "3", db=False)
    assert r.code == 0, r
    assert (tmp_path / "demo.db").exists()
    # The demo ends now (the real clock): which sets are due, failed or paid depends on the hour.
    lines = r.stdout.splitlines()
    assert lines[0] == "Status            ┃ Sets ┃ Outstanding"
    [total] = [x for x in lines if x.startswith("Total ")]
    assert re.fullmatch(r"Total {13}│ {3}40 │ +\$[0-9,]+\.[0-9]{2}", total), total
    assert re.fullmatch(
        r"demo: 40 patients, 66 charges, 40 invoice sets in demo\.db\n"
        r"demo: simulated 3 days of outreach ending [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2} UTC\n"
        + re.escape(
            "explore it: outreach --db demo.db list   |   outreach --db demo.db show ID   |   "
            "outreach --db demo.db metrics   |   outreach --db demo.db report --experiment\n"
        ),
        r.stderr,
    ), r.stderr


@pytest.mark.slow
def test_progress_only_on_a_terminal(sqlite_url: str, tmp_path: Path) -> None:
    from tests.helpers import PATIENT_HEADER, patient, write_csv

    c = Cli(sqlite_url)
    c.ok("init")
    f = write_csv(tmp_path / "p.csv", [patient(f"P{i}") for i in range(12000)], PATIENT_HEADER)
    piped = c.ok("import", "patients", str(f))
    assert piped.stderr == "patients: 12,000 imported (12,000 created, 0 updated), 0 unchanged\n"  # the summary only
    c.terminal = Terminal(stderr=True)
    r = c.ok("import", "patients", str(f), "--dry-run")
    assert "importing patients" in r.stderr  # a live display, redrawn as time passes: not a fixed text
    assert c.ok("-q", "import", "patients", str(f), "--dry-run").stderr == ""


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_migrations_match_the_models(db_url: str) -> None:
    """The Alembic head creates exactly the tables, columns and indexes the models declare, on
    SQLite and on PostgreSQL."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import MetaData

    from outreach_cli.store.database import SCHEMA_HEAD, Store
    from outreach_cli.store.models import complete_metadata, include_name

    s = Store(db_url)
    _, after = s.migrate()  # the PostgreSQL fixture's schema may be migrated already
    assert after == SCHEMA_HEAD
    with s.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"include_name": include_name})
        diff = compare_metadata(ctx, complete_metadata())
        # The comparison sees the indexes (built apart from the tables): one left out is a difference.
        fewer = MetaData()
        for t in complete_metadata().sorted_tables:
            t.to_metadata(fewer)
        table = fewer.tables["invoice_set"]
        table.indexes.discard(next(i for i in table.indexes if i.name == "ix_invoice_set_status_next"))
        missing = compare_metadata(ctx, fewer)
    assert diff == [], diff
    assert [(d[0], d[1].name) for d in missing] == [("remove_index", "ix_invoice_set_status_next")], missing


def test_every_command_closes_its_database_connections(cli: Cli, tmp_path: Path) -> None:
    """Each command disposes of its engine when it ends, failing or not: no connection stays
    open (PostgreSQL gets them back at once) and SQLite leaves no `-wal`/`-shm` beside the file."""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    from tests.helpers import PATIENT_HEADER, patient, write_csv

    open_conns: set[int] = set()

    def connected(dbapi_conn: object, _rec: object) -> None:
        open_conns.add(id(dbapi_conn))

    def closed(dbapi_conn: object, _rec: object) -> None:
        open_conns.discard(id(dbapi_conn))

    write_csv(tmp_path / "p.csv", [patient("P1")], PATIENT_HEADER)
    write_csv(tmp_path / "c.csv", [{"charge_id": "C1", "patient_id": "P1", "amount": "10"}])
    event.listen(Pool, "connect", connected)
    event.listen(Pool, "close", closed)
    event.listen(Pool, "close_detached", closed)
    try:
        for args, code in (
            (["init"], 0),
            (["import", "patients", str(tmp_path / "p.csv")], 0),
            (["import", "charges", str(tmp_path / "c.csv")], 0),
            (["list"], 0),
            (["show", "1"], 0),
            (["show", "99"], 3),
            (["act", "pause", "1"], 0),
            (["act", "cancel", "1"], 5),  # refused: no --yes
            (["metrics"], 0),
            (["run-outreach"], 0),
            (["doctor"], 4),  # the practice is not configured
            (["report"], 0),
        ):
            r = cli(*args)
            assert r.code == code, (args, r)
            assert not open_conns, args
            if cli.db.startswith("sqlite"):
                path = cli.db[len("sqlite:///") :]
                assert not [p for p in (path + "-wal", path + "-shm") if os.path.exists(p)], args
    finally:
        event.remove(Pool, "connect", connected)
        event.remove(Pool, "close", closed)
        event.remove(Pool, "close_detached", closed)
