"""Stored cursors (`store/meta.py`): one upsert statement, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from outreach_cli.store.database import Store
from outreach_cli.store.meta import get_meta, set_meta
from tests.conftest import Cli


def test_set_meta_inserts_then_replaces(cli: Cli) -> None:
    store = Store(cli.db)
    try:
        with store.write() as conn:
            assert get_meta(conn, "cursor") is None
            set_meta(conn, "cursor", "1")
        with store.write() as conn:
            set_meta(conn, "cursor", "2")
        with store.read() as conn:
            assert get_meta(conn, "cursor") == "2"
    finally:
        store.engine.dispose()


def test_two_writers_storing_a_new_key_at_once_both_succeed(cli: Cli) -> None:
    """A check-then-insert lets both writers see no row and both insert (a unique-key error on
    PostgreSQL); the upsert does not."""
    store = Store(cli.db)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def writer(i: int) -> None:
        try:
            start.wait()
            with store.write() as conn:
                set_meta(conn, "stripe_cursor", str(i))
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        with store.read() as conn:
            assert get_meta(conn, "stripe_cursor") in {"0", "1", "2", "3"}
    finally:
        store.engine.dispose()
