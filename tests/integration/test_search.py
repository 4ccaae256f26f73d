"""`list --search` as admins type it (issue 10, D13): accents, "Last, First", any spacing, email."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli, prepared
from tests.helpers import PATIENT_HEADER, patient, write_csv


@pytest.fixture
def people(db_url: str) -> Cli:
    """Six patients with a set each (built once per run and database kind, a copy for each test)."""
    return prepared(db_url, "search-people", _build_people)


def _build_people(cli: Cli, tmp_path: Path) -> None:
    pats = [
        patient("P1", first_name="José", last_name="Nelson", email="jn@example.org", phone="(617) 555-0101"),
        patient("P2", first_name="Joseph", last_name="Hill", email="jh@example.org", phone="(617) 555-0102"),
        patient("P3", first_name="Sofia", last_name="Garcia", email="sofia.garcia@example.com", phone="(617) 555-0103"),
        patient("P4", first_name="Łukasz", last_name="Wiśniewski", email="lw@example.org", phone="(617) 555-0104"),
        patient("P5", first_name="Mary", last_name="O'Brien", email="mob@example.org", phone="(617) 555-0105"),
        patient("P6", first_name="芳", last_name="王", email="wf@example.org", phone="(617) 555-0106"),
    ]
    write_csv(tmp_path / "p.csv", pats, PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    write_csv(tmp_path / "c.csv", [{"charge_id": f"C{i}", "patient_id": f"P{i}", "amount": "10"} for i in range(1, 7)])
    cli.ok("import", "charges", str(tmp_path / "c.csv"))


def found(cli: Cli, text: str) -> list[str]:
    r = cli.ok("list", "--status", "all", "--search", text, "--format", "jsonl")
    return sorted(json.loads(x)["patient_id"] for x in r.stdout.splitlines())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jose", ["P1", "P2"]),  # José (accent-insensitive) and Joseph (substring)
        ("José", ["P1", "P2"]),  # accents are ignored both ways
        ("JOSÉ NELSON", ["P1"]),
        ("Garcia, Sofia", ["P3"]),
        ("Garcia Sofia", ["P3"]),
        ("sofia  garcia", ["P3"]),
        ("Sofia Garcia", ["P3"]),
        ("sofia.garcia", ["P3"]),
        ("sofia.garcia@example.com", ["P3"]),
        ("example.com", ["P3"]),
        ("lukasz wisniewski", ["P4"]),
        ("Wiśniewski, Łukasz", ["P4"]),
        ("obrien", ["P5"]),
        ("O'Brien", ["P5"]),
        ("王芳", ["P6"]),
        ("garcia nelson", []),  # every word must match
        ("555-0103", ["P3"]),
        ("P4", ["P4"]),
    ],
)
def test_D13_search_finds_names_as_admins_type_them(people: Cli, text: str, expected: list[str]) -> None:
    assert found(people, text) == expected


def test_D13_search_text_follows_patient_updates(people: Cli, tmp_path: Path) -> None:
    write_csv(
        tmp_path / "p2.csv",
        [patient("P3", first_name="Sofía", last_name="Núñez", email="sn@example.net")],
        PATIENT_HEADER,
    )
    people.ok("import", "patients", str(tmp_path / "p2.csv"))
    assert (
        found(people, "garcia") == []
        and found(people, "Nunez, Sofia") == ["P3"]
        and found(people, "example.net") == ["P3"]
    )


def test_D13_migration_fills_search_text_for_existing_patients(tmp_path: Path) -> None:
    """A database at revision 0001 with patients gets search_text filled on upgrade."""
    import outreach_db
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from outreach_cli.store.database import Store

    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(outreach_db.__file__).parent))

    def upgrade(to: str) -> None:
        with store.engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, to)
            conn.commit()

    upgrade("0001")
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO patient (patient_id, first_name, last_name, phone, phone_type, email, address_invalid,"
                " sms_opt_out, call_opt_out, email_opt_out, search_name, created_at, updated_at) VALUES"
                " ('P1', 'José', 'García', '+16175550101', 'mobile', 'Jose.G@Example.com', 0, 0, 0, 0, 'josé garcía',"
                " '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
    upgrade("head")
    with store.engine.connect() as conn:
        got = conn.execute(text("SELECT search_text FROM patient")).scalar_one()
    assert got == "jose garcia | garcia jose | jose.g@example.com | 16175550101"
