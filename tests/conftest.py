"""Shared fixtures: a fresh database per test on SQLite *and* PostgreSQL, and a CLI runner.

PostgreSQL: `OUTREACH_TEST_PG_URL` (default postgresql://postgres@127.0.0.1:5432/test). Each test
run gets its own schema, dropped at the end, so runs do not collide. Without a reachable server
the PostgreSQL variants skip with the reason, unless OUTREACH_REQUIRE_PG=1 (CI), where they fail.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PG_URL = os.environ.get("OUTREACH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("OUTREACH_REQUIRE_PG") == "1"
NOW = "2026-03-02T14:00:00Z"  # a Monday, 09:00 in New York


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for k in list(os.environ):
        if k.startswith(("OUTREACH_", "TWILIO_")) and k not in ("OUTREACH_TEST_PG_URL", "OUTREACH_REQUIRE_PG"):
            monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.chdir(tmp_path)


_pg_state: dict[str, Any] = {}


def _pg_schema_url() -> str:
    if "url" in _pg_state:
        return str(_pg_state["url"])
    if "error" in _pg_state:
        raise RuntimeError(_pg_state["error"])
    try:
        import psycopg

        schema = f"outreach_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_URL, connect_timeout=5, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except Exception as exc:
        _pg_state["error"] = f"PostgreSQL not reachable at {PG_URL}: {exc}".strip()
        raise RuntimeError(_pg_state["error"]) from None
    sep = "&" if "?" in PG_URL else "?"
    _pg_state["schema"] = schema
    _pg_state["url"] = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    return str(_pg_state["url"])


def pytest_sessionfinish(session: Any, exitstatus: Any) -> None:
    schema = _pg_state.get("schema")
    if schema:
        import psycopg

        with contextlib.suppress(Exception), psycopg.connect(PG_URL, connect_timeout=5, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def pg_url_or_skip() -> str:
    try:
        return _pg_schema_url()
    except RuntimeError as exc:
        if REQUIRE_PG:
            pytest.fail(f"{exc} (OUTREACH_REQUIRE_PG=1 makes this a failure)")
        pytest.skip(str(exc))


_TABLES = (
    "payment_touch",
    "set_paid",
    "report_stale",
    "send",
    "inbound_message",
    "stripe_event",
    "stripe_checkout",
    "payment_allocation",
    "payment",
    "charge",
    "event",
    "invoice_set",
    "rule_set_version",
    "rule_set",
    "patient",
    "meta",
)


def _reset_pg(url: str) -> None:
    from sqlalchemy import text

    from outreach_cli.store.database import Store

    store = Store(url)
    store.migrate()
    with store.engine.begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(_TABLES) + " RESTART IDENTITY CASCADE"))
    store.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'outreach.db'}"
    url = pg_url_or_skip()
    _reset_pg(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'outreach.db'}"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def __repr__(self) -> str:
        return f"Result(code={self.code}, stdout={self.stdout[:2000]!r}, stderr={self.stderr[:2000]!r})"


class Cli:
    """Runs the real command line in-process, as from a pipe (no terminal)."""

    def __init__(self, db: str, now: str | None = NOW) -> None:
        self.db = db
        self.now = now

    def __call__(self, *args: str, input: str | bytes | None = None, now: str | None = None, db: bool = True) -> Result:
        from outreach_cli.cli.app import run

        argv: list[str] = []
        if db:
            argv += ["--db", self.db]
        if now or self.now:
            argv += ["--now", now or self.now or ""]
        argv += list(args)
        data = input.encode() if isinstance(input, str) else (input or b"")
        out, err = io.StringIO(), io.StringIO()
        old = sys.stdin, sys.stdout, sys.stderr
        sys.stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
        sys.stdout, sys.stderr = out, err
        try:
            code = run(argv)
        finally:
            sys.stdin, sys.stdout, sys.stderr = old
        return Result(code, out.getvalue(), err.getvalue())

    def ok(self, *args: str, **kw: Any) -> Result:
        r = self(*args, **kw)
        assert r.code == 0, r
        return r


@pytest.fixture
def cli(db_url: str) -> Iterator[Cli]:
    c = Cli(db_url)
    c.ok("init")
    yield c


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
