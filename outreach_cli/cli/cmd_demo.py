"""`outreach demo`: a demo database with realistic data and simulated days of outreach."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from outreach_cli.cli.context import App, get_app
from outreach_cli.cli.options import whole_number

if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

    from outreach_cli.demo.data import DemoData
    from outreach_cli.store.database import Store


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    ctx: typer.Context,
    patients: Annotated[
        int,
        typer.Option(
            "--patients",
            metavar="N",
            parser=whole_number("--patients", low=1, high=100_000),
            help="How many demo patients (1-100000).",
        ),
    ] = 300,
    days: Annotated[
        int,
        typer.Option(
            "--days",
            metavar="N",
            parser=whole_number("--days", high=365, example=10),
            help="How many days of outreach to simulate (0-365).",
        ),
    ] = 90,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            metavar="N",
            parser=whole_number("--seed", example=7),
            help="Seed of the data generator (same seed, same data).",
        ),
    ] = 7,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the --db file even if `outreach demo` did not create it.")
    ] = False,
) -> None:
    """Create a demo database and simulate outreach.

    Create a demo database (default demo.db; an earlier demo database there is replaced, any
    other file only with --force; --db to choose another)
    with realistic patients, charges and the shipped rule sets, simulate DAYS of outreach with
    the sandbox providers (some patients pay along the way), then print the metrics and the
    sets that need attention. Nothing leaves the machine.

    \b
    Example:
      outreach demo --patients 50 --days 10 && outreach --db demo.db list
    """
    a = get_app(ctx)
    if not a.db:
        a.db = "demo.db"
    from outreach_cli.demo import database as demo_db

    try:
        run_demo(a, patients=patients, days=days, seed=seed, force=force)
    except BaseException:  # interrupted or failed: no half-built database is left behind
        demo_db.cleanup(str(a.db))
        raise


def run_demo(a: App, *, patients: int, days: int, seed: int, force: bool = False) -> None:
    from datetime import timedelta

    from outreach_cli.config import database_url
    from outreach_cli.demo import database as demo_db
    from outreach_cli.demo.data import generate
    from outreach_cli.domain.errors import InvalidInput
    from outreach_cli.domain.rulesets import shipped_dir
    from outreach_cli.imports.importer import run_import
    from outreach_cli.store.ruleset_store import sync_dir

    url = database_url(str(a.db))
    if not url.startswith("sqlite:///"):
        raise InvalidInput("the demo builds a fresh SQLite file: pass --db PATH.db (or nothing for demo.db)")
    path = url[len("sqlite:///") :]
    building = demo_db.prepare(path, force=force)  # built aside, moved into place when complete
    # The demo always uses the sandbox providers, whatever the configuration says.
    sandbox = {f"channels.{m}": "sandbox" for m in ("sms", "call", "email", "mail", "charge_card")}
    a.settings = a.settings.override({"database": database_url(building), **sandbox})
    store = a.store(check_schema=False)
    store.migrate()
    demo_db.mark(store)
    store.ensure_secret()
    end = a.now
    start = end - timedelta(days=days)
    ctx = a.context(actor="demo")
    ctx.now = start
    sync_dir(store, shipped_dir(), ctx)
    data = generate(patients, seed=seed, start=start, days=days)
    run_import(store, "patients", data.patients_csv.encode(), source="demo patients", ctx=ctx, input_format="csv")
    n_charges, n_sets = simulate(a, store, start=start, days=days, data=data, seed=seed)
    a.info(f"demo: {patients} patients, {n_charges} charges, {n_sets} invoice sets in {path}")
    a.info(f"demo: simulated {days} day{'' if days == 1 else 's'} of outreach ending {end:%Y-%m-%d %H:%M} UTC")
    demo_db.finish(store, building, path)
    a.settings = a.settings.override({"database": url})
    store = a.reopen_store()
    from outreach_cli.cli.cmd_admin import print_attention, print_metrics

    print_metrics(a, store, show_all=True)
    print_attention(a, store)
    a.info(
        f"explore it: outreach --db {path} list   |   outreach --db {path} show ID   |   outreach --db {path} metrics"
        f"   |   outreach --db {path} report --experiment"
    )


TICK_HOURS = 3  # the simulated cron: every 3 hours (sends wait for the patient's window anyway)


def simulate(a: App, store: Store, *, start: datetime, days: int, data: DemoData, seed: int) -> tuple[int, int]:
    """Day by day: the charges that arrive that day (most under the A/B split), the payments
    patients make (see core.demo_data.demo_payments), then outreach ticks. Returns (charges, sets)."""
    import csv
    import io
    import random
    from datetime import timedelta

    from outreach_cli.cli.cmd_engine import build_engine
    from outreach_cli.demo.data import demo_payments, demo_replies
    from outreach_cli.imports.importer import run_import

    end = start + timedelta(days=days)
    rnd = random.Random(seed)
    n_charges = n_sets = 0
    for day in range(days + 1):
        day_start = start + timedelta(days=day)
        arrivals = [(spec, text) for (d, spec), text in data.charges_by_day.items() if d == day]
        if arrivals:
            ctx = a.context(actor="demo")
            ctx.now = day_start
            for spec, text in arrivals:
                rep = run_import(
                    store, "charges", text.encode(), source=f"demo charges ({spec})", ctx=ctx, rule_set=spec
                )
                n_charges += rep.created
                n_sets += rep.sets_created
            _pause_arrivals(store, ctx, data.pauses, "".join(t for _, t in arrivals))
        if day:
            ctx = a.context(actor="demo")
            ctx.now = day_start
            demo_replies(store, ctx, rnd)
        paid_at = min(day_start + timedelta(hours=6), end)  # never after the demo's "now"
        pays = demo_payments(store, paid_at, rnd, day) if day else []
        if pays:
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(["payment_id", "patient_id", "amount", "paid_at"])
            for p in pays:
                w.writerow([p["payment_id"], p["patient_id"], p["amount"], paid_at.strftime("%Y-%m-%dT%H:%M:%SZ")])
            ctx = a.context(actor="demo")
            ctx.now = paid_at
            run_import(store, "payments", buf.getvalue().encode(), source="demo payments", ctx=ctx, input_format="csv")
        for hour in range(0, 24, TICK_HOURS):
            now = day_start + timedelta(hours=hour)
            if now > end:
                break
            engine = build_engine(a)
            engine.ctx.now = now
            engine.tick()
    return n_charges, n_sets


def _pause_arrivals(store: Store, ctx: Any, pauses: list[str], charges_csv: str) -> None:
    """An admin pauses the sets of the patients who dispute their bill, the day they arrive."""
    wanted = {pid for pid in pauses if f",{pid}," in charges_csv}
    if not wanted:
        return
    from outreach_cli.domain.statuses import Action
    from outreach_cli.store.actions import run_action
    from outreach_cli.store.queries import ListFilter, list_sets

    ids = [r["id"] for r in list_sets(store, ListFilter(), ctx) if r["patient_id"] in wanted]
    run_action(store, Action.PAUSE, ids, ctx, reason="patient disputes the bill")
