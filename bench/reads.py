"""Read commands against their floor (SPEC section 12, issue 13): `python -m bench.reads DB`.

Each read command runs as a whole process, median of N runs, wall and CPU (user + sys of the
process). Its floor is `python -c "import typer, sqlalchemy"` plus the equivalent raw SQL in
the `sqlite3` shell, both measured in the same run; the target is the command within 1.15x of
that floor (`metrics --all` at most 0.5 s). Prints a Markdown table for bench/RESULTS.md.
The machine may be shared: the load average is printed with the table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

NOW = "2026-11-02T15:00:00Z"
OPEN = "('active','paused','expired','will-fail','failed')"
SET_ROW = (
    "SELECT s.id, s.status, s.amount_outstanding_cents, p.patient_id, p.first_name, p.last_name, p.phone "
    "FROM invoice_set s JOIN patient p ON p.id = s.patient_pk WHERE "
)
# The raw equivalents read what the command reads: the tally kept at write time (migration
# 0022), and for the aging each boundary day's sets from the (status, created_at) index.
TALLY = "SELECT status, sum(sets), sum(cents) FROM set_tally GROUP BY status"
AGING = " UNION ALL ".join(
    f"SELECT status, sum(sets), sum(cents) FROM set_tally WHERE status IN {OPEN} AND day < '{b[:10]}' GROUP BY status"
    f" UNION ALL SELECT status, count(*), sum(amount_outstanding_cents) FROM invoice_set WHERE status IN {OPEN}"
    f" AND created_at >= '{b[:10]}' AND created_at <= '{b}' GROUP BY status"
    for b in ("2026-11-02 15:00", "2026-10-02 15:00", "2026-09-02 15:00", "2026-08-03 15:00", "2026-07-04 15:00")
)
WRITTEN_OFF = (
    "SELECT sum(amount_cents) FROM charge WHERE status = 'written-off'; SELECT sum(amount_cents) FROM"
    " payment_allocation WHERE charge_pk IN (SELECT id FROM charge WHERE status = 'written-off');"
    " SELECT count(DISTINCT patient_pk), sum(unapplied_cents) FROM payment WHERE unapplied_cents > 0"
)
READS: list[tuple[list[str], str, float | None]] = [  # args, raw SQL, absolute target (s)
    (["metrics"], TALLY + ";", None),
    (["metrics", "--all"], f"{TALLY}; {AGING}; {WRITTEN_OFF};", 0.5),
    (["list", "--limit", "50"], SET_ROW + f"s.status IN {OPEN} ORDER BY s.next_send_at LIMIT 50;", None),
    (["list", "--status", "failed", "--limit", "50"], SET_ROW + "s.status = 'failed' LIMIT 50;", None),
    (
        ["list", "--search", "smith", "--limit", "50"],
        SET_ROW + f"s.status IN {OPEN} AND p.id IN (SELECT rowid FROM patient_search WHERE patient_search"
        " MATCH '\"smith\"') ORDER BY s.next_send_at LIMIT 50;",
        None,
    ),
    (
        ["list", "--search", "5550142", "--limit", "50"],
        SET_ROW + f"s.status IN {OPEN} AND p.id IN (SELECT rowid FROM patient_search WHERE patient_search"
        " MATCH '\"5550142\"') ORDER BY s.next_send_at LIMIT 50;",
        None,
    ),
    (
        ["show", "4242", "--format", "json"],
        "SELECT * FROM invoice_set WHERE id = 4242; SELECT * FROM charge WHERE invoice_set_id = 4242;"
        " SELECT * FROM send WHERE invoice_set_id = 4242; SELECT * FROM event WHERE invoice_set_id = 4242;",
        None,
    ),
    (["audit", "--limit", "50"], "SELECT * FROM event ORDER BY at DESC, id DESC LIMIT 50;", None),
]


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + sys) seconds of one process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read() if p.stderr else b""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err.decode()}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("db")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    # Installed packages carry their bytecode; a checkout run with PYTHONDONTWRITEBYTECODE would
    # compile outreach's own modules on every run, which no installed outreach does.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(root, "outreach_cli")], check=True)
    load0 = os.getloadavg()
    floor_cmd = [sys.executable, "-c", "import typer, sqlalchemy"]
    print(f"Load average at start {load0[0]:.2f}. Each command's runs alternate with runs of its floor")
    print("(`import typer, sqlalchemy`) and of its raw SQL, so a change in the machine's speed moves")
    print(f"all three alike. Median of {a.runs}; target: CPU within 1.15x of floor + raw.\n")
    print("| command | wall | CPU | floor + raw (wall / CPU) | CPU / (floor + raw) | verdict |")
    print("|---|---:|---:|---:|---:|---|")
    for args, sql, absolute in READS:
        cmd = [sys.executable, "-m", "outreach_cli", "--db", a.db, "--now", NOW, *args]
        got: dict[str, list[tuple[float, float]]] = {"cmd": [], "floor": [], "raw": []}
        for _ in range(a.runs):
            got["floor"].append(run(floor_cmd))
            got["cmd"].append(run(cmd))
            got["raw"].append(run(["sqlite3", a.db, sql]))
        (wall, cpu), floor, raw = (
            (statistics.median(w for w, _ in got[k]), statistics.median(c for _, c in got[k]))
            for k in ("cmd", "floor", "raw")
        )
        bound = (floor[0] + raw[0], floor[1] + raw[1])
        ratio = cpu / bound[1]
        ok = ratio <= 1.15 if absolute is None else cpu <= absolute  # `metrics --all`: its own target
        print(
            f"| {' '.join(args)} | {wall:.3f} s | {cpu:.3f} s | {bound[0]:.3f} / {bound[1]:.3f} s"
            f" | {ratio:.2f}x | {'met' if ok else 'not met'}{f' (target {absolute} s)' if absolute else ''} |",
            flush=True,
        )
    print(f"\nLoad average at the end {os.getloadavg()[0]:.2f}.")


if __name__ == "__main__":
    main()
