"""`audit`: the event log, oldest first (SPEC section 7). Apart from `queries` so that `audit`
loads only the event table's module, not the set queries and the rule sets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from outreach_cli.domain.timeutil import iso_z
from outreach_cli.store.models import event_t

if TYPE_CHECKING:
    from outreach_cli.domain.ranges import TimeRange
    from outreach_cli.domain.views import AuditRow, TimelineEvent
    from outreach_cli.store.database import Store

# `id` is the invoice set (first, as in `list`, so rows pipe into `act -`); the event's own is `event_id`.
AUDIT_COLUMNS = ["id", "event_id", "at", "kind", "actor", "action", "from_status", "to_status", "reason", "detail"]


def audit(
    store: Store, *, set_id: int | None, since: TimeRange | None, actor: str | None, limit: int | None
) -> Iterator[AuditRow]:
    with store.read() as conn:
        q = select(event_t)
        if set_id is not None:
            q = q.where(event_t.c.invoice_set_id == set_id)
        if since is not None:
            if since.start is not None:
                q = q.where(event_t.c.at >= since.start)
            if since.end is not None:
                q = q.where(event_t.c.at < since.end)
        if actor:
            q = q.where(event_t.c.actor == actor)
        q = q.order_by(event_t.c.at, event_t.c.id)
        if limit is not None:
            q = q.limit(limit)
        for e in conn.execution_options(stream_results=True, yield_per=1000).execute(q):
            yield {"id": e.invoice_set_id, "event_id": e.id, **timeline_event(e)}


def timeline_event(e: Any) -> TimelineEvent:
    """An event row as `audit` and `show`'s timeline give it (times in UTC, `detail` an object)."""
    return {
        "at": iso_z(e.at),
        "kind": e.kind,
        "actor": e.actor,
        "action": e.action,
        "from_status": e.from_status,
        "to_status": e.to_status,
        "reason": e.reason,
        "detail": json.loads(e.detail) if e.detail else None,
    }
