"""`outreach rulesets list|show|validate|sync`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from outreach_cli.cli.context import get_app

rs = typer.Typer(help="List, show, validate and sync rule sets (TOML files in rulesets/).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(rs, name="rulesets")


FormatOpt = Annotated[str | None, typer.Option("--format", help="table, tsv, csv, json, jsonl.")]


@rs.command("list")
def list_(ctx: typer.Context, fmt: FormatOpt = None) -> None:
    """The rule sets in the database, with their version and how many open sets use them."""
    from outreach_cli.cli.render import resolve_format, write_rows
    from outreach_cli.core.ruleset_store import list_rule_sets

    a = get_app(ctx)
    f = resolve_format(a, fmt, allowed=("table", "tsv", "csv", "json", "jsonl"))
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
    write_rows(a, rows, ["name", "title", "version", "steps", "expiry_day", "open_sets", "description"], f)


@rs.command("show")
def show(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Rule-set name.")], fmt: FormatOpt = None
) -> None:
    """One rule set: its steps, methods, messages and expiry."""
    import json

    from outreach_cli.core.errors import InvalidInput
    from outreach_cli.core.ruleset_store import list_rule_sets
    from outreach_cli.core.rulesets import RuleSet, parse_text

    a = get_app(ctx)
    infos = {i.name: i for i in list_rule_sets(a.store())}
    if name not in infos:
        raise InvalidInput(f"unknown rule set {name!r}; known: {', '.join(sorted(infos)) or 'none'}")
    info = infos[name]
    report = parse_text(info.source_text, name=name, source=name)
    parsed: RuleSet | None = report.rule_set
    if fmt and fmt.lower() == "json":
        payload = {
            "name": name,
            "version": info.version,
            "title": info.title,
            "description": info.description,
            "expiry_day": info.expiry_day,
            "open_sets": info.open_sets,
            "fallback": list(parsed.fallback) if parsed else [],
            "steps": [
                {
                    "day": s.day,
                    "methods": list(s.methods),
                    "title": s.title,
                    "message": s.message,
                    "min_balance_cents": s.min_balance_cents,
                    "max_balance_cents": s.max_balance_cents,
                }
                for s in (parsed.steps if parsed else [])
            ],
        }
        a.write(json.dumps(payload, indent=2) + "\n")
        return
    a.write(f"{name} (version {info.version}): {info.title}\n{info.description}\n")
    if parsed:
        a.write(f"expiry day {parsed.expiry_day}; fallback: {', '.join(parsed.fallback) or 'none'}\n\n")
        for s in parsed.steps:
            bounds = ""
            if s.min_balance_cents is not None or s.max_balance_cents is not None:
                from outreach_cli.core.money import format_dollars

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
    """Check rule-set files: errors name the file, step and field; SMS messages are measured in
    segments (GSM-7 or UCS-2) with realistic long values, with a warning above 2."""
    from outreach_cli.core.errors import InvalidInput
    from outreach_cli.core.rulesets import load_dir, load_file

    a = get_app(ctx)
    caps = a.settings.values.get("compliance")
    if files:
        reports = [load_file(f, caps) for f in files]
    else:
        d = Path(str(a.settings.values["rulesets_dir"]))
        if not d.is_dir():
            raise InvalidInput(f"rule-set directory {d} does not exist; name files to validate")
        reports = load_dir(d, caps)
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
    """Load a directory of rule sets into the database. A changed file becomes a new version;
    pending steps of sets that use it follow the new version. Nothing is written if any file is invalid."""
    from outreach_cli.core.ruleset_store import sync_dir

    a = get_app(ctx)
    d = directory or Path(str(a.settings.values["rulesets_dir"]))
    store = a.store()
    for r in sync_dir(store, d, a.context()):
        a.info(f"rule set {r.name}: {r.outcome} (version {r.version})")
