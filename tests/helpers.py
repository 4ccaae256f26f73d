"""Shared test helpers: input-file builders, an import's expected problem output, a dump of the
main tables, and the report tests' A/B rule set."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

from sqlalchemy import text

from outreach_cli.imports.importer import BASIC_PATIENT_COLUMNS
from outreach_cli.store.database import Store

PATIENT_HEADER = list(BASIC_PATIENT_COLUMNS)


def patient(pid: str, **kw: Any) -> dict[str, Any]:
    base = {
        "patient_id": pid,
        "first_name": "Jane",
        "last_name": "Doe",
        "phone": "(617) 555-0100",
        "phone_type": "mobile",
        "email": f"{pid.lower()}@example.com",
        "address_line1": "1 Main St",
        "city": "Boston",
        "state": "MA",
        "postal_code": "02118",
        "country": "US",
    }
    base.update(kw)
    return base


def csv_text(rows: list[dict[str, Any]], header: list[str] | None = None) -> str:
    header = header or list(rows[0].keys())
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=header, lineterminator="\n", extrasaction="raise")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in header})
    return buf.getvalue()


def write_csv(path: Path, rows: list[dict[str, Any]], header: list[str] | None = None) -> Path:
    path.write_text(csv_text(rows, header), encoding="utf-8")
    return path


def setup_patients(cli: Any, tmp: Path, rows: list[dict[str, Any]]) -> None:
    cli.ok("import", "patients", str(write_csv(tmp / "patients.csv", rows, PATIENT_HEADER)))


def setup_charges(cli: Any, tmp: Path, rows: list[tuple[str, str, str]], name: str = "charges.csv", *extra: str) -> Any:
    """rows: (charge_id, patient_id, amount)."""
    p = write_csv(tmp / name, [{"charge_id": c, "patient_id": p, "amount": a} for c, p, a in rows])
    return cli.ok("import", "charges", str(p), *extra)


def sync_rule_set(cli: Any, tmp: Path, name: str, toml: str) -> None:
    """Write one rule-set file into tmp/rs and sync that directory."""
    d = tmp / "rs"
    d.mkdir(exist_ok=True)
    (d / f"{name}.toml").write_text(toml, encoding="utf-8")
    cli.ok("rulesets", "sync", str(d))


def seed_patients(cli: Any, tmp: Path, patients: list[dict[str, Any]], *, rule_set: str, amount: str, now: str) -> None:
    """Import the patients, then one charge each (charge ID C-<patient ID>) on ``rule_set``."""
    write_csv(tmp / "p.csv", patients, PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp / "p.csv"), now=now)
    write_csv(
        tmp / "c.csv",
        [{"charge_id": f"C-{p['patient_id']}", "patient_id": p["patient_id"], "amount": amount} for p in patients],
    )
    cli.ok("import", "charges", str(tmp / "c.csv"), "--rule-set", rule_set, now=now)


def delivered_sms(set_id: int, patient_pk: int, sent_at: Any) -> dict[str, Any]:
    """A `send` row: an SMS of the first step, delivered at ``sent_at``, outside any run's schedule
    (generation 98), for tests that write sends beside the engine."""
    return {
        "invoice_set_id": set_id,
        "patient_pk": patient_pk,
        "schedule_gen": 98,
        "step_index": 0,
        "step_day": 0,
        "step_title": "Text",
        "method": "sms",
        "status": "delivered",
        "sent_at": sent_at,
    }


def refused(source: Any, *problems: str, more: int = 0) -> str:
    """An import's stderr when bad rows stop it: the count, then each problem (and how many more)."""
    head = f"error: {source}: {len(problems) + more} problem(s); nothing was imported"
    lines = [*problems, f"... and {more} more"] if more else list(problems)
    return f"{head} (use --skip-invalid to import the valid rows)\n" + "".join(f"  {x}\n" for x in lines)


def skipped(source: Any, *problems: str) -> str:
    """The problem lines an import with --skip-invalid prints before its summary."""
    return "".join(f"{source}: {x}\n" for x in problems)


PRACTICE_UNSET = (
    "FAIL practice: practice_name is not set; practice_phone is not set: set practice_name and practice_phone; "
    "until then mail (outbox) will not send"
)

_SHOWN_SECRET = re.compile(
    r"^(ok   payment-link secret: stored in the database )[A-Za-z0-9_-]{2}\*{39}[A-Za-z0-9_-]{2}$", re.M
)


def hide_secret(text: str) -> str:
    """``text`` with doctor's masked payment-link secret (2 characters, 39 stars, 2 characters: a
    random value) written `<secret>`; any other form is left as it is, so a comparison fails."""
    return _SHOWN_SECRET.sub(r"\1<secret>", text)


def doctor_output(outbox: Path, *database: str, practice: str = PRACTICE_UNSET) -> str:
    """`doctor`'s whole output with no config file and the sandbox providers: the ``database``
    check lines (database, schema, rule sets, secret as `<secret>`: see `hide_secret`) between the
    config and the providers, then ``practice``."""
    lines = [
        "ok   config: no config file; timezone UTC, window 09:00-17:00",
        *database,
        "ok   sms provider: sandbox (no network)",
        "ok   call provider: sandbox (no network)",
        "ok   email provider: sandbox (no network)",
        f"ok   mail provider: outbox {outbox}",
        "ok   charge_card provider: sandbox",
        practice,
    ]
    return "".join(f"{x}\n" for x in lines)


def doctor_database(url: str, *, read_only: bool = False) -> list[str]:
    """doctor's check lines of an initialized database at ``url`` (see `doctor_output`)."""
    return [
        f"ok   database: {url} reachable" + (" (read-only)" if read_only else ""),
        "ok   schema: revision 0022",
        "ok   rule sets: final-notice v1, gentle v1, standard v1",
        "ok   default rule set: standard",
        "ok   payment-link secret: stored in the database <secret>",
    ]


def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the main tables, in ID order: equal dumps mean nothing was written."""
    store = Store(url)
    out = {}
    with store.engine.connect() as conn:
        for t in (
            "patient",
            "charge",
            "payment",
            "payment_allocation",
            "invoice_set",
            "event",
            "rule_set",
            "rule_set_version",
            "send",
        ):
            out[t] = [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))]
    store.engine.dispose()
    return out


# The report tests' two-step A/B rule set (day 0 sms "Text", day 3 email "Email") and its costs.
AB_RULE_SET = """
title = "A/B test rule set"
expiry_day = 30

[[step]]
day = 0
methods = ["sms"]
title = "Text"
message = "Hi {first_name}, you owe {balance}: {url} Reply STOP to opt out."

[[step]]
day = 3
methods = ["email"]
title = "Email"
message = "Hi {first_name}, a reminder of {balance}: {url} Reply STOP to opt out."
"""

AB_CONFIG = """
timezone = "UTC"
[costs]
sms = 0.05
email = 0.02
"""


def tally_kept_and_fresh(store: Store) -> tuple[dict[Any, Any], dict[Any, Any], int]:
    """`metrics`' tally (store/tally.py): (the tally and its delta together, the tally made afresh
    from every set, the delta's rows), as (status, day) -> (sets, cents) without rows summing to
    nothing; the fresh one is rolled back."""
    from sqlalchemy import select

    from outreach_cli.store import tally
    from outreach_cli.store.models import set_tally_delta_t, set_tally_t

    def sums(conn: Any, *tables: Any) -> dict[tuple[str, Any], tuple[int, int]]:
        got: dict[tuple[str, Any], list[int]] = {}
        for t in tables:
            for status, day, sets, cents in conn.execute(select(t.c.status, t.c.day, t.c.sets, t.c.cents)):
                row = got.setdefault((status, day), [0, 0])
                row[0] += int(sets)
                row[1] += int(cents)
        return {k: (v[0], v[1]) for k, v in sorted(got.items()) if v != [0, 0]}

    with store.engine.connect() as conn:
        tx = conn.begin()
        kept = sums(conn, set_tally_t, set_tally_delta_t)
        delta = len(conn.execute(select(set_tally_delta_t)).all())
        tally.rebuild(conn)
        fresh = sums(conn, set_tally_t)
        tx.rollback()
    return kept, fresh, delta
