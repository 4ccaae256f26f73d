"""Shared fixtures: a fresh database per test on SQLite *and* PostgreSQL, and a CLI runner.

PostgreSQL: `OUTREACH_TEST_PG_URL` (default postgresql://postgres@127.0.0.1:5432/test). Each test
run gets its own schema, dropped at the end, so runs do not collide. Without a reachable server
the PostgreSQL variants skip with the reason, unless OUTREACH_REQUIRE_PG=1 (CI), where they fail.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import pytest

# The suite keeps bytecode caches even where PYTHONDONTWRITEBYTECODE is set (this machine sets it):
# without them every xdist worker rewrites and compiles every test module, and every `outreach`
# process a test starts compiles the package afresh, run after run (about a sixth of the fast
# set's time). `__pycache__` is ignored by git. Set here, before the workers start.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

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


class _SharedStatementCache:
    """SQLAlchemy's cache of compiled statements, shared by every engine of this test process.

    Each `outreach` command opens its own engine, as a real invocation does, so in-process each
    command compiled its statements afresh: about a third of a command's time. The cache key
    names the engine's dialect object; here it names what compiling depends on instead (the
    dialect's kind and what it learnt from the server), so engines of the same kind share the
    compiled statements. Real processes (the tests that spawn `outreach`) still compile their own.
    """

    def __init__(self) -> None:
        from sqlalchemy.util import LRUCache

        self._cache: Any = LRUCache(5000)

    @staticmethod
    def _key(key: tuple[Any, ...]) -> tuple[Any, ...]:
        d = key[0]
        kind = (
            type(d),
            d.server_version_info,
            d.paramstyle,
            d.label_length,
            d.max_identifier_length,
            d.default_schema_name,
        )
        return (kind, *key[1:])

    def get(self, key: tuple[Any, ...], default: Any = None) -> Any:
        return self._cache.get(self._key(key), default)

    def __setitem__(self, key: tuple[Any, ...], value: Any) -> None:
        self._cache[self._key(key)] = value

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        self._cache.clear()


class _KeptPgConnections:
    """PostgreSQL connections kept from one in-process command to the next of this test process.

    Each `outreach` command opens its own engine and so, on PostgreSQL, a new connection: a new
    server backend, whose start costs the server more than most commands' queries. Here an engine
    that closes an idle connection hands it back reset to a new session's state (`DISCARD ALL`:
    no temporary tables, prepared statements, settings or locks left, and psycopg's record of
    what it prepared cleared), and the next engine with the same connection arguments takes it
    instead of connecting. Every engine still runs the dialect's first-connect queries, and every
    command the SQL it ran before; real processes (the tests that spawn `outreach`) connect as
    a real invocation does. A connection that cannot be reset so is closed, as before.
    """

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()  # in-process commands may run in threads
        self._idle: dict[Any, list[Any]] = {}
        self._keys: dict[int, Any] = {}  # id of each connection made here -> its arguments

    def connect(self, dialect: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        # `context` is each dialect's own copy of psycopg's adapters, alike for every engine here.
        key = (tuple(cargs), tuple(sorted((k, repr(v)) for k, v in cparams.items() if k != "context")))
        with self._lock:
            idle = self._idle.get(key)
            conn = idle.pop() if idle else None
        if conn is None:
            conn = dialect.connect(*cargs, **cparams)
        with self._lock:
            self._keys[id(conn)] = key
        return conn

    def close(self, conn: Any) -> None:
        with self._lock:
            key = self._keys.pop(id(conn), None)
        if key is None or not self._reset(conn):
            conn.close()
            return
        with self._lock:
            self._idle.setdefault(key, []).append(conn)

    @staticmethod
    def _reset(conn: Any) -> bool:
        """Make an idle connection what a new one is; False if it is not idle or cannot be."""
        from psycopg.pq import TransactionStatus
        from sqlalchemy.dialects.postgresql.psycopg import _log_notices

        if conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
            return False
        try:
            conn.autocommit = True  # DISCARD ALL cannot run in a transaction
            conn.execute("DISCARD ALL")
            conn._prepared.clear()  # the counts towards preparing a statement start again
            conn.autocommit = False
            conn.isolation_level = conn.read_only = conn.deferrable = None
            with contextlib.suppress(ValueError):
                while True:  # the dialect adds its notice handler to each connection it is given
                    conn.remove_notice_handler(_log_notices)
        except Exception:
            return False
        return True

    def close_all(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
            self._keys.clear()
        for conn in conns:
            conn.close()


@pytest.fixture(scope="session", autouse=True)
def _shared_engine_parts() -> Iterator[None]:
    """Every engine `store.database` makes shares the compiled statements; PostgreSQL engines
    also share the kept connections."""
    from sqlalchemy import event

    from outreach_cli.store import database

    cache = _SharedStatementCache()
    kept = _KeptPgConnections()
    made = database.create_engine

    def create_engine(*args: Any, **kwargs: Any) -> Any:
        engine = made(*args, **kwargs)
        engine._compiled_cache = cache
        if engine.dialect.name == "postgresql":
            dialect = engine.dialect

            @event.listens_for(engine, "do_connect")
            def _connect(_d: Any, _rec: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
                return kept.connect(dialect, cargs, cparams)

            dialect.do_close = kept.close
        return engine

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(database, "create_engine", create_engine)
        yield
    kept.close_all()


_pg_state: dict[str, Any] = {}


def _pg_schema_url() -> str:
    """This run's schema, created and migrated to head once; tests empty it (`_reset_pg`)."""
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
    # Commits do not wait for the WAL to reach the disk (synchronous_commit off): what they wrote
    # is seen by every connection at once, as before; only a crash of the server could lose it.
    url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}%20-csynchronous_commit%3Doff"
    from outreach_cli.store.database import Store

    store = Store(url)
    store.migrate()
    store.engine.dispose()
    _pg_state["url"] = url
    return url


def pytest_sessionfinish(session: Any, exitstatus: Any) -> None:
    conn = _pg_state.pop("conn", None)
    if conn is not None:
        conn.close()
    schema = _pg_state.get("schema")
    if schema:
        import psycopg

        with contextlib.suppress(Exception), psycopg.connect(PG_URL, connect_timeout=5, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            for name in _pg_state.get("snapshots", ()):
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}_{name}" CASCADE')


def pg_url_or_skip() -> str:
    try:
        return _pg_schema_url()
    except RuntimeError as exc:
        if REQUIRE_PG:
            pytest.fail(f"{exc} (OUTREACH_REQUIRE_PG=1 makes this a failure)")
        pytest.skip(str(exc))


def _pg_conn() -> Any:
    """One connection for the resets of the whole run (each reset is one transaction)."""
    if "conn" not in _pg_state:
        import psycopg

        conn = psycopg.connect(_pg_schema_url(), connect_timeout=5)
        schema = _pg_state["schema"]
        rows = conn.execute(
            "SELECT table_name, column_name, pg_get_serial_sequence(quote_ident(table_name), column_name) "
            "FROM information_schema.columns WHERE table_schema = %s AND column_default LIKE 'nextval%%'",
            (schema,),
        ).fetchall()
        (superuser,) = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() or (False,)
        conn.rollback()
        _pg_state["serials"] = sorted((str(t), str(c), str(q)) for t, c, q in rows)
        _pg_state["superuser"] = bool(superuser)
        _pg_state["conn"] = conn
    return _pg_state["conn"]


def _reset_pg(url: str, *, snapshot: str | None = None) -> None:
    """Empty the migrated schema, numbering restarting at 1, as a fresh database would be; with
    ``snapshot``, then copy in the rows of that snapshot (`_snapshot_pg`). A superuser DELETEs
    with triggers (the append-only event log) and foreign-key checks off: on a test's few rows
    that is ten times faster than TRUNCATE."""
    from outreach_cli.store.models import metadata

    assert url == _pg_schema_url()
    conn = _pg_conn()
    schema = _pg_state["schema"]
    tables = [t.name for t in metadata.sorted_tables]  # parents first
    if _pg_state["superuser"]:
        sql = ["SET LOCAL session_replication_role = replica", *(f'DELETE FROM "{t}"' for t in reversed(tables))]
    else:
        sql = ["TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE"]
    if snapshot:
        sql += [f'INSERT INTO "{t}" SELECT * FROM "{schema}_{snapshot}"."{t}"' for t in tables]
    setvals = ", ".join(
        f'setval(\'{seq}\', COALESCE((SELECT max("{c}") FROM "{t}"), 0) + 1, false)'
        for t, c, seq in _pg_state["serials"]
    )
    sql.append(f"SELECT {setvals}")
    with conn.transaction():
        conn.execute("; ".join(sql))  # one round trip (no parameters: the statements go as one query)


def _snapshot_pg(url: str, name: str, build: Callable[[], object]) -> None:
    """Make the schema hold snapshot ``name``: the first time, ``build()`` fills it and its rows
    are kept in the schema `<schema>_<name>`; later, they are copied back."""
    snapshots: set[str] = _pg_state.setdefault("snapshots", set())
    if name not in snapshots:
        from outreach_cli.store.models import metadata

        build()
        conn = _pg_conn()
        snap = f"{_pg_state['schema']}_{name}"
        with conn.transaction():
            conn.execute(f'CREATE SCHEMA "{snap}"')
            for t in metadata.sorted_tables:
                conn.execute(f'CREATE TABLE "{snap}"."{t.name}" AS SELECT * FROM "{t.name}"')
        snapshots.add(name)
    _reset_pg(url, snapshot=name)


_sqlite_state: dict[str, Path] = {}


@pytest.fixture(scope="session", autouse=True)
def _template_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    _sqlite_state["dir"] = tmp_path_factory.mktemp("template")


def copy_built_once(name: str, build: Callable[[Path], object], target: Path) -> None:
    """Copy to ``target`` the SQLite file ``build(path)`` makes, built once per run (in the
    first test that asks, so under that test's isolated environment) and copied for each test."""
    if name not in _sqlite_state:
        path = _sqlite_state["dir"] / name
        build(path)
        _sqlite_state[name] = path
    assert not target.exists(), target
    shutil.copyfile(_sqlite_state[name], target)


def initialized(url: str) -> Cli:
    """A Cli on ``url`` holding what `outreach init` creates (schema, shipped rule sets,
    secret). `init` runs once per run and database kind; each test gets a copy of the result
    (tests of `init` itself run it)."""
    if url.startswith("sqlite:///"):
        copy_built_once("init.db", lambda p: Cli(f"sqlite:///{p}").ok("init"), Path(url[len("sqlite:///") :]))
    else:
        _snapshot_pg(url, "init", lambda: (_reset_pg(url), Cli(url).ok("init")))
    return Cli(url)


def prepared(
    url: str, name: str, build: Callable[[Cli, Path], object], *, restored: Callable[[Cli], object] | None = None
) -> Cli:
    """A Cli on ``url`` holding what ``build(cli, directory)`` makes on an initialized database
    (``directory`` for its input files), built once per run and database kind: on SQLite the
    file is copied for each test; on PostgreSQL the rows are copied back from a snapshot
    (`_snapshot_pg`), and then ``restored(cli)`` runs, if given. Rows copied back reach the
    planner otherwise than the build left them (no statistics, the trigram index's pending
    list full): a test that needs the build's end state redoes it there (`plans.explain`
    analyses the tables before every plan in any case)."""
    import tempfile

    if url.startswith("sqlite:///"):

        def build_in(path: Path) -> None:
            build(initialized(f"sqlite:///{path}"), Path(tempfile.mkdtemp(dir=_sqlite_state["dir"])))

        copy_built_once(f"{name}.db", build_in, Path(url[len("sqlite:///") :]))
        return Cli(url)
    _snapshot_pg(url, name, lambda: build(initialized(url), Path(tempfile.mkdtemp(dir=_sqlite_state["dir"]))))
    cli = Cli(url)
    if restored is not None:
        restored(cli)
    return cli


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database that does not exist yet (SQLite), or an empty migrated schema (PostgreSQL)."""
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


@dataclass
class Terminal:
    """Which streams a command sees as a terminal (none: run from a pipe, as cron does), and
    optionally the stdin it reads (default: the call's `input`)."""

    stdin: bool = False
    stdout: bool = False
    stderr: bool = False
    no_color_env: bool = False
    stdin_stream: TextIO | None = None


class Cli:
    """Runs the real command line in-process with an Environment given explicitly: a pipe, or
    the terminal set in ``self.terminal`` (which then holds for the next calls)."""

    def __init__(self, db: str, now: str | None = NOW, terminal: Terminal | None = None) -> None:
        self.db = db
        self.now = now
        self.terminal = terminal or Terminal()

    def __call__(self, *args: str, input: str | bytes | None = None, now: str | None = None, db: bool = True) -> Result:
        from outreach_cli.cli.app import run
        from outreach_cli.cli.env import Environment

        argv: list[str] = []
        if db:
            argv += ["--db", self.db]
        if now or self.now:
            argv += ["--now", now or self.now or ""]
        argv += list(args)
        data = input.encode() if isinstance(input, str) else (input or b"")
        out, err = io.StringIO(), io.StringIO()
        old = sys.stdin, sys.stdout, sys.stderr
        stdin = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
        t = self.terminal
        env = Environment(
            stdin=stdin if t.stdin_stream is None else t.stdin_stream,
            stdout=out,
            stderr=err,
            stdin_isatty=t.stdin,
            stdout_isatty=t.stdout,
            stderr_isatty=t.stderr,
            no_color_env=t.no_color_env,
        )
        # Click's own messages (usage errors, help) go to the process streams: capture those too.
        sys.stdin = stdin
        sys.stdout, sys.stderr = out, err
        try:
            code = run(argv, env)
        finally:
            sys.stdin, sys.stdout, sys.stderr = old
        return Result(code, out.getvalue(), err.getvalue())

    def ok(self, *args: str, **kw: Any) -> Result:
        r = self(*args, **kw)
        assert r.code == 0, r
        return r


@pytest.fixture
def cli(db_url: str) -> Cli:
    """The command line on an initialized database (as after `outreach init`), on SQLite and on
    PostgreSQL."""
    return initialized(db_url)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def terminal(cli: Cli, monkeypatch: pytest.MonkeyPatch, columns: int) -> None:
    """The next commands of ``cli`` run as on a terminal `columns` wide."""
    cli.terminal = Terminal(stdout=True, stderr=True, no_color_env=True)
    monkeypatch.setenv("COLUMNS", str(columns))
