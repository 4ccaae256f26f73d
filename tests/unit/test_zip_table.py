"""The ZIP table packaged with outreach equals the `zipcodes` package's data for every code, and
a lookup reads it without starting the package (`show` paid 0.2 s for that at 1M sets, issue 13)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from outreach_cli.domain import contacts, zipdata


def test_the_packaged_table_is_the_package_data() -> None:
    packaged = zipdata.read_table(contacts._known_zone)
    assert packaged == zipdata.from_package(contacts._known_zone)
    assert len(packaged) > 40_000


def test_write_then_read_gives_the_same_table(tmp_path: Path) -> None:
    table = {
        "02115": ("America/New_York", "MA"),
        "97635": ("America/Los_Angeles", "OR"),
        "00501": ("America/New_York", "NY"),
    }
    path = tmp_path / "z.txt"
    zipdata.write_table(table, path)
    assert zipdata.read_table(contacts._known_zone, path) == table


@pytest.mark.parametrize(
    ("postal_code", "country", "expected"),
    [
        ("02115-1234", "US", ("America/New_York", "MA")),
        ("2115", None, ("America/New_York", "MA")),  # a spreadsheet dropped the leading zero
        ("60601", "USA", ("America/Chicago", "IL")),
        ("94105", None, ("America/Los_Angeles", "CA")),
        ("00000", None, None),
        ("ABCDE", None, None),
        ("123456", None, None),
        ("02115", "CA", None),  # not a US address
        (None, None, None),
    ],
)
def test_zip_row(postal_code: str | None, country: str | None, expected: tuple[str, str] | None) -> None:
    assert contacts._zip_row(postal_code, country) == expected


def test_a_lookup_does_not_start_the_zipcodes_package() -> None:
    code = (
        "import sys; from outreach_cli.domain import contacts; "
        "assert contacts._zip_row('02115', 'US') == ('America/New_York', 'MA'); "
        "print('zipcodes' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_one_code_found_in_the_text_is_the_tables() -> None:
    """`show` finds its one code in the text (`find_code`) instead of building the table: the two agree."""
    import random

    table = zipdata.read_table(contacts._known_zone)
    rng = random.Random(13)
    codes = rng.sample(sorted(table), 500) + [f"{n:05d}" for n in rng.sample(range(100_000), 300)]
    assert {c: zipdata.find_code(c, contacts._known_zone) for c in codes} == {c: table.get(c) for c in codes}


def test_find_code_takes_the_last_line_with_a_known_zone(tmp_path: Path) -> None:
    path = tmp_path / "z.txt"
    path.write_text(
        "America/Chicago\tIL\t60601 02115\nNowhere/Zone\tXX\t02115 60601\nAmerica/New_York\tMA\t02115 99999\n"
        "Nowhere/Zone\tXX\t99999\n",
        encoding="utf-8",
    )
    table = zipdata.read_table(contacts._known_zone, path)
    for code in ("02115", "60601", "99999", "00000", "0211", "21150"):
        assert zipdata.find_code(code, contacts._known_zone, path) == table.get(code), code
    assert zipdata.find_code("02115", contacts._known_zone, path) == ("America/New_York", "MA")
