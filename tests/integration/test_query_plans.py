"""`list` filters and sorts, `metrics` and the claim query are served by indexes (SPEC section 10).
Checked with EXPLAIN QUERY PLAN on SQLite: no statement may scan the invoice_set table without an
index (speed itself is measured by bench/, never by tests)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from outreach_cli.domain.ranges import parse_amount_range, parse_time_range
from outreach_cli.domain.statuses import Status
from outreach_cli.store.database import Store
from outreach_cli.store.queries import ListFilter, metrics_statements, plan_statements
from tests.conftest import Cli

NOW = datetime(2026, 3, 2, 15, tzinfo=UTC)
UTC = ZoneInfo("UTC")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    Cli(url).ok("init")
    s = Store(url)
    with s.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    return s


def plan(store: Store, stmt: object) -> list[str]:
    with store.engine.connect() as conn:
        sql = str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))  # type: ignore[attr-defined]
        return [str(r[3]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]


def assert_indexed(lines: list[str], *, rowid_order: bool = False) -> None:
    scans = [ln for ln in lines if ln.startswith("SCAN invoice_set") and "INDEX" not in ln]
    if rowid_order:  # walking the table in ID order *is* the primary-key index, with no sort
        assert not any("TEMP B-TREE" in ln for ln in lines), lines
        return
    assert not scans, lines


FILTERS = {
    "default": ListFilter(limit=50),
    "status": ListFilter(statuses=[Status.FAILED], limit=50),
    "amount": ListFilter(amount=parse_amount_range("100..500"), limit=50),
    "created": ListFilter(created=parse_time_range("2026-02-01..2026-02-28", tz=UTC, now=NOW), limit=50),
    "send-time": ListFilter(send_time=parse_time_range("today", tz=UTC, now=NOW), limit=50),
    "rule-set": ListFilter(rule_sets=["gentle"], limit=50),
    "phone": ListFilter(search="(617) 555-0142", limit=50),
    "set id": ListFilter(search="42", statuses=list(Status), limit=50),
    "sort amount": ListFilter(sort="amount", desc=True, limit=50),
    "sort created": ListFilter(sort="created", limit=50),
    "sort id all": ListFilter(sort="id", statuses=list(Status), limit=50),
    "sort status": ListFilter(sort="status", limit=50),
}


@pytest.mark.parametrize("name", list(FILTERS))
def test_list_queries_use_indexes(store: Store, name: str) -> None:
    for stmt in plan_statements(store, FILTERS[name]):
        assert_indexed(plan(store, stmt), rowid_order=name == "sort id all")


def test_exact_phone_search_uses_the_phone_index(store: Store) -> None:
    lines = [ln for stmt in plan_statements(store, FILTERS["phone"]) for ln in plan(store, stmt)]
    assert any("ix_patient_phone" in ln for ln in lines), lines


def test_metrics_use_covering_indexes(store: Store) -> None:
    counts, aging = metrics_statements(NOW)
    # Both read only an index (never the table rows): a count per status, and the aging pass.
    assert any("COVERING INDEX ix_invoice_set_status_" in ln for ln in plan(store, counts)), plan(store, counts)
    assert any("COVERING INDEX ix_invoice_set_status_created" in ln for ln in plan(store, aging)), plan(store, aging)


def test_claim_query_uses_the_next_send_index(store: Store) -> None:
    from outreach_cli.outreach.claims import due_sets_query

    lines = plan(store, due_sets_query(NOW, 200, pg=store.dialect == "postgresql"))
    assert_indexed(lines)
    assert any("next_send" in ln for ln in lines), lines
