"""What every phase of a tick works with: the store, the clock and settings, the providers, the
message factory, the Stripe hooks, and the tick's one mutable state."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Protocol

from sqlalchemy import Connection

from outreach_cli.channels.base import Provider
from outreach_cli.domain.context import Context
from outreach_cli.outreach.messages import MessageFactory
from outreach_cli.outreach.state import TickState
from outreach_cli.store.loaded_rulesets import RuleSets

if TYPE_CHECKING:
    from outreach_cli.outreach.payments import StripeHooks


class TickStore(Protocol):
    """The store as a tick uses it (``core.store.Store``, or the dry run's one transaction)."""

    dialect: str

    def read(self) -> AbstractContextManager[Connection]: ...

    def write(self) -> AbstractContextManager[Connection]: ...

    def get_meta(self, conn: Connection, key: str) -> str | None: ...


@dataclass(frozen=True)
class TickOptions:
    lease: timedelta = timedelta(seconds=300)
    max_attempts: int = 3
    concurrency: int = 8
    limit: int | None = None


@dataclass
class TickContext:
    store: TickStore
    ctx: Context
    providers: dict[str, Provider]
    options: TickOptions
    messages: MessageFactory
    stripe: StripeHooks
    state: TickState

    @property
    def pg(self) -> bool:
        return self.store.dialect == "postgresql"

    def refresh(self, conn: Connection, rule_sets: RuleSets | None = None) -> None:
        """Re-evaluate every set this tick touched (and the open sets of touched patients)."""
        from outreach_cli.outreach.expiry import refresh_touched

        refresh_touched(self, conn, rule_sets or RuleSets(conn))
