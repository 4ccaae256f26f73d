"""Spreadsheet exports as billing systems write them: `Patient ID` headers, Excel's `sep=` line,
semicolon-separated files, US month/day/year dates."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from outreach_cli.domain.timeutil import parse_datetime
from outreach_cli.imports.readers import Record, read_records

COLUMNS = ("patient_id", "first_name", "last_name")


def read(text: str) -> tuple[list[Record], list[str]]:
    errors: list[str] = []
    return list(read_records(text, "csv", columns=COLUMNS, errors=errors)), errors


@pytest.mark.parametrize(
    "text, line",
    [
        ("Patient ID,First Name,Last-Name\nP1,Ann,Lee\n", 2),
        ("sep=;\npatient_id;first_name;last_name\nP1;Ann;Lee\n", 3),
        ("patient_id;first_name;last_name\nP1;Ann;Lee\n", 2),
        ("sep=,\r\nPATIENT_ID , First Name,last name\r\nP1,Ann,Lee\r\n", 3),
    ],
)
def test_spreadsheet_exports_read_as_the_same_record(text: str, line: int) -> None:
    records, errors = read(text)
    assert errors == []
    assert records == [Record(line, {"patient_id": "P1", "first_name": "Ann", "last_name": "Lee"})]


def test_unknown_columns_still_named_after_normalising() -> None:
    with pytest.raises(Exception, match="unknown column\\(s\\) 'date_of_birth'"):
        read("Patient ID,Date of Birth\nP1,1970-01-01\n")


def test_us_dates_are_month_day_year_in_the_given_zone() -> None:
    ny = ZoneInfo("America/New_York")
    assert parse_datetime("11/05/2026", ny) == datetime(2026, 11, 5, 5, 0, tzinfo=UTC)
    assert parse_datetime("1/2/2026 14:30", UTC) == datetime(2026, 1, 2, 14, 30, tzinfo=UTC)
    assert parse_datetime("2026-11-05", UTC) == datetime(2026, 11, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="month/day/year"):
        parse_datetime("13/05/2026")
