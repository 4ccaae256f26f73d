"""Malformed input for every command that reads input: no traceback ever, the documented exit
code, nothing written. Plus property-based fuzzing of the parsers."""

from __future__ import annotations

import string
from datetime import UTC
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from outreach_cli.domain.errors import InvalidInput
from outreach_cli.domain.idstream import parse_ids
from outreach_cli.domain.money import parse_dollars
from outreach_cli.domain.ranges import parse_amount_range, parse_time_range
from outreach_cli.domain.rulesets import parse_text
from outreach_cli.domain.statuses import parse_status_list
from tests.conftest import Cli
from tests.helpers import PATIENT_HEADER, dump, patient, write_csv

CSV_CORPUS = {
    "latin1": "patient_id,first_name\nP1,Jos\xe9\n".encode("latin-1"),
    "utf16": "patient_id,first_name\nP1,Ann\n".encode("utf-16"),
    "nul": b"patient_id,first_name\nP1,A\x00nn\n",
    "empty": b"",
    "header only": b"patient_id,first_name\n",
    "missing column values": b"patient_id,first_name,last_name\nP1\n",
    "too many values": b"patient_id,first_name\nP1,Ann,Extra,More\n",
    "unknown column": b"patient_id,first_name,ssn\nP1,Ann,123\n",
    "duplicate column": b"patient_id,first_name,first_name\nP1,Ann,Bo\n",
    "huge field": b"patient_id,first_name\nP1," + b"A" * 200_000 + b"\n",
    "unterminated quote": b'patient_id,first_name\nP1,"Ann\n',
    "json array": b'[{"patient_id": "P1", "first_name": "Ann"}]\n',
    "json scalar": b'"P1"\n',
    "json nested": b'{"patient_id": "P1", "first_name": {"x": 1}}\n',
    "binary": bytes(range(256)),
}


@pytest.mark.parametrize("name", list(CSV_CORPUS))
def test_malformed_patient_files(cli: Cli, tmp_path: Path, name: str) -> None:
    before = dump(cli.db)
    f = tmp_path / ("in.jsonl" if name.startswith("json") else "in.csv")
    f.write_bytes(CSV_CORPUS[name])
    r = cli("import", "patients", str(f))
    assert r.code in (0, 2), r
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    if r.code == 2:
        assert dump(cli.db) == before
    else:
        assert name in ("header only",), r


@pytest.mark.parametrize(
    "body,problem",
    [
        ("charge_id,patient_id,amount\nC1,P1,\n", "amount: required (dollars like 120.50, or amount_cents)"),
        (
            "charge_id,patient_id,amount\nC1,P1,1e9\n",
            "amount: not an amount: '1e9' (use dollars like 120.50 or $1,200.00)",
        ),
        (
            "charge_id,patient_id,amount\nC1,P1,99999999999999999999999\n",
            "amount: above $10,000,000.00, the largest accepted amount",
        ),
        ("charge_id,patient_id\nC1,P1\n", "amount: required (dollars like 120.50, or amount_cents)"),
        ("charge_id,patient_id,amount,amount_cents\nC1,P1,1.00,100\n", "amount: give amount or amount_cents, not both"),
        (
            "charge_id,patient_id,amount,created_at\nC1,P1,1,yesterday-ish\n",
            "created_at: not a date or datetime: 'yesterday-ish' (use 2026-03-01, 2026-03-01T14:30 or 2026-03-01T14:30:00Z)",
        ),
        ("charge_id,patient_id,amount\n,P1,1\n", "charge_id: required"),
        ("charge_id,patient_id,amount\nC1,P1,0\n", "amount: must be greater than zero, got $0.00"),
    ],
)
def test_malformed_charges(cli: Cli, tmp_path: Path, body: str, problem: str) -> None:
    write_csv(tmp_path / "p.csv", [patient("P1")], PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    before = dump(cli.db)
    (tmp_path / "c.csv").write_text(body)
    r = cli("import", "charges", str(tmp_path / "c.csv"))
    # The only row is bad: no --skip-invalid hint.
    assert (r.code, r.stderr) == (
        2,
        f"error: {tmp_path / 'c.csv'}: 1 problem(s); nothing was imported\n  line 2: {problem}\n",
    )
    assert dump(cli.db) == before


DATES = (
    "A..B with dates (2026-03-01), datetimes (2026-03-01T14:30, ...Z or +02:00), today, yesterday, tomorrow, -7d,"
    " +3d, -2w; open ends allowed (2026-03-01.., ..today)"
)
NOT_A_TIME = "(use 2026-03-01, 2026-03-01T14:30 or 2026-03-01T14:30:00Z)"


def _usage(command: str, error: str) -> str:
    return f"Usage: outreach {command}\nTry 'outreach {command.split()[0]} -h' for help.\n\nError: {error}\n"


@pytest.mark.parametrize(
    "args,stderr",
    [
        (
            ["list", "--amount", "$$$"],
            "error: --amount '$$$': not an amount: '$$$' (use dollars like 120.50 or $1,200.00); accepted forms:"
            " 100..500, 100.., ..50, 75 (dollars, inclusive)\n",
        ),
        (
            ["list", "--created", "2026-99-99"],
            f"error: --created '2026-99-99': month must be in 1..12; accepted forms: {DATES}; a single value means"
            " that whole day\n",
        ),
        (
            ["list", "--send-time", "..."],
            f"error: --send-time '...': not a range: use A..B (two dots); accepted forms: {DATES}; a single value"
            " means that whole day\n",
        ),
        (
            ["list", "--status", ""],
            "error: --status is empty; accepted: active, paused, expired, failed, will-fail, paid, cancelled,"
            " written-off, collections (any case; '_' or space for '-'), open, all\n",
        ),
        (
            ["list", "--limit", "-1"],
            _usage("list [OPTIONS]", "Invalid value for '--limit': -1 is below 0; use 0 or more"),
        ),
        (
            ["list", "--search", ""],
            "error: --search is empty; give a name, phone number, patient ID or invoice set ID\n",
        ),
        (
            ["show", "abc"],
            "error: show needs an invoice set ID (a number), not 'abc'; to find a patient's sets:"
            " outreach list --search abc\n",
        ),
        (
            ["show", "99999999999999999999999"],
            "error: show: '99999999999999999999999' is not an invoice set ID (IDs are 1 to 9223372036854775807)\n",
        ),
        (
            ["act", "explode", "1"],
            "error: unknown action 'explode'; accepted: write-off, collections, change-ruleset, pause, resume, cancel\n",
        ),
        (
            ["act", "pause", "1; DROP TABLE event"],
            "error: not an invoice set ID: '1; DROP TABLE event' (IDs are whole numbers; use - to read them from"
            " stdin)\n",
        ),
        (
            ["audit", "--since", "whenever"],
            f"error: --since 'whenever': not a date or datetime; accepted forms: {DATES};"
            " a single value means from then on\n",
        ),
        (
            ["forecast", "--days", "-3"],
            _usage("forecast [OPTIONS]", "Invalid value for '--days': -3 is below 0; use 0 or more"),
        ),
        (
            ["--now", "not-a-time", "list"],
            f"error: --now 'not-a-time': not a date or datetime {NOT_A_TIME}\n",
        ),
        (["import", "widgets", "x.csv"], _usage("import [OPTIONS] COMMAND [ARGS]...", "No such command 'widgets'.")),
        (["rulesets", "show", "nope"], "error: unknown rule set 'nope'; known: final-notice, gentle, standard\n"),
        (["events", "ingest", "missing.jsonl"], "error: missing.jsonl: no such file\n"),
    ],
)
def test_bad_arguments_exit_2(cli: Cli, args: list[str], stderr: str) -> None:
    before = dump(cli.db)
    r = cli(*args)
    assert (r.code, r.stderr) == (2, stderr), r
    assert dump(cli.db) == before


def test_junk_on_stdin_for_act(cli: Cli) -> None:
    for junk in ("1\n\x00\n", "[1, 2]\n", '{"idx": 1}\n', "1\t2\n-5\n", "\xff\xfe junk", "9" * 40 + "\n"):
        r = cli("act", "pause", "-", input=junk)
        assert r.code == 2 and "Traceback" not in r.stderr, (junk, r)


def test_sql_injection_strings_in_search(cli: Cli, tmp_path: Path) -> None:
    write_csv(tmp_path / "p.csv", [patient("P1")], PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    write_csv(tmp_path / "c.csv", [{"charge_id": "C1", "patient_id": "P1", "amount": "5"}])
    cli.ok("import", "charges", str(tmp_path / "c.csv"))
    for s in ("' OR '1'='1", "1; DROP TABLE patient; --", "\\", "%_%", '" OR 1=1 --', "Robert'); DROP TABLE event;--"):
        r = cli("list", "--search", s, "--format", "ids")
        assert r.code == 0 and r.stdout == "", (s, r)
    assert cli.ok("list", "--format", "ids").stdout.split() == ["1"]


# --- fuzzing the parsers -----------------------------------------------------------------------

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_fuzz_amounts_and_ranges(text: str) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    try:
        parse_dollars(text)
    except ValueError:
        pass
    for fn in (
        lambda: parse_amount_range(text),
        lambda: parse_time_range(text, tz=ZoneInfo("America/New_York"), now=datetime(2026, 3, 1, tzinfo=UTC)),
        lambda: parse_status_list([text]),
    ):
        try:
            fn()
        except InvalidInput:
            pass


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable + 'é{}[]"', max_size=200))
def test_fuzz_id_streams(text: str) -> None:
    try:
        ids = parse_ids(text)
    except InvalidInput:
        return
    assert all(isinstance(i, int) and i >= 0 for i in ids)
    assert len(ids) == len(set(ids))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_rule_set_text(text: str) -> None:
    report = parse_text(text, name="fuzz", source="fuzz.toml")
    assert report.rule_set is not None or report.errors


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_fuzz_import_bytes(sqlite_url: str, data: bytes) -> None:
    import os

    c = Cli(sqlite_url)
    if not os.path.exists(sqlite_url.split("///", 1)[1]):
        c.ok("init")
    r = c("import", "patients", "-", "--input-format", "csv", input=data)
    assert r.code in (0, 2, 3) and "Traceback" not in r.stderr, r
