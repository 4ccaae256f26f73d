"""The scale benchmark (SPEC section 12): `python -m bench` (or `make bench`).

Measures whole `outreach` processes (median of several runs) on a generated SQLite database of
1,000,000 invoice sets, runs the equivalent raw SQL with the `sqlite3` shell on the same file for
a ratio (the tool's overhead over the database itself), and writes bench/RESULTS.md.
`python -m bench --pg` runs the same measurements on PostgreSQL (bench/pg.py) and writes the
PostgreSQL section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOW = "2026-11-02T15:00:00Z"
OPEN = "('active','paused','expired','will-fail','failed')"


def timed(cmd: list[str], *, env: dict[str, str] | None = None, stdin: bytes | None = None) -> tuple[float, int, int]:
    """Wall seconds, peak RSS (KB) and exit code of one process (os.wait4 gives its own rusage)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(
        cmd,
        env=env,
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
    return wall, int(usage.ru_maxrss), os.waitstatus_to_exitcode(status)


def median(cmd: list[str], runs: int, **kw: object) -> tuple[float, int]:
    walls, rss = [], []
    for _ in range(runs):
        w, r, code = timed(cmd, **kw)  # type: ignore[arg-type]
        if code != 0:
            raise SystemExit(f"command failed ({code}): {' '.join(cmd)}")
        walls.append(w)
        rss.append(r)
    return statistics.median(walls), max(rss)


def sql_time(db: Path, sql: str, runs: int) -> float:
    return median(["sqlite3", str(db), sql], runs)[0]


def outreach(db: Path | str, *args: str) -> list[str]:
    return [sys.executable, "-m", "outreach_cli", "--db", str(db), "--now", NOW, *args]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sets", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--pg",
        nargs="?",
        const="postgresql://postgres@127.0.0.1:5432/postgres",
        help="run the benchmark on PostgreSQL instead (optional server URL; database outreach_bench is"
        " created and dropped) and write the PostgreSQL section of RESULTS.md",
    )
    ap.add_argument("--keep-pg", action="store_true", help="keep the outreach_bench database afterwards")
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--skip", default="", help="comma list: import,act,throughput,jsonl,report")
    ap.add_argument("--data", default=str(HERE / "data"), help="where the generated database lives")
    ap.add_argument("--only-report", action="store_true", help="only the report; rewrites its table in RESULTS.md")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    sys.path.insert(0, str(HERE.parent))
    from bench import report_bench
    from bench.generate import generate

    data = Path(a.data)
    data.mkdir(parents=True, exist_ok=True)
    db = data / f"bench-{a.sets}.db"
    if a.regenerate or not db.exists():
        generate(db, a.sets)
    paid_sets = report_bench.ensure_payments(db)  # so the report's attribution has work to do
    if a.pg:  # the same database, payments included, copied into PostgreSQL
        from bench.pg import run_pg

        run_pg(db, a.pg, runs=a.runs, skip=skip, keep=a.keep_pg)
        return
    if a.only_report:
        report_bench.write_table(report_bench.measure(db, max(a.runs, 5), outreach), paid_sets, a.sets)
        return
    rows: list[tuple[str, float, float | None, str]] = []  # name, tool s, raw s, note

    def measure(name: str, args: list[str], sql: str | None, note: str = "") -> None:
        wall, rss = median(outreach(db, *args), a.runs)
        raw = sql_time(db, sql, a.runs) if sql else None
        rows.append((name, wall, raw, note or f"peak RSS {rss / 1024:.0f} MB"))
        print(f"{name:<45} {wall:7.3f}s" + (f"  raw {raw:.3f}s" if raw else ""), file=sys.stderr)

    w, rss = median([sys.executable, "-m", "outreach_cli", "--help"], 5)
    rows.append(("outreach --help", w, None, f"peak RSS {rss / 1024:.0f} MB"))
    print(f"{'--help':<45} {w:7.3f}s", file=sys.stderr)
    # The floor of every read command (SPEC section 12: reads within 1.15x of this plus the query).
    w, rss = median([sys.executable, "-c", "import typer, sqlalchemy"], 5)
    rows.append(('python -c "import typer, sqlalchemy" (startup floor)', w, None, f"peak RSS {rss / 1024:.0f} MB"))
    print(f"{'import typer, sqlalchemy':<45} {w:7.3f}s", file=sys.stderr)
    measure(
        "metrics",
        ["metrics"],
        "SELECT status, count(*), sum(amount_outstanding_cents) FROM invoice_set WHERE status IN ('failed','expired','paused','will-fail') GROUP BY status;",
    )
    measure(
        "metrics --all",
        ["metrics", "--all"],
        "SELECT status, count(*), sum(amount_outstanding_cents) FROM invoice_set GROUP BY status;",
    )
    base = "SELECT s.id, s.status, s.amount_outstanding_cents, p.patient_id, p.first_name, p.last_name, p.phone FROM invoice_set s JOIN patient p ON p.id = s.patient_pk WHERE "
    filters = [
        (
            "list --limit 50 (default: open, by next send)",
            [],
            f"s.status IN {OPEN} ORDER BY s.next_send_at IS NULL, s.next_send_at LIMIT 50",
        ),
        (
            "list --status failed --limit 50",
            ["--status", "failed"],
            "s.status = 'failed' ORDER BY s.next_send_at LIMIT 50",
        ),
        (
            "list --amount 100..500 --limit 50",
            ["--amount", "100..500"],
            f"s.status IN {OPEN} AND s.amount_outstanding_cents BETWEEN 10000 AND 50000 ORDER BY s.next_send_at LIMIT 50",
        ),
        (
            "list --created 2026-06-01..2026-06-30 --limit 50",
            ["--created", "2026-06-01..2026-06-30"],
            f"s.status IN {OPEN} AND s.created_at >= '2026-06-01' AND s.created_at < '2026-07-01' ORDER BY s.next_send_at LIMIT 50",
        ),
        (
            "list --send-time today --limit 50",
            ["--send-time", "today"],
            f"s.status IN {OPEN} AND s.next_send_at >= '2026-11-02' AND s.next_send_at < '2026-11-03' ORDER BY s.next_send_at LIMIT 50",
        ),
        (
            "list --rule-set gentle --limit 50",
            ["--rule-set", "gentle"],
            f"s.status IN {OPEN} AND s.rule_set_id = (SELECT id FROM rule_set WHERE name='gentle') ORDER BY s.next_send_at LIMIT 50",
        ),
        (
            "list --search smith --limit 50",
            ["--search", "smith"],
            f"s.status IN {OPEN} AND p.id IN (SELECT rowid FROM patient_search WHERE patient_search MATCH '\"smith\"')"
            " ORDER BY s.next_send_at LIMIT 50",
        ),
        (
            "list --search 'sofia garcia' --limit 50",
            ["--search", "sofia garcia"],
            f"s.status IN {OPEN} AND p.id IN (SELECT rowid FROM patient_search WHERE patient_search MATCH"
            ' \'"sofia" AND "garcia"\') ORDER BY s.next_send_at LIMIT 50',
        ),
        (
            "list --search sofia123@example (email) --limit 50",
            ["--search", "sofia123@example"],
            f"s.status IN {OPEN} AND p.id IN (SELECT rowid FROM patient_search WHERE patient_search MATCH"
            " '\"sofia123@example\"') ORDER BY s.next_send_at LIMIT 50",
        ),
        (
            "list --search '(617) 555-0142' --limit 50",
            ["--search", "(617) 555-0142"],
            f"s.status IN {OPEN} AND p.phone = '+16175550142' ORDER BY s.next_send_at LIMIT 50",
        ),
        (
            "list --search 5550142 (digits) --limit 50",
            ["--search", "5550142"],
            f"s.status IN {OPEN} AND p.id IN (SELECT rowid FROM patient_search WHERE patient_search MATCH"
            " '\"5550142\"') AND p.phone LIKE '%5550142%' ORDER BY s.next_send_at LIMIT 50",
        ),
        (
            "list --sort amount --desc --limit 50",
            ["--sort", "amount", "--desc"],
            f"s.status IN {OPEN} ORDER BY s.amount_outstanding_cents DESC LIMIT 50",
        ),
        ("list --status all --sort id --limit 50", ["--status", "all", "--sort", "id"], "1 ORDER BY s.id LIMIT 50"),
    ]
    for name, args, where in filters:
        measure(name, ["list", *args, "--limit", "50", "--format", "tsv"], base + where + ";")
    measure(
        "show 4242",
        ["show", "4242", "--format", "json"],
        "SELECT * FROM invoice_set WHERE id = 4242; SELECT * FROM charge WHERE invoice_set_id = 4242;"
        " SELECT * FROM send WHERE invoice_set_id = 4242; SELECT * FROM event WHERE invoice_set_id = 4242;",
    )
    measure("audit --limit 50", ["audit", "--limit", "50"], "SELECT * FROM event ORDER BY at, id LIMIT 50;")

    if "report" not in skip:
        # Every set of the bench database entered in the period, a fifth of them paid; target <= 3 s
        # (issue 15). Median of 5 with CPU time: bench/report_bench.py.
        for name, wall, cpu, raw, note in report_bench.measure(db, max(a.runs, 5), outreach):
            raw_note = f"; raw SQL CPU {raw[1]:.3f} s" if raw else ""
            rows.append((name, wall, raw[0] if raw else None, f"CPU {cpu:.3f} s{raw_note}; {note}; target <= 3 s"))

    from bench.exports import act_figures, export_figures

    exports: list[str] = []
    if "jsonl" not in skip:
        exports += export_figures(db, max(a.runs, 5))

    tmp = Path(tempfile.mkdtemp(prefix="outreach-bench-"))
    try:
        if "act" not in skip:
            exports += act_figures(db, tmp, max(a.runs, 5))
        if "import" not in skip:
            # 1M patients (phones parsed), charges (a new set each) and payments: bench/imports.py.
            from bench.imports import bench_imports

            for r in bench_imports(tmp / "imports", a.sets, a.runs):
                note = f"CPU {r['cpu']:.1f} s, peak RSS {r['rss_mb']:.0f} MB; target {r['target']}: {r['verdict']}"
                rows.append((str(r["name"]), float(r["wall"]), None, note))  # type: ignore[arg-type]
        throughput: list[tuple[str, float, float]] = []
        if "throughput" not in skip:
            throughput.append(run_outreach_throughput(tmp / "tick.db", None, 1, 5000))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_results(rows, throughput, a.sets, exports)


def run_outreach_throughput(sqlite_db: Path | None, pg: str | None, workers: int, n: int) -> tuple[str, float, float]:
    """run-outreach against a local fake Twilio API that takes 50 ms per call, concurrency 16."""
    from bench.generate import generate
    from tests.fakes.twilio_server import ACCOUNT, TOKEN, FakeTwilio

    fake = FakeTwilio(delay=0.05, keep_alive=True).start()  # Twilio's API keeps connections alive
    try:
        if pg:
            db_url = _pg_fresh(pg, n)
        else:
            assert sqlite_db is not None
            generate(sqlite_db, n, due_now=n)
            db_url = f"sqlite:///{sqlite_db}"
        env = dict(
            os.environ,
            OUTREACH_DATABASE=db_url,
            OUTREACH_CHANNELS_SMS="twilio",
            OUTREACH_CHANNELS_EMAIL="sandbox",
            TWILIO_ACCOUNT_SID=ACCOUNT,
            TWILIO_AUTH_TOKEN=TOKEN,
            TWILIO_FROM_NUMBER="+16175550999",
            OUTREACH_TWILIO_BASE_URL=fake.base_url,
            OUTREACH_PRACTICE_NAME="Bench Practice",
            OUTREACH_PRACTICE_PHONE="+16175550999",
        )
        cmd = [sys.executable, "-m", "outreach_cli", "--now", NOW, "run-outreach", "--concurrency", "16"]
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(workers)
        ]
        for p in procs:
            _, err = p.communicate()
            if p.returncode != 0:
                raise SystemExit(err.decode()[-2000:])
        wall = time.perf_counter() - t0
        sent = len([m for m in fake.messages.values()])
        label = f"{'PostgreSQL' if pg else 'SQLite'}, {workers} worker(s), {n:,} due sends"
        print(f"run-outreach {label}: {sent} in {wall:.1f}s = {sent / wall:.0f}/s", file=sys.stderr)
        return label, sent / wall, wall
    finally:
        fake.stop()


def _pg_fresh(url: str, n: int) -> str:
    """A fresh schema with n sets due now, built through the real import path."""
    import uuid

    import psycopg

    schema = f"outreach_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in url else "?"
    db = f"{url}{sep}options=-csearch_path%3D{schema}"
    tmp = Path(tempfile.mkdtemp())
    subprocess.run([sys.executable, "-m", "outreach_cli", "--db", db, "-q", "init"], check=True)
    import csv

    with (tmp / "p.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "first_name", "phone", "phone_type"])
        for i in range(n):
            w.writerow([f"P{i:07d}", "Ann", f"+1617{2000000 + i:07d}", "mobile"])
    with (tmp / "c.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["charge_id", "patient_id", "amount"])
        for i in range(n):
            w.writerow([f"C{i:07d}", f"P{i:07d}", "42.00"])
    subprocess.run(
        [
            sys.executable,
            "-m",
            "outreach_cli",
            "--db",
            db,
            "--now",
            "2026-11-02T14:00:00Z",
            "-q",
            "import",
            "patients",
            str(tmp / "p.csv"),
        ],
        check=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "outreach_cli",
            "--db",
            db,
            "--now",
            "2026-11-02T14:00:00Z",
            "-q",
            "import",
            "charges",
            str(tmp / "c.csv"),
            "--rule-set",
            "final-notice",
        ],
        check=True,
    )
    shutil.rmtree(tmp, ignore_errors=True)
    return db


def write_results(
    rows: list[tuple[str, float, float | None, str]],
    throughput: list[tuple[str, float, float]],
    n: int,
    exports: list[str] | None = None,
) -> None:
    lines = [
        "# Benchmark results",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node() or 'this machine'}: "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"SQLite {subprocess.run(['sqlite3', '--version'], capture_output=True, text=True).stdout.split()[0]}.",
        f"Database: {n:,} invoice sets (with patients, charges, sends and events), generated by `bench/generate.py`.",
        "Each figure is the wall time of a whole process (startup included), median of 3 runs unless noted; the raw",
        "column runs the equivalent SQL with the `sqlite3` shell on the same file; ratio = tool / raw.",
        "",
        "| measurement | outreach | raw SQL | ratio | notes |",
        "|---|---:|---:|---:|---|",
    ]
    for name, wall, raw, note in rows:
        ratio = f"{wall / raw:.1f}x" if raw else ""
        lines.append(f"| {name} | {wall:.3f} s | {f'{raw:.3f} s' if raw else ''} | {ratio} | {note} |")
    if throughput:
        lines += [
            "",
            "run-outreach against a local fake Twilio API taking 50 ms per call, `--concurrency 16` per worker",
            "(ideal: 320 sends/s per worker):",
            "",
            "| setup | sends/s | % of ideal | wall |",
            "|---|---:|---:|---:|",
        ]
        for label, rate, wall in throughput:
            workers = int(label.split(", ")[1].split()[0])
            lines.append(f"| {label} | {rate:.0f} | {100 * rate / (320 * workers):.0f}% | {wall:.1f} s |")
    if exports:
        from bench.exports import EXPORT_HEADER

        lines += EXPORT_HEADER + exports
    out = HERE / "RESULTS.md"
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
