"""Small builders for test input files."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from outreach_cli.imports.importer import BASIC_PATIENT_COLUMNS

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
