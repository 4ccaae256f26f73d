"""Building the message a claimed send hands to its provider: the template for the method, the
placeholder values, the patient's contacts, and the practice's identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from outreach_cli.channels.base import Message
from outreach_cli.channels.letters import letter_template
from outreach_cli.domain.context import Context
from outreach_cli.domain.money import format_dollars
from outreach_cli.domain.paymentlink import payment_url_maker
from outreach_cli.domain.rulesets import RuleSet, Step, render
from outreach_cli.outreach.state import ClaimedSend
from outreach_cli.store.events import event_row
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import invoice_set_t, patient_t

ADDRESS_FIELDS = ("address_line1", "address_line2", "city", "state", "postal_code", "country")


def practice_phone_display(e164: str) -> str:
    try:
        import phonenumbers

        return str(phonenumbers.format_number(phonenumbers.parse(e164, "US"), phonenumbers.PhoneNumberFormat.NATIONAL))
    except Exception:
        return e164


@dataclass(frozen=True)
class SendKey:
    """Which send of which step a message is for."""

    send_id: int
    set_id: int
    gen: int
    step_index: int
    step_day: int
    step_title: str
    method: str
    token: str
    is_fallback: bool


def send_event(ctx: Context, set_id: int, patient_pk: int, detail: dict[str, Any]) -> dict[str, Any]:
    """The event log row of a send's change (claimed, skipped, recorded, reconciled, expired)."""
    return event_row(ctx, "send", set_id=set_id, patient_pk=patient_pk, actor="system", detail=detail)


class MessageFactory:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.phone_display = practice_phone_display(ctx.practice_phone) if ctx.practice_phone else ""
        self._url = payment_url_maker(ctx)

    def values(self, set_id: int, balance_cents: int, p: Any) -> dict[str, str]:
        return {
            "first_name": p.first_name,
            "last_name": p.last_name,
            "full_name": f"{p.first_name} {p.last_name}".strip(),
            "balance": format_dollars(balance_cents),
            "url": self._url(set_id),
            "practice_name": self.ctx.practice_name,
            "practice_phone": self.phone_display,
            "invoice_id": str(set_id),
        }

    def claimed(self, k: SendKey, balance_cents: int, p: Any, step: Step | None, rs: RuleSet) -> ClaimedSend:
        """The claimed send of ``k`` with its message for patient row ``p``."""
        if k.step_index < 0:
            from outreach_cli.outreach.inbound import CONFIRMATION_TEXT

            template = CONFIRMATION_TEXT
        else:
            # Each method its own words: a fallback uses the fallback method's template (D3).
            template = rs.template(step, k.method)
        values = self.values(k.set_id, balance_cents, p)
        msg = self._message(k, p, values, template, balance_cents, step)
        return ClaimedSend(
            k.send_id,
            k.set_id,
            p.id,
            k.gen,
            k.step_index,
            k.step_day,
            k.method,
            k.token,
            k.is_fallback,
            msg,
            template,
            values,
        )

    def _message(
        self, k: SendKey, p: Any, values: dict[str, str], template: str, balance: int, step: Step | None
    ) -> Message:
        return Message(
            send_id=k.send_id,
            set_id=k.set_id,
            method=k.method,
            step_title=k.step_title,
            body=render(template, values),
            payment_url=values["url"],
            phone=p.phone,
            email=p.email,
            first_name=p.first_name,
            last_name=p.last_name,
            address={f: getattr(p, f) for f in ADDRESS_FIELDS},
            card_token=p.card_token,
            stripe_customer_id=p.stripe_customer_id,
            stripe_payment_method_id=p.stripe_payment_method_id,
            schedule_gen=k.gen,
            max_charge_cents=step.max_balance_cents if step is not None else None,
            balance_cents=balance,
            practice_name=self.ctx.practice_name,
            practice_phone=self.phone_display,
            claim_token=k.token,
            now=self.ctx.now,
            practice_tz=self.ctx.practice_tz,
            letter_template=letter_template(step, k.method, k.is_fallback),
            values=values,
        )

    def for_send_row(self, conn: Connection, r: Any, rule_sets: RuleSets) -> ClaimedSend | None:
        """The message an earlier send (a row of ``send``) carried, for looking it up."""
        s = conn.execute(select(invoice_set_t).where(invoice_set_t.c.id == r.invoice_set_id)).first()
        p = conn.execute(select(patient_t).where(patient_t.c.id == r.patient_pk)).first()
        if s is None or p is None:
            return None
        rs = rule_sets.get(s.rule_set_id)
        return self.claimed(
            send_key(r, r.claim_token or ""), s.amount_outstanding_cents, p, step_of(rs, r.step_index), rs
        )


def send_key(r: Any, token: str) -> SendKey:
    """The key of an existing send row."""
    return SendKey(
        r.id,
        r.invoice_set_id,
        r.schedule_gen,
        r.step_index,
        r.step_day,
        r.step_title,
        r.method,
        token,
        bool(r.is_fallback),
    )


def step_of(rs: RuleSet, index: int) -> Step | None:
    """The rule set's step at ``index``; None for the opt-out confirmation (index < 0) or a step
    the rule set no longer has."""
    return rs.steps[index] if 0 <= index < len(rs.steps) else None


def rerender(c: ClaimedSend, *, balance_cents: int | None = None, url: str | None = None) -> None:
    """The message again with a balance paid down since the claim, or a Stripe payment link."""
    if balance_cents is not None:
        c.msg.balance_cents = balance_cents
        c.values["balance"] = format_dollars(balance_cents)
    if url is not None:
        c.values["url"] = url
        c.msg.payment_url = url
    c.msg.body = render(c.template, c.values)
