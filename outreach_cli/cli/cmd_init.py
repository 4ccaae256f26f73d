"""`outreach init`: create or upgrade the schema and sync the rule sets."""

from __future__ import annotations

from pathlib import Path

import typer

from outreach_cli.cli.context import App, get_app


def register(app: typer.Typer) -> None:
    app.command("init")(init)


def init(ctx: typer.Context) -> None:
    """Create or upgrade the schema; sync the rule sets.

    Safe to run repeatedly.

    Rule sets come from `rulesets_dir` (default ./rulesets); where that directory does not
    exist, the rule sets shipped with outreach are used.

    \b
    Example:
      outreach --db billing.db init
    """
    from outreach_cli.store.database import mask_url
    from outreach_cli.store.ruleset_store import sync_dir

    a = get_app(ctx)
    store = a.store(check_schema=False)
    before, after = store.migrate()
    if before == after:
        a.info(f"schema: {mask_url(store.url)} is up to date (revision {after})")
    else:
        a.info(f"schema: {mask_url(store.url)} {'created' if before is None else 'upgraded'} at revision {after}")
    if store.ensure_secret():
        a.info("secret: generated a payment-link secret and stored it in the database")
    results = sync_dir(store, rulesets_dir(a), a.context())
    for r in results:
        a.info(f"rule set {r.name}: {r.outcome} (version {r.version})")


def rulesets_dir(a: App) -> Path:
    """`rulesets_dir` (default ./rulesets); where it does not exist, the rule sets shipped with
    outreach (as `init` does, so `rulesets validate` and `sync` work from any directory)."""
    from outreach_cli.domain.rulesets import shipped_dir

    directory = Path(str(a.settings.values["rulesets_dir"]))
    if directory.is_dir():
        return directory
    a.info(f"rule sets: {directory} does not exist; using the rule sets shipped with outreach")
    return shipped_dir()
