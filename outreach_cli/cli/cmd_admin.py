"""`outreach metrics`, `show`, `audit` and `collections export`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer

from outreach_cli.cli.context import App, get_app
from outreach_cli.cli.options import BIGGEST, whole_number
from outreach_cli.cli.output import Format, Formats

if TYPE_CHECKING:
    from outreach_cli.store.database import Store

if TYPE_CHECKING:
    from outreach_cli.cli.output import Clock, Col
    from outreach_cli.domain.views import PatientView, SetView

coll = typer.Typer(
    help="Sets escalated to collections.\n\n\b\nExample:\n  outreach collections export --out agency.csv",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.command("metrics")(metrics)
    app.command("show")(show)
    app.command("audit")(audit)
    app.add_typer(coll, name="collections")


METRICS_FORMATS = Formats((Format.TABLE, Format.TSV, Format.CSV, Format.JSON), pipe=Format.TABLE)
SHOW_FORMATS = Formats((Format.TABLE, Format.JSON), pipe=Format.TABLE)
AUDIT_FORMATS = Formats()
AUDIT_TTY_LIMIT = 50


def metrics(
    ctx: typer.Context,
    show_all: Annotated[
        bool, typer.Option("--all", help="Every status, totals, and aging buckets of open balances.")
    ] = False,
    fmt: Annotated[str | None, METRICS_FORMATS.option()] = None,
) -> None:
    """What needs attention: Failed, Expired, Paused, Will Fail.

    The four attention cards (count and amount outstanding each). --all adds every status, the
    total and aging (days since creation) of open balances. TSV/CSV: one row per card with
    `section` (status, total or aging), `name`, `count`, `amount_outstanding`,
    `amount_outstanding_cents`.

    \b
    Examples:
      outreach metrics
      outreach metrics --all --format json | jq '.total'
    """
    from outreach_cli.cli.output import emit, emit_document
    from outreach_cli.store.metrics import metrics as q

    a = get_app(ctx)
    f = METRICS_FORMATS.resolve(a, fmt)
    if f == Format.TABLE:
        print_metrics(a, a.store(), show_all=show_all)
        return
    data = q(a.store(), show_all=show_all, now=a.now)
    if f == Format.JSON:
        emit_document(a, data)
        return
    emit(a, metrics_rows(data), f, columns=METRICS_COLUMNS)


METRICS_COLUMNS = ["section", "name", "count", "amount_outstanding", "amount_outstanding_cents"]


def metrics_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    from outreach_cli.domain.money import plain_dollars

    rows: list[dict[str, Any]] = []
    for key, card in data.items():
        if key == "aging":
            for b in card:
                rows.append({"section": "aging", "name": b["bucket"], **{k: b[k] for k in METRICS_COLUMNS[2:]}})
        elif key == "credit":  # patients' payments not applied to any charge
            cents = card["credit_cents"]
            rows.append(
                {
                    "section": "credit",
                    "name": "credit",
                    "count": card["count"],
                    "amount_outstanding": plain_dollars(cents),
                    "amount_outstanding_cents": cents,
                }
            )
        else:
            section = "total" if key == "total" else "status"
            rows.append({"section": section, "name": key, **{k: card[k] for k in METRICS_COLUMNS[2:]}})
    return rows


def print_metrics(a: App, store: Store, *, show_all: bool) -> None:
    from outreach_cli.cli.output import Col, badge, dollars, print_table
    from outreach_cli.domain.statuses import Status
    from outreach_cli.store.metrics import metrics as q

    data = q(store, show_all=show_all, now=a.now)
    cards = [{"key": k, **v} for k, v in data.items() if k not in ("total", "aging", "credit")]
    labels = {"total": "Total", "written-off-net": "Written off, net", "credit": "Credit (patients)"}
    if show_all:
        cards.append({"key": "total", **data["total"]})
        wo, cr = data[Status.WRITTEN_OFF.value], data["credit"]
        # Money that is not an open balance: written off net of recoveries, and patients' credit.
        cards.append({"key": "written-off-net", "count": None, "amount_outstanding_cents": wo["written_off_cents"]})
        cards.append({"key": "credit", "count": cr["count"], "amount_outstanding_cents": cr["credit_cents"]})
    amount = Col(
        "amount_outstanding_cents", "Outstanding", lambda r: dollars(r["amount_outstanding_cents"]), "right", keep=True
    )
    count = Col("count", "Sets", lambda r: "" if r["count"] is None else f"{r['count']:,}", "right", keep=True)
    label = Col("key", "Status", lambda r: labels.get(r["key"]) or badge(r["key"]), keep=True)
    print_table(a, cards, [label, count, amount])
    if show_all:
        a.write("\n")
        bucket = Col("bucket", "Open, days since created", keep=True)
        print_table(a, data["aging"], [bucket, count, amount])


def print_attention(a: App, store: Store, limit: int = 15) -> None:
    from outreach_cli.cli.cmd_list import print_sets
    from outreach_cli.domain.statuses import ATTENTION
    from outreach_cli.domain.views import SetListRow
    from outreach_cli.store.queries import ListFilter, list_sets

    per = max(1, limit // len(ATTENTION))
    rows: list[SetListRow] = []
    for status in ATTENTION:  # failed, expired, paused, will-fail: a few of each
        rows.extend(list_sets(store, ListFilter(statuses=[status], sort="amount", desc=True, limit=per), a.context()))
    a.out.print()
    if not rows:
        a.out.print("No sets need attention (none failed, expired, paused or will-fail).")
        return
    a.out.print(
        f"Sets needing attention (the largest {per} of each; `outreach{f' --db {a.db}' if a.db else ''} list --status failed,expired,paused,will-fail` for all):"
    )
    print_sets(a, rows)


SHOW_SEE_ALL = "--format json or a wider terminal"


def parse_set_id(text: str, what: str = "show") -> int:
    """An invoice set ID typed by a person; a patient ID or name gets a pointer to `list --search`."""
    from outreach_cli.cli.options import BIGGEST
    from outreach_cli.domain.errors import InvalidInput

    raw = text.strip().lstrip("#")
    if raw.isdigit() and 1 <= int(raw) <= BIGGEST:
        return int(raw)
    if raw.isdigit():
        raise InvalidInput(f"{what}: {text!r} is not an invoice set ID (IDs are 1 to {BIGGEST})")
    raise InvalidInput(
        f"{what} needs an invoice set ID (a number), not {text!r}; "
        f"to find a patient's sets: outreach list --search {_quote(text)}"
    )


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def show(
    ctx: typer.Context,
    set_id: Annotated[str, typer.Argument(help="Invoice set ID (the number in `list`'s ID column).", metavar="ID")],
    fmt: Annotated[str | None, SHOW_FORMATS.option()] = None,
) -> None:
    """One invoice set in full, with its timeline.

    Status, the patient and which methods are usable (with reasons), charges, the schedule
    (past and future steps per method) and the timeline, oldest first. Times are in the
    practice time zone; with --format json they are UTC (`2026-11-26T14:00:00Z`).

    \b
    Examples:
      outreach show 42
      outreach show 42 --format json | jq '.timeline[-1]'
    """
    from outreach_cli.cli.output import emit_document, utc_times
    from outreach_cli.store.queries import show_set

    a = get_app(ctx)
    f = SHOW_FORMATS.resolve(a, fmt)
    parsed_set_id = parse_set_id(set_id)
    store = a.store()
    data = show_set(store, parsed_set_id, a.context())
    if f == Format.JSON:
        emit_document(a, utc_times(data))
        return
    _show_text(a, data)


def _show_text(a: App, d: SetView) -> None:
    from outreach_cli.cli.output import Clock

    clock = Clock(a)
    _show_heading(a, d, clock)
    _show_patient(a, d["patient"])
    a.out.print()
    _show_charges(a, d, clock)
    a.out.print()
    _show_schedule(a, d, clock)
    a.out.print()
    _show_timeline(a, d, clock)


def _show_heading(a: App, d: SetView, clock: Clock) -> None:
    """Status, balance, rule set, reason, payment link and credit."""
    from rich.text import Text

    from outreach_cli.cli.output import badge, dollars

    status = badge(d["status"])
    head = Text.assemble(
        (f"Invoice set {d['id']}  ", "bold"),
        status if isinstance(status, str) else status.__rich__(),
        f"  {dollars(d['amount_outstanding_cents'])} outstanding  rule set {d['rule_set']}",
    )
    a.out.print(head)
    if d["status_reason"]:
        a.out.print(Text(f"  {d['status_reason']}"))
    link = d["payment_url"] or "(Stripe link: created with the next message)"
    a.out.print(Text(f"  created {clock(d['created_at'])}   payment link {link}"))
    if d.get("credit_cents"):
        a.out.print(Text(f"  patient credit {dollars(d['credit_cents'])} (payments not applied to any charge)"))


def _show_patient(a: App, p: PatientView) -> None:
    """Name, contact details, address and which methods are usable."""
    from rich.text import Text

    a.out.print(Text(f"\nPatient {p['first_name']} {p['last_name']} ({p['patient_id']})", style="bold"))
    addr = p["address"]
    a.out.print(
        Text(
            f"  phone {p['phone'] or '-'} ({p['phone_type']})   email {p['email'] or '-'}   time zone {', '.join(p['timezones'])}"
        )
    )
    parts = (addr["address_line1"], addr["address_line2"], addr["city"], addr["state"], addr["postal_code"])
    a.out.print(Text("  address " + (", ".join(v for v in parts if v) or "-")))
    for m, u in p["usable_methods"].items():
        a.out.print(
            Text.assemble(
                f"  {m:<12}", ("usable", "green") if u["usable"] else ("not usable", "red"), f"  {u['reason'] or ''}"
            )
        )


def _show_charges(a: App, d: SetView, clock: Clock) -> None:
    from outreach_cli.cli.output import Col, dollars, print_table

    print_table(
        a,
        d["charges"],
        [
            Col("charge_id", "Charge", keep=True),
            Col("created_at", "Created", lambda c: clock(c["created_at"], relative=False), drop=2),
            Col("amount_cents", "Amount", lambda c: dollars(c["amount_cents"]), "right", keep=True),
            Col("outstanding_cents", "Outstanding", lambda c: dollars(c["outstanding_cents"]), "right", keep=True),
            Col("status", "Status", keep=True),
            Col("description", "Description", wrap=True, min_width=12, drop=3),
        ],
        title="Charges",
        see_all=SHOW_SEE_ALL,
    )


def _show_schedule(a: App, d: SetView, clock: Clock) -> None:
    from outreach_cli.cli.output import Col, print_table

    print_table(
        a,
        d["schedule"],
        [
            Col("day", "Day", justify="right", keep=True),
            Col("step", "Step", wrap=True, min_width=10, drop=2),
            Col("method", "Method", lambda s: s["method"] + (" (fallback)" if s.get("fallback") else ""), keep=True),
            Col("status", "Status", keep=True),
            Col("due_at", "Due", lambda s: clock(s["due_at"]), drop=3),
            Col("send_at", "Goes out", lambda s: clock(s.get("send_at")), drop=6, optional=True),
            Col("held_by", "Held by", lambda s: s.get("held_by") or "", drop=7, optional=True),
            Col("reason", "Reason", wrap=True, min_width=16, drop=4, optional=True),
            Col("sent_at", "Sent", lambda s: clock(s["sent_at"]), drop=5, optional=True),
        ],
        title="Schedule",
        see_all=SHOW_SEE_ALL,
    )


def _show_timeline(a: App, d: SetView, clock: Clock) -> None:
    from outreach_cli.cli.output import Col, human_detail, print_table

    def change(e: Mapping[str, Any]) -> str:
        return f"{badge_label(e['from_status'])} -> {badge_label(e['to_status'])}" if e["to_status"] else ""

    def detail(e: Mapping[str, Any]) -> str:
        return "; ".join(x for x in (e.get("action"), e.get("reason"), human_detail(e.get("detail"), clock)) if x)

    print_table(
        a,
        d["timeline"],
        [
            Col("at", "When", lambda e: clock(e["at"]), keep=True),
            Col("kind", "Event", keep=True),
            Col("actor", "Actor", drop=3),
            Col("change", "Change", change, wrap=True, min_width=10, drop=2),
            Col("detail", "Detail", detail, wrap=True, min_width=16, drop=4),
        ],
        title="Timeline",
        see_all=SHOW_SEE_ALL,
    )


def badge_label(status: str | None) -> str:
    from outreach_cli.domain.statuses import Status

    if not status:
        return "-"
    try:
        return Status(status).label
    except ValueError:
        return status


def audit(
    ctx: typer.Context,
    set_id: Annotated[str | None, typer.Option("--id", help="Only this invoice set.", metavar="ID")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Time range: 2026-03-01, -7d, today, A..B.", metavar="RANGE")
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only events by this actor.", metavar="NAME")] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            metavar="N",
            parser=whole_number("--limit"),
            help=f"At most N events (default {AUDIT_TTY_LIMIT} on a terminal, all when piped; 0 = all).",
        ),
    ] = None,
    fmt: Annotated[str | None, AUDIT_FORMATS.option()] = None,
) -> None:
    """The event log (append-only), oldest first.

    Status changes with actor and reason, sends, replies, payments, charges, rule-set changes.
    JSON/TSV rows: `id` (the invoice set, first, so rows pipe into `act`), `event_id`, `at`
    (UTC), `kind`, `actor`, `action`, `from_status`, `to_status`, `reason`, `detail` (an object).

    \b
    Examples:
      outreach audit --id 42
      outreach audit --since -7d --actor alice --format jsonl | jq .detail
      outreach audit --since today --format tsv | outreach act pause -
    """
    from outreach_cli.cli.output import Clock, emit, utc_times
    from outreach_cli.store.audit import AUDIT_COLUMNS
    from outreach_cli.store.audit import audit as q

    a = get_app(ctx)
    f = AUDIT_FORMATS.resolve(a, fmt)
    parsed_set_id = parse_set_id(set_id, "--id") if set_id is not None else None
    rng = None
    if since is not None:
        from outreach_cli.domain.ranges import parse_time_range
        from outreach_cli.domain.timeutil import get_zone

        rng = parse_time_range(since, tz=get_zone(a.settings.timezone), now=a.now, flag="--since", single_is_start=True)
    limit = None if limit == 0 else AUDIT_TTY_LIMIT if limit is None and a.env.stdout_isatty else limit
    # One more than shown tells whether there are more, without a COUNT over the whole log.
    found = q(
        a.store(),
        set_id=parsed_set_id,
        since=rng,
        actor=actor,
        limit=None if limit is None else min(limit + 1, BIGGEST),
    )
    shown, more = _first(found, limit)
    if f != Format.TABLE:  # times inside `detail` too, as everywhere: UTC, whole seconds, Z
        shown = (utc_times(r) for r in shown)
    n = emit(a, shown, f, columns=AUDIT_COLUMNS, table=audit_table(Clock(a)))
    if f == Format.TABLE and more:
        a.info(f"showing the first {n:,} events; --limit N, --since RANGE or --format tsv for more")


def _first(found: Iterable[Mapping[str, Any]], limit: int | None) -> tuple[Iterable[Mapping[str, Any]], bool]:
    """The first ``limit`` rows of ``found`` (all of them, streamed, without one) and whether it
    held more."""
    if limit is None:
        return found, False
    got = list(found)
    return got[:limit], len(got) > limit


def audit_table(clock: Clock) -> list[Col]:
    from outreach_cli.cli.output import Col, human_detail

    def change(e: Mapping[str, Any]) -> str:
        return f"{badge_label(e['from_status'])} -> {badge_label(e['to_status'])}" if e["to_status"] else ""

    def detail(e: Mapping[str, Any]) -> str:
        return "; ".join(x for x in (e.get("action"), e.get("reason"), human_detail(e.get("detail"), clock)) if x)

    return [
        Col("at", "When", lambda e: clock(e["at"]), keep=True),
        Col("id", "Set", justify="right", keep=True),
        Col("kind", "Event", keep=True),
        Col("actor", "Actor", drop=3),
        Col("change", "Change", change, wrap=True, min_width=10, drop=2),
        Col("detail", "Detail", detail, wrap=True, min_width=20, drop=4),
    ]


@coll.command("export")
def export(
    ctx: typer.Context,
    out: Annotated[str, typer.Option("--out", help="CSV file to write, or - for stdout.", metavar="FILE|-")] = "-",
    include_exported: Annotated[
        bool, typer.Option("--all", help="Include sets exported before; mark nothing.")
    ] = False,
) -> None:
    """CSV of sets in collections, for the agency.

    One row per charge (service date, description, amounts) with the set's ID first (column
    `id`), patient, contact, address, balance, and whether a payment arrived after escalation.
    Marks the sets exported unless --all; a set that receives a payment later is offered once more.

    \b
    Examples:
      outreach collections export --out agency-2026-11.csv
      outreach collections export --all | less
    """
    from outreach_cli.store.collections_export import export as do_export

    a = get_app(ctx)
    store = a.store()
    if out == "-":
        n = do_export(store, a.env.stdout, a.context(), include_exported=include_exported)
    else:
        import os
        import tempfile

        from outreach_cli.domain.errors import InvalidInput

        target = os.path.abspath(out)
        d = os.path.dirname(target)
        if os.path.isdir(target):
            raise InvalidInput(
                f"--out {out}: is a directory; give a file name (e.g. {os.path.join(out, 'agency.csv')})"
            )
        if not os.path.isdir(d):
            raise InvalidInput(f"--out {out}: directory does not exist: {d}")
        try:
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".collections-", suffix=".csv")
        except OSError as exc:
            raise InvalidInput(f"--out {out}: cannot write in {d}: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
                # The file moves into place before the sets are marked exported: a failure marks nothing.
                n = do_export(
                    store, fh, a.context(), include_exported=include_exported, finish=lambda: os.replace(tmp, target)
                )
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    a.info(
        "collections export: no new sets in collections to export (--all exports every one again)"
        if n == 0 and not include_exported
        else f"collections export: {n:,} set{'' if n == 1 else 's'}"
        + ("" if include_exported else " (now marked exported)")
    )
