"""The fast per-row helpers of `list` give exactly what the general ones give (issue 13)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text

from outreach_cli.domain.context import Context
from outreach_cli.domain.paymentlink import payment_url, payment_url_maker
from outreach_cli.domain.scheduling import Window
from outreach_cli.domain.timeutil import iso_z
from outreach_cli.store.models import UTCDateTime
from outreach_cli.store.queries import _iso_of_stored


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 3, 2, 14, 0, tzinfo=UTC),
        datetime(2026, 3, 2, 14, 0, 5, 120000, tzinfo=UTC),
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    ],
)
def test_stored_sqlite_time_becomes_the_same_iso_text(value: datetime) -> None:
    eng = create_engine("sqlite://")
    with eng.connect() as conn:
        stored = UTCDateTime().dialect_impl(conn.dialect).bind_processor(conn.dialect)(value)  # type: ignore[misc]
        conn.execute(text("CREATE TABLE t (v TEXT)"))
        conn.execute(text("INSERT INTO t VALUES (:v)"), {"v": stored})
        raw = conn.execute(text("SELECT v FROM t")).scalar_one()
    assert _iso_of_stored(raw) == iso_z(value)
    assert _iso_of_stored(None) is None
    assert _iso_of_stored("2026-03-02 14:00:00") == "2026-03-02T14:00:00Z"  # written without fraction


@pytest.mark.parametrize("template", ["https://pay.example.com/p/{token}", "https://x.test/{token}?again={token}"])
def test_payment_url_maker_matches_payment_url(template: str) -> None:
    ctx = Context(
        now=datetime(2026, 3, 2, tzinfo=UTC), window=Window(), practice_tz="UTC", url_template=template, secret="s3cr3t"
    )
    url = payment_url_maker(ctx)
    for set_id in (1, 42, 999_999, 10**12):
        assert url(set_id) == payment_url(set_id, ctx)
