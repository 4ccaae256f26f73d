"""`outreach run-outreach`, `forecast` and `events ingest`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

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
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="List every send this run would attempt (fallbacks included) and the sets it would "
            "expire or mark paid; change nothing, send nothing.",
        ),
    ] = False,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Claim at most N invoice sets' steps this run.")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, max=256, help="Parallel provider calls (default sending.concurrency)."),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="json: print the summary object. With --dry-run: table, tsv, csv, json (one array) or jsonl.",
        ),
    ] = None,
) -> None:
    """One outreach tick, for cron: reconcile, expire, claim and send what is due (in each
    patient's allowed hours, exactly once), record outcomes, fall back, re-predict Will Fail.

    Silent on success unless -v. Says one line on stderr when sends failed temporarily (provider
    unreachable, HTTP 5xx/429, SMTP refused) or replies/delivery reports could not be read. Exit 0
    even when some messages failed (see `metrics`); 75 when every attempted send failed temporarily
    (a provider outage: retry later; said even with -q); 4 on a configuration error; 130 when
    interrupted (Ctrl-C/SIGTERM: sends in flight finish, unstarted ones go back to pending)."""
    import json

    from outreach_cli.cli.render import resolve_format, write_rows
    from outreach_cli.core.errors import InvalidInput, TemporaryFailure

    a = get_app(ctx)
    if dry_run:
        f = resolve_format(a, fmt, allowed=("table", "tsv", "csv", "json", "jsonl"))
    elif fmt is not None and fmt.strip().lower() != "json":
        raise InvalidInput(f"--format {fmt!r}: choose json (the summary), or use --dry-run for table/tsv/csv/jsonl")
    engine = build_engine(a, limit=limit, concurrency=concurrency)
    with a.progress("planning" if dry_run else "sending") as update, _stop_on_signals(a, engine):
        sent = 0

        def advance(n: int) -> None:
            nonlocal sent
            sent += n
            update(sent)

        engine.progress = advance
        summary = engine.tick(dry_run=dry_run)
    if dry_run:
        write_rows(a, summary.would_send, ["id", "action", "step", "day", "method", "fallback"], f)
        sends = sum(1 for r in summary.would_send if r["action"] == "send")
        a.info(
            f"run-outreach (dry run): {sends} send(s) would be attempted, "
            f"{summary.expired} set(s) would expire, {summary.paid} would be marked paid"
        )
        return
    if fmt is not None:
        a.write(json.dumps(summary.as_dict()) + "\n")
    if a.verbose:
        a.info("run-outreach: " + ", ".join(f"{k} {v}" for k, v in summary.as_dict().items()))
    trouble = _trouble(summary)
    if summary.interrupted:
        print(
            f"interrupted; {summary.in_flight_left} sends in flight will be resolved after the lease",
            file=a.env.stderr,
        )
        if summary.in_flight_left:
            # Interrupted twice: end now rather than when those calls return (their claims are
            # already safe: the lease covers them). Worker threads would otherwise hold the exit.
            import os

            for stream in (a.env.stdout, a.env.stderr):
                stream.flush()
            os._exit(130)
        raise typer.Exit(130)
    if summary.outage:
        raise TemporaryFailure(
            f"provider outage: all {summary.attempted} attempted send(s) failed temporarily ({trouble}); "
            "they stay pending and are retried by later runs"
        )
    if trouble:
        transient = sum(n for n, _ in summary.transient_by_method.values())
        a.info(
            f"run-outreach: {transient} of {summary.attempted} attempted send(s) failed temporarily ({trouble})"
            if transient
            else f"run-outreach: {trouble}"
        )


def _trouble(summary: Any) -> str:
    """One line's worth: temporary send failures per channel, then failed provider reads."""
    parts = [
        f"{method} {n}: {reason.removesuffix(' (will retry)')}"
        for method, (n, reason) in sorted(summary.transient_by_method.items())
    ]
    parts += [f"{text} x{n}" if n > 1 else text for text, n in summary.provider_problems.items()]
    return "; ".join(parts)


@contextmanager
def _stop_on_signals(a: App, engine: Any) -> Iterator[None]:
    """Ctrl-C/SIGTERM during a run: the first claims nothing more and lets the calls in flight
    finish; a second stops waiting for them (they are resolved after the lease)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        if engine.request_stop():
            msg = "interrupted: finishing the sends in flight (press Ctrl-C again to stop waiting)"
        else:
            msg = "interrupted again: no longer waiting for the sends in flight"
        try:
            print(msg, file=a.env.stderr)
        except (RuntimeError, OSError):
            pass

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def forecast(
    ctx: typer.Context,
    days: Annotated[int, typer.Option("--days", min=0, max=3660, help="How many days ahead.")] = 7,
    fmt: Annotated[str | None, typer.Option("--format", help="table, tsv, csv, json or jsonl.")] = None,
) -> None:
    """Every send due in the next N days, and the ones predicted to fail, with reasons."""
    from outreach_cli.cli.render import resolve_format, write_rows
    from outreach_cli.core.engine import forecast as do_forecast

    a = get_app(ctx)
    f = resolve_format(a, fmt, allowed=("table", "tsv", "csv", "json", "jsonl"))
    rows = do_forecast(a.store(), a.context(), days)
    write_rows(
        a, rows, ["id", "patient_id", "due_at", "step", "day", "methods", "usable_methods", "prediction", "reason"], f
    )
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
    "received_at"}, {"type": "email_bounce", "email", "reason"}, {"type": "email_complaint", "email"}.
    All-or-nothing: a bad line is reported with its number and nothing is applied (exit 2)."""
    from outreach_cli.cli.context import read_input
    from outreach_cli.core.ingest import ingest as do_ingest
    from outreach_cli.core.readers import decode

    a = get_app(ctx)
    store = a.store()
    data, source = read_input(a, file)
    report = do_ingest(store, decode(data, source), a.context(actor="system"), source)
    a.info(f"events ingest: {report.lines} line(s), {report.applied} applied, {report.unchanged} unchanged")
