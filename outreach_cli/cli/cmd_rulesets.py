"""`outreach rulesets list|show|validate|sync`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from outreach_cli.cli.context import get_app
from outreach_cli.cli.output import Format, Formats

if TYPE_CHECKING:
    from outreach_cli.cli.context import App
    from outreach_cli.domain.rulesets import RuleSet

rs = typer.Typer(
    help="List, show, validate and sync rule sets.\n\nRule sets are TOML files in rulesets/.\n\n\b\nExample:\n  outreach rulesets validate && outreach rulesets sync",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(rs, name="rulesets")


LIST_FORMATS = Formats()
SHOW_FORMATS = Formats(pipe=Format.TABLE, note="table is the text view; tsv, csv and jsonl give one row per step.")
LIST_COLUMNS = ["name", "title", "version", "steps", "expiry_day", "open_sets", "description"]
STEP_COLUMNS = ["name", "version", "day", "methods", "title", "message", "min_balance_cents", "max_balance_cents"]


@rs.command("list")
def list_(ctx: typer.Context, fmt: Annotated[str | None, LIST_FORMATS.option()] = None) -> None:
    """The rule sets in the database, with version and use.

    One row per rule set: name, title, version, number of steps, expiry day and how many open
    invoice sets use it.

    \b
    Example:
      outreach rulesets list --format json | jq '.[].name'
    """
    from outreach_cli.cli.output import Col, emit
    from outreach_cli.store.ruleset_store import list_rule_sets

    a = get_app(ctx)
    f = LIST_FORMATS.resolve(a, fmt)
    rows = [
        {
            "name": i.name,
            "title": i.title,
            "version": i.version,
            "steps": i.steps,
            "expiry_day": i.expiry_day,
            "open_sets": i.open_sets,
            "description": i.description,
        }
        for i in list_rule_sets(a.store())
    ]
    table = [
        Col("name", "Name", keep=True),
        Col("title", "Title", wrap=True, min_width=12, drop=1),
        Col("version", "Version", justify="right", keep=True),
        Col("steps", "Steps", justify="right", keep=True),
        Col("expiry_day", "Expiry day", justify="right", drop=2),
        Col("open_sets", "Open sets", justify="right", keep=True),
        Col("description", "Description", wrap=True, min_width=20, drop=3),
    ]
    emit(a, rows, f, columns=LIST_COLUMNS, table=table, id_key="name")


@rs.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Rule-set name (see `outreach rulesets list`).", metavar="NAME")],
    fmt: Annotated[str | None, SHOW_FORMATS.option()] = None,
) -> None:
    """One rule set: its steps, methods, messages and expiry.

    \b
    Examples:
      outreach rulesets show standard
      outreach rulesets show gentle --format json
      outreach rulesets show gentle --format tsv | cut -f3,4
    """
    from outreach_cli.cli.output import emit, emit_document
    from outreach_cli.domain.errors import InvalidInput
    from outreach_cli.domain.rulesets import parse_text
    from outreach_cli.store.ruleset_store import list_rule_sets

    a = get_app(ctx)
    f = SHOW_FORMATS.resolve(a, fmt)
    infos = {i.name: i for i in list_rule_sets(a.store())}
    if name not in infos:
        raise InvalidInput(f"unknown rule set {name!r}; known: {', '.join(sorted(infos)) or 'none'}")
    info = infos[name]
    report = parse_text(info.source_text, name=name, source=name)
    parsed: RuleSet | None = report.rule_set
    steps = _step_dicts(parsed)
    if f == Format.JSON:
        emit_document(a, _show_document(name, info, parsed, steps))
        return
    if f != Format.TABLE:
        emit(a, ({"name": name, "version": info.version, **s} for s in steps), f, columns=STEP_COLUMNS)
        return
    _show_table(a, name, info, parsed)


def _step_dicts(parsed: RuleSet | None) -> list[dict[str, Any]]:
    return [
        {
            "day": s.day,
            "methods": list(s.methods),
            "title": s.title,
            "message": s.message,
            "min_balance_cents": s.min_balance_cents,
            "max_balance_cents": s.max_balance_cents,
        }
        for s in (parsed.steps if parsed else [])
    ]


def _show_document(name: str, info: Any, parsed: RuleSet | None, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "version": info.version,
        "title": info.title,
        "description": info.description,
        "expiry_day": info.expiry_day,
        "open_sets": info.open_sets,
        "fallback": list(parsed.fallback) if parsed else [],
        "steps": steps,
    }


def _show_table(a: App, name: str, info: Any, parsed: RuleSet | None) -> None:
    """The rule set as text: heading, then one line per step and its message."""
    a.write(f"{name} (version {info.version}): {info.title}\n{info.description}\n")
    if not parsed:
        return
    a.write(f"expiry day {parsed.expiry_day}; fallback: {', '.join(parsed.fallback) or 'none'}\n\n")
    for s in parsed.steps:
        bounds = ""
        if s.min_balance_cents is not None or s.max_balance_cents is not None:
            from outreach_cli.domain.money import format_dollars

            lo = format_dollars(s.min_balance_cents) if s.min_balance_cents is not None else ""
            hi = format_dollars(s.max_balance_cents) if s.max_balance_cents is not None else ""
            bounds = f"  [balance {lo}..{hi}]"
        a.write(f"day {s.day:>3}  {', '.join(s.methods):<16} {s.title}{bounds}\n")
        if s.message:
            a.write(f"          {s.message}\n")


@rs.command("validate")
def validate(
    ctx: typer.Context,
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Rule-set files (default: every *.toml in rulesets_dir).", metavar="[FILE...]"),
    ] = None,
) -> None:
    """Check rule-set files.

    Errors name the file, step and field; SMS messages are measured in segments (GSM-7 or
    UCS-2) with realistic long values, with a warning above 2.

    \b
    Example:
      outreach rulesets validate rulesets/standard.toml
    """
    from outreach_cli.domain.errors import InvalidInput
    from outreach_cli.domain.rulesets import load_dir, load_file

    a = get_app(ctx)
    caps = a.settings.values.get("compliance")
    if files:
        reports = [load_file(f, caps) for f in files]
    else:
        from outreach_cli.cli.cmd_init import rulesets_dir

        reports = load_dir(rulesets_dir(a), caps)
    n_err = 0
    for r in reports:
        for p in r.problems:
            print(str(p), file=a.env.stderr)
        n_err += len(r.errors)
        status = "ok" if not r.errors else f"{len(r.errors)} error(s)"
        segs = ", ".join(f"step {s.step}: {s.segments} segment(s) {s.encoding}" for s in r.segments)
        a.write(f"{r.source}: {status}" + (f"; sms {segs}" if segs else "") + "\n")
    if n_err:
        raise InvalidInput(f"{n_err} error(s) in {sum(1 for r in reports if r.errors)} rule-set file(s)")


@rs.command("sync")
def sync(
    ctx: typer.Context,
    directory: Annotated[
        Path | None, typer.Argument(help="Directory of *.toml rule sets (default rulesets_dir).", metavar="[DIR]")
    ] = None,
) -> None:
    """Load a directory of rule sets into the database.

    A changed file becomes a new version; pending steps of sets that use it follow the new
    version. Nothing is written if any file is invalid.

    \b
    Example:
      outreach rulesets sync ./rulesets
    """
    from outreach_cli.cli.cmd_init import rulesets_dir
    from outreach_cli.store.ruleset_store import sync_dir

    a = get_app(ctx)
    d = directory or rulesets_dir(a)
    store = a.store()
    for r in sync_dir(store, d, a.context()):
        a.info(f"rule set {r.name}: {r.outcome} (version {r.version})")
