"""Option bundles shared by commands: the `list` filters (also `act`), counts, and plain help.

The `--format` option lives with the output code (`output.Formats.option`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from outreach_cli.cli.context import App

if TYPE_CHECKING:
    from outreach_cli.store.queries import ListFilter

BIGGEST = 2**63 - 1  # the largest integer SQLite and PostgreSQL store


def whole_number(flag: str, *, low: int = 0, high: int = BIGGEST, example: int = 50) -> Any:
    """A parser for a count option: plain messages (exit 2) instead of type-checker wording."""

    def parse(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            n = value
        else:
            text = str(value).strip().replace(",", "").replace("_", "")
            try:
                n = int(text)
            except ValueError:
                raise typer.BadParameter(f"{value!r} is not a whole number (e.g. {flag} {example})") from None
        if n < low:
            raise typer.BadParameter(f"{n} is below {low}; use {low} or more")
        if n > high:
            raise typer.BadParameter(f"{value} is too large; use at most {high:,}".replace(",", ""))
        return n

    return parse


def _plain_argument_names() -> None:
    """Help shows arguments as `ID`, `[FILE...]` (their metavar), not `{ID} <int range>`.

    Typer prints a required argument in braces and adds the Python type to its help; our
    arguments all carry a metavar that says what to type, so print just that.
    """
    from typer.core import TyperArgument

    def usage_name(self: Any) -> str:
        return str(self.metavar or self.name.upper())

    def usage_pieces(self: Any, ctx: Any) -> list[str]:
        return [usage_name(self)]

    TyperArgument.get_usage_pieces = usage_pieces  # type: ignore[method-assign]


_plain_argument_names()

FILTERS = "Filters"

Search = Annotated[
    str | None,
    typer.Option(
        "--search",
        metavar="TEXT",
        help="Patient name (substring, any case), phone in any formatting (4+ digits match a digit substring), patient ID or invoice set ID.",
        rich_help_panel=FILTERS,
    ),
]
StatusOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--status",
        metavar="STATUS",
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
SortOpt = Annotated[
    str,
    typer.Option(
        "--sort",
        metavar="KEY",
        help="next-send (soonest first, sets with no next send last), amount, created, patient, status or id.",
        show_default=False,
    ),
]
DescOpt = Annotated[bool, typer.Option("--desc", help="Sort descending.")]
LimitOpt = Annotated[
    int | None,
    typer.Option(
        "--limit",
        metavar="N",
        parser=whole_number("--limit"),
        help="At most N sets (default 50 on a terminal, all when piped; 0 = all).",
    ),
]
OffsetOpt = Annotated[
    int,
    typer.Option(
        "--offset",
        metavar="N",
        parser=whole_number("--offset", example=100),
        help="Skip the first N sets.",
        show_default=False,
    ),
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
    from outreach_cli.domain.errors import InvalidInput
    from outreach_cli.domain.statuses import parse_status_list
    from outreach_cli.domain.timeutil import get_zone
    from outreach_cli.store.queries import SORTS, ListFilter

    key = sort.strip().lower()
    if key not in SORTS:
        raise InvalidInput(f"--sort {sort!r}: choose one of {', '.join(sorted(SORTS))}")
    tz = get_zone(a.settings.timezone)
    rule_sets: list[str] = []
    for r in rule_set or []:
        if not r.strip():
            raise InvalidInput("--rule-set is empty: give a rule-set name (see `outreach rulesets list`)")
        rule_sets.extend(x.strip() for x in r.split(",") if x.strip())
    statuses = parse_status_list(status)
    ranges: dict[str, Any] = {}
    if amount is not None or created is not None or send_time is not None:  # loaded only for a range
        from outreach_cli.domain.ranges import parse_amount_range, parse_time_range

        ranges = {
            "amount": parse_amount_range(amount) if amount is not None else None,
            "created": parse_time_range(created, tz=tz, now=a.now, flag="--created") if created is not None else None,
            "send_time": (
                parse_time_range(send_time, tz=tz, now=a.now, flag="--send-time") if send_time is not None else None
            ),
        }
    return ListFilter(
        search=search,
        statuses=statuses,
        **ranges,
        rule_sets=rule_sets,
        sort=key,
        desc=desc,
        limit=limit,
        offset=offset,
    )
