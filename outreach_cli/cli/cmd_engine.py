"""`outreach run-outreach`, `forecast` and `events ingest`."""

from __future__ import annotations

from typing import Annotated

import typer

from outreach_cli.cli.context import App, get_app

events_app = typer.Typer(
    help="Delivery facts from other sources (status callbacks, replies, bounces).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.command("run-outreach")(run_outreach)
    app.command("forecast")(forecast)
    app.add_typer(events_app, name="events")


def build_engine(a: App, *, limit: int | None = None, concurrency: int | None = None):  # type: ignore[no-untyped-def]
    from outreach_cli.core import channels
    from outreach_cli.core.channels.base import ProviderConfigError
    from outreach_cli.core.engine import Engine
    from outreach_cli.core.errors import ConfigError

    s = a.settings
    store = a.store()
    try:
        providers = channels.build_providers(s.channels)
    except (ValueError, KeyError, ProviderConfigError) as exc:
        raise ConfigError(str(exc)) from None
    return Engine(
        store,
        a.context(actor="system"),
        providers,
        lease_seconds=int(s.sending.get("lease_seconds", 300)),
        max_attempts=int(s.sending["max_attempts"]),
        concurrency=concurrency or int(s.sending["concurrency"]),
        limit=limit,
    )


def run_outreach(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be sent now; send nothing.")] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Claim at most N invoice sets' steps this run.")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, max=256, help="Parallel provider calls (default sending.concurrency)."),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="json: print a summary object (or, with --dry-run, what would be sent)."),
    ] = None,
) -> None:
    """One outreach tick, for cron: reconcile, expire, claim and send what is due (in each
    patient's allowed hours, exactly once), record outcomes, fall back, re-predict Will Fail.
    Silent on success unless -v. Exit 0 even when some messages failed (see `metrics`)."""
    import json

    from outreach_cli.cli.render import write_rows

    a = get_app(ctx)
    if fmt is not None and fmt.lower() not in ("json", "table", "tsv", "jsonl"):
        from outreach_cli.core.errors import InvalidInput

        raise InvalidInput(f"--format {fmt!r}: choose json (summary) or, with --dry-run, table/tsv/jsonl")
    engine = build_engine(a, limit=limit, concurrency=concurrency)
    with a.progress("sending") as update:
        sent = 0

        def advance(n: int) -> None:
            nonlocal sent
            sent += n
            update(sent)

        engine.progress = advance
        summary = engine.tick(dry_run=dry_run)
    if dry_run:
        f = (fmt or ("table" if a.env.stdout_isatty else "tsv")).lower()
        write_rows(a, summary.would_send, ["id", "step", "day", "method", "fallback"], "jsonl" if f == "json" else f)
        a.info(f"run-outreach (dry run): {len(summary.would_send)} send(s) due now")
        return
    if fmt and fmt.lower() == "json":
        a.write(json.dumps(summary.as_dict()) + "\n")
    elif a.verbose:
        d = summary.as_dict()
        a.info("run-outreach: " + ", ".join(f"{k} {v}" for k, v in d.items()))


def forecast(
    ctx: typer.Context,
    days: Annotated[int, typer.Option("--days", min=0, max=3660, help="How many days ahead.")] = 7,
    fmt: Annotated[str | None, typer.Option("--format", help="table, tsv, csv, json or jsonl.")] = None,
) -> None:
    """Every send due in the next N days, and the ones predicted to fail, with reasons."""
    from outreach_cli.cli.render import resolve_format, write_rows
    from outreach_cli.core.engine import FORECAST_COLUMNS
    from outreach_cli.core.engine import forecast as do_forecast

    a = get_app(ctx)
    f = resolve_format(a, fmt, allowed=("table", "tsv", "csv", "json", "jsonl"))
    rows = do_forecast(a.store(), a.context(), days)
    write_rows(a, rows, FORECAST_COLUMNS, f)
    if f == "table":
        fails = sum(1 for r in rows if r["prediction"] == "will-fail")
        a.info(f"{len(rows)} send(s) in the next {days} day(s); {fails} predicted to fail")


@events_app.command("ingest")
def ingest(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="JSON lines, or - for stdin.", metavar="FILE|-")],
) -> None:
    """Apply delivery facts from any source, one JSON object per line:
    {"type": "sms_status", "sid", "status", "error_code"}, {"type": "inbound_sms", "from", "body",
    "received_at"}, {"type": "email_bounce", "email", "reason"}, {"type": "email_complaint", "email"},
    {"type": "email_unsubscribe", "email"}, {"type": "email_reply", "email", "body"}.
    All-or-nothing: a bad line is reported with its number and nothing is applied (exit 2)."""
    from outreach_cli.cli.context import read_input
    from outreach_cli.core.ingest import ingest as do_ingest
    from outreach_cli.core.readers import decode

    a = get_app(ctx)
    store = a.store()
    data, source = read_input(a, file)
    report = do_ingest(store, decode(data, source), a.context(actor="system"), source)
    a.info(f"events ingest: {report.lines} line(s), {report.applied} applied, {report.unchanged} unchanged")
