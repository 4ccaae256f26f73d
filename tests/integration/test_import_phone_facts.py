"""`import patients` stores the phone's validity and zone from the parse that read it (issue 13),
equal to `phone_is_valid`/`phone_zone` of the stored number, also for a phone kept from the
database by a row without a phone column; on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from outreach_cli.domain import contacts
from outreach_cli.store.database import Store
from outreach_cli.store.models import patient_t
from tests.conftest import Cli
from tests.helpers import PATIENT_HEADER, patient, write_csv

PHONES = {
    "P1": "(617) 555-0100",  # one zone
    "P2": "+1 208 555 1306",  # two zones: no single zone
    "P3": "1-800-555-0100",  # toll-free: valid, no zone
    "P4": "(123) 456-7890",  # not a valid number
    "P5": "+44 20 7946 0958",  # international
    "P6": "",
}


def _stored(url: str) -> dict[str, tuple[str | None, bool, str | None]]:
    store = Store(url)
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(patient_t.c.patient_id, patient_t.c.phone, patient_t.c.phone_valid, patient_t.c.phone_tz)
        )
        out = {r.patient_id: (r.phone, bool(r.phone_valid), r.phone_tz) for r in rows}
    store.engine.dispose()
    return out


def _expected(phone: str | None) -> tuple[str | None, bool, str | None]:
    return phone, contacts.phone_is_valid(phone), contacts.phone_zone(phone)


def test_stored_phone_facts_equal_the_checks(cli: Cli, tmp_path: Path) -> None:
    rows = [patient(pid, phone=phone) for pid, phone in PHONES.items()]
    cli.ok("import", "patients", str(write_csv(tmp_path / "p.csv", rows, PATIENT_HEADER)))
    first = _stored(cli.db)
    assert set(first) == set(PHONES)
    for pid, (phone, valid, tz) in first.items():
        assert (phone, valid, tz) == _expected(phone), pid
    assert first["P1"][1:] == (True, "America/New_York") and first["P2"][1:] == (True, None)
    assert first["P3"][1:] == (True, None) and first["P4"][1] is False and first["P6"] == (None, False, None)

    # A row without a phone column keeps the stored number; its facts are recomputed from it.
    update = [{"patient_id": pid, "email": f"new-{pid.lower()}@example.com"} for pid in PHONES]
    cli.ok("import", "patients", str(write_csv(tmp_path / "u.csv", update, ["patient_id", "email"])))
    assert _stored(cli.db) == first
