"""`outreach act ACTION [ID...]`: act on one invoice set or thousands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from outreach_cli.cli.context import get_app
from outreach_cli.cli.options import AmountOpt, CreatedOpt, Search, SendTimeOpt, StatusOpt, build_filter
from outreach_cli.cli.output import Format, Formats

FORMATS = Formats((*Formats().allowed, Format.IDS))

if TYPE_CHECKING:
    from outreach_cli.cli.output import Col
    from outreach_cli.core.actions import ActResult


def register(app: typer.Typer) -> None:
    app.command("act")(act)


def act(
    ctx: typer.Context,
    action: Annotated[
        str, typer.Argument(help="write-off, collections, change-ruleset, pause, resume or cancel.", metavar="ACTION")
    ],
    ids: Annotated[
        list[str] | None,
        typer.Argument(
            help='Invoice set IDs, or - to read them from stdin (plain IDs, JSON lines with "id", or TSV/CSV rows with the ID first).',
            metavar="[ID...|-]",
        ),
    ] = None,
    search: Search = None,
    status: StatusOpt = None,
    amount: AmountOpt = None,
    created: CreatedOpt = None,
    send_time: SendTimeOpt = None,
    rule_set: Annotated[
        list[str] | None,
        typer.Option(
            "--rule-set",
            help="change-ruleset: the new rule set. Other actions: select sets on this rule set (a filter).",
            metavar="NAME",
        ),
    ] = None,
    from_rule_set: Annotated[
        list[str] | None,
        typer.Option(
            "--from-rule-set",
            help="change-ruleset: select sets now on this rule set.",
            metavar="NAME",
            rich_help_panel="Filters",
        ),
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", metavar="TEXT", help="Why (kept in the event log).")] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", metavar="NAME", help="Who acts (default: the OS user).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print exactly what would happen; change nothing.")
    ] = False,
    yes: Annotated[
        bool,
        typer.Option("--yes", "-y", help="Confirm write-off, collections, cancel and change-ruleset without a prompt."),
    ] = False,
    skip_ineligible: Annotated[
        bool,
        typer.Option(
            "--skip-ineligible",
            help="Apply the eligible sets even if some are ineligible or not found (still exits 3).",
        ),
    ] = False,
    fmt: Annotated[str | None, FORMATS.option()] = None,
) -> None:
    """Act on one invoice set or thousands.

    ACTION: write-off, collections, change-ruleset, pause, resume or cancel.

    Select sets by IDs, by `-` (IDs from stdin), or by the `list` filters (at least one; there
    is no implicit "all"). All-or-nothing: if any selected set is ineligible or not found,
    nothing changes and the exit code is 3 (--skip-ineligible applies the rest). write-off,
    collections, cancel and change-ruleset ask for confirmation on a terminal, else need --yes
    (exit 5 without). One result row per set on stdout; a summary line on stderr.

    \b
    Examples:
      outreach act pause 42 43 --reason "patient disputes the bill"
      outreach list --status failed --format ids | outreach act pause -
      outreach act change-ruleset --from-rule-set gentle --status active --rule-set standard --yes
      outreach act write-off --status expired --amount ..5 --dry-run
    """
    from contextlib import nullcontext

    from outreach_cli.cli.context import read_input
    from outreach_cli.cli.output import emit
    from outreach_cli.core.actions import RESULT_COLUMNS, run_action
    from outreach_cli.core.errors import Aborted, ExitCode, InvalidInput
    from outreach_cli.core.idstream import parse_id_args, parse_ids
    from outreach_cli.core.queries import selected_ids
    from outreach_cli.core.statuses import NEEDS_CONFIRMATION, Action, Result, parse_action

    a = get_app(ctx)
    act_ = parse_action(action)
    f = FORMATS.resolve(a, fmt)
    target_rs: str | None = None
    filter_rs = list(from_rule_set or [])
    if act_ is Action.CHANGE_RULESET:
        if not rule_set:
            raise InvalidInput("change-ruleset needs --rule-set NAME (the new rule set)")
        if len(rule_set) > 1:
            raise InvalidInput("change-ruleset takes one --rule-set (the new rule set); filter with --from-rule-set")
        target_rs = rule_set[0]
    else:
        if from_rule_set:
            raise InvalidInput("--from-rule-set only goes with change-ruleset; use --rule-set to filter")
        filter_rs = list(rule_set or [])
    has_filters = any(v is not None for v in (search, status, amount, created, send_time)) or bool(filter_rs)
    store = a.store()
    ids = ids or []
    if ids and has_filters:
        raise InvalidInput("give IDs (or -) or filters, not both")
    if ids == ["-"]:
        if a.env.stdin_isatty:
            a.info("reading invoice set IDs from stdin (one or more per line; Ctrl-D to end)")
        data, source = read_input(a, "-")
        selected = parse_ids(data.decode("utf-8", errors="replace"), source)
    elif "-" in ids:
        raise InvalidInput("- (stdin) cannot be mixed with IDs")
    elif ids:
        selected = parse_id_args(ids)
    elif has_filters:
        flt = build_filter(
            a,
            search=search,
            status=status,
            amount=amount,
            created=created,
            send_time=send_time,
            rule_set=filter_rs,
            sort="id",
        )
        selected = selected_ids(store, flt)
    else:
        raise InvalidInput(
            "select sets: give IDs, - to read IDs from stdin, or filters such as --status (there is no implicit 'all')"
        )

    def confirm(res: ActResult) -> bool:
        if act_ not in NEEDS_CONFIRMATION or yes:
            return True
        if not a.interactive:
            raise Aborted(
                f"{act_.value} would change {_sets(len(res.changed))}: add --yes to confirm (nothing was changed)"
            )
        from outreach_cli.core.money import format_dollars

        total = sum(o.amount_cents for o in res.changed)
        n = len(res.changed)
        prompt = f"{act_.value}: {n:,} invoice set{'' if n == 1 else 's'}, {format_dollars(total)} outstanding. Proceed? [y/N] "
        a.env.stderr.write(prompt)
        a.env.stderr.flush()
        try:
            answer = a.env.stdin.readline().strip().lower()
        except KeyboardInterrupt:
            a.env.stderr.write("\n")  # the shell prompt starts on its own line
            raise
        return answer in ("y", "yes")

    prompting = act_ in NEEDS_CONFIRMATION and not yes and not dry_run and a.interactive
    label = f"{act_.value}: {_sets(len(selected))}"
    with a.progress(label, show_count=False) if not prompting else nullcontext(lambda _n: None) as update:
        res = run_action(
            store,
            act_,
            selected,
            a.context(actor),
            rule_set=target_rs,
            reason=reason,
            skip_ineligible=skip_ineligible,
            dry_run=dry_run,
            confirm=confirm,
        )
        update(len(selected))
    blocked_stop = bool(res.blocked) and not skip_ineligible
    shown = res.blocked if blocked_stop else res.outcomes
    emit(a, [o.row() for o in shown], f, columns=RESULT_COLUMNS, table=_table())
    counts = (
        f"{res.count(Result.CHANGED)} {'would change' if dry_run else 'changed'}, {res.count(Result.UNCHANGED)} unchanged, "
        f"{res.count(Result.INELIGIBLE)} ineligible, {res.count(Result.NOT_FOUND)} not found"
    )
    prefix = f"{act_.value}{' (dry run)' if dry_run else ''}"
    if blocked_stop:
        ids_txt = ", ".join(str(o.id) for o in res.blocked[:10]) + (" ..." if len(res.blocked) > 10 else "")
        n = len(res.blocked)
        print(  # why nothing changed (exit 3): an error, printed even with -q
            f"{prefix}: nothing changed: {_sets(n)} {'is' if n == 1 else 'are'} ineligible or not found ({ids_txt}); "
            f"{counts.replace(' changed', ' would change', 1)}; use --skip-ineligible to apply the rest",
            file=a.env.stderr,
        )
    else:
        a.info(f"{prefix}: {counts}")
    if res.blocked:
        raise typer.Exit(int(ExitCode.PARTIAL))


def _sets(n: int) -> str:
    return f"{n:,} set{'' if n == 1 else 's'}"


def _table() -> list[Col]:
    from outreach_cli.cli.output import Col, badge

    return [
        Col("id", "ID", justify="right", keep=True),
        Col("result", "Result", keep=True),
        Col("from_status", "From", lambda r: badge(r["from_status"]), keep=True),
        Col("to_status", "To", lambda r: badge(r["to_status"]), keep=True),
        Col("reason", "Reason", wrap=True, min_width=20, drop=1, optional=True),
    ]
