"""The outreach tick (`run-outreach`): expire, reconcile, claim, send, record, fall back, re-predict.

Exactly-once in effect (SPEC section 6): a send is recorded as `claimed` with a lease and a claim
token in a committed transaction *before* the provider is called; its result is written only if
the token still matches. PostgreSQL claims use FOR UPDATE SKIP LOCKED; SQLite claims run in
BEGIN IMMEDIATE transactions. A claim whose lease expired may have gone out: it becomes `unknown`
and is resolved by looking it up (reconciliation), never by sending again.

One step per set per tick: a set whose step is still in flight (claimed, or waiting for a retry)
is not claimed again, so steps go out in order and catch-up after downtime never bursts.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, exists, insert, select, update

from outreach_cli.core.caps import ContactUsage
from outreach_cli.core.channels.base import (
    DELIVERED,
    FAILED,
    SANDBOX_PRACTICE_NAME,
    SANDBOX_PRACTICE_PHONE,
    SENT,
    TRANSIENT,
    UNKNOWN,
    Message,
    Outcome,
    Provider,
    ProviderConfigError,
    ProviderResult,
    practice_identity_problem,
)
from outreach_cli.core.channels.letters import letter_template
from outreach_cli.core.contacts import mask_phone, usable_methods
from outreach_cli.core.errors import ConfigError
from outreach_cli.core.evaluation import step_applies
from outreach_cli.core.models import invoice_set_t, patient_t, send_t
from outreach_cli.core.money import format_dollars
from outreach_cli.core.rulesets import RuleSet, Step, render
from outreach_cli.core.scheduling import Window, expires_at, is_allowed, next_allowed, zone
from outreach_cli.core.sets import (
    Context,
    RuleSets,
    add_events,
    bulk_update,
    chunks,
    contact_of,
    event_row,
    open_set_ids_for_patients,
    payment_url,
    refresh_sets,
    window_of,
    zones_of,
)
from outreach_cli.core.statuses import OPEN, SENDABLE, Status

log = logging.getLogger("outreach.engine")

MESSAGE_CHANNELS = ("sms", "email", "call", "mail")  # at most one per patient per local day
IN_FLIGHT = ("claimed", "pending")
COUNTS_AS_SENT = ("sent", "delivered", "unknown")
BATCH = 200
NOT_STARTED = Outcome(ProviderResult.NOT_STARTED)  # the call was never made (interrupt or stop): the claim is released


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
class Claim:
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


def backoff(attempt: int) -> timedelta:
    """Transient failures retry on later runs: 5 min, 20 min, 80 min, ..."""
    return timedelta(minutes=5 * (4 ** max(0, attempt - 1)))


def practice_phone_display(e164: str) -> str:
    try:
        import phonenumbers

        return str(phonenumbers.format_number(phonenumbers.parse(e164, "US"), phonenumbers.PhoneNumberFormat.NATIONAL))
    except Exception:
        return e164


class Engine:
    def __init__(
        self,
        store: Any,
        ctx: Context,
        providers: dict[str, Provider],
        *,
        lease_seconds: int = 300,
        max_attempts: int = 3,
        concurrency: int = 8,
        limit: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.ctx = ctx
        self.providers = providers
        self.lease = timedelta(seconds=lease_seconds)
        self.max_attempts = max_attempts
        self.concurrency = max(1, concurrency)
        self.limit = limit
        self.progress = progress
        self.pg = store.dialect == "postgresql"
        self.summary = TickSummary()
        self._touched_sets: set[int] = set()
        self._touched_patients: set[int] = set()
        # Real providers refuse to send without the practice's own name and phone (exit 4); the
        # sandbox shows clearly fictional ones instead.
        self._identity_problem = practice_identity_problem(ctx.practice_name, ctx.practice_phone)
        self._refusing = {m for m, p in providers.items() if p.name != "sandbox"} if self._identity_problem else set()
        if self._identity_problem:
            name = ctx.practice_name.strip() or SANDBOX_PRACTICE_NAME
            phone = SANDBOX_PRACTICE_PHONE if "practice_phone" in self._identity_problem else ctx.practice_phone
            self.ctx = ctx = replace(ctx, practice_name=name, practice_phone=phone)
        self._phone_display = practice_phone_display(ctx.practice_phone) if ctx.practice_phone else ""
        self._stripe_api: Any = None  # set when Stripe charges cards or serves payment links
        self._stripe_links: Any = None
        self._init_stripe()
        self._stop = threading.Event()  # first SIGINT/SIGTERM: claim nothing more, finish what is in flight
        self._abandon = threading.Event()  # second one: stop waiting for the calls in flight
        self._config_failed = threading.Event()  # a provider refused the account: call nothing more
        self._dry = False
        self._dry_rows: list[tuple[int, dict[str, Any]]] = []
        self._dry_changes: dict[int, tuple[int, str]] = {}  # set ID -> (sends before it, expire | mark-paid)

    # --- the tick ---------------------------------------------------------------------------

    def tick(self, *, dry_run: bool = False) -> TickSummary:
        started = time.monotonic()
        if dry_run:
            self._dry_run()
        else:
            self._phases()
        self.summary.duration_s = time.monotonic() - started
        return self.summary

    def _phases(self) -> None:
        self._expire_leases()
        self._reconcile()
        self._stripe_events()
        self._expire_and_pay()
        if not self._stop.is_set():
            self._pipeline()
        self.summary.interrupted = self._stop.is_set()

    def request_stop(self) -> bool:
        """SIGINT/SIGTERM: the first call stops claiming (calls in flight finish and are recorded,
        claims not yet started go back to pending); a second call stops waiting for the calls in
        flight (their claims are resolved after the lease). True on the first call."""
        if self._stop.is_set():
            self._abandon.set()
            return False
        self._stop.set()
        return True

    def _pipeline(self) -> None:
        """Claim batch N+1 while batch N is with the providers, then record N: the database work
        overlaps the network, so `--concurrency` provider calls stay busy."""
        claimed_total = 0
        inflight: tuple[list[Claim], list[Any], list[tuple[int, int, int]]] | None = None
        with self._pool(self.concurrency) as pool:
            try:
                while True:
                    budget = None if self.limit is None else self.limit - claimed_total
                    claims: list[Claim] = []
                    finalize: list[tuple[int, int, int]] = []
                    progressed = False
                    if (budget is None or budget > 0) and not self._stop.is_set():
                        with self.store.write() as conn:
                            rule_sets = RuleSets(conn)
                            before = self.summary.deferred + self.summary.skipped
                            claims, finalize = self._claim(conn, rule_sets, min(BATCH, budget or BATCH))
                            progressed = self.summary.deferred + self.summary.skipped != before
                        claims = self._drop_stale(claims)
                        self._check_identity(claims)
                    futures = [pool.submit(self._call_one, c) for c in claims]
                    done, inflight = inflight, ((claims, futures, finalize) if (claims or finalize) else None)
                    if done is not None:
                        self._complete(*done)
                    if not claims and not finalize:
                        if progressed or self._touched_sets:
                            with self.store.write() as conn:
                                self._refresh(conn, RuleSets(conn))
                            if progressed:
                                continue
                        break
                    claimed_total += len({c.set_id for c in claims}) or len(finalize)
            finally:
                if inflight is not None:
                    self._complete(*inflight)

    @contextmanager
    def _pool(self, workers: int) -> Iterator[ThreadPoolExecutor]:
        """Worker threads for provider calls; after a second interrupt nobody waits for them."""
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            yield pool
        finally:
            pool.shutdown(wait=not self._abandon.is_set(), cancel_futures=True)

    def _check_identity(self, claims: list[Claim]) -> None:
        """Before any of ``claims`` goes out: real providers refuse to send without the practice's
        name and phone (the claims go back to pending, the run stops with exit 4)."""
        refused = sorted({c.method for c in claims if c.method in self._refusing})
        if refused:
            names = ", ".join(f"{m} ({self.providers[m].name})" for m in refused)
            self._stop_on_config_error(
                claims,
                [],
                ProviderConfigError(
                    f"{self._identity_problem}; {names} would not name the practice: set practice_name and "
                    "practice_phone in the config file (or OUTREACH_PRACTICE_NAME / OUTREACH_PRACTICE_PHONE)"
                ),
            )

    def _collect(self, claims: list[Claim], futures: list[Any]) -> tuple[list[tuple[Claim, Outcome]], Any]:
        """Wait for the provider calls; an interrupt's claims that never started go back to
        pending, and a second interrupt stops waiting (those claims are left to the lease).
        Returns (results, the ProviderConfigError raised by a call or None)."""
        from concurrent.futures import wait

        pending = set(futures)
        while pending and not self._abandon.is_set():
            _, pending = wait(pending, timeout=0.2)
        results: list[tuple[Claim, Outcome]] = []
        config_error: ProviderConfigError | None = None
        unstarted: list[Claim] = []
        for c, fut in zip(claims, futures, strict=True):
            if not fut.done() and not fut.cancel():
                self.summary.in_flight_left += 1  # still with the provider: resolved after the lease
                continue
            if fut.cancelled():
                unstarted.append(c)
                continue
            try:
                c_, out = fut.result()
            except ProviderConfigError as exc:
                config_error = exc
                continue
            if out is NOT_STARTED:
                unstarted.append(c)
            else:
                results.append((c_, out))
        if unstarted:
            with self.store.write() as conn:
                self._release(conn, unstarted)
        return results, config_error

    def _complete(self, claims: list[Claim], futures: list[Any], finalize: list[tuple[int, int, int]]) -> None:
        results, config_error = self._collect(claims, futures)
        if self.progress and results:
            self.progress(len(results))
        if config_error is not None:
            self._stop_on_config_error(claims, results, config_error)
        with self.store.write() as conn:
            rule_sets = RuleSets(conn)
            steps = self._record(conn, results) | set(finalize)
            fallbacks = self._finalize(conn, rule_sets, steps)
            self._refresh(conn, rule_sets)
        if fallbacks:
            self._deliver(fallbacks, [])

    def _release(self, conn: Connection, claims: list[Claim]) -> None:
        """Claims whose provider call never started: back to pending, no attempt used."""
        for c in claims:
            conn.execute(
                update(send_t)
                .where(send_t.c.id == c.send_id, send_t.c.claim_token == c.token, send_t.c.status == "claimed")
                .values(
                    status="pending",
                    claim_token=None,
                    lease_until=None,
                    next_attempt_at=self.ctx.now,
                    attempts=send_t.c.attempts - 1,
                )
            )

    def _stop_on_config_error(
        self, claims: list[Claim], results: list[tuple[Claim, Outcome]], exc: ProviderConfigError
    ) -> None:
        done = {c.send_id for c, _ in results}
        with self.store.write() as conn:
            self._record(conn, results)
            self._release(conn, [c for c in claims if c.send_id not in done])
        raise ConfigError(f"provider configuration error: {exc}; the run stopped and sent nothing more")

    # --- phase: leases and reconciliation ----------------------------------------------------

    def _expire_leases(self) -> None:
        """Claims whose lease ran out may have gone out: they become unknown (then reconciled)."""
        now = self.ctx.now
        with self.store.write() as conn:
            rows = conn.execute(
                select(
                    send_t.c.id,
                    send_t.c.invoice_set_id,
                    send_t.c.patient_pk,
                    send_t.c.method,
                    send_t.c.step_title,
                    send_t.c.step_day,
                ).where(send_t.c.status == "claimed", send_t.c.lease_until < now)
            ).all()
            if not rows:
                return
            for chunk in chunks([r.id for r in rows]):
                conn.execute(
                    update(send_t)
                    .where(send_t.c.id.in_(chunk), send_t.c.status == "claimed", send_t.c.lease_until < now)
                    .values(
                        status="unknown",
                        claim_token=None,
                        reason="the run ended before the outcome was recorded; resolving by lookup",
                    )
                )
            add_events(
                conn,
                [
                    event_row(
                        self.ctx,
                        "send",
                        set_id=r.invoice_set_id,
                        patient_pk=r.patient_pk,
                        actor="system",
                        detail={
                            "step": r.step_title,
                            "day": r.step_day,
                            "method": r.method,
                            "status": "unknown",
                            "reason": "lease expired",
                        },
                    )
                    for r in rows
                ],
            )
            self.summary.unknown += len(rows)

    def _reconcile(self) -> None:
        """Learn what happened after earlier sends: resolve `unknown` sends by looking them up
        (never by sending again), fetch final statuses of accepted Twilio messages, read inbound
        replies, and re-decide steps whose outcome changed since (fallbacks, failed)."""
        from outreach_cli.core.inbound import apply_inbound, apply_send_status

        now = self.ctx.now
        recheck: list[tuple[int, int, int]] = []
        with self.store.read() as conn:
            unknown = conn.execute(
                select(send_t).where(send_t.c.status == "unknown").order_by(send_t.c.id).limit(5000)
            ).all()
            fetchable = [m for m, p in self.providers.items() if hasattr(p, "fetch")]
            accepted = (
                conn.execute(
                    select(send_t)
                    .where(
                        send_t.c.status == "sent",
                        send_t.c.method.in_(fetchable),
                        send_t.c.provider_ref.is_not(None),
                        send_t.c.sent_at >= now - timedelta(days=7),
                    )
                    .order_by(send_t.c.id)
                    .limit(5000)
                ).all()
                if fetchable
                else []
            )
        if unknown or accepted:
            with self.store.write() as conn:
                rule_sets = RuleSets(conn)
                for r in unknown:
                    self._resolve_unknown(conn, r, rule_sets)
                for r in accepted:
                    try:
                        out = self.providers[r.method].fetch(r.provider_ref)  # type: ignore[attr-defined]
                    except ProviderConfigError as exc:
                        raise ConfigError(f"{r.method} provider: {exc}") from None
                    except Exception as exc:
                        log.info("status fetch for send %s failed: %s", r.id, type(exc).__name__)
                        self._problem(f"{r.method} delivery status lookups failed ({type(exc).__name__})")
                        continue
                    if out.status == UNKNOWN:
                        self._problem(f"{r.method} delivery status lookups failed (error {out.error_code})")
                    if apply_send_status(conn, r, out, self.ctx, source="reconciliation"):
                        self.summary.reconciled += 1
                        self._touched_patients.add(r.patient_pk)
                        self._touched_sets.add(r.invoice_set_id)
                self._refresh(conn, rule_sets)
        sms = self.providers.get("sms")
        if sms is not None and hasattr(sms, "inbound") and getattr(sms, "from_number", None):
            with self.store.read() as conn:
                since_text = self.store.get_meta(conn, "twilio_inbound_since")
            since = datetime.fromisoformat(since_text) if since_text else now - timedelta(days=2)
            try:
                items = sms.inbound(getattr(sms, "from_number"), since - timedelta(days=1))  # noqa: B009
            except ProviderConfigError as exc:
                raise ConfigError(f"sms provider: {exc}") from None
            except Exception as exc:
                log.info("reading inbound messages failed: %s", type(exc).__name__)
                self._problem(f"reading SMS replies failed ({type(exc).__name__})")
                items = []
            if items:
                with self.store.write() as conn:
                    n, pts = apply_inbound(conn, items, self.ctx)
                    self.summary.reconciled += n
                    self._touched_patients |= pts
                    newest = max((i["received_at"] for i in items if i["received_at"]), default=since)
                    self._set_meta(conn, "twilio_inbound_since", max(newest, since).isoformat())
                    self._refresh(conn, RuleSets(conn))
        with self.store.read() as conn:
            for sid, gen, idx in conn.execute(
                select(invoice_set_t.c.id, invoice_set_t.c.schedule_gen, invoice_set_t.c.recheck_step).where(
                    invoice_set_t.c.recheck_step.is_not(None)
                )
            ):
                recheck.append((sid, gen, idx))
        if recheck:
            with self.store.write() as conn:
                for sid, _, _ in recheck:
                    conn.execute(update(invoice_set_t).where(invoice_set_t.c.id == sid).values(recheck_step=None))
            self._deliver([], recheck)

    def _init_stripe(self) -> None:
        from outreach_cli.core.stripe_payments import stripe_settings

        charges, links = stripe_settings(self.ctx)
        if not (charges or links):
            return
        from outreach_cli.core.channels.stripe_provider import StripeApi, StripeLinks

        card = self.providers.get("charge_card")
        try:
            self._stripe_api = getattr(card, "api", None) or StripeApi.from_settings(self.ctx.extra["settings"].stripe)
        except ProviderConfigError as exc:
            raise ConfigError(str(exc)) from None
        if links:
            success = str(self.ctx.extra["settings"].values["payments"]["success_url"])
            self._stripe_links = StripeLinks(self._stripe_api, success)

    def _stripe_events(self) -> None:
        """Payments, refunds and disputes made at Stripe since the last tick (the event feed)."""
        if self._stripe_api is None:
            return
        from outreach_cli.core.stripe_payments import sync_events

        report = sync_events(self.store, self.ctx, self._stripe_api)
        self.summary.reconciled += report.applied
        self.summary.paid += report.paid

    def _stripe_link(self, c: Claim) -> Outcome | None:
        """With Stripe payment links, {url} is the set's Checkout Session for the balance now."""
        from outreach_cli.core.stripe_payments import checkout_link

        try:
            url = checkout_link(
                self.store, self.ctx, self._stripe_links, c.set_id, c.msg.balance_cents, c.msg.stripe_customer_id
            )
        except ProviderConfigError:
            raise
        except Exception as exc:
            log.info("payment link for set %s failed: %s", c.set_id, type(exc).__name__)
            return Outcome(TRANSIENT, None, "payment_link", "the Stripe payment link could not be created")
        c.values["url"] = url
        c.msg.payment_url = url
        c.msg.body = render(c.template, c.values)
        return None

    def _dry_change(self, set_id: int, action: str) -> None:
        if self._dry:
            self._dry_changes.setdefault(set_id, (len(self._dry_rows), action))

    def _problem(self, text: str) -> None:
        self.summary.provider_problems[text] = self.summary.provider_problems.get(text, 0) + 1

    def _set_meta(self, conn: Connection, key: str, value: str) -> None:
        from outreach_cli.core.models import meta_t

        if conn.execute(select(meta_t.c.key).where(meta_t.c.key == key)).first():
            conn.execute(update(meta_t).where(meta_t.c.key == key).values(value=value))
        else:
            conn.execute(insert(meta_t), {"key": key, "value": value})

    def _resolve_unknown(self, conn: Connection, r: Any, rule_sets: RuleSets) -> None:
        provider = self.providers.get(r.method)
        if provider is None:
            return
        msg = self._message_for_row(conn, r, rule_sets)
        if msg is None:
            return
        msg.attempted_at = r.sent_at or (r.lease_until - self.lease if r.lease_until else None)
        try:
            out = provider.lookup(r.provider_ref, msg)
        except ProviderConfigError as exc:
            raise ConfigError(f"{r.method} provider: {exc}") from None
        except Exception as exc:
            log.info("lookup of send %s failed: %s", r.id, type(exc).__name__)
            self._problem(f"{r.method} lookups of unknown sends failed ({type(exc).__name__})")
            return
        if out is None or out.status == UNKNOWN:
            return
        if out.status == TRANSIENT:
            # The provider positively has no such message: it never went out; try it again.
            values: dict[str, Any] = {"status": "pending", "next_attempt_at": self.ctx.now, "reason": out.reason}
        else:
            status = {DELIVERED: "delivered", SENT: "sent", FAILED: "failed"}[out.status]
            values = {
                "status": status,
                "provider_ref": out.provider_ref or r.provider_ref,
                "error_code": out.error_code,
                "reason": out.reason,
                "finished_at": self.ctx.now if status != "sent" else None,
            }
        res = conn.execute(update(send_t).where(send_t.c.id == r.id, send_t.c.status == "unknown").values(**values))
        if not res.rowcount:
            return
        self.summary.reconciled += 1
        self._apply_patient_update(conn, r.patient_pk, out)
        if r.method == "charge_card" and out.status == DELIVERED and out.charged_cents > 0:
            claim = Claim(
                r.id,
                r.invoice_set_id,
                r.patient_pk,
                r.schedule_gen,
                r.step_index,
                r.step_day,
                r.method,
                "",
                bool(r.is_fallback),
                msg,
            )
            self._record_card_payments(conn, [(claim, out)])
        add_events(
            conn,
            [
                event_row(
                    self.ctx,
                    "send",
                    set_id=r.invoice_set_id,
                    patient_pk=r.patient_pk,
                    actor="system",
                    detail={
                        "step": r.step_title,
                        "day": r.step_day,
                        "method": r.method,
                        "status": values["status"],
                        "reconciled": True,
                        "provider_ref": values.get("provider_ref"),
                        "error_code": out.error_code,
                        "reason": out.reason,
                    },
                )
            ],
        )
        self._touched_sets.add(r.invoice_set_id)
        if values["status"] == "failed":
            conn.execute(
                update(invoice_set_t)
                .where(invoice_set_t.c.id == r.invoice_set_id, invoice_set_t.c.schedule_gen == r.schedule_gen)
                .values(recheck_step=r.step_index)
            )

    # --- phase: paid and expired ------------------------------------------------------------

    def _expire_and_pay(self) -> None:
        now = self.ctx.now
        with self.store.write() as conn:
            rule_sets = RuleSets(conn)
            open_values = [s.value for s in OPEN]
            ids = set(
                conn.execute(
                    select(invoice_set_t.c.id).where(
                        invoice_set_t.c.status.in_(open_values), invoice_set_t.c.amount_outstanding_cents <= 0
                    )
                ).scalars()
            )
            for rid, (_, _, rs) in rule_sets.by_id.items():
                cutoff = now - timedelta(days=rs.expiry_day)
                ids.update(
                    conn.execute(
                        select(invoice_set_t.c.id).where(
                            invoice_set_t.c.rule_set_id == rid,
                            invoice_set_t.c.status.in_(open_values),
                            invoice_set_t.c.status != Status.EXPIRED.value,
                            invoice_set_t.c.expired_at.is_(None),
                            invoice_set_t.c.anchor_at <= cutoff,
                        )
                    ).scalars()
                )
            if ids:
                self._touched_sets.update(ids)
                self._refresh(conn, rule_sets)

    def _refresh(self, conn: Connection, rule_sets: RuleSets) -> None:
        ids = set(self._touched_sets)
        if self._touched_patients:
            ids.update(open_set_ids_for_patients(conn, self._touched_patients))
        if not ids:
            return
        changed = refresh_sets(conn, ids, self.ctx, rule_sets)
        for sid, (_, to) in changed.items():
            if to == Status.PAID.value:
                self.summary.paid += 1
            elif to == Status.EXPIRED.value:
                self.summary.expired += 1
            if to in (Status.PAID.value, Status.EXPIRED.value):
                self._dry_change(sid, "mark-paid" if to == Status.PAID.value else "expire")
        self._touched_sets.clear()
        self._touched_patients.clear()

    # --- phase: claim ----------------------------------------------------------------------

    def _due_sets_query(self, batch: int) -> Any:
        now = self.ctx.now
        in_flight = exists().where(send_t.c.invoice_set_id == invoice_set_t.c.id, send_t.c.status.in_(IN_FLIGHT))
        q = (
            select(invoice_set_t, patient_t.c.patient_id.label("p_patient_id"))
            .join(patient_t, patient_t.c.id == invoice_set_t.c.patient_pk)
            .where(
                invoice_set_t.c.status.in_([s.value for s in SENDABLE]),
                invoice_set_t.c.next_send_at <= now,
                invoice_set_t.c.paused_at.is_(None),
                invoice_set_t.c.amount_outstanding_cents > 0,
                ~in_flight,
            )
            .order_by(invoice_set_t.c.next_send_at, invoice_set_t.c.id)
            .limit(batch)
        )
        if self.pg:
            q = q.with_for_update(skip_locked=True, of=invoice_set_t)
        return q

    def _claim(
        self, conn: Connection, rule_sets: RuleSets, batch: int
    ) -> tuple[list[Claim], list[tuple[int, int, int]]]:
        """Claims due work in the caller's transaction. Returns (claims, steps to finalize now)."""
        now = self.ctx.now
        claims: list[Claim] = []
        finalize: list[tuple[int, int, int]] = []
        claims.extend(self._claim_retries(conn, rule_sets, batch))
        sets = conn.execute(self._due_sets_query(batch)).all()
        if not sets:
            return claims, finalize
        if self.pg:
            # Under READ COMMITTED a row locked after another worker's claim committed is re-checked
            # against its new version, but the NOT EXISTS above still used the older snapshot: look
            # again with a fresh statement.
            busy = set(
                conn.execute(
                    select(send_t.c.invoice_set_id).where(
                        send_t.c.invoice_set_id.in_([s.id for s in sets]), send_t.c.status.in_(IN_FLIGHT)
                    )
                ).scalars()
            )
            sets = [s for s in sets if s.id not in busy]
        pmap = self._patients(conn, {s.patient_pk for s in sets})
        usage = self._contact_usage(conn, pmap)
        skipped_rows: list[dict[str, Any]] = []
        claim_rows: list[dict[str, Any]] = []
        set_updates: list[tuple[int, dict[str, Any]]] = []
        for s in sets:
            p = pmap[s.patient_pk]
            rs = rule_sets.get(s.rule_set_id)
            idx = s.next_step_index or 0
            if idx >= len(rs.steps):
                self._touched_sets.add(s.id)
                continue
            step = rs.steps[idx]
            if now >= expires_at(s.anchor_at, rs.expiry_day):
                # Expiry is decided before sending: the re-evaluation marks the set expired (D8).
                self._touched_sets.add(s.id)
                continue
            zones = zones_of(p, self.ctx.practice_tz)
            window = window_of(p, self.ctx)
            if not is_allowed(now, zones, window):
                nxt = self._next_allowed(now, zones, window)
                set_updates.append((s.id, {"next_send_at": nxt}))
                if nxt is None:
                    self._touched_sets.add(s.id)  # re-evaluation explains it (will-fail)
                self.summary.deferred += 1
                continue
            base = {
                "invoice_set_id": s.id,
                "patient_pk": s.patient_pk,
                "schedule_gen": s.schedule_gen,
                "step_index": idx,
                "step_day": step.day,
                "step_title": step.title,
                "rule_set_version": rule_sets.version(s.rule_set_id),
                "due_at": s.next_send_at,
            }
            if not step_applies(step, s.amount_outstanding_cents):
                for m in step.methods:
                    skipped_rows.append(
                        {
                            **base,
                            "method": m,
                            "status": "skipped",
                            "finished_at": now,
                            "reason": f"balance {format_dollars(s.amount_outstanding_cents)} is outside "
                            "this step's min/max balance",
                        }
                    )
                set_updates.append((s.id, {"next_step_index": idx + 1}))
                self._touched_sets.add(s.id)
                continue
            usable = usable_methods(contact_of(p))
            today = now.astimezone(zone(zones[0])).date().isoformat()
            candidates = [m for m in step.methods if usable[m] is None]
            held = usage.held(p, candidates, today, now, zones[0])
            if held is not None:
                cap, until = held
                # Deferred, never dropped: the step goes at the first allowed moment after the cap frees.
                nxt = self._next_allowed(until, zones, window)
                set_updates.append((s.id, {"next_send_at": nxt, "held_by": cap, "held_until": until}))
                self.summary.deferred += 1
                continue
            for m in step.methods:
                if usable[m] is not None:
                    skipped_rows.append(
                        {**base, "method": m, "status": "skipped", "finished_at": now, "reason": usable[m]}
                    )
            for m in candidates:
                token = secrets.token_hex(16)
                claim_rows.append(
                    {
                        **base,
                        "method": m,
                        "status": "claimed",
                        "claim_token": token,
                        "lease_until": now + self.lease,
                        "attempts": 1,
                        "local_day": today,
                    }
                )
                if m in MESSAGE_CHANNELS:
                    usage.add(p, m, today, now)
            # next_send_at is cleared until the step's outcome is recorded (then re-evaluated).
            upd: dict[str, Any] = {
                "next_step_index": idx + 1,
                "next_send_at": None,
                "held_by": None,
                "held_until": None,
            }
            if not candidates:
                # Nothing to send: decide fallbacks/failed next; recheck_step survives a crash.
                upd["recheck_step"] = idx
                finalize.append((s.id, s.schedule_gen, idx))
            set_updates.append((s.id, upd))
        self.summary.skipped += len(skipped_rows)
        for chunk in chunks(skipped_rows, 1000):
            conn.execute(insert(send_t), list(chunk))
        if skipped_rows:
            add_events(
                conn,
                [
                    event_row(
                        self.ctx,
                        "send",
                        set_id=r["invoice_set_id"],
                        patient_pk=r["patient_pk"],
                        actor="system",
                        detail={
                            "step": r["step_title"],
                            "day": r["step_day"],
                            "method": r["method"],
                            "status": "skipped",
                            "reason": r["reason"],
                        },
                    )
                    for r in skipped_rows
                ],
            )
        # One executemany per shape of change (deferred, advanced, advanced-with-recheck), not a statement per set.
        by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for sid, values in set_updates:
            by_shape.setdefault(tuple(sorted(values)), []).append({"b_id": sid, "updated_at": now, **values})
        for rows in by_shape.values():
            bulk_update(conn, invoice_set_t, rows)
        if claim_rows:
            ids: list[int] = []
            for chunk in chunks(claim_rows, 500):
                res = conn.execute(insert(send_t).returning(send_t.c.id, sort_by_parameter_order=True), list(chunk))
                ids.extend(r[0] for r in res)
            set_rows = {s.id: s for s in sets}
            for send_id, row in zip(ids, claim_rows, strict=True):
                s = set_rows[row["invoice_set_id"]]
                rs = rule_sets.get(s.rule_set_id)
                step = rs.steps[row["step_index"]]
                claims.append(self._make_claim(send_id, row, s, pmap[s.patient_pk], step, rs, is_fallback=False))
        return claims, finalize

    def _claim_retries(self, conn: Connection, rule_sets: RuleSets, batch: int) -> list[Claim]:
        now = self.ctx.now
        q = (
            select(send_t, invoice_set_t.c.rule_set_id, invoice_set_t.c.amount_outstanding_cents.label("balance"))
            .join(invoice_set_t, invoice_set_t.c.id == send_t.c.invoice_set_id)
            .where(
                send_t.c.status == "pending",
                send_t.c.next_attempt_at <= now,
                invoice_set_t.c.status.in_([s.value for s in SENDABLE]),
                invoice_set_t.c.paused_at.is_(None),
                invoice_set_t.c.amount_outstanding_cents > 0,
            )
            .order_by(send_t.c.next_attempt_at, send_t.c.id)
            .limit(batch)
        )
        if self.pg:
            q = q.with_for_update(skip_locked=True, of=send_t)
        rows = conn.execute(q).all()
        if not rows:
            return []
        pmap = self._patients(conn, {r.patient_pk for r in rows})
        out: list[Claim] = []
        for r in rows:
            p = pmap[r.patient_pk]
            zones = zones_of(p, self.ctx.practice_tz)
            window = window_of(p, self.ctx)
            if not is_allowed(now, zones, window):
                later = self._next_allowed(now, zones, window) or now + timedelta(days=1)
                conn.execute(update(send_t).where(send_t.c.id == r.id).values(next_attempt_at=later))
                self.summary.deferred += 1
                continue
            token = secrets.token_hex(16)
            conn.execute(
                update(send_t)
                .where(send_t.c.id == r.id, send_t.c.status == "pending")
                .values(
                    status="claimed",
                    claim_token=token,
                    lease_until=now + self.lease,
                    attempts=r.attempts + 1,
                    local_day=r.local_day or now.astimezone(zone(zones[0])).date().isoformat(),
                )
            )
            rs = rule_sets.get(r.rule_set_id)
            step = rs.steps[r.step_index] if 0 <= r.step_index < len(rs.steps) else None
            s_like = _SetLike(r.invoice_set_id, r.patient_pk, r.schedule_gen, r.balance)
            row = {
                "invoice_set_id": r.invoice_set_id,
                "schedule_gen": r.schedule_gen,
                "step_index": r.step_index,
                "step_day": r.step_day,
                "step_title": r.step_title,
                "method": r.method,
                "claim_token": token,
            }
            out.append(self._make_claim(r.id, row, s_like, p, step, rs, is_fallback=bool(r.is_fallback)))
        return out

    def _next_allowed(self, moment: datetime, zones: tuple[str, ...], window: Window | None = None) -> datetime | None:
        """None when the zones share no allowed moment (the set's re-evaluation says will-fail)."""
        try:
            return next_allowed(moment, zones, window or self.ctx.window)
        except ValueError:
            return None

    def _contact_usage(self, conn: Connection, pmap: dict[int, Any]) -> ContactUsage:
        """What was sent to these patients' phone numbers and email addresses, by any patient
        record and set: today's channels and the last 7 days (README "Compliance": caps)."""
        from sqlalchemy import func, or_

        settings = self.ctx.extra.get("settings")
        caps = settings.values.get("compliance") if settings is not None else None
        usage = ContactUsage(caps or {"calls_per_7_days": 7, "messages_per_7_days": None, "states": {}})
        phones = sorted({p.phone for p in pmap.values() if p.phone})
        emails = sorted({p.email for p in pmap.values() if p.email})  # exact: served by the index
        since = self.ctx.now - timedelta(days=7)
        busy = ("claimed", "pending", "sent", "delivered", "unknown")
        conds = [send_t.c.patient_pk.in_(sorted(pmap))]
        if phones:
            conds.append(patient_t.c.phone.in_(phones))
        if emails:
            conds.append(patient_t.c.email.in_(emails))
        q = (
            select(
                send_t.c.patient_pk,
                send_t.c.method,
                send_t.c.local_day,
                send_t.c.step_index,
                func.coalesce(send_t.c.sent_at, send_t.c.due_at).label("at"),
                patient_t.c.phone,
                patient_t.c.email,
            )
            .join(patient_t, patient_t.c.id == send_t.c.patient_pk)
            .where(
                or_(*conds),
                send_t.c.method.in_(MESSAGE_CHANNELS),
                send_t.c.status.in_(busy),
                or_(send_t.c.sent_at >= since, send_t.c.sent_at.is_(None)),
            )
        )
        for r in conn.execute(q):
            if r.step_index is not None and r.step_index < 0:
                continue  # the opt-out confirmation is not outreach
            usage.record(r.patient_pk, r.phone, r.email, r.method, r.local_day, r.at or self.ctx.now)
        return usage

    def _patients(self, conn: Connection, pks: set[int]) -> dict[int, Any]:
        out: dict[int, Any] = {}
        for chunk in chunks(sorted(pks)):
            for p in conn.execute(select(patient_t).where(patient_t.c.id.in_(chunk))):
                out[p.id] = p
        return out

    def _values(self, s: Any, p: Any) -> dict[str, str]:
        return {
            "first_name": p.first_name,
            "last_name": p.last_name,
            "full_name": f"{p.first_name} {p.last_name}".strip(),
            "balance": format_dollars(s.amount_outstanding_cents),
            "url": payment_url(s.id, self.ctx),
            "practice_name": self.ctx.practice_name,
            "practice_phone": self._phone_display,
            "invoice_id": str(s.id),
        }

    def _make_claim(
        self, send_id: int, row: dict[str, Any], s: Any, p: Any, step: Step | None, rs: RuleSet, *, is_fallback: bool
    ) -> Claim:
        if row["step_index"] < 0:
            from outreach_cli.core.inbound import CONFIRMATION_TEXT

            template = CONFIRMATION_TEXT
        else:
            # Each method its own words: a fallback uses the fallback method's template (D3).
            template = rs.template(step, row["method"])
        values = self._values(s, p)
        msg = Message(
            send_id=send_id,
            set_id=s.id,
            method=row["method"],
            step_title=row["step_title"],
            body=render(template, values),
            payment_url=values["url"],
            phone=p.phone,
            email=p.email,
            first_name=p.first_name,
            last_name=p.last_name,
            address={
                k: getattr(p, k) for k in ("address_line1", "address_line2", "city", "state", "postal_code", "country")
            },
            card_token=p.card_token,
            stripe_customer_id=p.stripe_customer_id,
            stripe_payment_method_id=p.stripe_payment_method_id,
            schedule_gen=row["schedule_gen"],
            max_charge_cents=step.max_balance_cents if step is not None else None,
            balance_cents=s.amount_outstanding_cents,
            practice_name=self.ctx.practice_name,
            practice_phone=self._phone_display,
            claim_token=row["claim_token"],
            now=self.ctx.now,
            practice_tz=self.ctx.practice_tz,
            letter_template=letter_template(step, row["method"], is_fallback),
            values=values,
        )
        return Claim(
            send_id,
            s.id,
            p.id,
            row["schedule_gen"],
            row["step_index"],
            row["step_day"],
            row["method"],
            row["claim_token"],
            is_fallback,
            msg,
            template,
            values,
        )

    def _message_for_row(self, conn: Connection, r: Any, rule_sets: RuleSets) -> Message | None:
        s = conn.execute(select(invoice_set_t).where(invoice_set_t.c.id == r.invoice_set_id)).first()
        p = conn.execute(select(patient_t).where(patient_t.c.id == r.patient_pk)).first()
        if s is None or p is None:
            return None
        rs = rule_sets.get(s.rule_set_id)
        step = rs.steps[r.step_index] if 0 <= r.step_index < len(rs.steps) else None
        row = {
            "method": r.method,
            "step_title": r.step_title,
            "claim_token": r.claim_token or "",
            "schedule_gen": r.schedule_gen,
            "step_index": r.step_index,
            "step_day": r.step_day,
        }
        return self._make_claim(r.id, row, s, p, step, rs, is_fallback=bool(r.is_fallback)).msg

    # --- phase: send and record -------------------------------------------------------------

    def _deliver(self, claims: list[Claim], finalize: list[tuple[int, int, int]]) -> None:
        pending_final = list(finalize)
        while claims or pending_final:
            claims = self._drop_stale(claims)
            results = self._call_providers(claims)
            with self.store.write() as conn:
                rule_sets = RuleSets(conn)
                steps = self._record(conn, results) | set(pending_final)
                claims = self._finalize(conn, rule_sets, steps)
                self._refresh(conn, rule_sets)
            pending_final = []

    def _drop_stale(self, claims: list[Claim]) -> list[Claim]:
        """Re-read the balance and status right before calling providers: a payment, pause or
        cancel committed since the claim stops the send."""
        if not claims:
            return claims
        ids = sorted({c.set_id for c in claims})
        ok: dict[int, int] = {}
        mine: set[tuple[int, str]] = set()
        with self.store.read() as conn:
            for chunk in chunks([c.send_id for c in claims]):
                for sid_, token in conn.execute(
                    select(send_t.c.id, send_t.c.claim_token).where(
                        send_t.c.id.in_(chunk), send_t.c.status == "claimed"
                    )
                ):
                    mine.add((sid_, token))
            for chunk in chunks(ids):
                for sid, status, paused, bal in conn.execute(
                    select(
                        invoice_set_t.c.id,
                        invoice_set_t.c.status,
                        invoice_set_t.c.paused_at,
                        invoice_set_t.c.amount_outstanding_cents,
                    ).where(invoice_set_t.c.id.in_(chunk))
                ):
                    if status in [s.value for s in SENDABLE] and paused is None and bal > 0:
                        ok[sid] = bal
        # A claim another run has taken over (our lease ran out) is not ours to send any more.
        claims = [c for c in claims if (c.send_id, c.token) in mine]
        keep = [c for c in claims if c.set_id in ok]
        stale = [c for c in claims if c.set_id not in ok]
        if stale:
            with self.store.write() as conn:
                for c in stale:
                    conn.execute(
                        update(send_t)
                        .where(send_t.c.id == c.send_id, send_t.c.claim_token == c.token, send_t.c.status == "claimed")
                        .values(
                            status="cancelled",
                            reason="set stopped or paid before sending",
                            finished_at=self.ctx.now,
                            lease_until=None,
                        )
                    )
                    self._touched_sets.add(c.set_id)
        for c in keep:
            if c.msg.balance_cents != ok[c.set_id]:  # a partial payment since the claim
                c.msg.balance_cents = ok[c.set_id]
                c.values["balance"] = format_dollars(ok[c.set_id])
                c.msg.body = render(c.template, c.values)
        return keep

    def _call_one(self, c: Claim) -> tuple[Claim, Outcome]:
        if self._stop.is_set() or self._config_failed.is_set():
            return c, NOT_STARTED  # interrupted, or the account is refused: this claim goes back to pending
        provider = self.providers[c.method]
        try:
            link_failed = self._stripe_link(c) if self._stripe_links is not None and c.method != "charge_card" else None
            out = link_failed or provider.send(c.msg)
        except ProviderConfigError:
            self._config_failed.set()
            raise
        except Exception as exc:
            log.info("send %s (%s) raised %s", c.send_id, c.method, type(exc).__name__)
            out = Outcome(UNKNOWN, None, None, f"provider call ended without an answer ({type(exc).__name__})")
        log.info(
            "send %s %s to %s: %s",
            c.send_id,
            c.method,
            mask_phone(c.msg.phone) if c.method in ("sms", "call") else "patient",
            out.status,
        )
        if self._dry:
            self._dry_rows.append(
                (
                    c.send_id,
                    {
                        "id": c.set_id,
                        "action": "send",
                        "step": c.msg.step_title,
                        "day": c.step_day,
                        "method": c.method,
                        "fallback": c.is_fallback,
                    },
                )
            )
        return c, out

    def _call_providers(self, claims: list[Claim]) -> list[tuple[Claim, Outcome]]:
        if not claims:
            return []
        self._check_identity(claims)
        # Calls run in worker threads even one at a time, so an interrupt can stop waiting for them.
        with self._pool(min(self.concurrency, len(claims))) as pool:
            futures = [pool.submit(self._call_one, c) for c in claims]
            results, config_error = self._collect(claims, futures)
        if self.progress:
            self.progress(len(results))
        if config_error is not None:
            self._stop_on_config_error(claims, results, config_error)
        return results

    def _record(self, conn: Connection, results: list[tuple[Claim, Outcome]]) -> set[tuple[int, int, int]]:
        """Write outcomes, fenced by claim token: a send another run has taken over (our lease
        ran out) keeps that run's result. One bulk statement per batch."""
        now = self.ctx.now
        steps: set[tuple[int, int, int]] = set()
        events: list[dict[str, Any]] = []
        charges: list[tuple[Claim, Outcome]] = []
        if not results:
            return steps
        current: dict[int, tuple[str | None, str, int]] = {}
        for chunk in chunks([c.send_id for c, _ in results]):
            q = select(send_t.c.id, send_t.c.claim_token, send_t.c.status, send_t.c.attempts).where(
                send_t.c.id.in_(chunk)
            )
            if self.pg:
                q = q.with_for_update()
            for sid, token, status, attempts in conn.execute(q):
                current[sid] = (token, status, attempts)
        rows: list[dict[str, Any]] = []
        for c, out in results:
            token, cur_status, attempts = current.get(c.send_id, (None, "", 0))
            if token != c.token or cur_status != "claimed":
                # Fenced: our lease expired and another run took this send over; its result stands.
                log.info("send %s: claim token no longer matches; result discarded", c.send_id)
                continue
            values: dict[str, Any] = {
                "provider_ref": out.provider_ref,
                "error_code": out.error_code,
                "reason": out.reason,
                "claim_token": None,
                "lease_until": None,
                "next_attempt_at": None,
                "finished_at": None,
                "sent_at": None,
            }
            status = out.status
            self.summary.attempted += 1
            if status == TRANSIENT:
                n, first = self.summary.transient_by_method.get(c.method, (0, out.reason or "temporary failure"))
                self.summary.transient_by_method[c.method] = (n + 1, first)
                if attempts >= self.max_attempts:
                    status = FAILED
                    self.summary.gave_up += 1
                    values["reason"] = f"{out.reason or 'temporary failure'} (gave up after {attempts} attempts)"
                else:
                    values.update(status="pending", next_attempt_at=now + backoff(attempts))
                    self.summary.transient += 1
            if status != TRANSIENT:
                values["status"] = {DELIVERED: "delivered", SENT: "sent", FAILED: "failed", UNKNOWN: "unknown"}[status]
                values["finished_at"] = now if status in (DELIVERED, FAILED) else None
                if status in (DELIVERED, SENT, UNKNOWN):
                    values["sent_at"] = now
            rows.append({"b_id": c.send_id, **values})
            shown = values["status"]
            if shown in ("delivered", "sent"):
                self.summary.sent += 1
            elif shown == "failed":
                self.summary.failed += 1
            elif shown == "unknown":
                self.summary.unknown += 1
            events.append(
                event_row(
                    self.ctx,
                    "send",
                    set_id=c.set_id,
                    patient_pk=c.patient_pk,
                    actor="system",
                    detail={
                        "step": c.msg.step_title,
                        "day": c.step_day,
                        "method": c.method,
                        "status": shown,
                        "provider_ref": out.provider_ref,
                        "error_code": out.error_code,
                        "reason": values.get("reason"),
                        "fallback": c.is_fallback or None,
                    },
                )
            )
            self._apply_patient_update(conn, c.patient_pk, out)
            if c.method == "charge_card" and out.status == DELIVERED and out.charged_cents > 0:
                charges.append((c, out))
            steps.add((c.set_id, c.gen, c.step_index))
            self._touched_sets.add(c.set_id)
        bulk_update(conn, send_t, rows)
        add_events(conn, events)
        if charges:
            self._record_card_payments(conn, charges)
        return steps

    def _apply_patient_update(self, conn: Connection, patient_pk: int, out: Outcome) -> None:
        if not out.patient_update:
            return
        allowed = {
            k: v
            for k, v in out.patient_update.items()
            if k in ("phone_type", "sms_opt_out", "call_opt_out", "email_suppressed", "email_opt_out")
        }
        if allowed:
            conn.execute(
                update(patient_t).where(patient_t.c.id == patient_pk).values(updated_at=self.ctx.now, **allowed)
            )
            self._touched_patients.add(patient_pk)

    def _record_card_payments(self, conn: Connection, charges: list[tuple[Claim, Outcome]]) -> None:
        from outreach_cli.core.stripe_payments import record_payments as apply_payments

        rule_sets = RuleSets(conn)
        payments = []
        for c, out in charges:
            bal = conn.execute(
                select(invoice_set_t.c.amount_outstanding_cents).where(invoice_set_t.c.id == c.set_id)
            ).scalar_one()
            amount = min(out.charged_cents, bal)
            if (out.provider_ref or "").startswith("pi_"):
                amount = out.charged_cents  # money Stripe collected: recorded in full (any excess is credit)
            if amount > 0:
                payments.append(
                    {
                        # Stripe: the PaymentIntent ID, so its event applies nothing a second time.
                        "payment_id": out.provider_ref
                        if (out.provider_ref or "").startswith("pi_")
                        else f"card-{c.send_id}",
                        "patient_pk": c.patient_pk,
                        "amount_cents": amount,
                        "paid_at": self.ctx.now,
                        "charge_ref": None,
                        "source": "card",
                    }
                )
        if payments:
            changed = apply_payments(conn, payments, self.ctx, rule_sets)
            self.summary.paid += sum(1 for _, to in changed.values() if to == Status.PAID.value)
            for sid, (_, to) in changed.items():
                if to == Status.PAID.value:
                    self._dry_change(sid, "mark-paid")

    # --- phase: step outcome and fallbacks --------------------------------------------------

    def _finalize(self, conn: Connection, rule_sets: RuleSets, steps: set[tuple[int, int, int]]) -> list[Claim]:
        """For each step whose sends are all final: delivered -> the set is no longer failed;
        nothing delivered -> try the rule set's fallbacks in order; none left -> failed."""
        now = self.ctx.now
        new_claims: list[Claim] = []
        # One read of the batch's sets and sends; per-set statements only on the rare fallback path.
        set_ids = sorted({sid for sid, _, _ in steps})
        sets_by_id: dict[int, Any] = {}
        sends_by_step: dict[tuple[int, int, int], list[Any]] = {}
        for chunk in chunks(set_ids):
            for row in conn.execute(select(invoice_set_t).where(invoice_set_t.c.id.in_(chunk))):
                sets_by_id[row.id] = row
            for snd in conn.execute(select(send_t).where(send_t.c.invoice_set_id.in_(chunk)).order_by(send_t.c.id)):
                sends_by_step.setdefault((snd.invoice_set_id, snd.schedule_gen, snd.step_index), []).append(snd)
        recovered: list[int] = []
        for set_id, gen, idx in sorted(steps):
            if idx < 0:
                continue  # an opt-out confirmation: no fallbacks, no step outcome
            s = sets_by_id[set_id]
            if s.recheck_step == idx:
                conn.execute(
                    update(invoice_set_t)
                    .where(invoice_set_t.c.id == set_id, invoice_set_t.c.recheck_step == idx)
                    .values(recheck_step=None)
                )
            sends = sends_by_step.get((set_id, gen, idx), [])
            if any(r.status in IN_FLIGHT for r in sends):
                continue
            if any(r.status in COUNTS_AS_SENT for r in sends):
                if s.failed_reason is not None and s.schedule_gen == gen:
                    recovered.append(set_id)  # a delivered step returns a failed set to active
                continue
            if s.status not in [x.value for x in SENDABLE] or s.paused_at is not None or s.schedule_gen != gen:
                continue
            if s.amount_outstanding_cents <= 0 or all(r.status == "cancelled" for r in sends if not r.is_fallback):
                continue
            rs = rule_sets.get(s.rule_set_id)
            tried = {r.method for r in sends}
            p = conn.execute(select(patient_t).where(patient_t.c.id == s.patient_pk)).one()
            usable = usable_methods(contact_of(p))
            step = rs.steps[idx] if idx < len(rs.steps) else None
            title = sends[0].step_title if sends else (step.title if step else f"step {idx + 1}")
            day = sends[0].step_day if sends else (step.day if step else 0)
            zones = zones_of(p, self.ctx.practice_tz)
            today = now.astimezone(zone(zones[0])).date().isoformat()
            chosen = None
            held_fallback = False
            for m in rs.fallback:
                if m in tried:
                    continue
                base = {
                    "invoice_set_id": set_id,
                    "patient_pk": s.patient_pk,
                    "schedule_gen": gen,
                    "step_index": idx,
                    "step_day": day,
                    "step_title": title,
                    "rule_set_version": rule_sets.version(s.rule_set_id),
                    "due_at": now,
                    "method": m,
                    "is_fallback": True,
                }
                if usable[m] is not None:
                    conn.execute(insert(send_t), {**base, "status": "skipped", "reason": usable[m], "finished_at": now})
                    self.summary.skipped += 1
                    continue
                held = self._contact_usage(conn, {p.id: p}).held(p, [m], today, now, zones[0])
                if held is not None:
                    # A contact cap holds the fallback: it waits (pending) until the cap frees.
                    cap, until = held
                    later = self._next_allowed(until, zones, window_of(p, self.ctx)) or until
                    conn.execute(
                        insert(send_t),
                        {
                            **base,
                            "status": "pending",
                            "attempts": 0,
                            "next_attempt_at": later,
                            "reason": f"held by {cap}",
                        },
                    )
                    conn.execute(
                        update(invoice_set_t)
                        .where(invoice_set_t.c.id == set_id)
                        .values(held_by=cap, held_until=until, updated_at=now)
                    )
                    self.summary.deferred += 1
                    held_fallback = True
                    break
                chosen = {
                    **base,
                    "status": "claimed",
                    "claim_token": secrets.token_hex(16),
                    "lease_until": now + self.lease,
                    "attempts": 1,
                    "local_day": today,
                }
                break
            if held_fallback:
                continue
            if chosen is not None:
                send_id = conn.execute(insert(send_t).returning(send_t.c.id), chosen).scalar_one()
                new_claims.append(self._make_claim(send_id, chosen, s, p, step, rs, is_fallback=True))
                continue
            sends = list(
                conn.execute(
                    select(send_t)
                    .where(send_t.c.invoice_set_id == set_id, send_t.c.schedule_gen == gen, send_t.c.step_index == idx)
                    .order_by(send_t.c.id)
                )
            )
            reasons = "; ".join(f"{r.method}: {r.reason or r.status}" for r in sends)
            conn.execute(
                update(invoice_set_t)
                .where(invoice_set_t.c.id == set_id)
                .values(failed_reason=f'step "{title}" (day {day}) could not be delivered: {reasons}')
            )
            self._touched_sets.add(set_id)
        for chunk in chunks(recovered):
            conn.execute(update(invoice_set_t).where(invoice_set_t.c.id.in_(chunk)).values(failed_reason=None))
        self._touched_sets.update(recovered)
        return new_claims

    # --- dry run ------------------------------------------------------------------------------

    def _dry_run(self) -> None:
        """The real tick, inside one database transaction that is rolled back, with every provider
        replaced by a stand-in that sends nothing (it decides as the sandbox would, and takes a
        real provider's acceptance for granted). What it would send, fallbacks included, and the
        sets it would expire or mark paid are exactly what the real run at this moment does,
        except for what only the real providers can tell (delivery reports, replies, outages)."""
        from sqlalchemy.exc import OperationalError

        from outreach_cli.core.errors import TemporaryFailure

        real_store, real_providers = self.store, self.providers
        try:
            with real_store.engine.connect() as conn:
                conn = conn.execution_options(immediate=True)
                trans = conn.begin()
                try:
                    self.store = _OneTransaction(real_store, conn)
                    self.providers = {m: _DryRunProvider(p) for m, p in real_providers.items()}
                    self._dry = True
                    self._phases()
                finally:
                    trans.rollback()
                    self.store, self.providers, self._dry = real_store, real_providers, False
        except OperationalError as exc:
            if "locked" in str(exc).lower():
                raise TemporaryFailure("the database stayed locked too long; try again (it is safe to retry)") from exc
            raise
        # In the order the run does them: sends in claim order, each expiry or payment after the
        # sends that came before it (a card charge, then the set it paid).
        rows = [(i, 1, 0, row) for i, (_, row) in enumerate(sorted(self._dry_rows, key=lambda r: r[0]))]
        rows += [
            (after, 0, sid, {"id": sid, "action": action, "step": None, "day": None, "method": None, "fallback": None})
            for sid, (after, action) in self._dry_changes.items()
        ]
        self.summary.would_send = [row for *_, row in sorted(rows, key=lambda r: r[:3])]


class _OneTransaction:
    """The store as a dry run sees it: every read and write of the tick shares one connection
    and one transaction, which the dry run rolls back."""

    def __init__(self, store: Any, conn: Connection) -> None:
        self._store = store
        self._conn = conn
        self.dialect = store.dialect

    @contextmanager
    def write(self) -> Iterator[Connection]:
        yield self._conn

    read = write

    def get_meta(self, conn: Connection, key: str) -> str | None:
        return self._store.get_meta(conn, key)  # type: ignore[no-any-return]


class _DryRunProvider:
    """Stands in for a provider in a dry run and sends nothing: the sandbox (which reaches no one)
    decides as it would; a real provider is assumed to accept the message."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.name = inner.name

    def send(self, msg: Message) -> Outcome:
        if self.inner.name == "sandbox":
            return self.inner.send(msg)
        return Outcome(SENT, None, None, "dry run")

    def lookup(self, provider_ref: str | None, msg: Message) -> Outcome | None:
        return self.inner.lookup(provider_ref, msg) if self.inner.name == "sandbox" else None


@dataclass
class _SetLike:
    id: int
    patient_pk: int
    schedule_gen: int
    amount_outstanding_cents: int


FORECAST_COLUMNS = [
    "id",
    "patient_id",
    "due_at",
    "send_at",
    "held_by",
    "step",
    "day",
    "methods",
    "usable_methods",
    "prediction",
    "reason",
]


def forecast(store: Any, ctx: Context, days: int) -> list[dict[str, Any]]:
    """Every send due in the next ``days`` days, and the ones predicted to fail, with reasons.
    Each row says when the step is due (`due_at`), when it will go (`send_at`) and the rule that
    decided that moment (`held_by`: window, weekend, holiday:NAME, zones:A+B, cap:NAME, opt-out)."""
    from sqlalchemy import and_, or_

    from outreach_cli.core.scheduling import explain, step_due
    from outreach_cli.core.timeutil import iso_z

    horizon = ctx.now + timedelta(days=days)
    out: list[dict[str, Any]] = []
    with store.read() as conn:
        rule_sets = RuleSets(conn)
        q = (
            select(invoice_set_t, patient_t.c.patient_id.label("p_patient_id"))
            .join(patient_t, patient_t.c.id == invoice_set_t.c.patient_pk)
            .where(
                invoice_set_t.c.status.in_([s.value for s in SENDABLE]),
                invoice_set_t.c.paused_at.is_(None),
                or_(
                    and_(invoice_set_t.c.next_send_at.is_not(None), invoice_set_t.c.next_send_at < horizon),
                    # no common sending window: never sent, listed as predicted to fail (D7)
                    and_(
                        invoice_set_t.c.next_send_at.is_(None),
                        invoice_set_t.c.status == Status.WILL_FAIL.value,
                        invoice_set_t.c.expired_at.is_(None),
                    ),
                ),
            )
            .order_by(invoice_set_t.c.next_send_at, invoice_set_t.c.id)
        )
        sets = conn.execute(q).all()
        pmap: dict[int, Any] = {}
        for chunk in chunks(sorted({s.patient_pk for s in sets})):
            for p in conn.execute(select(patient_t).where(patient_t.c.id.in_(chunk))):
                pmap[p.id] = p
    for s in sets:
        p = pmap[s.patient_pk]
        rs = rule_sets.get(s.rule_set_id)
        usable = usable_methods(contact_of(p))
        zones = zones_of(p, ctx.practice_tz)
        window = window_of(p, ctx)
        end = expires_at(s.anchor_at, rs.expiry_day)
        first = True
        prev: tuple[datetime, str | None] | None = None
        for step in rs.steps[(s.next_step_index or 0) :]:
            due = step_due(s.anchor_at, step.day)
            start = max(due, ctx.now)
            cap = None
            if first and s.held_by and s.held_until is not None and s.held_until > start:
                start, cap = s.held_until, s.held_by
            if prev is not None and prev[0] > start:
                start, cap = prev  # steps go in order: never before the step ahead of it
            at, held_by = explain(start, zones, window)
            held_by = cap or held_by
            if at is not None:
                prev = (at, held_by)
            if at is not None and (at >= horizon or at >= end):
                break
            if not step_applies(step, s.amount_outstanding_cents):
                continue
            ok = [m for m in step.methods if usable[m] is None]
            fb = [m for m in rs.fallback if m not in step.methods and usable[m] is None]
            if at is None:
                prediction = "will-fail"
                reason = f"no common sending window ({' and '.join(zones)})"
            elif ok:
                prediction, reason = "ok", None
            elif fb:
                prediction, reason = "fallback", "own methods unusable; fallback " + fb[0]
            else:
                prediction = "will-fail"
                reason = "; ".join(f"{m}: {usable[m]}" for m in step.methods)
            if at is not None and not ok and any("opted out" in (usable[m] or "") for m in step.methods):
                held_by = held_by or "opt-out"
            first = False
            out.append(
                {
                    "id": s.id,
                    "patient_id": s.p_patient_id,
                    "due_at": iso_z(due),
                    "send_at": iso_z(at),
                    "held_by": held_by,
                    "step": step.title,
                    "day": step.day,
                    "methods": list(step.methods),
                    "usable_methods": ok,
                    "prediction": prediction,
                    "reason": reason,
                }
            )
            if at is None:
                break
    out.sort(key=lambda r: (r["send_at"] or "~", r["id"]))
    return out
