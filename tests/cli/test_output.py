"""Output formats, tables and times (issues 10 and 11): one `--format` bundle, one `emit()`."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from outreach_cli.cli.context import default_actor
from tests.conftest import Cli, prepared, terminal
from tests.helpers import PATIENT_HEADER, patient, write_csv

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
TIME_KEYS = {"at", "created_at", "next_send_at", "due_at", "sent_at", "anchor_at", "next_attempt_at", "send_at"}

TRICKY = [
    ("P1", 'Robert "Bob"', "O'Connor, Jr."),
    ("P2", "=HYPERLINK(1)", "Smith"),
    ("P3", "Tab\there", "New\nline"),
    ("P4", "Ann", "Lee"),
]


@pytest.fixture
def data(sqlite_url: str) -> Cli:
    """Five sets with tricky names, one will-fail and one paused (built once per run, a copy for
    each test)."""
    return prepared(sqlite_url, "output-tricky", _build)


def _build(c: Cli, tmp_path: Path) -> None:
    people = [patient(pid, first_name=f, last_name=last) for pid, f, last in TRICKY]
    # Set 5: a will-fail set with a long reason (no email, no address, landline phone).
    people.append(
        patient(
            "P5", first_name="Kimberly", last_name="Fitzgerald-Byrne", email="", address_line1="", phone_type="landline"
        )
    )
    write_csv(tmp_path / "p.csv", people, PATIENT_HEADER)
    c.ok("import", "patients", str(tmp_path / "p.csv"))
    amounts = ["12345.67", "100.00", "25.50", "1000.50", "2580.75"]
    write_csv(
        tmp_path / "c.csv",
        [{"charge_id": f"C{i}", "patient_id": f"P{i}", "amount": amounts[i - 1]} for i in range(1, 6)],
    )
    c.ok("import", "charges", str(tmp_path / "c.csv"))
    c.ok("act", "pause", "4", "--reason", "patient disputes the bill")


def walk_times(value: Any, key: str = "") -> list[tuple[str, str]]:
    """Every (key, value) that is a time: a known time key, or a string that looks like one."""
    found: list[tuple[str, str]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            found += walk_times(v, k)
    elif isinstance(value, list):
        for v in value:
            found += walk_times(v, key)
    elif isinstance(value, str) and (key in TIME_KEYS or re.match(r"^\d{4}-\d\d-\d\d[T ]\d", value)):
        found.append((key, value))
    return found


# --- formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,dialect", [("csv", "excel"), ("tsv", "excel-tab")])
def test_D21_csv_and_tsv_round_trip_through_the_csv_module(data: Cli, fmt: str, dialect: str) -> None:
    out = data.ok("list", "--status", "all", "--sort", "id", "--format", fmt).stdout
    rows = list(csv.DictReader(io.StringIO(out), dialect=dialect))
    assert [r["id"] for r in rows] == ["1", "2", "3", "4", "5"]
    names = {r["patient_id"]: r["patient_name"] for r in rows}
    assert names["P1"] == 'Robert "Bob" O\'Connor, Jr.'  # quotes and commas survive unchanged
    assert names["P2"] == "'=HYPERLINK(1) Smith"  # a formula is neutralised for spreadsheets
    assert names["P3"] == "Tab here New line"  # tabs and newlines flattened to spaces
    assert names["P4"] == "Ann Lee"
    assert rows[0]["amount_outstanding"] == "12345.67" and rows[0]["amount_outstanding_cents"] == "1234567"
    assert rows[0]["phone"] == "+16175550100"  # a phone number is not mistaken for a formula
    assert [r["created_at"] for r in rows] == ["2026-03-02T14:00:00Z"] * 5
    if fmt == "tsv":  # one line per row, so `cut -f` works
        assert [len(line.split("\t")) for line in out.splitlines()] == [16] * 6


def test_json_is_one_document_and_jsonl_one_object_per_line(data: Cli) -> None:
    for args in (
        ["list", "--status", "all"],
        ["audit"],
        ["forecast", "--days", "60"],
        ["rulesets", "list"],
        ["run-outreach", "--dry-run"],
        ["act", "pause", "1", "--dry-run"],
    ):
        doc = json.loads(data.ok(*args, "--format", "json").stdout)
        assert isinstance(doc, list) and doc, args
        lines = data.ok(*args, "--format", "jsonl").stdout.splitlines()
        assert [json.loads(x) for x in lines] == doc, args
    # Nothing due: still one (empty) JSON document.
    assert json.loads(data.ok("list", "--search", "nobody-by-this-name", "--format", "json").stdout) == []
    for args in (["metrics"], ["show", "1"], ["rulesets", "show", "gentle"]):
        assert isinstance(json.loads(data.ok(*args, "--format", "json").stdout), dict), args


def test_D16_rulesets_show_in_every_format(data: Cli) -> None:
    doc = json.loads(data.ok("rulesets", "show", "gentle", "--format", "json").stdout)
    steps = list(csv.DictReader(io.StringIO(data.ok("rulesets", "show", "gentle", "--format", "csv").stdout)))
    assert [int(s["day"]) for s in steps] == [s["day"] for s in doc["steps"]]
    assert {s["name"] for s in steps} == {"gentle"}
    tsv = data.ok("rulesets", "show", "gentle", "--format", "tsv").stdout.splitlines()
    assert tsv[0].split("\t")[:4] == ["name", "version", "day", "methods"] and len(tsv) == len(steps) + 1
    jl = [json.loads(x) for x in data.ok("rulesets", "show", "gentle", "--format", "jsonl").stdout.splitlines()]
    assert [x["title"] for x in jl] == [s["title"] for s in doc["steps"]]
    r = data("rulesets", "show", "gentle", "--format", "bogus")
    assert (r.code, r.stdout, r.stderr) == (
        2,
        "",
        usage_error(
            "rulesets show [OPTIONS] NAME",
            "Invalid value for '--format': 'bogus': choose one of table, tsv, csv, json, jsonl",
        ),
    )


def test_metrics_as_tsv_and_csv(data: Cli) -> None:
    m = json.loads(data.ok("metrics", "--all", "--format", "json").stdout)
    for fmt, dialect in (("tsv", "excel-tab"), ("csv", "excel")):
        rows = list(csv.DictReader(io.StringIO(data.ok("metrics", "--all", "--format", fmt).stdout), dialect=dialect))
        by = {(r["section"], r["name"]): r for r in rows}
        assert by[("status", "paused")]["count"] == "1"
        assert by[("status", "paused")]["amount_outstanding_cents"] == str(m["paused"]["amount_outstanding_cents"])
        assert by[("total", "total")]["count"] == str(m["total"]["count"]) == "5"
        assert [r["name"] for r in rows if r["section"] == "aging"] == ["0-30", "31-60", "61-90", "91-120", "120+"]


def usage_error(usage: str, error: str) -> str:
    """Click's stderr for a bad option: the usage line, the help hint, then ``error``."""
    command = usage.split(" [", 1)[0]
    return f"Usage: outreach {usage}\nTry 'outreach {command} -h' for help.\n\nError: {error}\n"


UNKNOWN_RULE_SET = "error: unknown rule set 'nope'; known: final-notice, gentle, standard\n"
TOO_LARGE = "is too large; use at most 9223372036854775807"


@pytest.mark.parametrize(
    "args,stderr",
    [
        (["list", "--rule-set", "nope", "--format", "json"], UNKNOWN_RULE_SET),
        (["list", "--rule-set", "nope", "--format", "csv"], UNKNOWN_RULE_SET),
        (
            ["list", "--sort", "name"],
            "error: --sort 'name': choose one of amount, created, id, next-send, patient, status\n",
        ),
        (
            ["list", "--format", "bad"],
            usage_error(
                "list [OPTIONS]", "Invalid value for '--format': 'bad': choose one of table, tsv, csv, json, jsonl, ids"
            ),
        ),
        (
            ["list", "--limit", "999999999999999999999"],
            usage_error("list [OPTIONS]", f"Invalid value for '--limit': 999999999999999999999 {TOO_LARGE}"),
        ),
        (
            ["list", "--offset", "9223372036854775808"],
            usage_error("list [OPTIONS]", f"Invalid value for '--offset': 9223372036854775808 {TOO_LARGE}"),
        ),
        (
            ["list", "--limit", "ten"],
            usage_error("list [OPTIONS]", "Invalid value for '--limit': 'ten' is not a whole number (e.g. --limit 50)"),
        ),
        (
            ["audit", "--format", "ids"],
            usage_error(
                "audit [OPTIONS]", "Invalid value for '--format': 'ids': choose one of table, tsv, csv, json, jsonl"
            ),
        ),
        (
            ["metrics", "--format", "jsonl"],
            usage_error(
                "metrics [OPTIONS]", "Invalid value for '--format': 'jsonl': choose one of table, tsv, csv, json"
            ),
        ),
        (
            ["show", "1", "--format", "csv"],
            usage_error("show [OPTIONS] ID", "Invalid value for '--format': 'csv': choose one of table, json"),
        ),
        (
            ["run-outreach", "--format", "tsv"],
            "error: --format tsv: only with --dry-run; without it, --format json prints the summary\n",
        ),
        (
            ["forecast", "--days", "-1"],
            usage_error("forecast [OPTIONS]", "Invalid value for '--days': -1 is below 0; use 0 or more"),
        ),
    ],
)
def test_D9_bad_options_write_nothing_to_stdout(data: Cli, args: list[str], stderr: str) -> None:
    r = data(*args)
    assert (r.code, r.stdout, r.stderr) == (2, "", stderr)


def test_show_with_a_patient_id_points_to_search(data: Cli) -> None:
    r = data("show", "P000007")
    assert (r.code, r.stdout, r.stderr) == (
        2,
        "",
        "error: show needs an invoice set ID (a number), not 'P000007';"
        " to find a patient's sets: outreach list --search P000007\n",
    )


# --- times -----------------------------------------------------------------------------------


def test_D19_every_time_in_json_is_utc_whole_seconds(data: Cli) -> None:
    # A clock with microseconds: stored times keep them, printed times do not.
    data.ok("act", "cancel", "3", "--yes", now="2026-03-02T15:00:00.123456Z")
    docs: list[Any] = [
        json.loads(data.ok("list", "--status", "all", "--format", "json").stdout),
        json.loads(data.ok("audit", "--format", "json").stdout),
        json.loads(data.ok("forecast", "--days", "60", "--format", "json").stdout),
    ]
    docs += [json.loads(data.ok("show", str(i), "--format", "json").stdout) for i in range(1, 6)]
    times = [t for d in docs for t in walk_times(d)]
    assert len(times) == 151
    bad = [t for t in times if t[1] is not None and not ISO_Z.match(t[1])]
    assert bad == []
    steps = ["03-02", "03-09", "03-16", "03-23", "04-01", "04-16", "04-23"]  # days 0, 7, 14, 21, 30, 45, 52
    assert sorted(set(times)) == [
        ("anchor_at", "2026-03-02T14:00:00Z"),
        ("at", "2026-03-02T14:00:00Z"),
        ("at", "2026-03-02T15:00:00Z"),  # the cancel, at 15:00:00.123456
        ("created_at", "2026-03-02T14:00:00Z"),
        *(("due_at", f"2026-{d}T14:00:00Z") for d in steps),
        ("next_send_at", "2026-03-02T14:00:00Z"),
        *(("send_at", f"2026-{d}T14:00:00Z") for d in steps),
    ]


def test_D15_audit_rows_lead_with_the_set_id_and_carry_detail_as_an_object(data: Cli) -> None:
    rows = [json.loads(x) for x in data.ok("audit", "--format", "jsonl").stdout.splitlines()]
    keys = ["id", "event_id", "at", "kind", "actor", "action", "from_status", "to_status", "reason", "detail"]
    assert [list(r) for r in rows] == [keys] * len(rows)
    created = [r for r in rows if r["kind"] == "created" and r["id"] == 1]
    assert created == [
        {
            "id": 1,
            "event_id": 1,
            "at": "2026-03-02T14:00:00Z",
            "kind": "created",
            "actor": default_actor(os.environ),  # the user running the tests
            "action": None,
            "from_status": None,
            "to_status": "active",
            "reason": None,
            "detail": {"rule_set": "standard"},
        }
    ]
    tsv = data.ok("audit", "--id", "2", "--format", "tsv").stdout
    assert tsv.splitlines()[0] == "\t".join(keys)
    r = data.ok("act", "pause", "-", input=tsv)  # audit rows pipe into act
    assert (r.stdout, r.stderr) == (
        "id\taction\tresult\tfrom_status\tto_status\treason\n2\tpause\tchanged\tactive\tpaused\t\n",
        "pause: 1 changed, 0 unchanged, 0 ineligible, 0 not found\n",
    )


def test_D19_tables_show_local_readable_times(data: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTREACH_TIMEZONE", "America/New_York")
    terminal(data, monkeypatch, 160)
    show = data.ok("show", "1", now="2026-03-02T15:00:00.123456Z").stdout
    url = json.loads(data.ok("show", "1", "--format", "json").stdout)["payment_url"]
    actor = f"{default_actor(os.environ):<5}"  # the user running the tests, in a column at least "Actor" wide
    assert lines(show) == [
        "Invoice set 1  Active  $12,345.67 outstanding  rule set standard",
        f"  created Mar 2 09:00 (1h ago)   payment link {url}",
        "",
        'Patient Robert "Bob" O\'Connor, Jr. (P1)',
        "  phone +16175550100 (mobile)   email p1@example.com   time zone America/New_York",
        "  address 1 Main St, Boston, MA, 02118",
        "  sms         usable",
        "  call        usable",
        "  email       usable",
        "  mail        usable",
        "  charge_card not usable  no card on file",
        "",
        "Charges",
        "Charge ┃ Created     ┃     Amount ┃ Outstanding ┃ Status      ┃ Description",
        "━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━━━━",
        "C1     │ Mar 2 09:00 │ $12,345.67 │  $12,345.67 │ outstanding │",
        "",
        "Schedule",
        "Day ┃ Step              ┃ Method      ┃ Status  ┃ Due                  ┃ Goes out            ┃ Reason",
        "━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━",
        "  0 │ Statement         │ sms         │ pending │ Mar 2 09:00 (1h ago) │ Mar 2 10:00 (now)   │",
        "  0 │ Statement         │ email       │ pending │ Mar 2 09:00 (1h ago) │ Mar 2 10:00 (now)   │",
        "  7 │ Friendly reminder │ sms         │ pending │ Mar 9 10:00 (in 6d)  │ Mar 9 10:00 (in 6d) │",
        " 14 │ Second statement  │ email       │ pending │ Mar 16 10:00         │ Mar 16 10:00        │",
        " 21 │ Reminder call     │ call        │ pending │ Mar 23 10:00         │ Mar 23 10:00        │",
        " 30 │ Statement letter  │ mail        │ pending │ Apr 1 10:00          │ Apr 1 10:00         │",
        " 45 │ Final notice      │ sms         │ pending │ Apr 16 10:00         │ Apr 16 10:00        │",
        " 45 │ Final notice      │ email       │ pending │ Apr 16 10:00         │ Apr 16 10:00        │",
        " 52 │ Card on file      │ charge_card │ pending │ Apr 23 10:00         │ Apr 23 10:00        │ balance outside this step's min/max balance (will be skipped)",
        "",
        "Timeline",
        f"When                 ┃ Event        ┃ {'Actor':<{len(actor)}} ┃ Change      ┃ Detail",
        f"━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━╇━{'━' * len(actor)}━╇━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━",
        f"Mar 2 09:00 (1h ago) │ created      │ {actor} │ - -> Active │ rule set standard",
        f"Mar 2 09:00 (1h ago) │ charge_added │ {actor} │             │ amount $12,345.67; charge id C1",
    ]
    assert not re.search(r"\d\d:\d\d:\d\d|T\d\d:|\.\d{6}", show)  # no raw ISO, no microseconds
    audit = data.ok("audit", "--id", "4").stdout
    assert audit == set_4_audit("Mar 2 09:00 (now)", actor)  # created 14:00 UTC = 09:00 in New York
    # Cents as dollars (the last row: the wrapping of the one before follows the actor's width).
    assert lines(data.ok("audit", "--id", "5").stdout)[-1] == (
        f"Mar 2 09:00 (now) │   5 │ charge_added │ {actor} │                │ amount $2,580.75; charge id C5"
    )
    later = data.ok("audit", "--id", "4", now="2027-01-05T12:00:00Z").stdout
    assert later == set_4_audit("Mar 2 2026 09:00", actor)  # the year when it is not this year's


def lines(text: str) -> list[str]:
    """``text``'s lines without the blanks a table pads its cells with."""
    return [x.rstrip() for x in text.splitlines()]


def set_4_audit(when: str, actor: str) -> str:
    """`audit --id 4` as a table: set 4 created, its charge, then paused (``when``: each event's time)."""
    a = len(actor)
    w = len(when)
    rows = [
        f"{'When':<{w}} ┃ Set ┃ Event        ┃ {'Actor':<{a}} ┃ Change           ┃ Detail                          ",
        f"{'━' * w}━╇━━━━━╇━━━━━━━━━━━━━━╇━{'━' * a}━╇━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━",
        f"{when} │   4 │ created      │ {actor} │ - -> Active      │ rule set standard               ",
        f"{when} │   4 │ charge_added │ {actor} │                  │ amount $1,000.50; charge id C4  ",
        f"{when} │   4 │ action       │ {actor} │ Active -> Paused │ pause; patient disputes the bill",
    ]
    return "".join(f"{x}\n" for x in rows)


# --- tables at fixed widths ------------------------------------------------------------------


@pytest.mark.parametrize("columns", [80, 100, 120, 160])
def test_D1_list_table_never_cuts_id_status_or_balance(
    data: Cli, monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    terminal(data, monkeypatch, columns)
    r = data.ok("list", "--status", "all", "--sort", "id")
    lines = r.stdout.splitlines()
    assert lines[0].split()[:5] == ["ID", "┃", "Status", "┃", "Balance"]
    assert max(len(x) for x in lines) <= columns
    assert "…" not in r.stdout
    for amount in ("$12,345.67", "$100.00", "$25.50", "$1,000.50", "$2,580.75"):
        assert amount in r.stdout
    body = [x for x in lines[2:] if x.split("│")[0].strip()]
    assert [x.split("│")[0].strip() for x in body] == ["1", "2", "3", "4", "5"]
    assert {x.split("│")[1].strip() for x in body} == {"Active", "Paused", "Will Fail"}
    hidden = {
        80: "Reason, Rule set, Phone, Next step",
        100: "Reason, Rule set, Phone",
        120: "Reason, Rule set",
    }
    if columns < 160:
        assert r.stderr == (
            f"({hidden[columns]} hidden at {columns} columns; --format tsv or a wider terminal shows them)\n"
            "5 invoice sets\n"
        )
    else:
        assert r.stderr == "5 invoice sets\n"
        assert "landline" in r.stdout  # the will-fail reason, wrapped
        # A tab and a line break typed into P3's name are spaces, as in TSV: the row stays one line.
        [p3] = [x for x in body if x.split("│")[0].strip() == "3"]
        assert p3.split("│")[3].strip() == "Tab here New line (P3)"


def test_D1_list_table_at_80_columns_drops_reason_first(data: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal(data, monkeypatch, 80)
    r = data.ok("list", "--status", "all")
    header = r.stdout.splitlines()[0]
    assert header == "ID ┃ Status    ┃    Balance ┃ Patient                        ┃ Next send        "
    assert r.stderr == (
        "(Reason, Rule set, Phone, Next step hidden at 80 columns; --format tsv or a wider terminal shows them)\n"
        "5 invoice sets\n"
    )


def test_D1_other_tables_fit_80_and_120_columns(data: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    for columns in (80, 120):
        terminal(data, monkeypatch, columns)
        for args in (["show", "5"], ["audit"], ["forecast", "--days", "60"], ["metrics", "--all"]):
            out = data.ok(*args).stdout
            assert max(len(x) for x in out.splitlines()) <= columns, (args, columns)
            assert "…" not in out, args
        show = data.ok("show", "5").stdout
        assert "$2,580.75" in show and "Will Fail" in show
        forecast = data.ok("forecast", "--days", "60").stdout
        assert forecast.splitlines()[0].split()[:5] == ["Due", "┃", "Set", "┃", "Prediction"]


def test_list_footer_counts_the_matches(data: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    terminal(data, monkeypatch, 120)
    r = data.ok("list", "--status", "all", "--limit", "2")
    assert r.stderr == "showing 2 of 5 invoice sets; --offset 2 for the next 2\n"
    r = data.ok("list", "--status", "all", "--limit", "2", "--offset", "4")
    assert r.stderr == (
        "(Reason hidden at 120 columns; --format tsv or a wider terminal shows it)\nshowing set 5 of 5 invoice sets\n"
    )
    r = data.ok("list", "--status", "all", "--limit", "0")  # 0 = no limit
    assert r.stderr == (
        "(Reason, Rule set hidden at 120 columns; --format tsv or a wider terminal shows them)\n5 invoice sets\n"
    )
    assert "$2,580.75" in r.stdout


def test_list_on_a_terminal_shows_50_and_says_how_to_see_all(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = Cli(sqlite_url)
    c.ok("init")
    write_csv(tmp_path / "p.csv", [patient(f"P{i:03d}") for i in range(60)], PATIENT_HEADER)
    c.ok("import", "patients", str(tmp_path / "p.csv"))
    write_csv(
        tmp_path / "c.csv", [{"charge_id": f"C{i}", "patient_id": f"P{i:03d}", "amount": "10"} for i in range(60)]
    )
    c.ok("import", "charges", str(tmp_path / "c.csv"))
    terminal(c, monkeypatch, 120)
    r = c.ok("list")
    assert r.stderr == "showing 50 of 60 invoice sets; --limit N or --format tsv for all\n"
    r = c.ok("audit")
    assert r.stderr == "showing the first 50 events; --limit N, --since RANGE or --format tsv for more\n"


# --- help ------------------------------------------------------------------------------------


def _all_commands() -> list[list[str]]:
    from typer.main import get_command

    from outreach_cli.cli.app import app

    out: list[list[str]] = []

    def walk(cmd: object, path: list[str]) -> None:
        out.append(path)
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, [*path, name])

    walk(get_command(app), [])
    return out


def test_every_help_has_an_example_and_plain_metavars(sqlite_url: str) -> None:
    cli = Cli(sqlite_url)
    paths = _all_commands()
    assert len(paths) >= 20
    for path in paths:
        r = cli(*path, "--help", db=False)
        assert r.code == 0, path
        assert re.search(r"^\s+Examples?:$", r.stdout, re.M), f"`outreach {' '.join(path)} --help` has no example"
        usage = r.stdout.splitlines()[0]
        params = r.stdout.split("\nArguments:\n", 1)[-1] if "\nArguments:\n" in r.stdout else ""
        params += r.stdout.split("\nOptions:\n", 1)[-1]
        for line in [usage, *params.splitlines()]:
            assert not re.search(r"<[a-z]|\{[A-Za-z]|x>=|<=x|Input should", line), (path, line)
        for line in r.stdout.split("Commands:")[-1].splitlines() if "Commands:" in r.stdout else []:
            assert not line.rstrip().endswith("..."), (path, line)  # one-liners are not cut


# --- a real terminal -------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")
@pytest.mark.parametrize("columns", [80, 120])
def test_D1_list_in_a_real_terminal(data: Cli, tmp_path: Path, columns: int) -> None:
    exe = Path(sys.executable).with_name("outreach")
    session = f"outreach-test-{columns}-{tmp_path.name}"[:60]
    done = tmp_path / "done"
    cmd = f"{exe} --db '{data.db}' --now 2026-03-02T14:00:00Z list --status all --sort id; touch '{done}'"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(columns), "-y", "50"], check=True)
    try:
        subprocess.run(["tmux", "send-keys", "-t", session, f"clear; {cmd}", "Enter"], check=True)
        for _ in range(600):  # wait for the command to finish (up to a minute on a busy machine)
            if done.exists():
                break
            time.sleep(0.1)
        screen = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session], check=True, capture_output=True, text=True
        ).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    assert done.exists(), screen
    for amount in ("$12,345.67", "$1,000.50", "$2,580.75"):
        assert amount in screen, screen
    assert "Will Fail" in screen and "…" not in screen
    rows = [x.split("│")[0].strip() for x in screen.splitlines() if "│" in x]
    assert [x for x in rows if x] == ["1", "2", "3", "4", "5"]
    if columns == 80:
        assert "Reason" in screen.split("\n", 3)[-1] and "hidden at 80 columns" in screen


def test_collections_export_cells_are_spreadsheet_safe(data: Cli) -> None:
    data.ok("act", "collections", "2", "--yes")
    out = data.ok("collections", "export", "--all").stdout
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["first_name"] == "'=HYPERLINK(1)" and row["last_name"] == "Smith"
    assert row["amount_outstanding"] == "100.00" and row["phone"] == "+16175550100"
    assert row["escalated_at"] == "2026-03-02T14:00:00Z"


def test_layout_keeps_key_columns_whole_and_drops_the_least_important_first() -> None:
    from outreach_cli.cli.output import Col, layout

    cols = [
        Col("id", "ID", keep=True),
        Col("amount", "Balance", keep=True),
        Col("patient", "Patient", wrap=True, min_width=20, drop=1),
        Col("phone", "Phone", drop=2),
        Col("reason", "Reason", wrap=True, min_width=24, drop=3),
    ]
    cells = [["123456", "$12,345.67", "Kimberly Fitzgerald-Byrne (P000015)", "+16175550100", "x " * 60]]
    shown, widths, hidden = layout(cols, cells, 200)  # everything at its natural width
    assert shown == [0, 1, 2, 3, 4] and hidden == [] and widths == [6, 10, 35, 12, 120]
    shown, widths, hidden = layout(cols, cells, 90)  # Patient and Reason wrap, sharing what is left
    assert shown == [0, 1, 2, 3, 4] and widths == [6, 10, 21, 12, 29] and sum(widths) + 3 * 4 == 90
    shown, widths, hidden = layout(cols, cells, 80)  # Reason would go below its minimum: dropped first
    assert [c.key for c in hidden] == ["reason"] and widths == [6, 10, 35, 12]
    shown, widths, hidden = layout(cols, cells, 40)
    assert [c.key for c in hidden] == ["reason", "phone", "patient"] and widths == [6, 10]
    shown, widths, hidden = layout(cols, cells, 10)  # too narrow even for the key columns: none is cut
    assert shown == [0, 1] and widths == [6, 10]


def test_a_whole_words_column_is_never_narrower_than_its_longest_word() -> None:
    """The report's rule-set and step columns wrap between words: "final-notice", not
    "final-notic" over "e" (a word longer than 24 may still be cut)."""
    from outreach_cli.cli.output import Col, layout

    def cols(whole: bool) -> list[Col]:
        return [
            Col("rs", "Rule set", wrap=True, min_width=10, keep=True, whole_words=whole),
            Col("step", "Step", wrap=True, min_width=10, whole_words=whole),
            Col("sets", "Sets", keep=True),
        ]

    cells = [["final-notice", "day 14: Second statement", "27"], ["gentle", "day 0: Statement", "124"]]
    assert layout(cols(False), cells, 32)[1] == [11, 11, 4]  # the spare shared: "final-notic"
    assert layout(cols(True), cells, 32)[1] == [12, 10, 4]  # "Statement" (9) fits in 10
    assert layout(cols(True), [["x" * 30, "a", "1"]], 38)[1] == [24, 4, 4]
