"""Overlapping runs send every due send exactly once (SPEC section 6), counted at the provider."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from outreach_cli.store.database import Store
from tests.conftest import Cli, _reset_pg, pg_url_or_skip
from tests.fakes.twilio_server import FakeTwilio
from tests.helpers import tally_kept_and_fresh
from tests.reliability.harness import (
    T0,
    env_for,
    finish,
    per_number,
    phone,
    run_here,
    seed_sets,
    send_statuses,
    start_run,
)


def _round(db: str, tmp: Path, workers: int, n: int) -> None:
    fake = FakeTwilio(delay=0.002).start()
    try:
        cli = Cli(db)
        cli.ok("init")
        seed_sets(cli, tmp, n)
        env = env_for(db, fake)
        procs = [start_run(env, T0) for _ in range(workers)]
        results = [finish(p) for p in procs]
        for code, _, err in results:
            assert code == 0, err
            assert "locked" not in err.lower(), err
        # Later runs retry what a provider hiccup left pending and resolve any unknown by lookup.
        for minutes in (10, 40, 120):
            code, _, err = run_here(env, T0 + timedelta(minutes=minutes))
            assert code == 0, err
        counts = per_number(fake)
        assert len(counts) == n, f"{n - len(counts)} due sends never went out"
        dupes = {k: v for k, v in counts.items() if v > 1}
        assert not dupes, f"duplicates: {list(dupes.items())[:5]}"
        assert set(counts) == {phone(i) for i in range(n)}
        st = send_statuses(db)
        assert st["sent"] == n and st["claimed"] == 0 and st["unknown"] == 0, st
        # `metrics`' tally, folded by racing writers on PostgreSQL, still counts every set once.
        store = Store(db)
        try:
            kept, fresh, _ = tally_kept_and_fresh(store)
        finally:
            store.engine.dispose()
        assert kept == fresh and sum(v[0] for v in fresh.values()) == n
    finally:
        fake.stop()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [2, 8])
def test_postgresql_workers_send_exactly_once(tmp_path: Path, workers: int) -> None:
    url = pg_url_or_skip()
    for r in range(2):
        _reset_pg(url)
        d = tmp_path / f"round{r}"
        d.mkdir()
        _round(url, d, workers, 2000)


@pytest.mark.slow
def test_sqlite_two_processes_send_exactly_once(tmp_path: Path) -> None:
    for r in range(3):
        d = tmp_path / f"round{r}"
        d.mkdir()
        _round(f"sqlite:///{d / 'o.db'}", d, 2, 600)
