"""The opt-out confirmation (the one compliance text after a STOP reply: step "Opt-out
confirmation", day 0) is not outreach: the report leaves it out of its steps, messages, cost,
funnel and attribution (docs/decisions.md), on SQLite and PostgreSQL, on the command's path and
on the reference path that reads every row.

Timeline (rule set `ab` of test_report: day 0 sms "Text", day 3 email "Email"; sms $0.05):
  2026-03-02 14:00Z  sets A $100 and B $200 enter; Text delivered to both
  2026-03-02 15:00Z  A replies STOP; the next tick sends A the confirmation (delivered)
  2026-03-03 14:00Z  A pays $100: the last delivered send in the window is the confirmation,
                     so without the fix it would take the credit; it goes to Text.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from outreach_cli.domain.report import Costs, Options, Report
from outreach_cli.store.database import Store
from outreach_cli.store.report_queries import read_report_input
from tests.conftest import Cli, write
from tests.helpers import AB_CONFIG, AB_RULE_SET, PATIENT_HEADER, patient, sync_rule_set, write_csv


def test_opt_out_confirmation_is_not_an_outreach_step(cli: Cli, tmp_path: Path) -> None:
    cfg = write(tmp_path / "outreach.toml", AB_CONFIG)
    sync_rule_set(cli, tmp_path, "ab", AB_RULE_SET)
    write_csv(
        tmp_path / "p.csv", [patient("A", phone="(617) 555-0101"), patient("B", phone="(617) 555-0102")], PATIENT_HEADER
    )
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    charges = [{"charge_id": "CA", "patient_id": "A", "amount": "100.00"}]
    charges.append({"charge_id": "CB", "patient_id": "B", "amount": "200.00"})
    write_csv(tmp_path / "c.csv", charges)
    cli.ok("import", "charges", str(tmp_path / "c.csv"), "--rule-set", "ab", now="2026-03-02T14:00:00Z")
    cli.ok("run-outreach", now="2026-03-02T14:00:00Z")
    stop = json.dumps({"type": "inbound_sms", "from": "(617) 555-0101", "body": "STOP"})
    cli.ok("events", "ingest", "-", input=stop, now="2026-03-02T15:00:00Z")
    cli.ok("run-outreach", now="2026-03-02T15:05:00Z")
    shown = json.loads(cli.ok("show", "1", "--format", "json").stdout)["schedule"]
    assert [s["status"] for s in shown if s["step"] == "Opt-out confirmation"] == ["delivered"]  # the case is real
    pay = [{"payment_id": "PA", "patient_id": "A", "amount": "100.00", "paid_at": "2026-03-03T14:00:00Z"}]
    cli.ok("import", "payments", str(write_csv(tmp_path / "pay.csv", pay)), now="2026-03-03T14:00:00Z")

    doc = json.loads(
        cli.ok(
            "--config",
            str(cfg),
            "report",
            "--since",
            "2026-03-01",
            "--until",
            "2026-03-04T00:00:00Z",
            "--format",
            "json",
        ).stdout
    )
    steps = {g["step"] for g in doc["groups"]}
    assert steps == {"Text"}  # Email is not due yet; no "Opt-out confirmation" row
    assert all(e["step"] != "Opt-out confirmation" for e in doc["funnel"]["ab"])
    total = doc["total"]
    assert total["messages_attempted"] == 2 and total["messages"]["sms"]["delivered"] == 2
    assert total["cost_cents"] == 10  # two texts at $0.05; the confirmation is not outreach cost
    text = next(g for g in doc["groups"] if g["step"] == "Text")
    assert text["collected_cents"] == 10000 and text["sets_paid_full"] == 1 and text["opt_outs"] == 1
    assert total["unprompted_cents"] == 0
    funnel = {e["step"]: (e["reached"], e["paid_after"]) for e in doc["funnel"]["ab"]}
    assert funnel == {"(entered)": (2, 0), "Text": (2, 1), "Email": (0, 0)}

    # The reference path (every row) agrees.
    until = datetime(2026, 3, 4, tzinfo=UTC)
    opts = Options(
        since=datetime(2026, 3, 1, tzinfo=UTC), until=until, tz=ZoneInfo("UTC"), costs=Costs(sms=Decimal("0.05"))
    )
    with Store(cli.db).read() as conn:
        data = read_report_input(conn, since=opts.since, until=until)
    ref = Report(data, opts).as_dict()
    assert {g["step"] for g in ref["groups"]} == {"Text"} and ref["total"]["collected_cents"] == 10000
    assert ref["funnel"] == doc["funnel"] and ref["total"]["cost_cents"] == 10
