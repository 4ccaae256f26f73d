"""`list` filters: edge cases of every filter, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli, prepared
from tests.helpers import PATIENT_HEADER, patient, write_csv


@pytest.fixture
def data(db_url: str) -> Cli:
    """Four sets, each created on its own day (built once per run and database kind, a copy for
    each test)."""
    return prepared(db_url, "list-filters", _build)


def _build(cli: Cli, tmp_path: Path) -> None:
    pts = [
        patient("A-100", first_name="Alice", last_name="Moreno", phone="(617) 555-0100"),
        patient("B-200", first_name="Bob", last_name="Okafor", phone="+1 212 555 0199"),
        patient("C-300", first_name="Carmen", last_name="alice-smith", phone=""),
        patient("D-400", first_name="Dan", last_name="Lee", phone="312-555-0142"),
    ]
    write_csv(tmp_path / "p.csv", pts, PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    amounts = {"A-100": "100.00", "B-200": "500.00", "C-300": "75.00", "D-400": "500.01"}
    days = {
        "A-100": "2026-02-27T12:00:00Z",
        "B-200": "2026-02-28T12:00:00Z",
        "C-300": "2026-03-01T12:00:00Z",
        "D-400": "2026-03-02T12:00:00Z",
    }
    # Sets are created "now" (the tool's clock), so create each on its own day.
    for i, (pid, amt) in enumerate(amounts.items()):
        write_csv(tmp_path / f"c{i}.csv", [{"charge_id": f"C{i}", "patient_id": pid, "amount": amt}])
        cli.ok(
            "import",
            "charges",
            str(tmp_path / f"c{i}.csv"),
            *(["--rule-set", "gentle"] if pid == "D-400" else []),
            now=days[pid],
        )


def ids(cli: Cli, *args: str, now: str | None = None) -> list[int]:
    return [int(x) for x in cli.ok("list", "--format", "ids", "--sort", "id", *args, now=now).stdout.split()]


def test_amount_ranges_inclusive(data: Cli) -> None:
    assert ids(data, "--amount", "100..500") == [1, 2]
    assert ids(data, "--amount", "500..") == [2, 4]
    assert ids(data, "--amount", "..75") == [3]
    assert ids(data, "--amount", "75") == [3]
    assert ids(data, "--amount", "500.01") == [4]
    assert ids(data, "--amount", "$75.00..$100") == [1, 3]


def test_search(data: Cli) -> None:
    assert ids(data, "--search", "alice") == [1, 3]  # first name and a last name containing it
    assert ids(data, "--search", "ALICE MORENO") == [1]  # full name, any case
    assert ids(data, "--search", "(617) 555-0100") == [1]
    assert ids(data, "--search", "617-555-0100") == [1]
    assert ids(data, "--search", "+16175550100") == [1]
    assert ids(data, "--search", "5550199") == [2]  # 4+ digits: a digit substring
    assert ids(data, "--search", "b-200") == [2]  # patient ID, any case
    assert ids(data, "--search", "3") == [3]  # set ID
    assert ids(data, "--search", "'; DROP TABLE patient; --") == []
    assert ids(data, "--search", "%") == []
    assert ids(data) == [1, 2, 3, 4]


def test_created_ranges(data: Cli) -> None:
    now = "2026-03-02T15:00:00Z"  # practice zone is UTC by default
    assert ids(data, "--created", "2026-02-28..2026-03-01", now=now) == [2, 3]  # whole days, inclusive
    assert ids(data, "--created", "2026-03-01..", now=now) == [3, 4]
    assert ids(data, "--created", "..2026-02-27", now=now) == [1]
    assert ids(data, "--created", "today", now=now) == [4]
    assert ids(data, "--created", "yesterday", now=now) == [3]
    assert ids(data, "--created", "-2d..", now=now) == [2, 3, 4]
    assert ids(data, "--created", "2026-02-28T12:00:00Z..2026-02-28T12:00:00Z", now=now) == [2]


def test_created_in_practice_time_zone(data: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTREACH_TIMEZONE", "Asia/Tokyo")  # 12:00Z is 21:00 the same day in Tokyo
    assert ids(data, "--created", "2026-02-28") == [2]
    monkeypatch.setenv("OUTREACH_TIMEZONE", "Pacific/Kiritimati")  # UTC+14: 12:00Z is 02:00 the next day
    assert ids(data, "--created", "2026-03-01") == [2]


def test_send_time_and_rule_set(data: Cli) -> None:
    all_rows = [json.loads(x) for x in data.ok("list", "--format", "jsonl").stdout.splitlines()]
    first = min(r["next_send_at"] for r in all_rows)
    day = first[:10]
    got = ids(data, "--send-time", day)
    assert got and all(r["next_send_at"].startswith(day) for r in all_rows if r["id"] in got)
    assert ids(data, "--rule-set", "gentle") == [4]
    assert ids(data, "--rule-set", "gentle,standard") == [1, 2, 3, 4]
    r = data("list", "--rule-set", "nope")
    assert (r.code, r.stderr) == (2, "error: unknown rule set 'nope'; known: final-notice, gentle, standard\n")


def test_status_spellings_and_all(data: Cli) -> None:
    data.ok("act", "pause", "2")
    data.ok("act", "cancel", "3", "--yes")
    assert ids(data) == [1, 2, 4]  # default: the open statuses
    assert ids(data, "--status", "Paused") == [2]
    assert ids(data, "--status", "PAUSED,active") == [1, 2, 4]
    assert ids(data, "--status", "paused", "--status", "cancelled") == [2, 3]
    assert ids(data, "--status", "all") == [1, 2, 3, 4]
    assert ids(data, "--status", "will_fail") == []


def test_sort_limit_offset(data: Cli) -> None:
    def order(*args: str) -> list[int]:
        return [int(x) for x in data.ok("list", "--format", "ids", *args).stdout.split()]

    assert order("--sort", "amount") == [3, 1, 2, 4]
    assert order("--sort", "amount", "--desc") == [4, 2, 1, 3]
    assert order("--sort", "patient") == [3, 4, 1, 2]  # alice-smith, Lee, Moreno, Okafor: any case
    assert order("--sort", "created", "--limit", "2") == [1, 2]
    assert order("--sort", "created", "--limit", "2", "--offset", "2") == [3, 4]
    assert order("--sort", "id", "--desc") == [4, 3, 2, 1]
    data.ok("act", "pause", "1")
    assert order("--sort", "next-send")[-1] == 1  # no next send: last


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--amount", "1..x"], "100..500"),
        (["--created", "2026-02-30"], "today, yesterday"),
        (["--send-time", "soon"], "-7d"),
        (["--status", "asleep"], "will-fail"),
        (["--sort", "name"], "next-send"),
        (["--format", "xml"], "jsonl"),
        (["--created", "2026-03-05..2026-03-01"], "accepted forms"),
    ],
)
def test_bad_values_exit_2_with_accepted_forms(data: Cli, args: list[str], needle: str) -> None:
    r = data("list", *args)
    assert r.code == 2 and needle in r.stderr, r
