"""Money and actions (issue 10): payments after escalation or write-off, credit, act --dry-run,
one in-progress set per patient, and the collections export for the agency. SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from tests.conftest import Cli
from tests.helpers import PATIENT_HEADER, patient, sync_rule_set, write_csv


def show(cli: Cli, set_id: int, **kw: Any) -> dict[str, Any]:
    return json.loads(cli.ok("show", str(set_id), "--format", "json", **kw).stdout)  # type: ignore[no-any-return]


def export_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def pay(cli: Cli, tmp_path: Path, rows: list[dict[str, str]], name: str = "y.csv", *extra: str, **kw: Any) -> Any:
    return cli(
        "import",
        "payments",
        str(write_csv(tmp_path / name, rows, ["payment_id", "patient_id", "amount", "charge_id"])),
        *extra,
        **kw,
    )


def seed(
    cli: Cli, tmp_path: Path, charges: list[tuple[str, str, str, str]], patients: list[dict[str, Any]] | None = None
) -> None:
    """charges: (charge_id, patient_id, amount, created_at)."""
    pats = patients or [patient(pid) for pid in sorted({c[1] for c in charges})]
    write_csv(tmp_path / "p.csv", pats, PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    write_csv(
        tmp_path / "c.csv",
        [
            {"charge_id": c, "patient_id": p, "amount": a, "created_at": at, "description": f"Visit {c}"}
            for c, p, a, at in charges
        ],
    )
    cli.ok("import", "charges", str(tmp_path / "c.csv"))


# --- D4: the ledger ------------------------------------------------------------------------


def test_D4_payment_to_collections_set_is_applied(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, [("C1", "P1", "120.13", "2026-02-01"), ("C2", "P1", "60.07", "2026-02-10")])
    cli.ok("act", "collections", "1", "--yes")
    assert len(export_rows(cli.ok("collections", "export").stdout)) == 2  # exported (one row per charge)
    r = pay(cli, tmp_path, [{"payment_id": "PX3", "patient_id": "P1", "amount": "130.13"}], now="2026-03-03T15:00:00Z")
    assert r.code == 0 and "not applied" not in r.stderr, r
    d = show(cli, 1)
    # Oldest charge first: C1 paid in full, $10.00 of C2.
    assert d["status"] == "collections" and d["amount_outstanding_cents"] == 5007
    assert [(c["charge_id"], c["outstanding_cents"], c["status"]) for c in d["charges"]] == [
        ("C1", 0, "paid"),
        ("C2", 5007, "collections"),
    ]
    ev = [e for e in d["timeline"] if e["kind"] == "payment"]
    assert len(ev) == 1 and ev[0]["detail"]["applied_cents"] == 13013 and ev[0]["detail"]["after_escalation"] is True
    assert ev[0]["reason"] == "payment received after escalation to collections"
    audit = [json.loads(x) for x in cli.ok("audit", "--id", "1", "--format", "jsonl").stdout.splitlines()]
    assert any(a["kind"] == "payment" and a["at"] == "2026-03-03T15:00:00Z" for a in audit)
    # The next plain export offers the set again, flagged, with the lower balance; then not again.
    rows = export_rows(cli.ok("collections", "export").stdout)
    assert [(x["id"], x["charge_id"], x["charge_outstanding"]) for x in rows] == [
        ("1", "C1", "0.00"),
        ("1", "C2", "50.07"),
    ]
    assert {
        (
            x["amount_outstanding"],
            x["amount_outstanding_cents"],
            x["payment_after_escalation"],
            x["paid_after_escalation"],
        )
        for x in rows
    } == {("50.07", "5007", "yes", "130.13")}
    assert export_rows(cli.ok("collections", "export").stdout) == []
    rows = export_rows(cli.ok("collections", "export", "--all").stdout)
    assert {x["payment_after_escalation"] for x in rows} == {"yes"}


def test_D4_payment_names_a_collections_charge(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, [("C1", "P1", "100.00", "2026-02-01"), ("C2", "P1", "40.00", "2026-02-10")])
    cli.ok("act", "collections", "1", "--yes")
    pay(cli, tmp_path, [{"payment_id": "Y1", "patient_id": "P1", "amount": "40.00", "charge_id": "C2"}])
    d = show(cli, 1)
    assert [(c["charge_id"], c["outstanding_cents"]) for c in d["charges"]] == [("C1", 10000), ("C2", 0)]


def test_D4_unapplied_payment_is_reported_and_kept_as_credit(cli: Cli, tmp_path: Path) -> None:
    seed(
        cli,
        tmp_path,
        [("C1", "P1", "50.00", "2026-02-01")],
        patients=[patient("P1", first_name="Łukasz"), patient("P2", first_name="Zed")],
    )
    r = pay(
        cli,
        tmp_path,
        [
            {"payment_id": "Y1", "patient_id": "P1", "amount": "70.00"},  # $20.00 over
            {"payment_id": "Y2", "patient_id": "P2", "amount": "12.34"},  # owes nothing at all
        ],
    )
    assert r.code == 0, r
    err = r.stderr.splitlines()
    assert "payments: 2 payment(s) not applied ($32.34), kept as credit:" in err
    assert "  Y1: $20.00 of $70.00 not applied: the patient owes nothing" in err
    assert "  Y2: $12.34 not applied: the patient owes nothing" in err
    # Patient data never appears in that report.
    assert "Łukasz" not in r.stderr and "P1" not in r.stderr and "555" not in r.stderr
    d = show(cli, 1)
    assert d["status"] == "paid" and d["credit_cents"] == 2000 and d["credit"] == "20.00"
    assert any(e["kind"] == "credit" and e["detail"]["unapplied_cents"] == 2000 for e in d["timeline"])
    text = cli.ok("show", "1").stdout
    assert text.splitlines()[2] == "  patient credit $20.00 (payments not applied to any charge)"
    m = json.loads(cli.ok("metrics", "--all", "--format", "json").stdout)
    assert m["credit"] == {"count": 2, "credit_cents": 3234, "credit": "32.34"}
    table = cli.ok("metrics", "--all", "--format", "table").stdout
    assert table.splitlines()[11:15] == [
        "Total             │    1 │       $0.00",
        "Written off, net  │      │       $0.00",
        "Credit (patients) │    2 │      $32.34",
        "",
    ]
    # A dry run says the same, and records nothing.
    r = pay(cli, tmp_path, [{"payment_id": "Y3", "patient_id": "P2", "amount": "1.00"}], "y3.csv", "--dry-run")
    assert (r.code, r.stderr) == (
        0,
        "payments (dry run): 1 would be imported (1 created, 0 updated), 0 unchanged\n"
        "payments: 1 payment(s) would not be applied ($1.00), kept as credit:\n"
        "  Y3: $1.00 not applied: the patient owes nothing\n",
    )
    m = json.loads(cli.ok("metrics", "--all", "--format", "json").stdout)
    assert m["credit"] == {"count": 2, "credit_cents": 3234, "credit": "32.34"}


def test_D4_payment_after_write_off_is_a_recovery(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, [("C1", "P1", "100.00", "2026-02-01")])
    cli.ok("act", "write-off", "1", "--yes")
    r = pay(cli, tmp_path, [{"payment_id": "Y1", "patient_id": "P1", "amount": "30.00"}])
    assert r.code == 0 and "not applied" not in r.stderr
    d = show(cli, 1)
    assert d["status"] == "written-off" and d["amount_outstanding_cents"] == 0 and d["credit_cents"] == 0
    ev = [e for e in d["timeline"] if e["kind"] == "payment"]
    assert ev[-1]["detail"]["recovered_cents"] == 3000 and "after write-off" in ev[-1]["reason"]
    m = json.loads(cli.ok("metrics", "--all", "--format", "json").stdout)
    assert m["written-off"]["written_off_cents"] == 7000
    # More than the written-off amount: the rest is credit.
    r = pay(cli, tmp_path, [{"payment_id": "Y2", "patient_id": "P1", "amount": "80.00"}], "y2.csv")
    assert r.stderr == (
        "payments: 1 imported (1 created, 0 updated), 0 unchanged\n"
        "payments: 1 payment(s) not applied ($10.00), kept as credit:\n"
        "  Y2: $10.00 of $80.00 not applied: the patient owes nothing\n"
    )
    assert show(cli, 1)["credit_cents"] == 1000


# --- D5 and compliance D6: act --dry-run is the real run, rolled back ---------------------

TEXTONLY = """
title = "Text only"
expiry_day = 3
[[step]]
day = 0
methods = ["sms"]
title = "Hello"
message = "Hi {first_name}, pay {url} Reply STOP to opt out."
[[step]]
day = 2
methods = ["sms"]
title = "Text nudge"
message = "Hi {first_name}, pay {url} Reply STOP to opt out."
"""


def test_D5_dry_run_resume_prints_the_real_to_status(cli: Cli, tmp_path: Path) -> None:
    sync_rule_set(cli, tmp_path, "textonly", TEXTONLY)
    write_csv(tmp_path / "p.csv", [patient("P1"), patient("P2")], PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    write_csv(tmp_path / "c.csv", [{"charge_id": f"C{i}", "patient_id": f"P{i}", "amount": "50"} for i in (1, 2)])
    cli.ok("import", "charges", str(tmp_path / "c.csv"), "--rule-set", "textonly")
    cli.ok("act", "pause", "1", "2")
    # While paused, P1's phone turns out to be a landline: resuming re-evaluates to will-fail.
    write_csv(tmp_path / "p2.csv", [patient("P1", phone_type="landline")], PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p2.csv"))
    dry = cli("act", "resume", "1", "2", "--dry-run", "--format", "tsv", now="2026-03-02T16:00:00Z")
    real = cli("act", "resume", "1", "2", "--format", "tsv", now="2026-03-02T16:00:00Z")
    assert dry.code == real.code == 0
    assert dry.stdout == real.stdout
    assert real.stdout.splitlines()[1:] == [
        "1\tresume\tchanged\tpaused\twill-fail\t",
        "2\tresume\tchanged\tpaused\tactive\t",
    ]


def test_D5_dry_run_change_ruleset_prints_will_fail(cli: Cli, tmp_path: Path) -> None:
    sync_rule_set(cli, tmp_path, "textonly", TEXTONLY)
    write_csv(tmp_path / "p.csv", [patient("P1", phone_type="landline")], PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    write_csv(tmp_path / "c.csv", [{"charge_id": "C1", "patient_id": "P1", "amount": "50"}])
    cli.ok("import", "charges", str(tmp_path / "c.csv"), "--rule-set", "standard")
    args = ("act", "change-ruleset", "1", "--rule-set", "textonly", "--yes", "--format", "jsonl")
    dry = cli(*args, "--dry-run")
    assert show(cli, 1)["rule_set"] == "standard"  # the dry run changed nothing
    real = cli(*args)
    assert dry.code == real.code == 0 and dry.stdout == real.stdout
    assert json.loads(real.stdout)["to_status"] == "will-fail"


def test_D6_change_ruleset_on_expired_set_with_newer_in_progress_set_is_ineligible(cli: Cli, tmp_path: Path) -> None:
    sync_rule_set(cli, tmp_path, "textonly", TEXTONLY)
    write_csv(tmp_path / "p.csv", [patient("P1")], PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    write_csv(tmp_path / "c.csv", [{"charge_id": "C1", "patient_id": "P1", "amount": "50"}])
    cli.ok("import", "charges", str(tmp_path / "c.csv"), "--rule-set", "textonly")
    cli.ok("run-outreach", now="2026-03-06T15:00:00Z")  # past the expiry day
    assert show(cli, 1)["status"] == "expired"
    write_csv(tmp_path / "c2.csv", [{"charge_id": "C2", "patient_id": "P1", "amount": "70"}])
    cli.ok("import", "charges", str(tmp_path / "c2.csv"), "--rule-set", "textonly", now="2026-03-06T16:00:00Z")
    assert show(cli, 2)["status"] == "active"
    args = ("act", "change-ruleset", "1", "--rule-set", "standard", "--yes", "--format", "tsv")
    dry = cli(*args, "--dry-run")
    real = cli(*args)
    assert dry.code == real.code == 3, real
    assert dry.stdout == real.stdout
    assert real.stdout.splitlines()[1] == "1\tchange-ruleset\tineligible\texpired\t\tpatient has in-progress set 2"
    assert "IntegrityError" not in real.stderr and show(cli, 1)["status"] == "expired"
    # Two expired sets of one patient revived at once: only the first can be in progress.
    cli.ok("run-outreach", now="2026-03-10T15:00:00Z")
    assert show(cli, 2)["status"] == "expired"
    r = cli(
        "act",
        "change-ruleset",
        "1",
        "2",
        "--rule-set",
        "standard",
        "--yes",
        "--skip-ineligible",
        "--format",
        "tsv",
        now="2026-03-10T16:00:00Z",
    )
    assert r.code == 3, r
    assert r.stdout.splitlines()[1:] == [
        "1\tchange-ruleset\tchanged\texpired\tactive\t",
        "2\tchange-ruleset\tineligible\texpired\t\tpatient has in-progress set 1",
    ]


# --- collections export: D17, D11, D21 -----------------------------------------------------


def test_D17_collections_export_id_column_pipes_into_act(cli: Cli, tmp_path: Path) -> None:
    seed(
        cli,
        tmp_path,
        [("C1", "P1", "10", "2026-02-01"), ("C2", "P1", "20", "2026-02-02"), ("C3", "P2", "30", "2026-02-03")],
    )
    cli.ok("act", "collections", "1", "2", "--yes")
    out = cli.ok("collections", "export", "--all").stdout
    header = out.splitlines()[0].split(",")
    assert header[0] == "id"
    for col in ("charge_id", "service_date", "description", "charge_amount", "charge_outstanding"):
        assert col in header
    rows = export_rows(out)
    assert [(x["id"], x["charge_id"], x["service_date"], x["description"], x["charge_amount"]) for x in rows] == [
        ("1", "C1", "2026-02-01", "Visit C1", "10.00"),
        ("1", "C2", "2026-02-02", "Visit C2", "20.00"),
        ("2", "C3", "2026-02-03", "Visit C3", "30.00"),
    ]
    r = cli("act", "cancel", "-", "--dry-run", "--format", "tsv", input=out)
    assert r.code == 3 and "not an invoice set ID" not in r.stderr
    assert [line.split("\t")[:3] for line in r.stdout.splitlines()[1:]] == [
        ["1", "cancel", "ineligible"],
        ["2", "cancel", "ineligible"],
    ]


def test_D11_collections_export_out_into_missing_directory_or_onto_directory(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, [("C1", "P1", "10", "2026-02-01")])
    cli.ok("act", "collections", "1", "--yes")
    r = cli("collections", "export", "--out", str(tmp_path / "nope" / "x.csv"))
    missing = tmp_path / "nope"
    assert (r.code, r.stderr) == (2, f"error: --out {missing / 'x.csv'}: directory does not exist: {missing}\n")
    (tmp_path / "dir").mkdir()
    r = cli("collections", "export", "--out", str(tmp_path / "dir"))
    folder = tmp_path / "dir"
    assert (r.code, r.stderr) == (
        2,
        f"error: --out {folder}: is a directory; give a file name (e.g. {folder / 'agency.csv'})\n",
    )
    # Nothing was marked exported: the set is still waiting.
    assert len(export_rows(cli.ok("collections", "export", "--out", str(tmp_path / "ok.csv")).stdout)) == 0
    assert [x["id"] for x in export_rows((tmp_path / "ok.csv").read_text(encoding="utf-8"))] == ["1"]


def test_D21_collections_export_neutralises_formula_cells(cli: Cli, tmp_path: Path) -> None:
    seed(
        cli,
        tmp_path,
        [("C1", "P1", "10", "2026-02-01")],
        patients=[patient("P1", first_name='=cmd|"/c calc"!A1', last_name="@SUM(A1)", city="-2+3")],
    )
    cli.ok("act", "collections", "1", "--yes")
    row = export_rows(cli.ok("collections", "export").stdout)[0]
    assert row["first_name"] == '\'=cmd|"/c calc"!A1' and row["last_name"] == "'@SUM(A1)" and row["city"] == "'-2+3"
    assert row["amount_outstanding"] == "10.00"  # numbers stay numbers
