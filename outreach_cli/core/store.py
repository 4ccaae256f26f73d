"""Engine and connection setup, schema migrations and the schema-version check (SPEC section 10).

SQLite: WAL, foreign keys, a busy timeout, and `BEGIN IMMEDIATE` for write transactions so two
writers queue instead of failing. PostgreSQL: psycopg 3.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from outreach_cli.core.errors import ConfigError, TemporaryFailure

BUSY_TIMEOUT_MS = 30_000

_REV = re.compile(r"^(down_revision|revision)\b[^=]*=\s*['\"]?([\w-]*)['\"]?", re.M)


def schema_head() -> str:
    """The Alembic head of the shipped migrations, read from `db/versions` without importing
    Alembic (read commands stay fast): the one revision no other revision names as its parent."""
    import outreach_db.versions as versions

    revisions: set[str] = set()
    parents: set[str] = set()
    for path in Path(versions.__file__).parent.glob("*.py"):
        found = dict(_REV.findall(path.read_text(encoding="utf-8")))
        if found.get("revision"):
            revisions.add(found["revision"])
            if found.get("down_revision"):
                parents.add(found["down_revision"])
    heads = sorted(revisions - parents)
    if len(heads) != 1:
        raise RuntimeError(f"db/versions must have exactly one head, found {heads}")
    return heads[0]


SCHEMA_HEAD = schema_head()


def mask_url(url: str) -> str:
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def engine_url(url: str) -> str:
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(url: str) -> Engine:
    url = engine_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1] if "///" in url else ""
        if path and path != ":memory:":
            parent = Path(path).parent
            if not parent.exists():
                raise ConfigError(
                    f"database directory {parent} does not exist; create it or fix --db / OUTREACH_DATABASE"
                )
        eng = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

        @event.listens_for(eng, "connect")
        def _on_connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(eng, "begin")
        def _on_begin(conn: Connection) -> None:
            if conn.get_execution_options().get("immediate"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")

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
    return ConfigError(
        f"cannot open database {mask_url(url)}: {str(getattr(exc, 'orig', exc)).strip().splitlines()[0]}; "
        "check --db / OUTREACH_DATABASE"
    )


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise _translate(exc, self.url) from exc

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One transaction; on SQLite a `BEGIN IMMEDIATE` one (writers queue, readers go on)."""
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(immediate=True)
                with conn.begin():
                    yield conn
        except OperationalError as exc:
            raise _translate(exc, self.url) from exc

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
        except OperationalError as exc:
            raise _translate(exc, self.url) from exc

    def check_schema(self) -> None:
        rev = self.current_revision()
        if rev is None:
            raise ConfigError(f"database {mask_url(self.url)} has no outreach schema; run `outreach init`")
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
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(outreach_db.__file__).parent))
        try:
            with self.engine.connect() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                conn.commit()
        except OperationalError as exc:
            raise _translate(exc, self.url) from exc
        return before, SCHEMA_HEAD

    # --- meta values (the generated secret) -------------------------------------------------

    def get_meta(self, conn: Connection, key: str) -> str | None:
        from outreach_cli.core.models import meta_t as t

        row = conn.execute(select(t.c.value).where(t.c.key == key)).first()
        return row[0] if row else None

    def ensure_secret(self) -> bool:
        """Generate and keep the payment-link secret when none is stored. True if created."""
        from outreach_cli.core.models import meta_t as t

        with self.write() as conn:
            if self.get_meta(conn, "secret") is None:
                conn.execute(t.insert().values(key="secret", value=secrets.token_urlsafe(32)))
                return True
        return False


def open_store(url: str, *, check_schema: bool = True) -> Store:
    store = Store(url)
    if check_schema:
        store.check_schema()
    return store
