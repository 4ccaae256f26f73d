"""Read commands start fast (SPEC section 12, issue 13): `metrics`, `list`, `show` and `audit`
import only what they use. Checked the way the `--help` import guard is: a real process, then a
look at `sys.modules` (speed itself is measured by bench/, never by tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.helpers import PATIENT_HEADER, patient, write_csv

# Provider SDKs, document/chart makers, migrations, PostgreSQL, the ORM layers: none is needed to
# read the database (pydantic and the rest: tests/cli/test_read_startup.py).
HEAVY = (
    "sqlmodel",
    "sqlalchemy.orm",
    "sqlalchemy.dialects.postgresql",
    "psycopg",
    "alembic",
    "twilio",
    "stripe",
    "fpdf",
    "pygal",
    "holidays",
    "email_validator",
    "phonenumbers",
)
# `show` says when each upcoming send goes out (holiday calendars: holidays). Which methods are
# usable it reads from the facts stored with each number (no phonenumbers).
NEEDED = {"show": {"holidays"}}

READS = [
    ["metrics"],
    ["metrics", "--all"],
    ["list", "--limit", "50"],
    ["list", "--search", "garcia", "--limit", "50"],
    ["list", "--status", "all", "--format", "jsonl"],
    ["list", "--status", "all", "--format", "csv"],
    ["show", "1"],
    ["audit", "--limit", "50"],
]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("reads")
    url = f"sqlite:///{tmp / 'reads.db'}"
    cli = Cli(url)
    cli.ok("init")
    pats = [patient("P1", last_name="Garcia"), patient("P2", first_name="Wei", phone="(617) 555-0102")]
    cli.ok("import", "patients", str(write_csv(tmp / "p.csv", pats, PATIENT_HEADER)))
    rows = [{"charge_id": f"C{i}", "patient_id": f"P{i}", "amount": "10"} for i in (1, 2)]
    cli.ok("import", "charges", str(write_csv(tmp / "c.csv", rows)), "--rule-set", "standard")
    return url


@pytest.mark.parametrize("args", READS, ids=" ".join)
def test_read_commands_import_no_heavy_modules(db: str, args: list[str]) -> None:
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['outreach', '--db', {db!r}, *{args!r}]\n"
        "try:\n    runpy.run_module('outreach_cli', run_name='__main__')\nexcept SystemExit as e:\n"
        "    print('EXIT', e.code, file=sys.stderr)\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=Path.cwd())
    assert "EXIT 0" in r.stderr or "EXIT None" in r.stderr, r.stderr
    assert r.stdout.strip(), r.stderr  # it did print what was asked
    heavy = [m for m in r.stderr.split("HEAVY ", 1)[1].strip().strip("[]").replace("'", "").split(", ") if m]
    assert sorted(set(heavy) - NEEDED.get(args[0], set())) == [], r.stderr
