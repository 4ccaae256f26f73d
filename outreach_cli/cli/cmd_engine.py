"""`outreach run-outreach`, `forecast` and `events ingest`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from outreach_cli.cli.context import App, get_app
from outreach_cli.cli.options import whole_number
from outreach_cli.cli.output import Col, Format, Formats

if TYPE_CHECKING:
    from outreach_cli.cli.output import Clock
    from outreach_cli.outreach.state import TickSummary
    from outreach_cli.outreach.tick import Tick

RUN_FORMATS = Formats(
    note="Without --dry-run only json applies (a summary object); with it, the sends due now, one row each."
)
FORECAST_FORMATS = Formats()

events_app = typer.Typer(
    help="Delivery facts from other sources.\n\nStatus callbacks, replies, bounces.\n\n\b\nExample:\n  outreach events ingest callbacks.jsonl",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.command("run-outreach")(run_outreach)
    app.command("forecast")(forecast)
    app.add_typer(events_app, name="events")


def build_engine(a: App, *, limit: int | None = None, concurrency: int | None = None) -> Tick:
    from outreach_cli import channels
    from outreach_cli.channels.base import ProviderConfigError
    from outreach_cli.domain.errors import ConfigError

    s = a.settings
    store = a.store()
    try:
        providers = channels.build_providers(s)
    except (ValueError, ProviderConfigError) as exc:
        raise ConfigError(str(exc)) from None
    from outreach_cli.outreach.tick import Tick

    return Tick(
        store,
        a.context(actor="system"),
        providers,
        lease_seconds=s.sending.lease_seconds,
        max_attempts=s.sending.max_attempts,
        concurrency=concurrency or s.sending.concurrency,
        limit=limit,
    )


DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="List every send this run would attempt (fallbacks included) and the sets it would "
        "expire or mark paid; change nothing, send nothing.",
    ),
]
LimitOption = Annotated[
    int | None,
    typer.Option(
        "--limit",
        metavar="N",
        parser=whole_number("--limit", low=1),
        help="Claim at most N invoice sets' steps this run.",
    ),
]
ConcurrencyOption = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        metavar="N",
        parser=whole_number("--concurrency", low=1, high=256, example=8),
        help="Parallel provider calls, 1-256 (default sending.concurrency).",
    ),
]


def run_outreach(
    ctx: typer.Context,
    dry_run: DryRunOption = False,
    limit: LimitOption = None,
    concurrency: ConcurrencyOption = None,
    fmt: Annotated[str | None, RUN_FORMATS.option()] = None,
) -> None:
    """One outreach tick, for cron.

    Reconcile, expire, claim and send what is due (in each patient's allowed hours, exactly
    once), record outcomes, fall back, re-predict Will Fail. Silent on success unless -v. Says
    one line on stderr when sends failed temporarily (provider unreachable, HTTP 5xx/429, SMTP
    refused) or replies/delivery reports could not be read. Exit 0 even when some messages
    failed (see `metrics`); 75 when every attempted send failed temporarily (a provider outage:
    retry later; said even with -q); 4 on a configuration error; 130 when interrupted
    (Ctrl-C/SIGTERM: sends in flight finish, unstarted ones go back to pending).

    \b
    Examples:
      */5 * * * *  outreach run-outreach --format json >> /var/log/outreach.jsonl
      outreach run-outreach --dry-run
    """
    from outreach_cli.domain.errors import InvalidInput

    a = get_app(ctx)
    f = RUN_FORMATS.resolve(a, fmt)
    if fmt is not None and not dry_run and f != Format.JSON:
        raise InvalidInput(f"--format {f}: only with --dry-run; without it, --format json prints the summary")
    summary = _run_tick(a, build_engine(a, limit=limit, concurrency=concurrency), dry_run=dry_run)
    if dry_run:
        _report_dry_run(a, f, summary)
        return
    if fmt is not None:
        import json

        a.write(json.dumps(summary.as_dict()) + "\n")
    if a.verbose:
        a.info("run-outreach: " + ", ".join(f"{k} {v}" for k, v in summary.as_dict().items()))
    if summary.interrupted:
        _exit_interrupted(a, summary)
    _report_trouble(a, summary)


def _run_tick(a: App, engine: Tick, *, dry_run: bool) -> TickSummary:
    """One tick with a progress line and Ctrl-C/SIGTERM handling."""
    with a.progress("planning" if dry_run else "sending") as update, _stop_on_signals(a, engine):
        sent = 0

        def advance(n: int) -> None:
            nonlocal sent
            sent += n
            update(sent)

        engine.progress = advance
        return engine.tick(dry_run=dry_run)


def _report_dry_run(a: App, f: Format, summary: TickSummary) -> None:
    from outreach_cli.cli.output import emit

    rows = summary.would_send
    columns = list(rows[0]) if rows else ["id", "action", "step", "day", "method", "fallback"]
    emit(a, rows, f, columns=columns, table=DRY_RUN_TABLE)
    sends = sum(1 for r in rows if r["action"] == "send")
    a.info(
        f"run-outreach (dry run): {sends} send(s) would be attempted, "
        f"{summary.expired} set(s) would expire, {summary.paid} would be marked paid"
    )


def _exit_interrupted(a: App, summary: TickSummary) -> None:
    n = summary.in_flight_left
    if n:
        tail = (
            f"{n} send{'' if n == 1 else 's'} still in flight will be resolved after {'its' if n == 1 else 'their'}"
            " lease (a later run looks them up; none is sent twice)"
        )
    else:
        tail = "every send in flight finished"
    print(f"stopped early: {tail}; what was not claimed stays pending for the next run", file=a.env.stderr)
    a.env.interruption_told = True
    if summary.in_flight_left:
        # Interrupted twice: end now rather than when those calls return (their claims are
        # already safe: the lease covers them). Worker threads would otherwise hold the exit.
        import os

        for stream in (a.env.stdout, a.env.stderr):
            stream.flush()
        os._exit(130)
    raise typer.Exit(130)


def _report_trouble(a: App, summary: TickSummary) -> None:
    """Exit 75 on a provider outage; otherwise one line on stderr when anything failed
    temporarily or a provider read failed."""
    from outreach_cli.domain.errors import TemporaryFailure

    trouble = _trouble(summary)
    if summary.outage:
        raise TemporaryFailure(
            f"provider outage: all {summary.attempted} attempted send(s) failed temporarily ({trouble}); "
            + _what_is_retried(summary)
        )
    if trouble:
        transient = sum(n for n, _ in summary.transient_by_method.values())
        a.info(
            f"run-outreach: {transient} of {summary.attempted} attempted send(s) failed temporarily ({trouble})"
            if transient
            else f"run-outreach: {trouble}"
        )


def _what_is_retried(summary: TickSummary) -> str:
    """An outage's sends wait for later runs, except those that reached sending.max_attempts."""
    if not summary.gave_up:
        return "they stay pending and are retried by later runs"
    retried = summary.attempted - summary.gave_up
    return f"the other {retried} stay pending and are retried by later runs" if retried else "none is retried"


def _trouble(summary: TickSummary) -> str:
    """One line's worth: temporary send failures per channel, then failed provider reads."""
    parts = [
        f"{method} {n}: {reason.removesuffix(' (will retry)')}"
        for method, (n, reason) in sorted(summary.transient_by_method.items())
    ]
    parts += [f"{text} x{n}" if n > 1 else text for text, n in summary.provider_problems.items()]
    if summary.gave_up:
        parts.append(f"{summary.gave_up} of them reached sending.max_attempts and now count as failed")
    return "; ".join(parts)


@contextmanager
def _stop_on_signals(a: App, engine: Tick) -> Iterator[None]:
    """Ctrl-C/SIGTERM during a run: the first claims nothing more and lets the calls in flight
    finish; a second stops waiting for them (they are resolved after the lease)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        what, again = ("interrupted", "press Ctrl-C") if signum == signal.SIGINT else ("terminated", "signal")
        if engine.request_stop():
            msg = f"{what}: finishing the sends in flight ({again} again to stop waiting)"
        else:
            msg = f"{what} again: no longer waiting for the sends in flight"
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
    days: Annotated[
        int,
        typer.Option(
            "--days",
            metavar="N",
            parser=whole_number("--days", high=3660, example=7),
            help="How many days ahead, 0-3660.",
            show_default=False,
        ),
    ] = 7,
    fmt: Annotated[str | None, FORECAST_FORMATS.option()] = None,
) -> None:
    """Sends due soon, and the ones predicted to fail.

    The next N days (default 7).

    One row per due step with its methods, the usable ones and a prediction: ok, fallback (only
    the rule set's fallback methods are usable) or will-fail, with the reason. Times in the
    table are in the practice time zone; JSON/TSV/CSV carry UTC.

    \b
    Examples:
      outreach forecast --days 3
      outreach forecast --format jsonl | jq 'select(.prediction == "will-fail")'
    """
    from outreach_cli.cli.output import Clock, emit
    from outreach_cli.outreach.forecast import FORECAST_COLUMNS
    from outreach_cli.outreach.forecast import forecast as do_forecast

    a = get_app(ctx)
    f = FORECAST_FORMATS.resolve(a, fmt)
    rows = do_forecast(a.store(), a.context(), days)
    emit(a, rows, f, columns=list(rows[0]) if rows else FORECAST_COLUMNS, table=forecast_table(Clock(a)))
    if f == Format.TABLE:
        fails = sum(1 for r in rows if r["prediction"] == "will-fail")
        a.info(f"{len(rows)} send(s) in the next {days} day(s); {fails} predicted to fail")


DRY_RUN_TABLE = [
    Col("id", "Set", justify="right", keep=True),
    Col("day", "Day", justify="right", keep=True),
    Col("step", "Step", wrap=True, min_width=16, drop=1),
    Col("action", "Action", keep=True),
    Col(
        "method", "Method", lambda r: (r.get("method") or "") + (" (fallback)" if r.get("fallback") else ""), keep=True
    ),
]


def forecast_table(clock: Clock) -> list[Col]:
    from outreach_cli.cli.output import Col

    def prediction(r: Mapping[str, Any]) -> str:
        return {"ok": "ok", "fallback": "fallback", "will-fail": "Will Fail"}.get(
            str(r["prediction"]), str(r["prediction"])
        )

    return [
        Col("due_at", "Due", lambda r: clock(r["due_at"]), keep=True),
        Col("id", "Set", justify="right", keep=True),
        Col("prediction", "Prediction", prediction, keep=True),
        Col("step", "Step", lambda r: f"{r['step']} (day {r['day']})", wrap=True, min_width=24, drop=2),
        Col("reason", "Reason", wrap=True, min_width=20, drop=3, optional=True),
        Col("methods", "Methods", drop=4),
        Col("patient_id", "Patient", drop=5),
        Col("usable_methods", "Usable", drop=6),
        Col("held_by", "Held by", drop=7, optional=True),
        Col("send_at", "Sends", lambda r: clock(r.get("send_at")), drop=8, optional=True),
    ]


@events_app.command("ingest")
def ingest(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="JSON lines, or - for stdin.", metavar="FILE|-")],
) -> None:
    """Apply delivery facts, one JSON object per line.

    Facts from any source:
    {"type": "sms_status", "sid", "status", "error_code"}, {"type": "inbound_sms", "from", "body",
    "received_at"}, {"type": "email_bounce", "email", "reason"}, {"type": "email_complaint", "email"},
    {"type": "email_unsubscribe", "email"}, {"type": "email_reply", "email", "body"}.
    Stripe events too: the event object ({"object": "event", ...}) or a signed delivery
    {"stripe_signature", "payload"} (verified when STRIPE_WEBHOOK_SECRET is set).
    All-or-nothing: a bad line is reported with its number and nothing is applied (exit 2).

    \b
    Example:
      echo '{"type": "email_bounce", "email": "a@example.com", "reason": "550"}' | outreach events ingest -
    """
    from outreach_cli.cli.context import read_input
    from outreach_cli.imports.provider_events import ingest as do_ingest
    from outreach_cli.imports.readers import decode

    a = get_app(ctx)
    store = a.store()
    data, source = read_input(a, file)
    report = do_ingest(store, decode(data, source), a.context(actor="system"), source)
    a.info(f"events ingest: {report.lines} line(s), {report.applied} applied, {report.unchanged} unchanged")
