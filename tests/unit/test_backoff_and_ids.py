"""Retry backoff and the ID stream (`act ... -`), checked directly."""

from __future__ import annotations

from datetime import timedelta

import pytest

from outreach_cli.core.engine import backoff
from outreach_cli.core.errors import InvalidInput
from outreach_cli.core.idstream import parse_id_args, parse_ids


@pytest.mark.parametrize(("attempt", "minutes"), [(0, 5), (1, 5), (2, 20), (3, 80), (4, 320), (5, 1280)])
def test_backoff_quadruples_from_five_minutes(attempt: int, minutes: int) -> None:
    assert backoff(attempt) == timedelta(minutes=minutes)


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("", []),
        ("1\n2\n3\n", [1, 2, 3]),
        ("20 27 30\n", [20, 27, 30]),
        ("20,27\n", [20, 27]),
        ("3\n1\n3\n2\n1\n", [3, 1, 2]),  # duplicates collapse, first place kept
        ("# picked by hand\n\n  7  \n", [7]),
        ("\ufeff5\n", [5]),
        ('{"id": 4, "name": "x"}\n{"id": "9"}\n', [4, 9]),
        ('{"invoice_set_id": 11}\n{"set_id": 12}\n', [11, 12]),
        ("id\tstatus\n5\tactive\n6\tpaused\n", [5, 6]),
        ('invoice_set_id,name\n8,"Doe, Jane"\n', [8]),
        ("set_id\n13\n", [13]),
        ("ID\n14\n", [14]),
    ],
)
def test_parse_ids_accepts(text: str, ids: list[int]) -> None:
    assert parse_ids(text) == ids


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1\nabc\n", "line 2: not an invoice set ID: 'abc' (IDs are whole numbers)"),
        ("-4\n", "line 1: not an invoice set ID: '-4' (IDs are whole numbers)"),
        ('{"id": 27.0}\n', "line 1: not an invoice set ID: '27.0' (IDs are whole numbers)"),
        ('{"id": true}\n', "line 1: not an invoice set ID: 'true' (IDs are whole numbers)"),
        ('{"id": "27a"}\n', "line 1: not an invoice set ID: '27a' (IDs are whole numbers)"),
        ('{"name": 1}\n', 'line 1: JSON object without an "id" key'),
        ("{oops\n", "line 1: not valid JSON: "),
        ("[1, 2]\n", "line 1: a JSON array; use --format jsonl or ids to pipe sets"),
        ("x" * 60 + "\n", "line 1: not an invoice set ID: '" + "x" * 40 + "...' (IDs are whole numbers)"),
    ],
)
def test_parse_ids_rejects_naming_the_line(text: str, problem: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_ids(text, source="ids.txt")
    assert err.value.message == "ids.txt: 1 unreadable line(s); nothing was changed"
    assert len(err.value.details) == 1 and err.value.details[0].startswith(problem)


def test_parse_ids_reports_every_bad_line_and_changes_nothing() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_ids("1\nx\n2\ny\n")
    assert err.value.message == "<stdin>: 2 unreadable line(s); nothing was changed"
    assert [d.split(":")[0] for d in err.value.details] == ["line 2", "line 4"]


@pytest.mark.parametrize(("args", "ids"), [(["1"], [1]), (["1,2", "3"], [1, 2, 3]), (["2, 1,", "2"], [2, 1]), ([], [])])
def test_parse_id_args(args: list[str], ids: list[int]) -> None:
    assert parse_id_args(args) == ids


@pytest.mark.parametrize("bad", ["1.5", "-1", "abc", "1" * 19])
def test_parse_id_args_rejects(bad: str) -> None:
    with pytest.raises(InvalidInput, match=f"not an invoice set ID: '{bad}'"):
        parse_id_args(["1", bad])
