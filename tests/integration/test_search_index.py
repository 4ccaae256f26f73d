"""`list --search` is served by the databases' trigram indexes (issue 13): SQLite's FTS5 table
`patient_search` (trigram tokenizer), PostgreSQL's pg_trgm GIN index on patient.search_text, both
kept in step with patient imports in the same transaction. The plans are those of the statements
`list` really runs, captured while it runs (tests/integration/plans.py); speed itself is measured
by bench/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from outreach_cli.store.database import Store
from outreach_cli.store.maintenance import after_big_write
from tests.conftest import Cli, prepared
from tests.helpers import PATIENT_HEADER, patient, write_csv
from tests.integration.plans import full_scans, lines, plans_of

FIRST = ["Mary", "John", "Wei", "Fatima", "Priya", "Mateo", "Linda", "Robert"]
LAST = ["Smith", "Jones", "Nguyen", "Okafor", "Haddad", "Lee", "Brown", "Garcia"]
N = 2000


@pytest.fixture
def many(db_url: str) -> Cli:
    """2,000 patients with sets; one of them (P0777) has a rare name, email and number (built
    once per run and database kind, a copy for each test, as a big import leaves it)."""
    return prepared(db_url, "search2000", _build_many, restored=_settled)


def _build_many(cli: Cli, tmp_path: Path) -> None:
    pats = [
        patient(
            f"P{i:04d}",
            first_name=FIRST[i % len(FIRST)],
            last_name=LAST[(i // len(FIRST)) % len(LAST)],
            email=f"user{i}@example.com",
            phone=f"(617) 55{i % 10}-{1000 + i:04d}",
        )
        for i in range(N)
    ]
    pats[777].update(
        first_name="Zéphyrine", last_name="Quillfeather", email="zq.rare@clinic.org", phone="(508) 867-5309"
    )
    write_csv(tmp_path / "p.csv", pats, PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    rows = [{"charge_id": f"C{i}", "patient_id": f"P{i:04d}", "amount": "10"} for i in range(N)]
    write_csv(tmp_path / "c.csv", rows)
    cli.ok("import", "charges", str(tmp_path / "c.csv"), "--rule-set", "standard")
    _settled(cli)


def _settled(cli: Cli) -> None:
    """What a big import ends with (statistics, and on PostgreSQL the search index's pending
    list): after the build, and again after its rows are copied back into PostgreSQL."""
    store = Store(cli.db)
    assert after_big_write(store, ["patient", "invoice_set"], N, threshold=0)
    store.engine.dispose()


def found(cli: Cli, text: str) -> list[str]:
    r = cli.ok("list", "--status", "all", "--search", text, "--format", "jsonl")
    return sorted(json.loads(x)["patient_id"] for x in r.stdout.splitlines())


SEARCHES = {
    "name": "quillfeather",
    "name with accent, two words": "Zéphyrine Quillfeather",
    "email": "zq.rare@clinic",
    "phone digits": "8675309",
}


@pytest.mark.parametrize("kind", list(SEARCHES))
def test_search_is_served_by_the_trigram_index(many: Cli, kind: str) -> None:
    assert found(many, SEARCHES[kind]) == ["P0777"]
    # The statements of the same `list` run as an operator types it (first page, in next-send order).
    stmts = plans_of(many, "list", "--search", SEARCHES[kind], "--limit", "50", "--format", "jsonl")
    plan = lines(stmts)
    if many.db.startswith("sqlite"):
        assert any(re.match(r"SCAN patient_search VIRTUAL TABLE INDEX \d+:M", ln) for ln in plan), plan
    else:
        assert any("ix_patient_search_text_trgm" in ln for ln in plan), plan
        # The matches drive the query: no scan of the sets testing each against the patient list.
        assert not [ln for ln in plan if "Filter:" in ln and "SubPlan" in ln], "\n".join(map(str, stmts))
    assert not full_scans(stmts), "\n".join(map(str, stmts))


def test_short_words_still_match_by_a_scan(many: Cli) -> None:
    """Trigrams need 3 characters: `wei` is index-served, `le` (2) is checked row by row."""
    assert len(found(many, "wei")) == N // len(FIRST)
    assert "P0777" not in found(many, "le")
    assert len(found(many, "lee")) == len(found(many, "lee le"))


def test_search_index_follows_imports_in_the_same_transaction(many: Cli, tmp_path: Path) -> None:
    renamed = patient("P0777", first_name="Ottoline", last_name="Brackenbury", email="ob@clinic.org")
    many.ok("import", "patients", str(write_csv(tmp_path / "u.csv", [renamed], PATIENT_HEADER)))
    assert found(many, "quillfeather") == []
    assert found(many, "brackenbury") == ["P0777"]
    assert found(many, "8675309") == []  # the number changed too
    # A file with a bad row writes nothing: the index does not learn the new name either.
    bad = [patient("P9999", first_name="Marigold", last_name="Fennimore"), patient("P9998", phone="not a phone")]
    r = many("import", "patients", str(write_csv(tmp_path / "bad.csv", bad, PATIENT_HEADER)))
    assert r.code != 0
    assert found(many, "fennimore") == []
    store = Store(many.db)
    if store.dialect == "sqlite":  # FTS5's own check that the index matches the patient rows
        with store.engine.begin() as conn:
            conn.exec_driver_sql("INSERT INTO patient_search(patient_search) VALUES ('integrity-check')")
    store.engine.dispose()


def test_big_writes_end_with_a_checkpoint_and_fresh_statistics(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from outreach_cli.store import maintenance

    monkeypatch.setattr(maintenance, "BIG_WRITE_ROWS", 3)  # 3 rows count as big here
    pats = [patient(f"P{i}", phone=f"(617) 555-01{i:02d}") for i in range(3)]
    cli.ok("import", "patients", str(write_csv(tmp_path / "p.csv", pats, PATIENT_HEADER)))
    store = Store(cli.db)
    if store.dialect == "sqlite":
        wal = Path(cli.db.removeprefix("sqlite:///") + "-wal")
        # Checkpointed and truncated (and removed when the command closed its last connection).
        assert not wal.exists() or wal.stat().st_size == 0
        rows = [{"charge_id": f"C{i}", "patient_id": f"P{i}", "amount": "10"} for i in range(3)]
        cli.ok("import", "charges", str(write_csv(tmp_path / "c.csv", rows)), "--rule-set", "standard")
        assert not wal.exists() or wal.stat().st_size == 0
        r = cli.ok("act", "pause", "-", input="1\n2\n3\n")
        assert r.code == 0
        assert not wal.exists() or wal.stat().st_size == 0
    else:
        with store.engine.connect() as conn:
            analysed = conn.exec_driver_sql(
                "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables"
                " WHERE relname = 'patient' AND schemaname = current_schema()"
            ).scalar_one()
        assert analysed is True
    store.engine.dispose()


def test_broad_searches_walk_the_next_send_order_with_the_same_result(
    many: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search matching many patients (here: more than 10) is answered by walking the sets in
    next-send order; the rows and their order are those of the patient-first plan."""
    from outreach_cli.store import queries

    def listed(*args: str) -> list[tuple[str, str]]:
        r = many.ok("list", *args, "--format", "jsonl")
        return [(json.loads(x)["patient_id"], json.loads(x)["next_send_at"]) for x in r.stdout.splitlines()]

    for args in (["--search", "smith", "--limit", "50"], ["--search", "mary smith", "--limit", "7", "--desc"]):
        narrow = listed(*args)
        monkeypatch.setattr(queries, "BROAD_SEARCH", 10)
        broad = listed(*args)
        monkeypatch.setattr(queries, "BROAD_SEARCH", 5000)
        assert broad == narrow and len(narrow) == int(args[3])
    monkeypatch.setattr(queries, "BROAD_SEARCH", 10)
    stmts = plans_of(many, "list", "--search", "smith", "--limit", "50", "--format", "jsonl")
    pages = [st for st in stmts if "next_send_at IS NOT NULL" in st.sql]  # the sets with a next send
    assert pages, "\n".join(st.sql for st in stmts)
    if many.db.startswith("sqlite"):  # in next-send order from the index: no sort of the matches
        assert any("ix_invoice_set_next_send_at" in ln for ln in pages[0].plan), pages[0]
        assert not any("TEMP B-TREE" in ln for ln in pages[0].plan), pages[0]
    assert not full_scans(stmts), "\n".join(map(str, stmts))
