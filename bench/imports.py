"""Import benchmark (SPEC section 12, issue 13): `python -m bench.imports` (also run by `python -m bench`).

Imports N patients (with phones and emails to parse), then N charges (each opening a new invoice
set), then N payments, each into a copy of the database as the previous import left it, as whole
`outreach` processes. Reports wall time, CPU time (user + sys) and peak RSS of each process
(`os.wait4`), median of the runs, and the load average. Generated files and databases stay in
--data (outside the repository).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

NOW = "2026-11-02T15:00:00Z"
TARGETS = {"patients": (90.0, 400), "charges": (45.0, 400), "payments": (45.0, 400)}  # seconds, MB
AREA_CODES = ("617", "212", "415", "312", "305", "206", "303", "404", "512", "702")
STATES = ("MA", "NY", "CA", "IL", "FL", "WA", "CO", "GA", "TX", "NV")


def write_files(data: Path, n: int) -> dict[str, Path]:
    """patients (phones in two spreadsheet forms, emails), plain-patients (no phone or email, as
    the main benchmark's), charges (one per patient), payments (one per patient)."""
    data.mkdir(parents=True, exist_ok=True)
    files = {k: data / f"{k}-{n}.csv" for k in ("patients", "plain-patients", "charges", "payments")}
    if all(f.exists() for f in files.values()):
        return files
    with files["plain-patients"].open("w", newline="") as fh:  # as the main benchmark's: no phone, no email
        w = csv.writer(fh)
        w.writerow(["patient_id", "first_name", "last_name", "phone", "email", "state"])
        for i in range(n):
            w.writerow([f"P{i:07d}", "Ann", "Lee", "", "", "MA"])
    with files["patients"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "first_name", "last_name", "phone", "phone_type", "email", "state", "postal_code"])
        for i in range(n):
            k = i % len(AREA_CODES)
            local = 2_000_000 + (i * 7919) % 7_999_999
            phone = (f"({AREA_CODES[k]}) {local // 10000}-{local % 10000:04d}", f"+1{AREA_CODES[k]}{local}")[i % 2]
            w.writerow([f"P{i:07d}", "Ann", f"Lee{i % 997}", phone, "mobile", f"ann{i}@example.com", STATES[k], ""])
    with files["charges"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["charge_id", "patient_id", "amount", "created_at", "description"])
        for i in range(n):
            w.writerow([f"C{i:08d}", f"P{i:07d}", f"{100 + i % 900}.45", f"2026-10-{1 + i % 28:02d}", "Office visit"])
    with files["payments"].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["payment_id", "patient_id", "amount", "paid_at"])
        for i in range(n):
            w.writerow([f"Y{i:08d}", f"P{i:07d}", "50.00", f"2026-10-{1 + i % 28:02d}T12:00:00Z"])
    return files


def run(cmd: list[str]) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds (user + sys), peak RSS (KB) and exit code of one process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert p.stderr is not None
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write(err.decode(errors="replace")[-3000:])
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime, int(usage.ru_maxrss), code


def outreach(db: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "outreach_cli", "--db", db, "--now", NOW, "-q", *args]


def bench_imports(data: Path, n: int, runs: int, pg: str | None = None) -> list[dict[str, object]]:
    """Each import measured ``runs`` times on a fresh copy of the database before it: patients
    (with phones) into an empty database; charges (a new set each) for the plain patients, as in
    the main benchmark and issue 13's 113 s figure; payments after those charges."""
    files = write_files(data, n)
    steps = [
        ("patients", ["import", "patients", str(files["patients"])]),
        ("charges", ["import", "charges", str(files["charges"]), "--rule-set", "standard"]),
        ("payments", ["import", "payments", str(files["payments"])]),
    ]
    base = data / "before-patients.db"
    if pg is None:
        for f in data.glob("*.db*"):
            f.unlink()
        subprocess.run(outreach(f"sqlite:///{base}", "init"), check=True)
    results = []
    for kind, args in steps:
        walls, cpus, rss = [], [], []
        for i in range(runs):
            if pg is None:
                work = data / "work.db"
                _copy_db(base, work)
                db = f"sqlite:///{work}"
            else:
                db = _pg_state(pg, data, kind, steps)
            load = os.getloadavg()[0]
            w, c, r, code = run(outreach(db, *args))
            if code != 0:
                raise SystemExit(f"import {kind} failed ({code})")
            walls.append(w)
            cpus.append(c)
            rss.append(r)
            print(
                f"import {kind} {n:,} run {i + 1}: {w:.1f}s wall, {c:.1f}s CPU, {r / 1024:.0f} MB, load {load:.2f}",
                file=sys.stderr,
            )
            if pg is None and i == runs - 1:
                base = data / f"after-{kind}.db"
                _copy_db(work, base)
                if kind == "patients":  # the charges go to patients without phones (see above)
                    base = data / "plain-patients.db"
                    _copy_db(data / "before-patients.db", base)
                    plain = ["import", "patients", str(files["plain-patients"])]
                    subprocess.run(outreach(f"sqlite:///{base}", *plain), check=True)
        results.append(_summary(kind, n, walls, cpus, rss, pg is not None))
    return results


def _summary(kind: str, n: int, walls: list[float], cpus: list[float], rss: list[int], pg: bool) -> dict[str, object]:
    wall, cpu, peak = statistics.median(walls), statistics.median(cpus), max(rss) / 1024
    t_wall, t_mb = TARGETS[kind]
    return {
        "name": f"import {kind} ({n:,} rows){' PostgreSQL' if pg else ''}",
        "wall": wall,
        "cpu": cpu,
        "rss_mb": peak,
        "runs": len(walls),
        "load": os.getloadavg(),
        "target": f"<= {t_wall:.0f} s, <= {t_mb} MB",
        "verdict": "met" if wall <= t_wall and peak <= t_mb else ("memory met" if peak <= t_mb else "not met"),
    }


def _copy_db(src: Path, dst: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        d = Path(str(dst) + suffix)
        if d.exists():
            d.unlink()
        s = Path(str(src) + suffix)
        if s.exists():
            shutil.copy(s, d)


def _pg_state(url: str, data: Path, kind: str, steps: list[tuple[str, list[str]]]) -> str:
    """A fresh schema holding what the imports before ``kind`` wrote (PostgreSQL)."""
    import uuid

    import psycopg

    schema = f"outreach_bench_imp_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA "{schema}"')
    db = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    subprocess.run(outreach(db, "init"), check=True)
    for k, args in steps:
        if k == kind:
            break
        if k == "patients":
            args = ["import", "patients", str(data / f"plain-patients-{args[2].split('-')[-1]}")]
        subprocess.run(outreach(db, *args), check=True)
    return db


def markdown(results: list[dict[str, object]]) -> list[str]:
    lines = [
        "| import | wall (median) | CPU user+sys | peak RSS | runs | load average (1/5/15 min) | target | verdict |",
        "|---|---:|---:|---:|---:|---|---|---|",
    ]
    for r in results:
        load = "/".join(f"{x:.2f}" for x in r["load"])  # type: ignore[attr-defined]
        lines.append(
            f"| {r['name']} | {r['wall']:.1f} s | {r['cpu']:.1f} s | {r['rss_mb']:.0f} MB | {r['runs']} | {load} "
            f"| {r['target']} | {r['verdict']} |"
        )
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument(
        "--data", type=Path, default=Path(os.environ.get("OUTREACH_BENCH_DATA", "/tmp/outreach-bench-imports"))
    )
    ap.add_argument("--pg", help="PostgreSQL URL: measure there instead of SQLite")
    a = ap.parse_args()
    results = bench_imports(a.data, a.rows, a.runs, a.pg)
    print("\n".join(markdown(results)))


if __name__ == "__main__":
    main()
