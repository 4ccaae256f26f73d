"""Imports (SPEC section 8) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import pytest
from sqlalchemy import select

from outreach_cli.store.database import Store
from tests.conftest import Cli
from tests.helpers import PATIENT_HEADER, dump, patient, refused, setup_charges, setup_patients, skipped, write_csv


def _files(tmp_path: Path) -> tuple[Path, Path, Path]:
    patients = write_csv(tmp_path / "p.csv", [patient(f"P{i}", first_name=f"F{i}") for i in range(20)], PATIENT_HEADER)
    charges = write_csv(
        tmp_path / "c.csv",
        [
            {
                "charge_id": f"C{i}",
                "patient_id": f"P{i % 20}",
                "amount": f"${i + 1},234.56",
                "created_at": f"2026-01-{(i % 28) + 1:02d}T10:00:00-05:00",
                "description": "Office visit",
            }
            for i in range(40)
        ],
    )
    payments = write_csv(
        tmp_path / "y.csv",
        [
            {"payment_id": f"Y{i}", "patient_id": f"P{i}", "amount": "500.00", "paid_at": "2026-02-01T12:00:00Z"}
            for i in range(10)
        ],
    )
    return patients, charges, payments


def test_reimport_is_idempotent(cli: Cli, tmp_path: Path) -> None:
    p, c, y = _files(tmp_path)
    for f, kind in ((p, "patients"), (c, "charges"), (y, "payments")):
        cli.ok("import", kind, str(f))
    before = dump(cli.db)
    for f, kind, unchanged in ((p, "patients", 20), (c, "charges", 40), (y, "payments", 10)):
        r = cli.ok("import", kind, str(f), now="2026-03-05T10:00:00Z")
        sets = "; 0 new invoice sets" if kind == "charges" else ""
        assert r.stderr == f"{kind}: 0 imported (0 created, 0 updated), {unchanged} unchanged{sets}\n"
    assert dump(cli.db) == before


def _thousand(tmp_path: Path, bad: dict[str, str]) -> Path:
    rows = [
        {"charge_id": f"C{i:04d}", "patient_id": f"P{i % 5}", "amount": "10.00", "created_at": "2026-01-05"}
        for i in range(1000)
    ]
    rows[500].update(bad)
    return write_csv(tmp_path / "c1000.csv", rows)


@pytest.mark.parametrize(
    "bad,problem",
    [
        ({"amount": "12,34"}, "amount: misplaced thousands separator in '12,34'"),
        ({"patient_id": "NOPE"}, "patient_id: unknown patient 'NOPE' (import patients first)"),
        (
            {"created_at": "2026-02-30"},
            "created_at: not a date or datetime: '2026-02-30' (use 2026-03-01, 2026-03-01T14:30 or 2026-03-01T14:30:00Z)",
        ),
        ({"amount": "-5"}, "amount: must be greater than zero, got -$5.00"),
    ],
)
def test_one_bad_row_in_a_thousand(cli: Cli, tmp_path: Path, bad: dict[str, str], problem: str) -> None:
    setup_patients(cli, tmp_path, [patient(f"P{i}") for i in range(5)])
    f = _thousand(tmp_path, bad)
    before = dump(cli.db)
    r = cli("import", "charges", str(f))
    assert r.code == 2, r
    # header is line 1, row index 500 is line 502
    assert r.stderr == refused(f, f"line 502: {problem}")
    assert dump(cli.db) == before

    r = cli("import", "charges", str(f), "--skip-invalid")
    assert r.code == 3, r
    assert r.stderr == skipped(f, f"line 502: {problem}") + (
        "charges: 999 imported (999 created, 0 updated), 0 unchanged, 1 skipped as invalid; 5 new invoice sets\n"
    )
    after = dump(cli.db)
    assert len(after["charge"]) == 999


def test_money_and_offset_datetime_round_trip(cli: Cli, tmp_path: Path) -> None:
    setup_patients(cli, tmp_path, [patient("P1")])
    write_csv(
        tmp_path / "c.csv",
        [
            {
                "charge_id": "C1",
                "patient_id": "P1",
                "amount": "$1,234.56",
                "created_at": "2026-02-03T10:15:30.123456+05:30",
            }
        ],
    )
    cli.ok("import", "charges", str(tmp_path / "c.csv"))
    data = json.loads(cli.ok("show", "1", "--format", "json").stdout)
    assert data["charges"][0]["amount_cents"] == 123456
    assert data["charges"][0]["created_at"] == "2026-02-03T04:45:30Z"  # printed in whole seconds (D19)
    assert data["amount_outstanding_cents"] == 123456
    row = json.loads(cli.ok("list", "--format", "jsonl").stdout.splitlines()[0])
    assert row["amount_outstanding"] == "1234.56" and row["amount_outstanding_cents"] == 123456
    from datetime import datetime

    from outreach_cli.store.models import charge_t

    store = Store(cli.db)
    with store.read() as conn:
        created = conn.execute(select(charge_t.c.created_at)).scalar_one()
    assert created == datetime(2026, 2, 3, 4, 45, 30, 123456, tzinfo=UTC)
    assert created.tzinfo is not None
    store.engine.dispose()


def test_charges_join_in_progress_set_and_open_new_after_paid(cli: Cli, tmp_path: Path) -> None:
    setup_patients(cli, tmp_path, [patient("P1")])
    setup_charges(cli, tmp_path, [("C1", "P1", "100.00"), ("C2", "P1", "50.00")])
    rows = [json.loads(x) for x in cli.ok("list", "--format", "jsonl").stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["amount_outstanding_cents"] == 15000
    setup_charges(cli, tmp_path, [("C3", "P1", "25.00")], "c2.csv")
    rows = [json.loads(x) for x in cli.ok("list", "--format", "jsonl").stdout.splitlines()]
    assert len(rows) == 1 and rows[0]["amount_outstanding_cents"] == 17500
    write_csv(tmp_path / "y.csv", [{"payment_id": "Y1", "patient_id": "P1", "amount": "175.00"}])
    cli.ok("import", "payments", str(tmp_path / "y.csv"))
    rows = [json.loads(x) for x in cli.ok("list", "--status", "all", "--format", "jsonl").stdout.splitlines()]
    assert [r["status"] for r in rows] == ["paid"]
    setup_charges(cli, tmp_path, [("C4", "P1", "30.00")], "c3.csv")
    rows = [
        json.loads(x)
        for x in cli.ok("list", "--status", "all", "--format", "jsonl", "--sort", "id").stdout.splitlines()
    ]
    assert [(r["id"], r["status"]) for r in rows] == [(1, "paid"), (2, "active")]


def test_payments_apply_oldest_first_or_to_named_charge(cli: Cli, tmp_path: Path) -> None:
    setup_patients(cli, tmp_path, [patient("P1")])
    write_csv(
        tmp_path / "c.csv",
        [
            {"charge_id": "OLD", "patient_id": "P1", "amount": "100.00", "created_at": "2026-01-01"},
            {"charge_id": "NEW", "patient_id": "P1", "amount": "100.00", "created_at": "2026-02-01"},
            {"charge_id": "MID", "patient_id": "P1", "amount": "100.00", "created_at": "2026-01-15"},
        ],
    )
    cli.ok("import", "charges", str(tmp_path / "c.csv"))
    write_csv(
        tmp_path / "y.csv",
        [
            {"payment_id": "Y1", "patient_id": "P1", "amount": "150.00", "charge_id": ""},
            {"payment_id": "Y2", "patient_id": "P1", "amount": "20.00", "charge_id": "NEW"},
        ],
    )
    cli.ok("import", "payments", str(tmp_path / "y.csv"))
    data = json.loads(cli.ok("show", "1", "--format", "json").stdout)
    out = {c["charge_id"]: (c["outstanding_cents"], c["status"]) for c in data["charges"]}
    assert out == {"OLD": (0, "paid"), "MID": (5000, "outstanding"), "NEW": (8000, "outstanding")}
    assert data["amount_outstanding_cents"] == 13000
    kinds = [e["kind"] for e in data["timeline"]]
    assert kinds.count("payment") == 2


def test_payment_changed_values_rejected(cli: Cli, tmp_path: Path) -> None:
    setup_patients(cli, tmp_path, [patient("P1")])
    setup_charges(cli, tmp_path, [("C1", "P1", "100.00")])
    write_csv(tmp_path / "y.csv", [{"payment_id": "Y1", "patient_id": "P1", "amount": "10.00"}])
    cli.ok("import", "payments", str(tmp_path / "y.csv"))
    write_csv(tmp_path / "y2.csv", [{"payment_id": "Y1", "patient_id": "P1", "amount": "99.00"}])
    r = cli("import", "payments", str(tmp_path / "y2.csv"))
    assert r.code == 2
    assert r.stderr == (
        f"error: {tmp_path / 'y2.csv'}: 1 problem(s); nothing was imported\n"
        "  line 2: payment_id: payment 'Y1' was already recorded with other values; payments cannot change once "
        "recorded (a further payment needs a new payment_id)\n"
    )


def test_patient_validation_and_formats(cli: Cli, tmp_path: Path) -> None:
    rows = [
        patient("P1", phone="617.555.0100"),
        patient("P2", phone="not a phone"),
        patient("P3", email="nobody@"),
        patient("P4", first_name=""),
        patient("P5", sms_opt_out="maybe"),
        patient("P6", timezone="Mars/Olympus"),
        patient("P7", phone_type="pager"),
    ]
    f = write_csv(tmp_path / "p.csv", rows, PATIENT_HEADER)
    r = cli("import", "patients", str(f))
    assert r.code == 2
    problems = [
        "line 3: phone: contains letters (like 555-CALL-NOW); give the number in digits"
        " (use a format like (617) 555-0100 or +16175550100)",
        "line 4: email: not a valid address: There must be something after the @-sign.",
        "line 5: first_name: required",
        "line 6: sms_opt_out: expected true/false/yes/no/1/0, got 'maybe'",
        "line 7: timezone: unknown time zone 'Mars/Olympus' (use an IANA name like America/New_York)",
        "line 8: phone_type: 'pager' is not one of mobile, landline, voip, unknown",
    ]
    assert r.stderr == refused(f, *problems)
    # Error text never carries the phone number or email itself.
    assert "not a phone" not in r.stderr.replace("not a phone number", "")
    assert "nobody@" not in r.stderr
    r = cli("import", "patients", str(f), "--skip-invalid")
    assert r.code == 3
    assert r.stderr == skipped(f, *problems) + (
        "patients: 1 imported (1 created, 0 updated), 0 unchanged, 6 skipped as invalid\n"
    )
    data = [json.loads(x) for x in cli.ok("list", "--format", "jsonl").stdout.splitlines()]
    assert data == []  # patients alone open no sets
    setup_charges(cli, tmp_path, [("C1", "P1", "5")])
    row = json.loads(cli.ok("list", "--format", "jsonl").stdout)
    assert row["phone"] == "+16175550100"


def test_bom_crlf_and_jsonl(cli: Cli, tmp_path: Path) -> None:
    text = "\ufeffpatient_id,first_name,phone\r\nP1,Ann,(212) 555-0101\r\nP2,Bo,\r\n"
    (tmp_path / "p.csv").write_bytes(text.encode("utf-8"))
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    (tmp_path / "c.jsonl").write_text(
        '{"charge_id": "C1", "patient_id": "P1", "amount_cents": 1999}\n\n{"charge_id": "C2", "patient_id": "P2", "amount": "5.01"}\n'
    )
    cli.ok("import", "charges", str(tmp_path / "c.jsonl"))
    rows = [json.loads(x) for x in cli.ok("list", "--format", "jsonl", "--sort", "id").stdout.splitlines()]
    assert [r["amount_outstanding_cents"] for r in rows] == [1999, 501]
    r = cli(
        "import",
        "charges",
        "-",
        "--input-format",
        "jsonl",
        input='{"charge_id": "C3", "patient_id": "P1", "amount": 3}\n{"oops"\n',
    )
    assert r.code == 2
    assert r.stderr == refused("<stdin>", "line 2: not valid JSON: Expecting ':' delimiter at column 8")


def test_unknown_column_and_bad_encoding(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("patient_id,first_name,phone_numer\nP1,A,1\n")
    r = cli("import", "patients", str(tmp_path / "p.csv"))
    assert r.code == 2
    assert r.stderr == (
        "error: line 1: unknown column(s) 'phone_numer'; the columns are patient_id, first_name, last_name, phone,"
        " phone_type, email, address_line1, address_line2, city, state, postal_code, country, timezone, sms_opt_out,"
        " call_opt_out, email_opt_out, card_token, stripe_customer_id, stripe_payment_method_id\n"
    )
    (tmp_path / "p2.csv").write_bytes(b"patient_id,first_name\nP1,Jos\xe9\n")
    r = cli("import", "patients", str(tmp_path / "p2.csv"))
    assert (r.code, r.stderr) == (
        2,
        f"error: {tmp_path / 'p2.csv'}: line 2: not UTF-8 text (byte 0xe9); save the file as UTF-8\n",
    )
    r = cli("import", "patients", str(tmp_path / "missing.csv"))
    assert (r.code, r.stderr) == (2, f"error: {tmp_path / 'missing.csv'}: no such file\n")


def test_dry_run_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    setup_patients(cli, tmp_path, [patient("P1")])
    before = dump(cli.db)
    write_csv(tmp_path / "c.csv", [{"charge_id": "C1", "patient_id": "P1", "amount": "10"}])
    r = cli.ok("import", "charges", str(tmp_path / "c.csv"), "--dry-run")
    assert r.stderr == "charges (dry run): 1 would be imported (1 created, 0 updated), 0 unchanged; 1 new invoice set\n"
    assert dump(cli.db) == before


def test_unknown_rule_set(cli: Cli, tmp_path: Path) -> None:
    setup_patients(cli, tmp_path, [patient("P1")])
    write_csv(tmp_path / "c.csv", [{"charge_id": "C1", "patient_id": "P1", "amount": "10"}])
    r = cli("import", "charges", str(tmp_path / "c.csv"), "--rule-set", "nope")
    assert (r.code, r.stderr) == (2, "error: unknown rule set 'nope'; known: final-notice, gentle, standard\n")


def test_import_can_set_but_not_clear_opt_out(cli: Cli, tmp_path: Path) -> None:
    setup_patients(cli, tmp_path, [patient("P1", sms_opt_out="yes")])
    setup_charges(cli, tmp_path, [("C1", "P1", "10")])
    setup_patients(cli, tmp_path, [patient("P1", sms_opt_out="no")])
    data = json.loads(cli.ok("show", "1", "--format", "json").stdout)
    assert data["patient"]["sms_opt_out"] is True
