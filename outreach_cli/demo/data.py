"""A deterministic generator of realistic demo patients, charges and payments (seedable).

Used by `outreach demo` and by the benchmark's data generator. Phone numbers are in the
fictional 555-01xx range or the sandbox's magic numbers; emails use example domains.

The demo is built so that `outreach report` has something to say at once: a backlog of invoice
sets on the first day and the rest arriving day by day (sets spread over months), most of them in
an A/B test between `standard` and `gentle` (`EXPERIMENT`), and patients who pay more readily
after the standard sequence's texts and calls than after gentle emails (`PAY_RATE`).
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from outreach_cli.domain.statuses import SendStatus, Status

if TYPE_CHECKING:
    from outreach_cli.store.database import Store

FIRST = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan "
    "Joseph Jessica Thomas Sarah Charles Karen Daniel Lisa Matthew Nancy Anthony Betty Mark Sandra Donald "
    "Ashley Steven Emily Paul Kimberly Andrew Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa "
    "Sofia Mateo Aiden Zoe Priya Wei Fatima Olumide Siobhan José Chloé Nguyen Ananya"
).split()
LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson "
    "Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis "
    "Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall "
    "Rivera Campbell Mitchell Carter Roberts O'Brien Kowalski Okafor Haddad Fitzgerald-Byrne"
).split()
PLACES = (
    ("617", "Boston", "MA", "02118"),
    ("212", "New York", "NY", "10027"),
    ("312", "Chicago", "IL", "60614"),
    ("303", "Denver", "CO", "80205"),
    ("602", "Phoenix", "AZ", "85004"),
    ("415", "San Francisco", "CA", "94110"),
    ("206", "Seattle", "WA", "98103"),
    ("713", "Houston", "TX", "77002"),
    ("305", "Miami", "FL", "33130"),
)
STREETS = ("Maple Ave", "Oak St", "Washington Blvd", "Elm St", "Cedar Ln", "Park Ave", "Lakeview Dr", "2nd St")
SERVICES = (
    "Office visit",
    "Lab work",
    "X-ray",
    "Physical therapy",
    "Annual physical",
    "Vaccination",
    "Specialist consult",
    "Urgent care visit",
    "Ultrasound",
    "Blood panel",
)


EXPERIMENT = "standard:50,gentle:50"  # the A/B split most demo sets are imported under
BACKLOG_SHARE = 0.35  # patients whose charges are already there on the first day
# Chance per day that a patient with an open balance pays: after a message delivered in the last
# three days (by rule set), and without one (unprompted).
PAY_RATE = {"standard": 0.075, "gentle": 0.04, "final-notice": 0.09}
UNPROMPTED_RATE = 0.004
PARTIAL_SHARE = 0.25  # of payments: half the balance
STOP_RATE = 0.01  # of texts: the patient replies STOP


@dataclass
class DemoData:
    patients_csv: str
    # (day, rule set or weighted A/B spec) -> the charges CSV imported that day
    charges_by_day: dict[tuple[int, str], str]
    pauses: list[str]  # patient IDs whose set an admin pauses (the day their charges arrive)


def generate(n_patients: int, *, seed: int = 7, start: datetime, days: int = 30) -> DemoData:
    rnd = random.Random(seed)
    pbuf = io.StringIO()
    cbufs: dict[tuple[int, str], io.StringIO] = {}
    from outreach_cli.imports.importer import BASIC_PATIENT_COLUMNS

    pw = csv.writer(pbuf, lineterminator="\n")
    pw.writerow(BASIC_PATIENT_COLUMNS)
    pauses: list[str] = []
    charge_no = 0
    for i in range(1, n_patients + 1):
        pid = f"P{i:06d}"
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        area, city, state, postal = rnd.choice(PLACES)
        phone, phone_type, email, has_address, card = _contact(rnd, i, first, last, area)
        rule_set = "final-notice" if rnd.random() < 0.1 else EXPERIMENT
        arrival = 0 if days < 2 or rnd.random() < BACKLOG_SHARE else rnd.randrange(1, days)
        cw = _charges_writer(cbufs, (arrival, rule_set))
        if rnd.random() < 0.02:
            pauses.append(pid)
        pw.writerow(
            [
                pid,
                first,
                last,
                phone,
                phone_type,
                email,
                f"{rnd.randrange(1, 999)} {rnd.choice(STREETS)}" if has_address else "",
                "",
                city if has_address else "",
                state,
                postal if has_address else "",
                "US",
                "",
                "false",
                "false",
                "false",
                card,
            ]
        )
        charge_no = _write_charges(rnd, cw, pid, start, arrival, charge_no)
    return DemoData(pbuf.getvalue(), {k: b.getvalue() for k, b in sorted(cbufs.items())}, pauses)


def _contact(rnd: random.Random, i: int, first: str, last: str, area: str) -> tuple[str, str, str, bool, str]:
    """(phone, phone type, email, has an address, card token), with the sandbox's special cases."""
    roll = rnd.random()
    phone = f"({area}) 555-01{rnd.randrange(100):02d}"
    phone_type = rnd.choice(("mobile", "mobile", "mobile", "unknown"))
    if roll < 0.04:
        phone, phone_type = "+15005550009", "unknown"  # sandbox landline
    elif roll < 0.07:
        phone = "+15005550004"  # sandbox: will reply as opted out
    elif roll < 0.09:
        phone = "+15005550001"  # sandbox: invalid number
    elif roll < 0.12:
        phone, phone_type = "", ""
    email = f"{first.lower()}.{last.lower().replace(chr(39), '')}{i}@example.com"
    r2 = rnd.random()
    if r2 < 0.05:
        email = f"{first.lower()}{i}@mailhost.invalid"  # sandbox bounce
    elif r2 < 0.12:
        email = ""
    has_address = rnd.random() > 0.08
    card = rnd.choice(("tok_visa", "", "", "", "tok_chargeDeclined"))
    if rnd.random() < 0.04:  # hard to reach: a landline, no email, no address
        phone, phone_type, email, has_address, card = (
            f"({area}) 555-01{rnd.randrange(100):02d}",
            "landline",
            "",
            False,
            "",
        )
    return phone, phone_type, email, has_address, card


def _charges_writer(cbufs: dict[tuple[int, str], io.StringIO], key: tuple[int, str]) -> Any:
    """The CSV writer of one (arrival day, rule set) charges file, started with its header."""
    if key not in cbufs:
        cbufs[key] = io.StringIO()
        csv.writer(cbufs[key], lineterminator="\n").writerow(
            ["charge_id", "patient_id", "amount", "created_at", "description"]
        )
    return csv.writer(cbufs[key], lineterminator="\n")


def _write_charges(rnd: random.Random, cw: Any, pid: str, start: datetime, arrival: int, charge_no: int) -> int:
    """One to three charges for the patient, dated before they arrive; returns the last charge number."""
    for _ in range(rnd.choice((1, 1, 1, 2, 2, 3))):
        charge_no += 1
        cents = rnd.choice((2500, 4000, 7500, 12000, 18550, 24000, 31075, 45000, 98000, 156000))
        cents += rnd.randrange(0, 100)
        created = start + timedelta(days=arrival - rnd.randrange(1, 20))
        cw.writerow(
            [
                f"C{charge_no:07d}",
                pid,
                f"{cents / 100:.2f}",
                created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                rnd.choice(SERVICES),
            ]
        )
    return charge_no


def demo_payments(store: Store, now: datetime, rnd: random.Random, day: int) -> list[dict[str, str]]:
    """The payments patients make on one simulated day: more likely in the three days after a
    delivered message, and more likely after some rule sets than others (`PAY_RATE`)."""
    from sqlalchemy import func, select

    from outreach_cli.store.models import invoice_set_t, patient_t, rule_set_t, send_t

    recent = (
        select(send_t.c.invoice_set_id, func.max(send_t.c.sent_at).label("last_sent"))
        .where(
            send_t.c.status == SendStatus.DELIVERED, send_t.c.sent_at <= now, send_t.c.sent_at > now - timedelta(days=3)
        )
        .group_by(send_t.c.invoice_set_id)
        .subquery()
    )
    q = (
        select(
            invoice_set_t.c.id,
            patient_t.c.patient_id,
            rule_set_t.c.name,
            invoice_set_t.c.amount_outstanding_cents,
            recent.c.last_sent,
        )
        .join(patient_t, patient_t.c.id == invoice_set_t.c.patient_pk)
        .join(rule_set_t, rule_set_t.c.id == invoice_set_t.c.rule_set_id)
        .outerjoin(recent, recent.c.invoice_set_id == invoice_set_t.c.id)
        .where(
            invoice_set_t.c.status.in_(
                [s.value for s in (Status.ACTIVE, Status.WILL_FAIL, Status.FAILED, Status.EXPIRED)]
            ),
            invoice_set_t.c.amount_outstanding_cents > 0,
        )
        .order_by(invoice_set_t.c.id)
    )
    out: list[dict[str, str]] = []
    with store.read() as conn:
        for set_id, pid, rule_set, balance, last_sent in conn.execute(q):
            rate = PAY_RATE.get(rule_set, 0.05) if last_sent is not None else UNPROMPTED_RATE
            if rnd.random() >= rate:
                continue
            amount = balance // 2 if rnd.random() < PARTIAL_SHARE and balance >= 2000 else balance
            out.append({"payment_id": f"Y{set_id:06d}-{day:03d}", "patient_id": pid, "amount": f"{amount / 100:.2f}"})
    return out


def demo_replies(store: Store, ctx: Any, rnd: random.Random) -> int:
    """A few patients answer the day's texts with STOP (their SMS opt-out, on the timeline)."""
    from sqlalchemy import select

    from outreach_cli.channels.base import InboundSms
    from outreach_cli.outreach.inbound import apply_inbound
    from outreach_cli.store.models import patient_t, send_t

    q = (
        select(patient_t.c.phone)
        .join(send_t, send_t.c.patient_pk == patient_t.c.id)
        .where(
            send_t.c.method == "sms",
            send_t.c.status == SendStatus.DELIVERED,
            send_t.c.sent_at > ctx.now - timedelta(days=1),
            send_t.c.sent_at <= ctx.now,
            patient_t.c.sms_opt_out.is_(False),
        )
        .distinct()
        .order_by(patient_t.c.phone)
    )
    with store.write() as conn:
        phones = [p for (p,) in conn.execute(q) if p and rnd.random() < STOP_RATE]
        items = [InboundSms(message_sid=None, from_number=p, body="STOP", received_at=ctx.now) for p in phones]
        applied, _ = apply_inbound(conn, items, ctx)
    return applied
