"""`outreach list`: find invoice sets."""

from __future__ import annotations

from typing import Any

import typer

from outreach_cli.cli.context import App, get_app
from outreach_cli.cli.options import (
    AmountOpt,
    CreatedOpt,
    DescOpt,
    FormatOpt,
    LimitOpt,
    OffsetOpt,
    RuleSetOpt,
    Search,
    SendTimeOpt,
    SortOpt,
    StatusOpt,
    build_filter,
)


def register(app: typer.Typer) -> None:
    app.command("list")(list_)


def list_(
    ctx: typer.Context,
    search: Search = None,
    status: StatusOpt = None,
    amount: AmountOpt = None,
    created: CreatedOpt = None,
    send_time: SendTimeOpt = None,
    rule_set: RuleSetOpt = None,
    sort: SortOpt = "next-send",
    desc: DescOpt = False,
    limit: LimitOpt = None,
    offset: OffsetOpt = 0,
    fmt: FormatOpt = None,
    needs_review: bool = typer.Option(
        False,
        "--needs-review",
        help="Only sets whose patient sent a reply a person must read (a refusal without STOP).",
    ),
) -> None:
    """Find invoice sets. All filters combine (AND); default: the open statuses, soonest next
    send first. Pipe it: `outreach list --status failed --format ids | outreach act pause -`."""
    from outreach_cli.cli.render import resolve_format, write_rows
    from outreach_cli.core.queries import LIST_COLUMNS, list_sets

    a = get_app(ctx)
    f = resolve_format(a, fmt)
    if limit is None and a.env.stdout_isatty:
        limit = 50
    flt = build_filter(
        a,
        search=search,
        status=status,
        amount=amount,
        created=created,
        send_time=send_time,
        rule_set=rule_set,
        sort=sort,
        desc=desc,
        limit=limit,
        offset=offset,
    )
    flt.needs_review = needs_review
    store = a.store()
    rows = list_sets(store, flt, a.context())
    n = write_rows(a, rows, LIST_COLUMNS, f, table=lambda rs: _table(a, rs))
    if f == "table":
        more = f" (first {limit}; --limit to see more)" if limit is not None and n == limit else ""
        a.info(f"{n} invoice set(s){more}")


def _table(a: App, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from outreach_cli.cli.render import badge
    from outreach_cli.core.money import format_dollars
    from outreach_cli.core.timeutil import format_relative, parse_datetime

    t = Table(show_edge=False, pad_edge=False, header_style="bold")
    for name, justify in (
        ("ID", "right"),
        ("Status", "left"),
        ("Balance", "right"),
        ("Patient", "left"),
        ("Phone", "left"),
        ("Rule set", "left"),
        ("Next send", "left"),
    ):
        t.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    t.add_column("Reason", overflow="ellipsis", no_wrap=True, max_width=70)
    for r in rows:
        nxt = ""
        if r["next_send_at"]:
            when = parse_datetime(r["next_send_at"])
            nxt = f"{format_relative(when, a.now)}: {r['next_step']} ({', '.join(r['next_methods'])})"
        t.add_row(
            str(r["id"]),
            badge(r["status"]),
            format_dollars(r["amount_outstanding_cents"]),
            f"{r['patient_name']} ({r['patient_id']})",
            r["phone"] or "",
            r["rule_set"],
            nxt,
            r["status_reason"] or "",
        )
    a.out.print(t)
