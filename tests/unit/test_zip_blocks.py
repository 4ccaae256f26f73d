"""ZIP codes looked up an area (3-digit prefix) at a time answer exactly as the whole table built
from the `zipcodes` package, for every code, including areas whose codes span two zones."""

from __future__ import annotations

from collections import defaultdict

from outreach_cli.domain import contacts


def test_the_areas_together_are_the_table() -> None:
    table = contacts._zip_data()
    joined: dict[str, tuple[str, str]] = {}
    for n in range(1000):
        prefix = f"{n:03d}"
        block = contacts._zip_block.__wrapped__(prefix)
        assert all(code.startswith(prefix) and len(code) == 5 for code in block)
        joined.update(block)
    assert joined == table
    by_area: dict[str, set[str]] = defaultdict(set)
    for code, (tz, _) in table.items():
        by_area[code[:3]].add(tz)
    assert any(len(zones) > 1 for zones in by_area.values())  # the check covers split areas


def test_every_code_answers_as_the_table() -> None:
    table = contacts._zip_data()
    contacts._zip_block.cache_clear()
    for n in range(100_000):
        code = f"{n:05d}"
        assert contacts._zip_one(code) == table.get(code), code


def test_lookups_by_area_and_by_table_agree() -> None:
    """`zip_zone` and `zone_sources` through the area path equal the table path (ZIP+4, a lost
    leading zero, codes in split areas, codes not in the package)."""
    codes = ["02118", "2118", "83814-1234", "32502", "97914", "79835", "57552", "00000", "99999", "96799", "1"]
    contacts._zip_data.cache_clear()
    contacts._zip_block.cache_clear()
    by_area = [(contacts.zip_zone(c), _sources(c)) for c in codes]
    assert contacts._zip_data.cache_info().currsize == 0
    contacts._zip_data()
    assert [(contacts.zip_zone(c), _sources(c)) for c in codes] == by_area
    assert by_area[0][0] == "America/New_York" and by_area[2][0] == "America/Los_Angeles"


def _sources(code: str) -> list[tuple[str, str]]:
    return contacts.zone_sources(
        explicit=None, phone=None, postal_code=code, state="OR", country="US", practice_tz="UTC"
    )
