"""The benchmark's data generator: N patients, each with charges and one invoice set, across all
statuses with realistic proportions, plus sends and events; deterministic by seed.

The schema comes from `outreach init` (the real migrations); rows are written with the sqlite3
module's executemany in large transactions, so a million sets take minutes, not hours.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from outreach_cli.domain.searchtext import search_text

UTC = UTC
STATUSES = [
    ("active", 0.55),
    ("paid", 0.15),
    ("paused", 0.04),
    ("expired", 0.06),
    ("failed", 0.04),
    ("will-fail", 0.03),
    ("cancelled", 0.04),
    ("written-off", 0.05),
    ("collections", 0.04),
]
FIRST = "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth Sofia Mateo Priya Wei Fatima".split()
LAST = "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Nguyen Okafor Haddad Lee".split()
AREAS = ("617", "212", "312", "303", "602", "415", "206", "713", "305")
# The zone each area code's numbers store in `patient.phone_tz` (as `import patients` would write
# it): one parse per area code, not per number.
AREA_TZ = {
    "617": "America/New_York",
    "212": "America/New_York",
    "312": "America/Chicago",
    "303": "America/Denver",
    "602": "America/Phoenix",
    "415": "America/Los_Angeles",
    "206": "America/Los_Angeles",
    "713": "America/Chicago",
    "305": "America/New_York",
}
NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)


def ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def generate(db: Path, n: int, seed: int = 42, due_now: int = 0) -> None:
    if db.exists():
        db.unlink()
    subprocess.run([sys.executable, "-m", "outreach_cli", "--db", str(db), "-q", "init"], check=True)
    rnd = random.Random(seed)
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    rs_ids = [r[0] for r in con.execute("SELECT id FROM rule_set ORDER BY name")]
    standard = con.execute("SELECT id FROM rule_set WHERE name = 'standard'").fetchone()[0]
    weights = [w for _, w in STATUSES]
    names = [s for s, _ in STATUSES]
    t0 = time.monotonic()
    chunk = 50_000
    charge_id = 0
    for start in range(0, n, chunk):
        patients, sets, charges, sends, events = [], [], [], [], []
        for i in range(start, min(n, start + chunk)):
            pk = i + 1
            first, last = rnd.choice(FIRST), rnd.choice(LAST)
            area = rnd.choice(AREAS)
            phone = f"+1{area}{rnd.randrange(2000000, 9999999)}"
            if pk <= due_now:  # created an hour ago on the standard rule set: step 0 is due now
                created = NOW - timedelta(hours=1)
            else:
                created = NOW - timedelta(days=rnd.randrange(0, 200), minutes=rnd.randrange(0, 1440))
            patients.append(
                (
                    pk,
                    f"P{pk:07d}",
                    first,
                    last,
                    phone,
                    "mobile",
                    f"{first.lower()}{pk}@example.com",
                    f"{rnd.randrange(1, 999)} Main St",
                    "Boston",
                    "MA",
                    "02118",
                    "US",
                    0,
                    AREA_TZ[area],
                    "America/New_York",
                    0,
                    0,
                    0,
                    f"{first} {last}".lower(),
                    search_text(first, last, f"{first.lower()}{pk}@example.com", phone),
                    ts(created),
                    ts(created),
                )
            )
            status = rnd.choices(names, weights)[0] if pk > due_now else "active"
            amount = rnd.choice((2500, 7500, 12000, 18550, 45000, 98000, 156000)) + rnd.randrange(100)
            outstanding = 0 if status in ("paid", "written-off") else amount
            nxt = None
            if status in ("active", "will-fail", "failed"):
                nxt = NOW - timedelta(minutes=1) if pk <= due_now else NOW + timedelta(hours=rnd.randrange(1, 24 * 30))
            sets.append(
                (
                    pk,
                    pk,
                    standard if pk <= due_now else rnd.choice(rs_ids),
                    status,
                    None,
                    outstanding,
                    ts(created),
                    ts(created),
                    ts(nxt) if nxt else None,
                    0 if pk <= due_now else 1,
                    "Statement" if nxt else None,
                    "sms,email" if nxt else None,
                    1,
                    ts(created),
                )
            )
            for _ in range(rnd.choice((1, 1, 2))):
                charge_id += 1
                cstatus = {"paid": "paid", "written-off": "written-off", "collections": "collections"}.get(
                    status, "outstanding"
                )
                charges.append(
                    (charge_id, f"C{charge_id:08d}", pk, pk, amount, outstanding, ts(created), "Office visit", cstatus)
                )
                outstanding = 0  # the second charge of a set is paid in the generator
                amount = rnd.choice((2500, 4000))
            if pk > due_now:
                sends.append(
                    (
                        pk,
                        pk,
                        1,
                        0,
                        0,
                        "Statement",
                        "sms",
                        0,
                        1,
                        "delivered",
                        ts(created),
                        1,
                        ts(created),
                        ts(created),
                        created.date().isoformat(),
                        f"SM{pk:032x}",
                    )
                )
            events.append((pk, pk, ts(created), "created", "bench", "active"))
        con.executemany(
            "INSERT INTO patient (id, patient_id, first_name, last_name, phone, phone_type, email, address_line1, city, state, postal_code, country, address_invalid, phone_valid, email_valid, phone_tz, address_tz, sms_opt_out, call_opt_out, email_opt_out, search_name, search_text, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,1,1,?,?,?,?,?,?,?,?,?)",
            patients,
        )
        con.executemany(
            "INSERT INTO invoice_set (id, patient_pk, rule_set_id, status, status_reason, amount_outstanding_cents, created_at, anchor_at, next_send_at, next_step_index, next_step, next_methods, schedule_gen, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            sets,
        )
        con.executemany(
            "INSERT INTO charge (id, charge_id, patient_pk, invoice_set_id, amount_cents, outstanding_cents, created_at, description, status) VALUES (?,?,?,?,?,?,?,?,?)",
            charges,
        )
        con.executemany(
            "INSERT INTO send (id, invoice_set_id, patient_pk, schedule_gen, step_index, step_title, method, is_fallback, rule_set_version, status, due_at, attempts, sent_at, finished_at, local_day, provider_ref, step_day) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0)",
            sends,
        )
        con.executemany(
            "INSERT INTO event (invoice_set_id, patient_pk, at, kind, actor, to_status) VALUES (?,?,?,?,?,?)", events
        )
        con.commit()
    con.execute("ANALYZE")
    con.commit()
    con.close()
    print(f"generated {n:,} sets in {time.monotonic() - t0:.1f}s -> {db}", file=sys.stderr)


def add_payments(con: sqlite3.Connection, seed: int = 42, now: datetime = NOW) -> int:
    """Payments for a share of the sets, so the report's attribution has work to do: every `paid`
    set pays all its charges in one payment, and one open set in ten pays half its first charge;
    paid 0-20 days after entry (about a third inside the 7-day window of the set's first send, the
    rest unprompted), never after `now`; one paid set in fifty is then refunded a part. Returns
    the number of sets with a payment. Works on a generated database (SQLite)."""
    rnd = random.Random(seed + 1)
    pay_id = con.execute("SELECT coalesce(max(id), 0) FROM payment").fetchone()[0]
    payments: list[tuple[object, ...]] = []
    allocations: list[tuple[int, int, int]] = []
    paid_sets = 0

    def pay(patient: int, at: datetime, parts: list[tuple[int, int]]) -> None:
        nonlocal pay_id
        pay_id += 1
        total = sum(c for _, c in parts)
        payments.append((pay_id, f"BP{pay_id:08d}", patient, total, ts(at), "import", ts(at)))
        allocations.extend((pay_id, charge, cents) for charge, cents in parts)

    rows = con.execute(
        "SELECT s.id, s.patient_pk, s.status, s.created_at, c.id, c.amount_cents FROM invoice_set s"
        " JOIN charge c ON c.invoice_set_id = s.id ORDER BY s.id, c.id"
    )
    current: list[tuple[int, int, str, str, int, int]] = []
    for row in [*rows, None]:
        if current and (row is None or row[0] != current[0][0]):
            _sid, patient, status, created_s, *_ = current[0]
            charges = [(c[4], c[5]) for c in current]
            paying = status == "paid" or (status in ("active", "paused", "expired") and rnd.random() < 0.1)
            if paying:
                created = datetime.fromisoformat(created_s).replace(tzinfo=UTC)
                at = min(
                    now - timedelta(minutes=1),
                    created + timedelta(days=rnd.randrange(0, 21), minutes=rnd.randrange(1440)),
                )
                parts = charges if status == "paid" else [(charges[0][0], charges[0][1] // 2)]
                pay(patient, at, parts)
                paid_sets += 1
                if status == "paid" and rnd.random() < 0.02 and at + timedelta(days=3) < now:
                    pay(patient, at + timedelta(days=3), [(charges[0][0], -(charges[0][1] // 4))])
            current = []
        if row is not None:
            current.append(row)
        if len(payments) >= 50_000 or (row is None and payments):
            _write_payments(con, payments, allocations)
            payments, allocations = [], []
    con.commit()
    return paid_sets


def _write_payments(
    con: sqlite3.Connection, payments: list[tuple[object, ...]], allocations: list[tuple[int, int, int]]
) -> None:
    con.executemany(
        "INSERT INTO payment (id, payment_id, patient_pk, amount_cents, paid_at, source, created_at, unapplied_cents)"
        " VALUES (?,?,?,?,?,?,?,0)",
        payments,
    )
    con.executemany("INSERT INTO payment_allocation (payment_pk, charge_pk, amount_cents) VALUES (?,?,?)", allocations)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sets", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--due-now", type=int, default=0, help="the first N sets are due now (for run-outreach)")
    p.add_argument("--out", default="bench/data/bench.db")
    a = p.parse_args()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    generate(out, a.sets, a.seed, a.due_now)


if __name__ == "__main__":
    main()
