"""The exit-75 message of `run-outreach` says what happens to the sends next: retried by later
runs, or not at all once they reached `sending.max_attempts` (finding of the assertion review)."""

from __future__ import annotations

from typing import Any

import pytest

from outreach_cli.cli.cmd_engine import _report_trouble
from outreach_cli.domain.errors import TemporaryFailure
from outreach_cli.outreach.state import TickSummary

HEAD = "provider outage: all 3 attempted send(s) failed temporarily (sms 3: provider unavailable"


@pytest.mark.parametrize(
    ("gave_up", "tail"),
    [
        (0, "); they stay pending and are retried by later runs"),
        (
            1,
            "; 1 of them reached sending.max_attempts and now count as failed); the other 2 stay pending"
            " and are retried by later runs",
        ),
        (3, "; 3 of them reached sending.max_attempts and now count as failed); none is retried"),
    ],
)
def test_the_outage_message_says_which_sends_are_retried(gave_up: int, tail: str) -> None:
    summary = TickSummary(attempted=3, transient_by_method={"sms": (3, "provider unavailable (will retry)")})
    summary.gave_up = gave_up
    app: Any = None  # an outage is reported by the exception alone
    with pytest.raises(TemporaryFailure) as raised:
        _report_trouble(app, summary)
    assert str(raised.value) == HEAD + tail
