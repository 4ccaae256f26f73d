"""US ZIP code -> (IANA zone, state), packaged with outreach.

The table comes from the `zipcodes` package's bundled data, written once into
`data/zip_zones.txt` (one line per zone and state: `zone<TAB>state<TAB>zip zip ...`). Reading
that file takes a few milliseconds; the package's own first lookup takes about 0.2 s, which every
`show` paid. `tests/unit/test_zip_table.py` keeps the file equal to the package for every code;
after upgrading `zipcodes`, regenerate it with `python -m outreach_cli.domain.zipdata`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

TABLE = Path(__file__).with_name("data") / "zip_zones.txt"


def from_package(known_zone: Callable[[str], bool]) -> dict[str, tuple[str, str]]:
    """The table as the `zipcodes` package has it: the last row of a code with a known zone wins."""
    import zipcodes

    out: dict[str, tuple[str, str]] = {}
    for row in zipcodes.list_all():  # type: ignore[no-untyped-call]
        tz = str(row.get("timezone") or "")
        if known_zone(tz):
            out[str(row["zip_code"])] = (tz, str(row.get("state") or "").upper())
    return out


def read_table(known_zone: Callable[[str], bool], path: Path = TABLE) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        zone, state, codes = line.split("\t")
        if known_zone(zone):
            value = (zone, state)
            out.update(dict.fromkeys(codes.split(), value))
    return out


def find_code(code: str, known_zone: Callable[[str], bool], path: Path = TABLE) -> tuple[str, str] | None:
    """``read_table(known_zone, path).get(code)`` for one 5-digit code, without building the
    table: the lines naming the code are found in the text and the last with a known zone wins,
    as in ``read_table``. `show` looks up one code: this skips checking every zone of the table
    (a few hundred ZoneInfo loads, ~15 ms)."""
    text = _text(path)
    found: tuple[str, str] | None = None
    for m in re.finditer(rf"(?<![0-9]){code}(?![0-9])", text):
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.end())
        zone, state, _codes = text[start : end if end >= 0 else len(text)].split("\t")
        in_codes = m.start() >= start + len(zone) + 1 + len(state) + 1
        if in_codes and known_zone(zone):
            found = (zone, state)
    return found


@lru_cache(maxsize=2)
def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def write_table(table: dict[str, tuple[str, str]], path: Path = TABLE) -> None:
    groups: dict[tuple[str, str], list[str]] = {}
    for code, value in sorted(table.items()):
        groups.setdefault(value, []).append(code)
    lines = [f"{zone}\t{state}\t{' '.join(codes)}" for (zone, state), codes in sorted(groups.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    from outreach_cli.domain.contacts import _known_zone

    write_table(from_package(_known_zone))
    print(f"wrote {TABLE}")
