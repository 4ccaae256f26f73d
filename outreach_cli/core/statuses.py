"""Invoice-set statuses and the action table of SPEC section 2."""

from __future__ import annotations

import re
from enum import Enum, StrEnum

from outreach_cli.core.errors import InvalidInput


class Status(str, Enum):
    ACTIVE = "active"
    PAUSED = "paused"
    EXPIRED = "expired"
    FAILED = "failed"
    WILL_FAIL = "will-fail"
    PAID = "paid"
    CANCELLED = "cancelled"
    WRITTEN_OFF = "written-off"
    COLLECTIONS = "collections"

    @property
    def label(self) -> str:
        return LABELS[self]


LABELS = {
    Status.ACTIVE: "Active",
    Status.PAUSED: "Paused",
    Status.EXPIRED: "Expired",
    Status.FAILED: "Failed",
    Status.WILL_FAIL: "Will Fail",
    Status.PAID: "Paid",
    Status.CANCELLED: "Cancelled",
    Status.WRITTEN_OFF: "Written Off",
    Status.COLLECTIONS: "Collections",
}

OPEN = (Status.ACTIVE, Status.PAUSED, Status.EXPIRED, Status.WILL_FAIL, Status.FAILED)
TERMINAL = (Status.PAID, Status.CANCELLED, Status.WRITTEN_OFF, Status.COLLECTIONS)
# A patient has at most one in-progress set; charges imported for the patient join it.
IN_PROGRESS = (Status.ACTIVE, Status.PAUSED, Status.WILL_FAIL, Status.FAILED)
# The run sends only for these (SPEC section 6).
SENDABLE = (Status.ACTIVE, Status.WILL_FAIL, Status.FAILED)
# When several open conditions hold, the first of these is shown.
DISPLAY_PRECEDENCE = (Status.PAUSED, Status.EXPIRED, Status.FAILED, Status.WILL_FAIL, Status.ACTIVE)
# The four attention cards of `metrics`.
ATTENTION = (Status.FAILED, Status.EXPIRED, Status.PAUSED, Status.WILL_FAIL)


class SendStatus(StrEnum):
    """One send (a step's message on one method) through its life."""

    PENDING = "pending"  # scheduled, not yet claimed
    CLAIMED = "claimed"  # a run holds it (until its lease ends)
    SENT = "sent"  # the provider accepted it; the final status comes later
    DELIVERED = "delivered"
    FAILED = "failed"
    SKIPPED = "skipped"  # not attempted (no usable contact, a balance bound, a fallback not needed)
    CANCELLED = "cancelled"  # the set closed or changed rule set first
    UNKNOWN = "unknown"  # may have gone out: looked up, never blindly re-sent


# Sends a run is working on, and sends that count as a message to the patient.
IN_FLIGHT_SENDS = (SendStatus.CLAIMED, SendStatus.PENDING)
COUNTS_AS_SENT = (SendStatus.SENT, SendStatus.DELIVERED, SendStatus.UNKNOWN)


class ChargeStatus(StrEnum):
    OUTSTANDING = "outstanding"
    PAID = "paid"
    WRITTEN_OFF = "written-off"
    COLLECTIONS = "collections"
    VOID = "void"  # removed by a later import; never owed


ACCEPTED_STATUS_FORMS = ", ".join(s.value for s in Status) + " (any case; '_' or space for '-'), open, all"


def parse_status(text: str) -> Status:
    norm = re.sub(r"[\s_]+", "-", text.strip().lower())
    try:
        return Status(norm)
    except ValueError:
        raise InvalidInput(f"unknown status {text!r}; accepted: {ACCEPTED_STATUS_FORMS}") from None


def parse_status_list(values: list[str] | None) -> list[Status]:
    """`--status` values: repeatable and comma-separated; `all`, `open`; default the open statuses."""
    if not values:
        return list(OPEN)
    out: list[Status] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            key = part.lower()
            if key == "all":
                items: tuple[Status, ...] = tuple(Status)
            elif key == "open":
                items = OPEN
            else:
                items = (parse_status(part),)
            for s in items:
                if s not in out:
                    out.append(s)
    if not out:
        raise InvalidInput(f"--status is empty; accepted: {ACCEPTED_STATUS_FORMS}")
    return out


class Action(str, Enum):
    WRITE_OFF = "write-off"
    COLLECTIONS = "collections"
    CHANGE_RULESET = "change-ruleset"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


class Result(str, Enum):
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    INELIGIBLE = "ineligible"
    NOT_FOUND = "not-found"


ALLOWED_FROM: dict[Action, tuple[Status, ...]] = {
    Action.WRITE_OFF: OPEN,
    Action.COLLECTIONS: OPEN,
    Action.CHANGE_RULESET: OPEN,
    Action.PAUSE: (Status.ACTIVE, Status.WILL_FAIL, Status.FAILED),
    Action.RESUME: (Status.PAUSED,),
    Action.CANCEL: OPEN,
}

TARGET: dict[Action, Status | None] = {
    Action.WRITE_OFF: Status.WRITTEN_OFF,
    Action.COLLECTIONS: Status.COLLECTIONS,
    Action.CHANGE_RULESET: None,  # keeps paused; otherwise active (then re-evaluated)
    Action.PAUSE: Status.PAUSED,
    Action.RESUME: Status.ACTIVE,  # then re-evaluated (will-fail / failed)
    Action.CANCEL: Status.CANCELLED,
}

# Confirmation needed (prompt on a terminal, else --yes).
NEEDS_CONFIRMATION = (Action.WRITE_OFF, Action.COLLECTIONS, Action.CANCEL, Action.CHANGE_RULESET)

# Actions that cancel the set's pending sends.
CANCELS_PENDING = (Action.WRITE_OFF, Action.COLLECTIONS, Action.CANCEL, Action.CHANGE_RULESET)


def parse_action(text: str) -> Action:
    norm = re.sub(r"[\s_]+", "-", text.strip().lower())
    try:
        return Action(norm)
    except ValueError:
        raise InvalidInput(f"unknown action {text!r}; accepted: " + ", ".join(a.value for a in Action)) from None


def decide(
    action: Action,
    status: Status,
    *,
    same_rule_set: bool = False,
) -> tuple[Result, Status | None, str]:
    """The result of ``action`` on a set in ``status``: (result, to_status, reason).

    ``to_status`` for change-ruleset and resume is the provisional target: the engine may
    re-evaluate the set to will-fail or failed afterwards.
    """
    if action is Action.RESUME and status in OPEN and status is not Status.PAUSED:
        return Result.UNCHANGED, status, f"not paused (status {status.value})"
    if action is Action.CHANGE_RULESET and status in OPEN and same_rule_set:
        return Result.UNCHANGED, status, "already on that rule set"
    target = TARGET[action]
    if target is not None and status is target:
        return Result.UNCHANGED, status, f"already {status.value}"
    if status not in ALLOWED_FROM[action]:
        return Result.INELIGIBLE, None, f"{action.value} does not apply to a set that is {status.value}"
    if action is Action.CHANGE_RULESET:
        to = Status.PAUSED if status is Status.PAUSED else Status.ACTIVE
        return Result.CHANGED, to, ""
    assert target is not None
    return Result.CHANGED, target, ""
