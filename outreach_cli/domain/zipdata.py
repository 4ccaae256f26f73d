"""US ZIP code -> (IANA zone, state), packaged with outreach.

The table comes from the `zipcodes` package's bundled data, written once into
`data/zip_zones.txt` (one line per zone and state: `zone<TAB>state<TAB>zip zip ...`). Reading
that file takes a few milliseconds; the package's own first lookup takes about 0.2 s, which every
`show` paid. `tests/unit/test_zip_table.py` keeps the file equal to the package for every code;
after upgrading `zipcodes`, regenerate it with `python -m outreach_cli.domain.zipdata`.
"""

from __future__ import annotations

from collections.abc import Callable
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
