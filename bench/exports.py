"""Exports and bulk actions at scale (SPEC section 12): `list --status all --format jsonl|csv|tsv`
(<= 10 s, <= 100 MB) and `act pause -` on 100,000 IDs (<= 3 s), whole processes, median of 5.

Part of `python -m bench`; alone: `python -m bench.exports --db PATH [--runs 5] [--skip act]`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.__main__ import outreach, sql_time


def timed_cpu(cmd: list[str], *, stdin: bytes | None = None) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + sys) and peak RSS (KB) of one process that must succeed."""
    t0 = time.perf_counter()
    p = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if stdin is not None:
        assert p.stdin is not None
        p.stdin.write(stdin)
        p.stdin.close()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed: {' '.join(cmd)}")
    return wall, usage.ru_utime + usage.ru_stime, int(usage.ru_maxrss)


EXPORT_HEADER = [
    "",
    "## Exports and bulk actions",
    "",
    "Whole process, median of the runs (wall and CPU = user + sys), the largest peak RSS, and the",
    "1-minute load average before the first and after the last run (2 cores: above 2, wall times",
    "include waiting for a core; CPU time is the fairer figure then).",
    "",
    "| command (1M sets) | target | wall | CPU | peak RSS | load | runs | verdict |",
    "|---|---|---:|---:|---:|---|---:|---|",
]


def _figure(
    name: str, target_s: float, target_mb: float | None, runs: list[tuple[float, float, int]], load: str
) -> str:
    wall = statistics.median(r[0] for r in runs)
    cpu = statistics.median(r[1] for r in runs)
    rss = max(r[2] for r in runs) / 1024
    ok = wall <= target_s and (target_mb is None or rss <= target_mb)
    cpu_ok = cpu <= target_s and (target_mb is None or rss <= target_mb)
    verdict = "met" if ok else "met in CPU time, not in wall time (load)" if cpu_ok else "not met"
    target = f"<= {target_s:g} s" + (f", <= {target_mb:g} MB" if target_mb else "")
    print(f"{name}: wall {wall:.2f}s cpu {cpu:.2f}s rss {rss:.0f} MB load {load}", file=sys.stderr)
    return f"| {name} | {target} | {wall:.2f} s | {cpu:.2f} s | {rss:.0f} MB | {load} | {len(runs)} | {verdict} |"


def _load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def export_figures(db: Path, runs: int, formats: tuple[str, ...] = ("jsonl", "csv", "tsv")) -> list[str]:
    """`list --status all --format jsonl|csv|tsv` over every set (SPEC 12: <= 10 s, <= 100 MB)."""
    lines = []
    for fmt in formats:
        load = _load()
        got = [timed_cpu(outreach(db, "list", "--status", "all", "--format", fmt)) for _ in range(runs)]
        lines.append(_figure(f"list --status all --format {fmt}", 10, 100, got, f"{load}-{_load()}"))
    raw = sql_time(db, "SELECT s.*, p.* FROM invoice_set s JOIN patient p ON p.id = s.patient_pk;", 1)
    lines.append(f"| raw export in the `sqlite3` shell (no order, no formatting) | | {raw:.2f} s | | | | 1 | |")
    return lines


def act_figures(db: Path, tmp: Path, runs: int) -> list[str]:
    """`act pause -` on 100,000 IDs from stdin, events included (SPEC 12: <= 3 s). Each run on a
    fresh 100,000 active sets of one copy of the database."""
    copy = tmp / "act.db"
    shutil.copy(db, copy)
    load, got = _load(), []
    for _ in range(runs):
        ids = subprocess.run(
            ["sqlite3", str(copy), "SELECT id FROM invoice_set WHERE status='active' ORDER BY id LIMIT 100000;"],
            capture_output=True,
            check=True,
        ).stdout
        got.append(timed_cpu(outreach(copy, "act", "pause", "-"), stdin=ids))
    return [_figure("act pause - (100,000 IDs from stdin)", 3, None, got, f"{load}-{_load()}")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--db", required=True, help="a database made by bench/generate.py")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--skip", default="", help="comma list: export,act")
    ap.add_argument("--formats", default="jsonl,csv,tsv")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    lines = [] if "export" in skip else export_figures(Path(a.db), a.runs, tuple(a.formats.split(",")))
    if "act" not in skip:
        tmp = Path(tempfile.mkdtemp(prefix="outreach-bench-", dir=Path(a.db).parent))
        try:
            lines += act_figures(Path(a.db), tmp, a.runs)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print("\n".join(EXPORT_HEADER + lines))


if __name__ == "__main__":
    main()
