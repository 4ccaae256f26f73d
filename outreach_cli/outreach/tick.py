"""The outreach tick (`run-outreach`): expire leases, reconcile, read Stripe's events, expire and
mark paid, then claim, send, record and fall back, batch by batch.

Exactly-once in effect (SPEC section 6): a send is recorded as `claimed` with a lease and a claim
token in a committed transaction *before* the provider is called; its result is written only if
the token still matches. A claim whose lease expired may have gone out: it becomes `unknown` and
is resolved by looking it up (reconciliation), never by sending again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from outreach_cli.channels.base import Provider
from outreach_cli.domain.context import Context
from outreach_cli.outreach.claims import claim_batch
from outreach_cli.outreach.context import TickContext, TickOptions
from outreach_cli.outreach.dispatch import Batch, Dispatcher, Identity
from outreach_cli.outreach.dry_run import run_dry
from outreach_cli.outreach.expiry import expire_and_pay
from outreach_cli.outreach.messages import MessageFactory
from outreach_cli.outreach.payments import StripeHooks, sync_stripe_events
from outreach_cli.outreach.reconcile import expire_leases, reconcile
from outreach_cli.outreach.record import Result, record_outcomes
from outreach_cli.outreach.state import BATCH, ClaimedSend, StepKey, TickState, TickSummary
from outreach_cli.outreach.step_outcome import decide_step_outcomes
from outreach_cli.store.database import Store
from outreach_cli.store.loaded_rulesets import RuleSets


class Tick:
    """One run of the engine; ``tick()`` runs the phases once."""

    def __init__(
        self,
        store: Store,
        ctx: Context,
        providers: dict[str, Provider],
        *,
        lease_seconds: int = 300,
        max_attempts: int = 3,
        concurrency: int = 8,
        limit: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.identity, ctx = Identity.check(ctx, providers)
        options = TickOptions(timedelta(seconds=lease_seconds), max_attempts, max(1, concurrency), limit)
        stripe = StripeHooks.from_settings(ctx, providers)
        self.t = TickContext(store, ctx, providers, options, MessageFactory(ctx), stripe, TickState())
        self.progress = progress
        self.store = store

    @property
    def ctx(self) -> Context:
        """The clock and settings every phase reads (the demo moves ``ctx.now`` between ticks)."""
        return self.t.ctx

    @property
    def summary(self) -> TickSummary:
        return self.t.state.summary

    def tick(self, *, dry_run: bool = False) -> TickSummary:
        started = time.monotonic()
        if dry_run:
            run_dry(self.t, self.store, self._phases)
        else:
            self._phases(self.t)
        self.summary.duration_s = time.monotonic() - started
        return self.summary

    def request_stop(self) -> bool:
        """SIGINT/SIGTERM: the first call stops claiming (calls in flight finish and are recorded,
        claims not yet started go back to pending); a second call stops waiting for the calls in
        flight (their claims are resolved after the lease). True on the first call."""
        state = self.t.state
        if state.stop.is_set():
            state.abandon.set()
            return False
        state.stop.set()
        return True

    def _phases(self, t: TickContext) -> None:
        with Dispatcher(t, self.identity, self.progress) as dispatcher:
            expire_leases(t)
            recheck = reconcile(t)
            if recheck:
                deliver(t, dispatcher, [], recheck)
            sync_stripe_events(t)
            expire_and_pay(t)
            if not t.state.stop.is_set():
                Pipeline(t, dispatcher).run()
        t.state.summary.interrupted = t.state.stop.is_set()


def deliver(t: TickContext, dispatcher: Dispatcher, claims: list[ClaimedSend], finalize: list[StepKey]) -> None:
    """Sends ``claims`` and decides the outcome of their steps and of ``finalize``, then sends
    the fallbacks that decision claims, until none are left."""
    pending_final = list(finalize)
    while claims or pending_final:
        results = dispatcher.send(claims)
        claims = _record_and_decide(t, results, pending_final)
        pending_final = []


def _record_and_decide(t: TickContext, results: list[Result], finalize: list[StepKey]) -> list[ClaimedSend]:
    """Records ``results`` and decides their steps' outcomes; returns the fallbacks claimed."""
    with t.store.write() as conn:
        rule_sets = RuleSets(conn)
        steps = record_outcomes(t, conn, results) | set(finalize)
        fallbacks = decide_step_outcomes(t, conn, rule_sets, steps)
        t.refresh(conn, rule_sets)
    return fallbacks


@dataclass
class _InFlight:
    batch: Batch
    finalize: list[StepKey]


class Pipeline:
    """Claim batch N+1 while batch N is with the providers, then record N: the database work
    overlaps the network, so `--concurrency` provider calls stay busy."""

    def __init__(self, t: TickContext, dispatcher: Dispatcher) -> None:
        self.t = t
        self.dispatcher = dispatcher
        self.claimed = 0  # sets claimed so far (the --limit budget)

    def run(self) -> None:
        inflight: _InFlight | None = None
        try:
            while True:
                claims, finalize, progressed = self._claim()
                done, inflight = inflight, None
                if claims or finalize:
                    inflight = _InFlight(self.dispatcher.submit(claims), finalize)
                if done is not None:
                    self._complete(done)
                if inflight is None:
                    if self._settle(progressed):
                        continue
                    break
                self.claimed += len({c.set_id for c in claims}) or len(finalize)
        finally:
            if inflight is not None:
                self._complete(inflight)

    def _claim(self) -> tuple[list[ClaimedSend], list[StepKey], bool]:
        """The next batch, or nothing once the budget is spent or the run is stopping. Also
        whether any set was deferred or skipped (there may be more due work behind them)."""
        t, limit = self.t, self.t.options.limit
        budget = None if limit is None else limit - self.claimed
        if (budget is not None and budget <= 0) or t.state.stop.is_set():
            return [], [], False
        summary = t.state.summary
        with t.store.write() as conn:
            before = summary.deferred + summary.skipped
            claims, finalize = claim_batch(t, conn, RuleSets(conn), min(BATCH, budget or BATCH))
            progressed = summary.deferred + summary.skipped != before
        return self.dispatcher.prepare(claims), finalize, progressed

    def _settle(self, progressed: bool) -> bool:
        """Nothing claimed: re-evaluate what was touched; go on only if sets were deferred or
        skipped (more due work may be behind them)."""
        if progressed or self.t.state.touched_sets:
            with self.t.store.write() as conn:
                self.t.refresh(conn)
        return progressed

    def _complete(self, done: _InFlight) -> None:
        results = self.dispatcher.collect(done.batch)
        fallbacks = _record_and_decide(self.t, results, done.finalize)
        if fallbacks:
            deliver(self.t, self.dispatcher, fallbacks, [])
