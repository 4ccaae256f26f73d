"""Where `outreach demo` builds its database, and what it may replace (SPEC section 13).


A demo database carries the mark `created_by = demo` in its `meta` table. `demo` replaces an
existing file only when it carries that mark (or with `--force`): a real database full of
patients is never wiped by a mistyped `--db`. The demo is built in a temporary file next to the
target and renamed over it only when complete, so an interrupted demo leaves the old file (or
nothing), never a half-built database that looks valid.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from outreach_cli.domain.errors import InvalidInput

if TYPE_CHECKING:
    from outreach_cli.store.database import Store

MARK_KEY = "created_by"
MARK_VALUE = "demo"
SUFFIXES = ("", "-wal", "-shm", "-journal")


def building_path(path: str) -> str:
    p = Path(path)
    return str(p.with_name(f".{p.name}.demo-building"))


def is_demo_database(path: str) -> bool:
    """True when the SQLite file carries the demo mark (read without changing the file)."""
    from urllib.parse import quote

    try:
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (MARK_KEY,)).fetchone()
    except sqlite3.Error:
        return False
    finally:
        conn.close()
    return bool(row) and row[0] == MARK_VALUE


def prepare(path: str, *, force: bool) -> str:
    """Check that `path` may be (re)placed by a demo; return the temporary file to build in."""
    if os.path.isdir(path):
        raise InvalidInput(f"{path} is a directory; pass --db PATH.db for the demo database")
    parent = Path(path).parent
    if not parent.is_dir():
        raise InvalidInput(f"directory {parent} does not exist; create it or choose another --db")
    if os.path.exists(path) and not force and not is_demo_database(path):
        raise InvalidInput(
            f"{path} exists and was not created by `outreach demo`; the demo will not replace it "
            "(choose another --db, or pass --force to replace it and lose its data)"
        )
    tmp = building_path(path)
    remove(tmp)
    return tmp


def mark(store: Store) -> None:
    """Mark a database as made by the demo (first thing after creating the schema)."""
    from outreach_cli.store.models import meta_t as t

    with store.write() as conn:
        conn.execute(t.insert().values(key=MARK_KEY, value=MARK_VALUE))


def finish(store: Store, tmp: str, path: str) -> None:
    """Fold the WAL into the file, close it, and move the finished demo into place."""
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cur.execute("PRAGMA journal_mode=DELETE")
        cur.close()
    finally:
        raw.close()
    store.engine.dispose()
    for suffix in SUFFIXES[1:]:
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    os.replace(tmp, path)
    remove(tmp)


def cleanup(db: str) -> None:
    """Remove the half-built file of an interrupted or failed demo for --db `db`."""
    from outreach_cli.config import database_url

    url = database_url(db)
    if url.startswith("sqlite:///"):
        remove(building_path(url[len("sqlite:///") :]))


def remove(path: str) -> None:
    for suffix in SUFFIXES:
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass
