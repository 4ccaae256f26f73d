"""No message is ever sent outside 08:00-21:00 patient-local time (SPEC section 4), end to end:
patients across many time zones (including a phone and an address in different zones), four
simulated days around the end of US daylight saving time with a tick every 15 minutes, and
sending configurations drawn by hypothesis. The rule itself is tested exhaustively on the pure
`plan_step` (tests/unit/test_plan.py); this checks the whole tick keeps it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from outreach_cli.domain.scheduling import patient_zones
from outreach_cli.store.database import Store
from outreach_cli.store.models import patient_t, send_t
from tests.conftest import Cli
from tests.helpers import PATIENT_HEADER, patient, write_csv

UTC = UTC
START = datetime(2026, 10, 30, 0, 0, tzinfo=UTC)  # US daylight saving time ends on 2026-11-01

PATIENTS = [
    patient("NY", phone="(617) 555-0100"),
    patient("LA", phone="(415) 555-0101", state="CA", city="San Francisco"),
    patient("HI", phone="(808) 555-0102", state="HI", city="Honolulu"),
    patient("AK", phone="(907) 555-0103", state="AK", city="Anchorage"),
    patient("UK", phone="+44 20 7946 0000", state="", country="GB"),
    patient("TOKYO", phone="", timezone="Asia/Tokyo", state="", country="JP"),
    patient("SPLIT", phone="(212) 555-0104", state="AZ", city="Phoenix"),  # phone NY, address Arizona
    patient("NOPHONE", phone="", state="IL", city="Chicago"),
]


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start_hour=st.integers(5, 12),
    length=st.integers(4, 16),
    weekends=st.booleans(),
)
@pytest.mark.slow
def test_no_send_outside_8_to_21_local(tmp_path_factory: object, start_hour: int, length: int, weekends: bool) -> None:
    import os

    tmp: Path = tmp_path_factory.mktemp("quiet")  # type: ignore[attr-defined]
    os.chdir(tmp)
    end_hour = min(24, start_hour + length)
    os.environ["OUTREACH_SENDING_WINDOW"] = f"{start_hour:02d}:00-{end_hour:02d}:00"
    os.environ["OUTREACH_SENDING_WEEKENDS"] = "true" if weekends else "false"
    os.environ["OUTREACH_TIMEZONE"] = "America/Denver"
    os.environ["OUTREACH_PRACTICE_NAME"] = "Harbor Clinic"  # final-notice's letter goes to the outbox
    os.environ["OUTREACH_PRACTICE_PHONE"] = "+16175550123"
    try:
        cli = Cli(f"sqlite:///{tmp / 'q.db'}")
        cli.ok("init")
        write_csv(tmp / "p.csv", PATIENTS, PATIENT_HEADER)
        cli.ok("import", "patients", str(tmp / "p.csv"), now="2026-10-19T00:00:00Z")
        write_csv(
            tmp / "c.csv",
            [{"charge_id": f"C{p['patient_id']}", "patient_id": p["patient_id"], "amount": "99"} for p in PATIENTS],
        )
        for rs in ("final-notice",):
            cli.ok("import", "charges", str(tmp / "c.csv"), "--rule-set", rs, now="2026-10-30T03:17:00Z")
        t = START
        while t < START + timedelta(days=4):
            cli.ok("run-outreach", now=t.strftime("%Y-%m-%dT%H:%M:%SZ"))
            t += timedelta(minutes=15)
        store = Store(cli.db)
        with store.read() as conn:
            rows = conn.execute(
                select(
                    send_t.c.sent_at,
                    send_t.c.method,
                    patient_t.c.timezone,
                    patient_t.c.phone_tz,
                    patient_t.c.address_tz,
                )
                .join(patient_t, patient_t.c.id == send_t.c.patient_pk)
                .where(send_t.c.sent_at.is_not(None))
            ).all()
        store.engine.dispose()
        assert len(rows) >= 5
        # some before and some after the clocks change, or the DST edge is not exercised
        change = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)  # 01:00 in New York, 2nd time
        assert min(r[0] for r in rows) < change < max(r[0] for r in rows), sorted(r[0] for r in rows)
        for sent_at, method, tz, ptz, atz in rows:
            for zname in patient_zones(tz, ptz, atz, "America/Denver"):
                local = sent_at.astimezone(ZoneInfo(zname))
                minutes = local.hour * 60 + local.minute
                assert 8 * 60 <= minutes < 21 * 60, (method, zname, local)
                assert start_hour * 60 <= minutes < end_hour * 60, (method, zname, local)
                if not weekends:
                    assert local.weekday() < 5, (method, zname, local)
    finally:
        for k in ("OUTREACH_SENDING_WINDOW", "OUTREACH_SENDING_WEEKENDS", "OUTREACH_TIMEZONE"):
            os.environ.pop(k, None)
        os.environ.pop("OUTREACH_PRACTICE_NAME", None)
        os.environ.pop("OUTREACH_PRACTICE_PHONE", None)
