"""Engine and connection setup, schema migrations and the schema-version check (SPEC section 10).

SQLite: WAL, foreign keys, a busy timeout, and `BEGIN IMMEDIATE` for write transactions so two
writers queue instead of failing. PostgreSQL: psycopg 3.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DatabaseError, OperationalError, ProgrammingError

from outreach_cli.domain.errors import ConfigError, TemporaryFailure

BUSY_TIMEOUT_MS = 30_000

_REV = re.compile(r"^(down_revision|revision)\b[^=]*=\s*['\"]?([\w-]*)['\"]?", re.M)


@functools.cache
def _revisions() -> tuple[frozenset[str], frozenset[str]]:
    import outreach_db.versions as versions

    revisions: set[str] = set()
    parents: set[str] = set()
    for path in Path(versions.__file__).parent.glob("*.py"):
        found = dict(_REV.findall(path.read_text(encoding="utf-8")))
        if found.get("revision"):
            revisions.add(found["revision"])
            if found.get("down_revision"):
                parents.add(found["down_revision"])
    return frozenset(revisions), frozenset(parents)


def schema_head() -> str:
    """The Alembic head of the shipped migrations, read from `db/versions` without importing
    Alembic (read commands stay fast): the one revision no other revision names as its parent."""
    revisions, parents = _revisions()
    heads = sorted(revisions - parents)
    if len(heads) != 1:
        raise RuntimeError(f"db/versions must have exactly one head, found {heads}")
    return heads[0]


SCHEMA_HEAD = schema_head()
KNOWN_REVISIONS = frozenset(_revisions()[0])
SQLITE_HEADER = b"SQLite format 3\x00"


def newer_schema_error(rev: str) -> ConfigError:
    return ConfigError(
        f"the database schema is at revision {rev}, created by a newer outreach (this one knows up to "
        f"{SCHEMA_HEAD}); upgrade outreach"
    )


def sqlite_path(url: str) -> str | None:
    """The file of an SQLite URL (`~` expanded); None for in-memory or non-SQLite URLs."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[1] if "///" in url else ""
    path = path.split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return os.path.expanduser(path)


def check_sqlite_file(path: str, *, create: bool) -> bool:
    """Check an SQLite file before opening it. Returns True when it must be opened read-only
    (the file or its directory is not writable). Raises ConfigError naming the problem."""
    parent = Path(path).parent
    if not parent.exists():
        raise ConfigError(f"database directory {parent} does not exist; create it or fix --db / OUTREACH_DATABASE")
    if not os.path.exists(path):
        if create:
            return False
        raise ConfigError(f"no database at {path}; run `outreach init` (or check --db / OUTREACH_DATABASE)")
    if os.path.isdir(path):
        raise ConfigError(f"{path} is a directory, not an SQLite database; check --db / OUTREACH_DATABASE")
    try:
        with open(path, "rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except PermissionError:
        raise ConfigError(f"cannot read the database {path}: permission denied") from None
    if header and header != SQLITE_HEADER:
        raise ConfigError(f"{path} is not an SQLite database; check --db / OUTREACH_DATABASE")
    return not os.access(path, os.W_OK) or not os.access(parent, os.W_OK)


def mask_url(url: str) -> str:
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def engine_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _connect_readonly(uri: str, path: str) -> sqlite3.Connection:
    """A database this user may not write (a reporting account, a copy on read-only media).

    With no `-wal`/`-shm` beside it (every outreach command that writes checkpoints and removes
    them when it ends), the file is read as it is (`immutable`): nothing is created, so the
    reader can never leave files behind that the owner's cron jobs cannot write. With them (a
    writer is running), read through them read-only; where SQLite cannot, read the file as it is
    on disk at this moment (decision: a reporting copy may lag a write in progress)."""
    if any(os.path.exists(path + suffix) for suffix in ("-wal", "-shm")):
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError as exc:
            if not any(k in str(exc) for k in ("unable to open", "readonly", "read-only")):
                raise
            conn.close()
    return sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)


def make_engine(url: str, *, readonly: bool = False, on_lock_wait: Callable[[], None] | None = None) -> Engine:
    url = engine_url(url)
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        kwargs: dict[str, Any] = {}
        if path and readonly:
            # A read-only file or directory (a reporting account, a copy on read-only media):
            # open it read-only so reads work; writes fail with a clear message (_translate).
            from urllib.parse import quote

            uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
            kwargs["creator"] = lambda: _connect_readonly(uri, path)
        elif path and "~" in url:
            url = url.replace(url.split("///", 1)[1].split("?", 1)[0], path, 1)
        eng = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}, **kwargs)

        @event.listens_for(eng, "connect")
        def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            if not readonly:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(eng, "begin")
        def _on_begin(conn: Connection) -> None:
            if not conn.get_execution_options().get("immediate"):
                conn.exec_driver_sql("BEGIN")
                return
            if on_lock_wait is None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            # Say so when another writer holds the lock, instead of waiting silently.
            conn.exec_driver_sql("PRAGMA busy_timeout=300")
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except OperationalError as exc:
                if "locked" not in str(exc).lower():
                    raise
                on_lock_wait()
                conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS - 300}")
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            finally:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

        return eng
    if url.startswith("postgresql"):
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    raise ConfigError(
        f"unsupported database URL {mask_url(url)!r}: use sqlite:///path.db, a bare path, or postgresql://..."
    )


def _translate(exc: Exception, url: str) -> Exception:
    msg = str(exc).lower()
    if "database is locked" in msg or "could not obtain lock" in msg or "deadlock" in msg:
        return TemporaryFailure("the database stayed locked too long; try again (it is safe to retry)")
    path = sqlite_path(url)
    if "readonly database" in msg or "read-only" in msg:
        return ConfigError(
            f"the database {path or mask_url(url)} (or its directory) is read-only: this command writes; "
            "run it as a user who can write there"
        )
    if "file is not a database" in msg:
        return ConfigError(f"{path or mask_url(url)} is not an SQLite database; check --db / OUTREACH_DATABASE")
    return ConfigError(
        f"cannot open database {mask_url(url)}: {str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}; "
        "check --db / OUTREACH_DATABASE"
    )


class Store:
    def __init__(self, url: str, *, create: bool = True, on_lock_wait: Callable[[], None] | None = None) -> None:
        self.url = url
        path = sqlite_path(engine_url(url))
        self.readonly = check_sqlite_file(path, create=create) if path else False
        self.engine = make_engine(url, readonly=self.readonly, on_lock_wait=on_lock_wait)
        self.dialect = self.engine.dialect.name
        self._kept: tuple[bool, bool, bool] | None = None  # has the schema the tables of migrations 0020-0022?

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                with conn.begin():
                    yield conn
        except DatabaseError as exc:
            raise _translate(exc, self.url) from exc

    @contextmanager
    def read_together(self, n: int) -> Iterator[list[Connection]]:
        """Up to ``n`` connections, each in a read transaction of the same snapshot, for reads
        that can run side by side (`report`). SQLite: their transactions begin while this process
        holds the write lock, for a moment, so no commit can fall between them; when the lock is
        not free at once (a writer at work, a read-only file), one connection (`read`).
        PostgreSQL: repeatable-read transactions, the others importing the first's exported
        snapshot (`SET TRANSACTION SNAPSHOT`)."""
        if self.readonly or n < 2:
            with self.read() as conn:
                yield [conn]
            return
        begin = self._begin_together if self.dialect == "sqlite" else self._begin_exported
        try:
            with ExitStack() as stack:
                conns = begin(stack, n)
                yield conns
        except DatabaseError as exc:
            raise _translate(exc, self.url) from exc

    def _begin_exported(self, stack: ExitStack, n: int) -> list[Connection]:
        conns: list[Connection] = []
        snapshot = ""
        for _ in range(n):
            c = stack.enter_context(self.engine.connect()).execution_options(isolation_level="REPEATABLE READ")
            stack.enter_context(c.begin())
            c.exec_driver_sql("SET TRANSACTION READ ONLY")
            if conns:
                c.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            else:
                snapshot = str(c.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one())
            conns.append(c)
        return conns

    def _begin_together(self, stack: ExitStack, n: int) -> list[Connection]:
        first = stack.enter_context(self.engine.connect())
        stack.enter_context(first.begin())
        lock = self.engine.raw_connection()  # plain sqlite3: outside SQLAlchemy's transactions
        try:
            lock.execute("PRAGMA busy_timeout = 0")
            try:
                lock.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:  # a writer holds the lock: read on one connection
                return [first]
            conns = [first]
            conns += [stack.enter_context(self.engine.connect()) for _ in range(n - 1)]
            for c in conns[1:]:
                stack.enter_context(c.begin())
            for c in conns:  # a read begins each one's snapshot
                c.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
            lock.execute("ROLLBACK")
            return conns
        finally:
            lock.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            lock.close()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One transaction; on SQLite a `BEGIN IMMEDIATE` one (writers queue, readers go on)."""
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(immediate=True)
                with conn.begin():
                    yield conn
                    self._refresh_kept(conn)
        except DatabaseError as exc:
            raise _translate(exc, self.url) from exc

    def _refresh_kept(self, conn: Connection) -> None:
        """Recompute what the report keeps (store/attribution.py, store/reach.py) of the sets this
        transaction marked stale, and on PostgreSQL fold metrics' tally (store/tally.py), before
        it commits."""
        if self._kept is None:
            probe = (
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{}'"
                if self.dialect == "sqlite"
                else "SELECT to_regclass('{}')"
            )
            tables = ("report_stale", "reach_stale", "set_tally_delta")
            has = [conn.exec_driver_sql(probe.format(t)).scalar() is not None for t in tables]
            self._kept = (has[0], has[1], has[2] and self.dialect == "postgresql")
        if self._kept[0]:
            from outreach_cli.store import attribution

            attribution.refresh(conn)
        if self._kept[1]:
            from outreach_cli.store import reach

            reach.refresh(conn)
        if self._kept[2]:
            from outreach_cli.store import tally

            tally.fold(conn)

    def current_revision(self) -> str | None:
        try:
            with self.engine.connect() as conn:
                try:
                    row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
                except (OperationalError, ProgrammingError) as exc:
                    if "no such table" in str(exc) or "does not exist" in str(exc):
                        return None
                    raise
                return row[0] if row else None
        except DatabaseError as exc:
            raise _translate(exc, self.url) from exc

    def check_schema(self) -> None:
        rev = self.current_revision()
        if rev is None:
            raise ConfigError(f"database {mask_url(self.url)} has no outreach schema; run `outreach init`")
        if rev not in KNOWN_REVISIONS:
            raise newer_schema_error(rev)
        if rev != SCHEMA_HEAD:
            raise ConfigError(
                f"database schema is at revision {rev}, this outreach needs {SCHEMA_HEAD}; run `outreach init`"
            )

    def migrate(self) -> tuple[str | None, str]:
        """Create or upgrade the schema to head. Returns (before, after)."""
        import outreach_db
        from alembic import command
        from alembic.config import Config

        before = self.current_revision()
        if before is not None and before not in KNOWN_REVISIONS:
            raise newer_schema_error(before)
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(outreach_db.__file__).parent))
        try:
            with self.engine.connect() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
        except DatabaseError as exc:
            raise _translate(exc, self.url) from exc
        self._kept = None
        return before, SCHEMA_HEAD

    # --- meta values (the generated secret) -------------------------------------------------

    def get_meta(self, conn: Connection, key: str) -> str | None:
        from outreach_cli.store.meta import get_meta

        return get_meta(conn, key)

    def ensure_secret(self) -> bool:
        """Generate and keep the payment-link secret when none is stored. True if created."""
        from outreach_cli.store.models import meta_t as t

        with self.write() as conn:
            if self.get_meta(conn, "secret") is None:
                conn.execute(t.insert().values(key="secret", value=secrets.token_urlsafe(32)))
                return True
        return False


def open_store(
    url: str,
    *,
    check_schema: bool = True,
    create: bool | None = None,
    on_lock_wait: Callable[[], None] | None = None,
) -> Store:
    """Open the database. A missing SQLite file is created only when `create` (default: when
    the schema is not checked, i.e. for `init`); otherwise it is an error naming the path."""
    store = Store(url, create=(not check_schema) if create is None else create, on_lock_wait=on_lock_wait)
    if check_schema:
        try:
            store.check_schema()
        except BaseException:
            store.engine.dispose()  # the caller never gets the store to close
            raise
    return store
