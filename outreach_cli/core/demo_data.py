"""A deterministic generator of realistic demo patients, charges and payments (seedable).

Used by `outreach demo` and by the benchmark's data generator. Phone numbers are in the
fictional 555-01xx range or the sandbox's magic numbers; emails use example domains.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

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


@dataclass
class DemoData:
    patients_csv: str
    charges_csv: dict[str, str]  # rule set -> charges CSV
    payments: list[dict[str, str]]  # payment rows with the day they happen on
    pauses: list[str]  # patient IDs whose set an admin pauses


def generate(n_patients: int, *, seed: int = 7, start: datetime, days: int = 30) -> DemoData:
    rnd = random.Random(seed)
    pbuf = io.StringIO()
    cbufs = {name: io.StringIO() for name in ("standard", "gentle", "final-notice")}
    pw = csv.writer(pbuf, lineterminator="\n")
    cws = {name: csv.writer(b, lineterminator="\n") for name, b in cbufs.items()}
    pw.writerow(
        [
            "patient_id",
            "first_name",
            "last_name",
            "phone",
            "phone_type",
            "email",
            "address_line1",
            "address_line2",
            "city",
            "state",
            "postal_code",
            "country",
            "timezone",
            "sms_opt_out",
            "call_opt_out",
            "email_opt_out",
            "card_token",
        ]
    )
    for cw in cws.values():
        cw.writerow(["charge_id", "patient_id", "amount", "created_at", "description"])
    payments: list[dict[str, str]] = []
    pauses: list[str] = []
    charge_no = 0
    for i in range(1, n_patients + 1):
        pid = f"P{i:06d}"
        first, last = rnd.choice(FIRST), rnd.choice(LAST)
        area, city, state, postal = rnd.choice(PLACES)
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
        r3 = rnd.random()
        rule_set = "final-notice" if r3 < 0.12 else "gentle" if r3 < 0.3 else "standard"
        cw = cws[rule_set]
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
        balance = 0
        for _ in range(rnd.choice((1, 1, 1, 2, 2, 3))):
            charge_no += 1
            cents = rnd.choice((2500, 4000, 7500, 12000, 18550, 24000, 31075, 45000, 98000, 156000))
            cents += rnd.randrange(0, 100)
            balance += cents
            created = start - timedelta(days=rnd.randrange(1, 20))
            cw.writerow(
                [
                    f"C{charge_no:07d}",
                    pid,
                    f"{cents / 100:.2f}",
                    created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    rnd.choice(SERVICES),
                ]
            )
        pay_roll = rnd.random()
        if pay_roll < 0.35:
            day = rnd.randrange(1, max(2, days))
            full = pay_roll < 0.25
            amount = balance if full else balance // 2
            payments.append(
                {"payment_id": f"Y{i:06d}", "patient_id": pid, "amount": f"{amount / 100:.2f}", "day": str(day)}
            )
    return DemoData(pbuf.getvalue(), {k: b.getvalue() for k, b in cbufs.items()}, payments, pauses)
