"""The dry run: the real tick inside one database transaction that is rolled back, with every
provider replaced by a stand-in that sends nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from outreach_cli.channels.base import SENT, Provider, ProviderOutcome
from outreach_cli.domain.errors import TemporaryFailure
from outreach_cli.outreach.context import TickContext
from outreach_cli.outreach.state import TickState

if TYPE_CHECKING:
    from outreach_cli.store.database import Store


class OneTransaction:
    """The store as a dry run sees it: every read and write of the tick shares one connection
    and one transaction, which the dry run rolls back."""

    def __init__(self, store: Store, conn: Connection) -> None:
        self._store = store
        self._conn = conn
        self.dialect: str = store.dialect

    @contextmanager
    def write(self) -> Iterator[Connection]:
        yield self._conn

    read = write

    def get_meta(self, conn: Connection, key: str) -> str | None:
        return self._store.get_meta(conn, key)


class DryRunProvider:
    """Stands in for a provider in a dry run and sends nothing: the sandbox (which reaches no one)
    decides as it would; a real provider is assumed to accept the message."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name

    def send(self, msg: Any) -> ProviderOutcome:
        if self.inner.name == "sandbox":
            return self.inner.send(msg)
        return ProviderOutcome(SENT, None, None, "dry run")

    def lookup(self, provider_ref: str | None, msg: Any) -> ProviderOutcome | None:
        return self.inner.lookup(provider_ref, msg) if self.inner.name == "sandbox" else None


def run_dry(t: TickContext, real_store: Store, phases: Callable[[TickContext], None]) -> None:
    """Runs ``phases`` on a copy of ``t`` whose store is one rolled-back transaction and whose
    providers send nothing; fills ``t.state.summary.would_send``. What it would send, fallbacks
    included, and the sets it would expire or mark paid are exactly what the real run at this
    moment does, except for what only the real providers can tell (delivery reports, replies,
    outages)."""
    from dataclasses import replace

    from sqlalchemy.exc import OperationalError

    t.state.dry = True
    providers: dict[str, Provider] = {m: DryRunProvider(p) for m, p in t.providers.items()}
    try:
        with real_store.engine.connect() as conn:
            conn = conn.execution_options(immediate=True)
            trans = conn.begin()
            try:
                phases(replace(t, store=OneTransaction(real_store, conn), providers=providers))
            finally:
                trans.rollback()
                t.state.dry = False
    except OperationalError as exc:
        if "locked" in str(exc).lower():
            raise TemporaryFailure("the database stayed locked too long; try again (it is safe to retry)") from exc
        raise
    t.state.summary.would_send = would_send(t.state)


def would_send(state: TickState) -> list[dict[str, Any]]:
    """In the order the run does them: sends in claim order, each expiry or payment after the
    sends that came before it (a card charge, then the set it paid)."""
    rows: list[tuple[int, int, int, dict[str, Any]]] = [
        (i, 1, 0, row) for i, (_, row) in enumerate(sorted(state.dry_rows, key=lambda r: r[0]))
    ]
    rows += [
        (
            after,
            0,
            set_id,
            {"id": set_id, "action": action, "step": None, "day": None, "method": None, "fallback": None},
        )
        for set_id, (after, action) in state.dry_changes.items()
    ]
    return [row for *_, row in sorted(rows, key=lambda r: r[:3])]
