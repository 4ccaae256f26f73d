"""Option bundles shared by commands: the `list` filters (also `act`) and `--format`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from outreach_cli.cli.context import App

if TYPE_CHECKING:
    from outreach_cli.core.queries import ListFilter

FILTERS = "Filters"

Search = Annotated[
    str | None,
    typer.Option(
        "--search",
        help="Patient name (substring, any case), phone in any formatting (4+ digits match a digit substring), patient ID or invoice set ID.",
        rich_help_panel=FILTERS,
    ),
]
StatusOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--status",
        help="Status (repeatable or comma-separated): active, paused, expired, failed, will-fail, paid, cancelled, written-off, collections; open; all. Default: the open statuses.",
        rich_help_panel=FILTERS,
    ),
]
AmountOpt = Annotated[
    str | None,
    typer.Option(
        "--amount",
        help="Amount outstanding in dollars: 100..500, 100.., ..50, 75 (inclusive).",
        metavar="RANGE",
        rich_help_panel=FILTERS,
    ),
]
CreatedOpt = Annotated[
    str | None,
    typer.Option(
        "--created",
        help="Created: A..B with dates (whole days, practice time zone), datetimes, today, yesterday, -7d, +3d, -2w; open ends allowed.",
        metavar="RANGE",
        rich_help_panel=FILTERS,
    ),
]
SendTimeOpt = Annotated[
    str | None,
    typer.Option(
        "--send-time", help="Next scheduled send, same forms as --created.", metavar="RANGE", rich_help_panel=FILTERS
    ),
]
RuleSetOpt = Annotated[
    list[str] | None,
    typer.Option("--rule-set", help="Rule set name (repeatable).", metavar="NAME", rich_help_panel=FILTERS),
]
SortOpt = Annotated[str, typer.Option("--sort", help="next-send, amount, created, patient, status or id.")]
DescOpt = Annotated[bool, typer.Option("--desc", help="Sort descending.")]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", min=0, help="At most N sets (default 50 on a terminal, all when piped).")
]
OffsetOpt = Annotated[int, typer.Option("--offset", min=0, help="Skip the first N sets.")]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", help="table, tsv, csv, json, jsonl or ids (default: table on a terminal, tsv otherwise)."),
]


def build_filter(
    a: App,
    *,
    search: str | None,
    status: list[str] | None,
    amount: str | None,
    created: str | None,
    send_time: str | None,
    rule_set: list[str] | None,
    sort: str = "next-send",
    desc: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> ListFilter:
    from outreach_cli.core.errors import InvalidInput
    from outreach_cli.core.queries import ListFilter
    from outreach_cli.core.ranges import parse_amount_range, parse_time_range
    from outreach_cli.core.statuses import parse_status_list
    from outreach_cli.core.timeutil import get_zone

    tz = get_zone(a.settings.timezone)
    rule_sets: list[str] = []
    for r in rule_set or []:
        if not r.strip():
            raise InvalidInput("--rule-set is empty: give a rule-set name (see `outreach rulesets list`)")
        rule_sets.extend(x.strip() for x in r.split(",") if x.strip())
    return ListFilter(
        search=search,
        statuses=parse_status_list(status),
        amount=parse_amount_range(amount) if amount is not None else None,
        created=parse_time_range(created, tz=tz, now=a.now, flag="--created") if created is not None else None,
        send_time=parse_time_range(send_time, tz=tz, now=a.now, flag="--send-time") if send_time is not None else None,
        rule_sets=rule_sets,
        sort=sort.strip().lower(),
        desc=desc,
        limit=limit,
        offset=offset,
    )
