"""Read commands load only what they use (SPEC section 12, issue 13), checked in a real process
with `sys.modules` as the `--help` guard does (speed itself is measured by bench/reads.py):
no pydantic (typer 0.29 built a pydantic adapter per option on every run), no rich unless a
table is printed, no other command's module, no engine, importer or provider SDK, and `metrics`
builds no schema (`models`) at all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.helpers import PATIENT_HEADER, patient, write_csv

NEVER = (
    "pydantic",
    "outreach_cli.outreach.engine",
    "outreach_cli.imports.importer",
    "outreach_cli.store.actions",
    "outreach_cli.domain.report",
    "outreach_cli.cli.cmd_import",
    "outreach_cli.cli.cmd_engine",
    "outreach_cli.cli.cmd_report",
    "outreach_cli.cli.cmd_demo",
    "outreach_cli.cli.cmd_act",
    "twilio",
    "stripe",
    "alembic",
    "sqlalchemy.orm",
    "phonenumbers",  # `show` reads each number's stored facts (patient.phone_valid, phone_tz)
    "email_validator",
    "outreach_cli.provider_settings",  # Twilio, SMTP and Stripe settings: built by senders only
)
# args, modules that must not be loaded besides NEVER
READS = [
    (["metrics", "--format", "json"], ("rich", "outreach_cli.store.models", "outreach_cli.store.queries")),
    (["metrics", "--all", "--format", "csv"], ("rich", "outreach_cli.store.models", "outreach_cli.store.queries")),
    # A table written to a pipe is drawn without rich when rich would draw it plainly (output.plain_table).
    (["metrics"], ("rich", "outreach_cli.store.models", "outreach_cli.store.queries")),
    (["metrics", "--all"], ("rich", "outreach_cli.store.models", "outreach_cli.store.queries")),
    (["list", "--limit", "50", "--format", "tsv"], ("rich", "outreach_cli.cli.cmd_admin")),
    (["list", "--search", "garcia", "--format", "jsonl"], ("rich", "outreach_cli.cli.cmd_admin")),
    (["show", "1", "--format", "json"], ("rich", "outreach_cli.cli.cmd_list")),
    # no range filter, and the rule sets read by name: neither's code is loaded
    (
        ["list", "--limit", "50", "--format", "jsonl"],
        ("rich", "outreach_cli.domain.ranges", "outreach_cli.domain.views", "outreach_cli.domain.rulesets"),
    ),
    # the event log alone: not the set queries, the rule sets or the range parsers
    (
        ["audit", "--limit", "50", "--format", "jsonl"],
        ("rich", "outreach_cli.cli.cmd_list", "outreach_cli.store.queries", "outreach_cli.domain.rulesets"),
    ),
    (["audit", "--limit", "50"], ("rich", "outreach_cli.store.queries", "outreach_cli.domain.ranges")),
]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("startup")
    url = f"sqlite:///{tmp / 'reads.db'}"
    cli = Cli(url)
    cli.ok("init")
    cli.ok("import", "patients", str(write_csv(tmp / "p.csv", [patient("P1", last_name="Garcia")], PATIENT_HEADER)))
    rows = [{"charge_id": "C1", "patient_id": "P1", "amount": "10"}]
    cli.ok("import", "charges", str(write_csv(tmp / "c.csv", rows)), "--rule-set", "standard")
    return url


def loaded(db: str, args: list[str], names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` a whole `outreach` process running ``args`` imported."""
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['outreach', '--db', {db!r}, *{args!r}]\n"
        "try:\n    runpy.run_module('outreach_cli', run_name='__main__')\nexcept SystemExit as e:\n"
        "    print('EXIT', e.code, file=sys.stderr)\n"
        f"print('LOADED', ','.join(m for m in {names!r} if m in sys.modules), file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=Path.cwd())
    assert "EXIT 0" in r.stderr or "EXIT None" in r.stderr, r.stderr
    assert r.stdout.strip(), r.stderr
    return [m for m in r.stderr.rsplit("LOADED ", 1)[1].strip().split(",") if m]


@pytest.mark.parametrize(("args", "also"), READS, ids=[" ".join(a) for a, _ in READS])
def test_read_commands_load_only_what_they_use(db: str, args: list[str], also: tuple[str, ...]) -> None:
    assert loaded(db, args, NEVER + also) == []


def test_the_guard_can_see_a_module_loaded(db: str) -> None:
    """The check itself works: `show` as text does load rich, and the schema; a number with no
    stored facts is parsed (phonenumbers)."""
    assert loaded(db, ["show", "1"], ("rich", "outreach_cli.store.models")) == ["rich", "outreach_cli.store.models"]
    from sqlalchemy import create_engine, text

    url = db.replace("reads.db", "unknown.db")
    Path(url.split("///", 1)[1]).write_bytes(Path(db.split("///", 1)[1]).read_bytes())
    with create_engine(url).begin() as conn:
        conn.execute(text("UPDATE patient SET phone_valid = NULL"))
    assert loaded(url, ["show", "1", "--format", "json"], ("phonenumbers",)) == ["phonenumbers"]


def test_every_command_is_registered_by_the_module_named_for_it() -> None:
    """A run loads only the module `COMMAND_MODULES` names for its command: the map must hold
    every command of the whole tree, and each module must register the commands mapped to it."""
    from typer.main import get_command

    from outreach_cli.cli import app as app_mod

    whole = get_command(app_mod.build_app())
    assert sorted(whole.commands) == sorted(app_mod.COMMAND_MODULES)  # type: ignore[attr-defined]
    for name, module in app_mod.COMMAND_MODULES.items():
        assert name in get_command(app_mod.build_app([module])).commands  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["metrics"], "metrics"),
        (["--db", "x.db", "-q", "list", "--db", "y"], "list"),
        (["--db=x.db", "show", "1"], "show"),
        (["--help"], None),
        (["--version"], None),
        (["nonsense"], None),
        ([], None),
    ],
)
def test_command_name(args: list[str], name: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    from outreach_cli.cli.app import command_name

    monkeypatch.delenv("_OUTREACH_COMPLETE", raising=False)
    assert command_name(args) == name
    monkeypatch.setenv("_OUTREACH_COMPLETE", "complete_bash")  # completion needs the whole tree
    assert command_name(args) is None
