"""Every (status, action) pair of SPEC section 2, table-driven."""

from __future__ import annotations

import pytest

from outreach_cli.domain.errors import InvalidInput
from outreach_cli.domain.statuses import OPEN, Action, Result, Status, decide, parse_status, parse_status_list

C, U, X = Result.CHANGED, Result.UNCHANGED, Result.INELIGIBLE  # X: ineligible
S = Status
# rows: status; columns: write-off, collections, change-ruleset (to another), pause, resume, cancel
TABLE = {
    S.ACTIVE: (C, C, C, C, U, C),
    S.PAUSED: (C, C, C, U, C, C),
    S.EXPIRED: (C, C, C, X, U, C),
    S.WILL_FAIL: (C, C, C, C, U, C),
    S.FAILED: (C, C, C, C, U, C),
    S.PAID: (X, X, X, X, X, X),
    S.CANCELLED: (X, X, X, X, X, U),
    S.WRITTEN_OFF: (U, X, X, X, X, X),
    S.COLLECTIONS: (X, U, X, X, X, X),
}
ACTIONS = (Action.WRITE_OFF, Action.COLLECTIONS, Action.CHANGE_RULESET, Action.PAUSE, Action.RESUME, Action.CANCEL)


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("col", range(6))
def test_action_table(status: Status, col: int) -> None:
    action = ACTIONS[col]
    result, to, reason = decide(action, status)
    assert result is TABLE[status][col], (status, action, reason)
    if result is X:
        assert status.value in reason
        assert to is None


def test_targets() -> None:
    assert decide(Action.PAUSE, S.FAILED)[1] is S.PAUSED
    assert decide(Action.RESUME, S.PAUSED)[1] is S.ACTIVE
    assert decide(Action.WRITE_OFF, S.EXPIRED)[1] is S.WRITTEN_OFF
    assert decide(Action.CHANGE_RULESET, S.PAUSED)[1] is S.PAUSED  # a paused set stays paused
    assert decide(Action.CHANGE_RULESET, S.EXPIRED)[1] is S.ACTIVE  # expired becomes active


@pytest.mark.parametrize("status", OPEN)
def test_change_ruleset_to_same_is_unchanged(status: Status) -> None:
    assert decide(Action.CHANGE_RULESET, status, same_rule_set=True)[0] is U


@pytest.mark.parametrize("text", ["Will Fail", "WILL_FAIL", "will-fail", " will fail ", "Will_Fail"])
def test_status_spellings(text: str) -> None:
    assert parse_status(text) is S.WILL_FAIL


def test_status_list_forms() -> None:
    assert parse_status_list(None) == list(OPEN)
    assert parse_status_list(["failed,paused", "Written Off"]) == [S.FAILED, S.PAUSED, S.WRITTEN_OFF]
    assert set(parse_status_list(["all"])) == set(Status)
    with pytest.raises(InvalidInput, match="accepted: active"):
        parse_status_list(["bogus"])
