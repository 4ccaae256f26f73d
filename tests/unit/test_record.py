"""What a provider result does to a send row: the status it leaves, when it finished, and the
retry of a transient failure (`outreach.record`); the backoff itself: test_backoff_and_ids.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from outreach_cli.channels.base import DELIVERED, FAILED, SENT, TRANSIENT, UNKNOWN, ProviderOutcome, ProviderResult
from outreach_cli.outreach.record import outcome_values
from outreach_cli.outreach.state import TickSummary

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("result", "attempts", "status", "finished", "sent", "retry_at", "counted"),
    [
        (DELIVERED, 1, "delivered", NOW, NOW, None, "sent"),
        (SENT, 1, "sent", None, NOW, None, "sent"),
        (FAILED, 1, "failed", NOW, None, None, "failed"),
        (UNKNOWN, 1, "unknown", None, NOW, None, "unknown"),
        (TRANSIENT, 1, "pending", None, None, NOW + timedelta(minutes=5), "transient"),
        (TRANSIENT, 2, "pending", None, None, NOW + timedelta(minutes=20), "transient"),
        (TRANSIENT, 3, "failed", NOW, None, None, "failed"),
    ],
    ids=["delivered", "sent", "failed", "unknown", "transient-1", "transient-2", "transient-gives-up"],
)
def test_outcome_values(
    result: ProviderResult,
    attempts: int,
    status: str,
    finished: datetime | None,
    sent: datetime | None,
    retry_at: datetime | None,
    counted: str,
) -> None:
    summary = TickSummary()
    out = ProviderOutcome(result, "SM1", None, "provider said so")
    values = outcome_values(out, attempts, 3, NOW, summary, "sms")
    assert (values["status"], values["finished_at"], values["sent_at"], values["next_attempt_at"]) == (
        status,
        finished,
        sent,
        retry_at,
    )
    assert values["claim_token"] is None and values["lease_until"] is None
    assert summary.attempted == 1
    counts = {
        "sent": summary.sent,
        "failed": summary.failed,
        "unknown": summary.unknown,
        "transient": summary.transient,
    }
    assert counts == {k: int(k == counted) for k in counts}
    if result == TRANSIENT:
        assert summary.transient_by_method == {"sms": (1, "provider said so")}
        assert summary.gave_up == (1 if status == "failed" else 0)
        if status == "failed":
            assert values["reason"] == "provider said so (gave up after 3 attempts)"
