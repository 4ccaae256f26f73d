"""The report's benchmark (issue 15: `outreach report` at a million sets <= 3 s, with payments).

`python -m bench --only-report` (with `--data DIR` for where the database lives) measures the
report on the generated database after `generate.add_payments` (about a fifth of the sets paid,
so attribution has work to do): whole process, wall and CPU (user + sys of the child), median of 5
runs, beside the same SQL run by the `sqlite3` shell on the same file, and the load average; the
table replaces the report table at the top of bench/RESULTS.md.
"""

from __future__ import annotations

import os
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
SINCE = datetime(2000, 1, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)  # the bench's --now
Row = tuple[str, float, float, tuple[float, float] | None, str]  # name, wall, cpu, raw (wall, cpu), note


def ensure_payments(db: Path) -> int:
    """Add the generator's payments once (a database generated before them has none)."""
    from bench.generate import add_payments

    con = sqlite3.connect(db)
    try:
        if con.execute("SELECT count(*) FROM payment").fetchone()[0]:
            return int(
                con.execute(
                    "SELECT count(DISTINCT c.invoice_set_id) FROM payment_allocation a"
                    " JOIN charge c ON c.id = a.charge_pk"
                ).fetchone()[0]
            )
        n = add_payments(con)
        con.commit()
        # Written beside the store: its next write recomputes the attribution kept for the report
        # (store/attribution.py), as the first command after them would.
        from outreach_cli.store.database import Store

        with Store(f"sqlite:///{db}").write():
            pass
        con.execute("ANALYZE")
        con.commit()
        return n
    finally:
        con.close()


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + sys) of one process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        assert p.stderr is not None
        raise SystemExit(f"command failed: {' '.join(cmd)}\n{p.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def median_of(cmd: list[str], runs: int) -> tuple[float, float, list[float]]:
    walls, cpus = [], []
    for _ in range(runs):
        w, c = run(cmd)
        walls.append(w)
        cpus.append(c)
    return statistics.median(walls), statistics.median(cpus), walls


def raw_sql(db: Path) -> str:
    """The report's own statements (the SQL path of `report_queries`), for the sqlite3 shell."""
    from sqlalchemy import create_engine
    from sqlalchemy.dialects import sqlite

    from outreach_cli.store import report_queries as rq

    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        names = dict(conn.execute(rq.select(rq.rule_set_t.c.id, rq.rule_set_t.c.name)).all())
        sc = rq._Scope("sqlite", SINCE, UNTIL, ZoneInfo("UTC"), names, None, None, None)
        # The reach kept at write time (store/reach.py): nothing is marked stale after a write.
        queries = [rq._kept_reach_query(conn, sc, False)]
        queries.append(rq._messages_query(conn, sc))
        queries.append(rq._whole_query(conn, sc))
    since, until = (t.strftime("'%Y-%m-%d %H:%M:%S.%f'") for t in (SINCE, UNTIL))
    out = ["PRAGMA mmap_size = 4294967296;"]
    for q in queries:
        out.append(str(q.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True})) + ";")
    for kept in (True, False):  # last touch: what is kept, then the sets it does not cover afresh
        paid = rq._paid_sql(sc, 7, "last", None, 3600, kept, stale=False)
        out.append(paid.replace(":since", since).replace(":until", until) + ";")
    return "\n".join(out)


def measure(db: Path, runs: int, outreach: Callable[..., list[str]]) -> list[Row]:
    rows: list[Row] = []
    for name, args in (
        ("report --since 2000-01-01 --format json", ["report", "--since", "2000-01-01", "--format", "json"]),
        ("report --since 2000-01-01 (default table form)", ["report", "--since", "2000-01-01"]),
    ):
        wall, cpu, walls = median_of(outreach(db, *args), runs)
        raw = None
        if "json" in name:
            raw = median_of(["sqlite3", str(db), raw_sql(db)], runs)[:2]
        note = f"runs {', '.join(f'{w:.2f}' for w in sorted(walls))} s; load {_load()}"
        rows.append((name, wall, cpu, raw, note))
        print(f"{name:<50} {wall:7.3f}s wall {cpu:7.3f}s cpu" + (f"  raw {raw}" if raw else ""), file=sys.stderr)
    return rows


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def write_table(rows: list[Row], paid_sets: int, n: int) -> None:
    """Replace the report table at the top of RESULTS.md (the rest of the file stays)."""
    lines = [
        f"The report (issue 15), measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m bench --only-report`"
        f" on the {n:,}-set database with {paid_sets:,} sets paid (`generate.add_payments`): whole process,"
        " median of 5, wall and CPU (user + sys); raw SQL = the report's own statements run by the `sqlite3`"
        " shell on the same file. Load average (1 / 5 / 15 min) in the notes.",
        "",
        "| measurement | outreach wall | outreach CPU | raw SQL wall | raw SQL CPU | CPU ratio | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, wall, cpu, raw, note in rows:
        r = f"{raw[0]:.3f} s | {raw[1]:.3f} s | {cpu / raw[1]:.1f}x" if raw else " | | "
        lines.append(f"| {name} | {wall:.3f} s | {cpu:.3f} s | {r} | {note} |")
    path = HERE / "RESULTS.md"
    text = path.read_text()
    block = "\n".join(lines) + "\n"
    pattern = re.compile(r"The report \(issue 15\)[^\n]*\n\n(?:\|[^\n]*\n)+")
    text = pattern.sub(lambda _: block, text, count=1) if pattern.search(text) else text + "\n" + block
    path.write_text(text)
    print(f"wrote the report table of {path}", file=sys.stderr)
