"""`outreach act ACTION [ID...]`: act on one invoice set or thousands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from outreach_cli.cli.context import get_app
from outreach_cli.cli.options import AmountOpt, CreatedOpt, Search, SendTimeOpt, StatusOpt, build_filter
from outreach_cli.cli.output import Format, Formats

FORMATS = Formats((*Formats().allowed, Format.IDS))
ROW_TAIL_FORMATS = (Format.TSV, Format.CSV, Format.JSONL)  # written by emit_outcomes's own renderer

if TYPE_CHECKING:
    from outreach_cli.cli.context import App
    from outreach_cli.cli.output import Col
    from outreach_cli.domain.statuses import Action
    from outreach_cli.store.actions import ActionOutcome, ActResult


def register(app: typer.Typer) -> None:
    app.command("act")(act)


ActionArg = Annotated[
    str, typer.Argument(help="write-off, collections, change-ruleset, pause, resume or cancel.", metavar="ACTION")
]
IdsArg = Annotated[
    list[str] | None,
    typer.Argument(
        help='Invoice set IDs, or - to read them from stdin (plain IDs, JSON lines with "id", or TSV/CSV rows with the ID first).',
        metavar="[ID...|-]",
    ),
]
RuleSetArg = Annotated[
    list[str] | None,
    typer.Option(
        "--rule-set",
        help="change-ruleset: the new rule set. Other actions: select sets on this rule set (a filter).",
        metavar="NAME",
    ),
]
FromRuleSetArg = Annotated[
    list[str] | None,
    typer.Option(
        "--from-rule-set",
        help="change-ruleset: select sets now on this rule set.",
        metavar="NAME",
        rich_help_panel="Filters",
    ),
]
ReasonArg = Annotated[str | None, typer.Option("--reason", metavar="TEXT", help="Why (kept in the event log).")]
ActorArg = Annotated[str | None, typer.Option("--actor", metavar="NAME", help="Who acts (default: the OS user).")]
DryRunArg = Annotated[bool, typer.Option("--dry-run", help="Print exactly what would happen; change nothing.")]
YesArg = Annotated[
    bool,
    typer.Option("--yes", "-y", help="Confirm write-off, collections, cancel and change-ruleset without a prompt."),
]
SkipArg = Annotated[
    bool,
    typer.Option(
        "--skip-ineligible", help="Apply the eligible sets even if some are ineligible or not found (still exits 3)."
    ),
]


def act(
    ctx: typer.Context,
    action: ActionArg,
    ids: IdsArg = None,
    search: Search = None,
    status: StatusOpt = None,
    amount: AmountOpt = None,
    created: CreatedOpt = None,
    send_time: SendTimeOpt = None,
    rule_set: RuleSetArg = None,
    from_rule_set: FromRuleSetArg = None,
    reason: ReasonArg = None,
    actor: ActorArg = None,
    dry_run: DryRunArg = False,
    yes: YesArg = False,
    skip_ineligible: SkipArg = False,
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
    from outreach_cli.domain.statuses import parse_action

    a = get_app(ctx)
    act_ = parse_action(action)
    f = FORMATS.resolve(a, fmt)
    target_rs, filter_rs = _rule_sets(act_, rule_set, from_rule_set)
    filters = {"search": search, "status": status, "amount": amount, "created": created, "send_time": send_time}
    selected = _selection(a, ids or [], filters, filter_rs)
    res = _run(a, act_, selected, actor, target_rs, reason, skip_ineligible=skip_ineligible, dry_run=dry_run, yes=yes)
    _report(a, act_, res, f, dry_run=dry_run, skip_ineligible=skip_ineligible)


def _rule_sets(
    act_: Action, rule_set: list[str] | None, from_rule_set: list[str] | None
) -> tuple[str | None, list[str]]:
    """(the new rule set of change-ruleset, the rule sets that filter the selection)."""
    from outreach_cli.domain.errors import InvalidInput
    from outreach_cli.domain.statuses import Action

    if act_ is Action.CHANGE_RULESET:
        if not rule_set:
            raise InvalidInput("change-ruleset needs --rule-set NAME (the new rule set)")
        if len(rule_set) > 1:
            raise InvalidInput("change-ruleset takes one --rule-set (the new rule set); filter with --from-rule-set")
        return rule_set[0], list(from_rule_set or [])
    if from_rule_set:
        raise InvalidInput("--from-rule-set only goes with change-ruleset; use --rule-set to filter")
    return None, list(rule_set or [])


def _selection(a: App, ids: list[str], filters: dict[str, Any], filter_rs: list[str]) -> list[int]:
    """The selected set IDs: given, read from stdin (`-`), or found by the `list` filters."""
    from outreach_cli.cli.context import read_input
    from outreach_cli.domain.errors import InvalidInput
    from outreach_cli.domain.idstream import parse_id_args, parse_ids
    from outreach_cli.store.queries import selected_ids

    has_filters = any(v is not None for v in filters.values()) or bool(filter_rs)
    if ids and has_filters:
        raise InvalidInput("give IDs (or -) or filters, not both")
    if ids == ["-"]:
        if a.env.stdin_isatty:
            a.info("reading invoice set IDs from stdin (one or more per line; Ctrl-D to end)")
        data, source = read_input(a, "-")
        return parse_ids(data.decode("utf-8", errors="replace"), source)
    if "-" in ids:
        raise InvalidInput("- (stdin) cannot be mixed with IDs")
    if ids:
        return parse_id_args(ids)
    if has_filters:
        flt = build_filter(a, **filters, rule_set=filter_rs, sort="id")
        return selected_ids(a.store(), flt)
    raise InvalidInput(
        "select sets: give IDs, - to read IDs from stdin, or filters such as --status (there is no implicit 'all')"
    )


def _run(
    a: App,
    act_: Action,
    selected: list[int],
    actor: str | None,
    target_rs: str | None,
    reason: str | None,
    *,
    skip_ineligible: bool,
    dry_run: bool,
    yes: bool,
) -> ActResult:
    """Plans, confirms (prompt on a terminal, else --yes) and applies the action."""
    from contextlib import nullcontext

    from outreach_cli.domain.statuses import NEEDS_CONFIRMATION
    from outreach_cli.store.actions import run_action

    prompting = act_ in NEEDS_CONFIRMATION and not yes and not dry_run and a.interactive
    label = f"{act_.value}: {_sets(len(selected))}"
    with a.progress(label, show_count=False) if not prompting else nullcontext(lambda _n: None) as update:
        res = run_action(
            a.store(),
            act_,
            selected,
            a.context(actor),
            rule_set=target_rs,
            reason=reason,
            skip_ineligible=skip_ineligible,
            dry_run=dry_run,
            confirm=lambda res: _confirm(a, act_, res, yes),
        )
        update(len(selected))
    return res


def _confirm(a: App, act_: Action, res: ActResult, yes: bool) -> bool:
    from outreach_cli.domain.errors import Aborted
    from outreach_cli.domain.money import format_dollars
    from outreach_cli.domain.statuses import NEEDS_CONFIRMATION

    if act_ not in NEEDS_CONFIRMATION or yes:
        return True
    if not a.interactive:
        raise Aborted(
            f"{act_.value} would change {_sets(len(res.changed))}: add --yes to confirm (nothing was changed)"
        )
    total = sum(o.amount_cents for o in res.changed)
    n = len(res.changed)
    prompt = (
        f"{act_.value}: {n:,} invoice set{'' if n == 1 else 's'}, {format_dollars(total)} outstanding. Proceed? [y/N] "
    )
    a.env.stderr.write(prompt)
    a.env.stderr.flush()
    # Ctrl-C here: the entry point ends the prompt's line and says "interrupted".
    answer = a.env.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def _report(a: App, act_: Action, res: ActResult, f: Format, *, dry_run: bool, skip_ineligible: bool) -> None:
    """The result rows on stdout, the summary (or why nothing changed) on stderr, exit 3 when
    some sets were ineligible or not found."""
    from outreach_cli.domain.errors import ExitCode
    from outreach_cli.domain.statuses import Result

    blocked_stop = bool(res.blocked) and not skip_ineligible
    emit_outcomes(a, res.blocked if blocked_stop else res.outcomes, f)
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


def emit_outcomes(a: App, outcomes: list[ActionOutcome], f: Format) -> None:
    """One row per set, as `emit` writes them; for TSV, CSV and JSON lines each distinct rest of
    a row (action, result, statuses, reason) is rendered once and written after its ID."""
    from outreach_cli.cli.output import emit, reader_gone
    from outreach_cli.store.actions import RESULT_COLUMNS

    if f not in ROW_TAIL_FORMATS or not outcomes:
        emit(a, [o.row() for o in outcomes], f, columns=RESULT_COLUMNS, table=_table())
        return
    render, header = _row_tail(f)
    tails: dict[tuple[Any, ...], str] = {}
    lines = [header]
    start = '{"id": ' if f == Format.JSONL else ""
    for o in outcomes:
        key = (o.action, o.result, o.from_status, o.to_status, o.reason)
        tail = tails.get(key)
        if tail is None:
            row = o.row()
            tail = tails[key] = render([row[c] for c in RESULT_COLUMNS[1:]])
        lines.append(f"{start}{o.id}{tail}")
    try:
        a.env.stdout.write("".join(lines))
    except BrokenPipeError:
        reader_gone()


def _row_tail(f: Format) -> tuple[Any, str]:
    """What follows the ID on one output line (its separator first, its line end last), as a
    function of the other values; and the header line."""
    import csv
    import io
    import json

    from outreach_cli.cli.output import _cell
    from outreach_cli.store.actions import RESULT_COLUMNS

    if f == Format.JSONL:
        keys = RESULT_COLUMNS[1:]
        return lambda values: ", " + json.dumps(dict(zip(keys, values, strict=True)), ensure_ascii=False)[1:] + "\n", ""
    buf = io.StringIO()
    w = csv.writer(buf, dialect="excel-tab" if f == Format.TSV else "excel", lineterminator="\n")
    w.writerow(RESULT_COLUMNS)
    header = buf.getvalue()

    def tail(values: list[Any]) -> str:
        buf.seek(0)
        buf.truncate()
        w.writerow(["", *(_cell(v) for v in values)])  # the empty ID cell stands for the ID
        return buf.getvalue()

    return tail, header


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
