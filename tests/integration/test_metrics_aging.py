"""`metrics --all` aging buckets (issue 13 rewrote them as one index range per bucket): a set is in
the bucket holding its whole days since creation, at every boundary, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import NOW, Cli
from tests.helpers import PATIENT_HEADER, patient, write_csv

CREATED = datetime.fromisoformat(NOW.replace("Z", "+00:00"))


def expected_bucket(now: datetime) -> str | None:
    if now < CREATED:
        return None  # created after `now`: not counted
    days = (now - CREATED) // timedelta(days=1)
    for name, hi in (("0-30", 30), ("31-60", 60), ("61-90", 90), ("91-120", 120)):
        if days <= hi:
            return name
    return "120+"


@pytest.mark.parametrize("days", [-1, 0, 30, 31, 60, 61, 90, 91, 120, 121, 400])
@pytest.mark.parametrize("delta", [timedelta(seconds=-1), timedelta(0)])
def test_aging_buckets_match_days_since_creation(cli: Cli, tmp_path: Path, days: int, delta: timedelta) -> None:
    cli.ok("import", "patients", str(write_csv(tmp_path / "p.csv", [patient("P1")], PATIENT_HEADER)))
    rows = [{"charge_id": "C1", "patient_id": "P1", "amount": "12.34"}]
    cli.ok("import", "charges", str(write_csv(tmp_path / "c.csv", rows)), "--rule-set", "standard")
    now = CREATED + timedelta(days=days) + delta
    out = json.loads(cli.ok("metrics", "--all", "--format", "json", now=now.astimezone(UTC).isoformat()).stdout)
    got = {b["bucket"]: (b["count"], b["amount_outstanding_cents"]) for b in out["aging"]}
    want = {name: (0, 0) for name in ("0-30", "31-60", "61-90", "91-120", "120+")}
    bucket = expected_bucket(now)
    if bucket is not None:
        want[bucket] = (1, 1234)
    assert got == want
