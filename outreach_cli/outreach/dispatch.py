"""Handing claimed sends to their providers: one executor for the whole tick, and one place
that turns a provider configuration error (or a practice identity real providers refuse) into
a stopped run whose unstarted claims go back to pending."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from types import TracebackType

from sqlalchemy import Connection, select, update

from outreach_cli.channels.base import (
    SANDBOX_PRACTICE_NAME,
    SANDBOX_PRACTICE_PHONE,
    UNKNOWN,
    Provider,
    ProviderConfigError,
    ProviderOutcome,
    ProviderResult,
    practice_identity_fix,
    practice_identity_problem,
)
from outreach_cli.domain.contacts import mask_phone
from outreach_cli.domain.context import Context
from outreach_cli.domain.errors import ConfigError
from outreach_cli.domain.statuses import SENDABLE, SendStatus
from outreach_cli.outreach.context import TickContext
from outreach_cli.outreach.messages import rerender
from outreach_cli.outreach.payments import attach_payment_link
from outreach_cli.outreach.record import Result, record_outcomes
from outreach_cli.outreach.state import ClaimedSend
from outreach_cli.store.bulk import chunks
from outreach_cli.store.models import invoice_set_t, send_t

log = logging.getLogger("outreach.engine")

NOT_STARTED = ProviderOutcome(
    ProviderResult.NOT_STARTED
)  # the call was never made (interrupt or stop): the claim is released
SENDABLE_VALUES = [s.value for s in SENDABLE]


@dataclass(frozen=True)
class Identity:
    """Real providers refuse to send without the practice's own name and phone (exit 4); the
    sandbox shows clearly fictional ones instead."""

    problem: str | None = None
    refusing: frozenset[str] = frozenset()
    fix: tuple[str, str] = ("", "")  # what to set, and its environment variables

    @classmethod
    def check(cls, ctx: Context, providers: dict[str, Provider]) -> tuple[Identity, Context]:
        """The identity check, and the context with the sandbox's stand-ins when one is needed."""
        problem = practice_identity_problem(ctx.practice_name, ctx.practice_phone)
        if problem is None:
            return cls(), ctx
        name = ctx.practice_name.strip() or SANDBOX_PRACTICE_NAME
        phone = SANDBOX_PRACTICE_PHONE if "practice_phone" in problem else ctx.practice_phone
        refusing = frozenset(m for m, p in providers.items() if p.name != "sandbox")
        fix = practice_identity_fix(ctx.practice_name, ctx.practice_phone)
        return cls(problem, refusing, fix), replace(ctx, practice_name=name, practice_phone=phone)


@dataclass
class Batch:
    claims: list[ClaimedSend]
    futures: list[Future[tuple[ClaimedSend, ProviderOutcome]]]


class Dispatcher:
    def __init__(self, t: TickContext, identity: Identity, progress: Callable[[int], None] | None) -> None:
        self.t = t
        self.identity = identity
        self.progress = progress
        self._pool = ThreadPoolExecutor(max_workers=t.options.concurrency)

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        # After a second interrupt nobody waits for the calls in flight.
        self._pool.shutdown(wait=not self.t.state.abandon.is_set(), cancel_futures=True)

    def send(self, claims: list[ClaimedSend]) -> list[Result]:
        """Calls the providers for ``claims`` and waits for the results."""
        claims = self.prepare(claims)
        if not claims:
            return []
        return self.collect(self.submit(claims))

    def prepare(self, claims: list[ClaimedSend]) -> list[ClaimedSend]:
        """Right before the calls: drop what is no longer ours or due, refuse a missing identity."""
        claims = self._drop_stale(claims)
        self._check_identity(claims)
        return claims

    def submit(self, claims: list[ClaimedSend]) -> Batch:
        # Calls run in worker threads even one at a time, so an interrupt can stop waiting for them.
        return Batch(claims, [self._pool.submit(self._call_one, c) for c in claims])

    def collect(self, batch: Batch) -> list[Result]:
        """Waits for the calls; an interrupt's claims that never started go back to pending, and
        a second interrupt stops waiting (those claims are left to the lease)."""
        state = self.t.state
        pending = set(batch.futures)
        while pending and not state.abandon.is_set():
            _, pending = wait(pending, timeout=0.2)
        results: list[Result] = []
        config_error: ProviderConfigError | None = None
        unstarted: list[ClaimedSend] = []
        for c, fut in zip(batch.claims, batch.futures, strict=True):
            if not fut.done() and not fut.cancel():
                state.summary.in_flight_left += 1  # still with the provider: resolved after the lease
            elif fut.cancelled():
                unstarted.append(c)
            elif isinstance(exc := fut.exception(), ProviderConfigError):
                config_error = exc
            elif (result := fut.result())[1] is NOT_STARTED:
                unstarted.append(c)
            else:
                results.append(result)
        if unstarted:
            with self.t.store.write() as conn:
                release(self.t, conn, unstarted)
        if self.progress and results:
            self.progress(len(results))
        if config_error is not None:
            self._stop_on_config_error(batch.claims, results, config_error)
        return results

    def _call_one(self, c: ClaimedSend) -> tuple[ClaimedSend, ProviderOutcome]:
        t = self.t
        if t.state.stop.is_set() or t.state.config_failed.is_set():
            return c, NOT_STARTED  # interrupted, or the account is refused: this claim goes back to pending
        provider = t.providers[c.method]
        try:
            link_failed = attach_payment_link(t, c) if t.stripe.wants_link(c) else None
            out = link_failed or provider.send(c.msg)
        except ProviderConfigError:
            t.state.config_failed.set()
            raise
        except Exception as exc:
            log.info("send %s (%s) raised %s", c.send_id, c.method, type(exc).__name__)
            out = ProviderOutcome(UNKNOWN, None, None, f"provider call ended without an answer ({type(exc).__name__})")
        to = mask_phone(c.msg.phone) if c.method in ("sms", "call") else "patient"
        log.info("send %s %s to %s: %s", c.send_id, c.method, to, out.status)
        t.state.dry_send(c)
        return c, out

    def _check_identity(self, claims: list[ClaimedSend]) -> None:
        """Before any of ``claims`` goes out: real providers refuse to send without the practice's
        name and phone (the claims go back to pending, the run stops with exit 4)."""
        refused = sorted({c.method for c in claims if c.method in self.identity.refusing})
        if refused:
            names = ", ".join(f"{m} ({self.t.providers[m].name})" for m in refused)
            fix, env = self.identity.fix
            exc = ProviderConfigError(
                f"{self.identity.problem}; {names} will not send without the practice's name and a valid phone"
                f" number: {fix} in the config file (or {env})"
            )
            self._stop_on_config_error(claims, [], exc)

    def _stop_on_config_error(self, claims: list[ClaimedSend], results: list[Result], exc: ProviderConfigError) -> None:
        done = {c.send_id for c, _ in results}
        with self.t.store.write() as conn:
            record_outcomes(self.t, conn, results)
            release(self.t, conn, [c for c in claims if c.send_id not in done])
        raise ConfigError(f"provider configuration error: {exc}; the run stopped and sent nothing more")

    def _drop_stale(self, claims: list[ClaimedSend]) -> list[ClaimedSend]:
        """Re-read the balance and status right before calling providers: a payment, pause or
        cancel committed since the claim stops the send."""
        if not claims:
            return claims
        with self.t.store.read() as conn:
            mine = _still_claimed(conn, [c.send_id for c in claims])
            balances = _sendable_balances(conn, sorted({c.set_id for c in claims}))
        # A claim another run has taken over (our lease ran out) is not ours to send any more.
        claims = [c for c in claims if (c.send_id, c.token) in mine]
        stale = [c for c in claims if c.set_id not in balances]
        if stale:
            with self.t.store.write() as conn:
                cancel_stale(self.t, conn, stale)
        keep = [c for c in claims if c.set_id in balances]
        for c in keep:
            if c.msg.balance_cents != balances[c.set_id]:  # a partial payment since the claim
                rerender(c, balance_cents=balances[c.set_id])
        return keep


def _still_claimed(conn: Connection, send_ids: list[int]) -> set[tuple[int, str]]:
    mine: set[tuple[int, str]] = set()
    for chunk in chunks(send_ids):
        q = select(send_t.c.id, send_t.c.claim_token).where(
            send_t.c.id.in_(chunk), send_t.c.status == SendStatus.CLAIMED
        )
        mine.update((send_id, token) for send_id, token in conn.execute(q))
    return mine


def _sendable_balances(conn: Connection, set_ids: list[int]) -> dict[int, int]:
    """Set ID -> balance, for the sets that still want their sends."""
    ok: dict[int, int] = {}
    cols = (
        invoice_set_t.c.id,
        invoice_set_t.c.status,
        invoice_set_t.c.paused_at,
        invoice_set_t.c.amount_outstanding_cents,
    )
    for chunk in chunks(set_ids):
        for set_id, status, paused, bal in conn.execute(select(*cols).where(invoice_set_t.c.id.in_(chunk))):
            if status in SENDABLE_VALUES and paused is None and bal > 0:
                ok[set_id] = bal
    return ok


def cancel_stale(t: TickContext, conn: Connection, stale: list[ClaimedSend]) -> None:
    for c in stale:
        conn.execute(
            update(send_t)
            .where(send_t.c.id == c.send_id, send_t.c.claim_token == c.token, send_t.c.status == SendStatus.CLAIMED)
            .values(
                status=SendStatus.CANCELLED,
                reason="set stopped or paid before sending",
                finished_at=t.ctx.now,
                lease_until=None,
            )
        )
        t.state.touched_sets.add(c.set_id)


def release(t: TickContext, conn: Connection, claims: list[ClaimedSend]) -> None:
    """Claims whose provider call never started: back to pending, no attempt used."""
    for c in claims:
        conn.execute(
            update(send_t)
            .where(send_t.c.id == c.send_id, send_t.c.claim_token == c.token, send_t.c.status == SendStatus.CLAIMED)
            .values(
                status=SendStatus.PENDING,
                claim_token=None,
                lease_until=None,
                next_attempt_at=t.ctx.now,
                attempts=send_t.c.attempts - 1,
            )
        )
