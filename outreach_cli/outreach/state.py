"""What one tick carries from phase to phase: the summary it reports, the sets and patients it
touched (re-evaluated at the end of each write), the interrupt flags and the dry run's record."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from outreach_cli.channels.base import Message

MESSAGE_CHANNELS = ("sms", "email", "call", "mail")  # at most one per patient per local day
BATCH = 200

StepKey = tuple[int, int, int]  # (set ID, schedule generation, step index)


@dataclass
class TickSummary:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0
    unknown: int = 0
    expired: int = 0
    paid: int = 0
    reconciled: int = 0
    transient: int = 0  # failed transiently, pending for a retry by a later run
    duration_s: float = 0.0
    would_send: list[dict[str, Any]] = field(default_factory=list)
    # Not in the JSON summary: what the command says on stderr and its exit code build on these.
    attempted: int = 0  # provider calls whose outcome was recorded
    transient_by_method: dict[str, tuple[int, str]] = field(default_factory=dict)  # (count, first reason)
    gave_up: int = 0  # transient failures that reached sending.max_attempts (counted as failed)
    provider_problems: dict[str, int] = field(default_factory=dict)  # reconciliation/inbound reads that failed
    interrupted: bool = False
    in_flight_left: int = 0  # claims left to the lease by a second interrupt

    @property
    def outage(self) -> bool:
        """Every attempted send failed transiently (exit 75)."""
        return self.attempted > 0 and sum(n for n, _ in self.transient_by_method.values()) == self.attempted

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "skipped": self.skipped,
            "deferred": self.deferred,
            "unknown": self.unknown,
            "transient": self.transient,
            "expired": self.expired,
            "paid": self.paid,
            "reconciled": self.reconciled,
            "duration_s": round(self.duration_s, 3),
        }


@dataclass
class ClaimedSend:
    """A send claimed in a committed transaction, with the message to hand to its provider."""

    send_id: int
    set_id: int
    patient_pk: int
    gen: int
    step_index: int
    step_day: int
    method: str
    token: str
    is_fallback: bool
    msg: Message
    template: str = ""
    values: dict[str, str] = field(default_factory=dict)

    @property
    def step(self) -> StepKey:
        return (self.set_id, self.gen, self.step_index)


@dataclass
class TickState:
    """The one mutable object of a tick; every phase reads and updates it."""

    summary: TickSummary = field(default_factory=TickSummary)
    touched_sets: set[int] = field(default_factory=set)
    touched_patients: set[int] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)  # claim nothing more
    abandon: threading.Event = field(default_factory=threading.Event)  # stop waiting for calls in flight
    config_failed: threading.Event = field(default_factory=threading.Event)  # call nothing more
    dry: bool = False
    dry_rows: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    dry_changes: dict[int, tuple[int, str]] = field(default_factory=dict)  # set ID -> (sends before, action)

    def problem(self, text: str) -> None:
        """A provider read (reconciliation, inbound) that failed: said once per kind on stderr."""
        self.summary.provider_problems[text] = self.summary.provider_problems.get(text, 0) + 1

    def dry_change(self, set_id: int, action: str) -> None:
        if self.dry:
            self.dry_changes.setdefault(set_id, (len(self.dry_rows), action))

    def dry_send(self, c: ClaimedSend) -> None:
        if self.dry:
            row = {
                "id": c.set_id,
                "action": "send",
                "step": c.msg.step_title,
                "day": c.step_day,
                "method": c.method,
                "fallback": c.is_fallback,
            }
            self.dry_rows.append((c.send_id, row))
