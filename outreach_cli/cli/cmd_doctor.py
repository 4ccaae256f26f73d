"""`outreach doctor`: check configuration, database, rule sets and providers, sending nothing."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from outreach_cli.cli.context import get_app
from outreach_cli.config import METHODS

if TYPE_CHECKING:
    from outreach_cli.cli.context import App
    from outreach_cli.config import Settings
    from outreach_cli.provider_settings import StripeSettings
    from outreach_cli.store.database import Store

Check = Callable[[str, bool, str], None]


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)


def mask_secret(value: str | None) -> str:
    if not value:
        return "(not set)"
    return value[:2] + "*" * max(4, len(value) - 4) + value[-2:] if len(value) > 8 else "****"


def doctor(ctx: typer.Context) -> None:
    """Check the setup without sending anything.

    The configuration, database reachability and schema version, rule sets and provider
    settings. One line per check; exit 0 only when all pass (else 4).

    \b
    Example:
      outreach --config /etc/outreach.toml doctor
    """
    from outreach_cli.domain.errors import ConfigError, OutreachError

    a = get_app(ctx)
    results: list[tuple[bool, str, str]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        results.append((ok, name, detail))

    try:
        s = a.settings
    except OutreachError as exc:
        check("config", False, exc.message)
        _print(a, results)
        raise typer.Exit(4) from None
    where = s.config_path or "no config file"
    check("config", True, f"{where}; timezone {s.timezone}, window {s.sending.window}")
    store = _check_database(a, s, check)
    if store is not None:
        _check_rule_sets(s, store, check)
        _check_secret(s, store, check)
    _check_messaging(s, check)
    _check_mail(s, check)
    if s.stripe.charges or s.stripe.links:
        _check_stripe(s.stripe, check)
    else:
        check("charge_card provider", True, "sandbox")
    _check_practice(s, check)
    _print(a, results)
    if not all(ok for ok, _, _ in results):
        raise typer.Exit(int(ConfigError.exit_code))


def _check_database(a: App, s: Settings, check: Check) -> Store | None:
    """Reachable, and at the schema this version needs: the store, else None."""
    from outreach_cli.domain.errors import OutreachError
    from outreach_cli.store.database import KNOWN_REVISIONS, SCHEMA_HEAD, mask_url, newer_schema_error

    try:
        store = a.store(check_schema=False, create=False)  # disposed of when the command ends
        rev = store.current_revision()
    except OutreachError as exc:
        check("database", False, exc.message)
        return None
    check("database", True, f"{mask_url(s.database)} reachable" + (" (read-only)" if store.readonly else ""))
    if rev == SCHEMA_HEAD:
        check("schema", True, f"revision {rev}")
        return store
    if rev is not None and rev not in KNOWN_REVISIONS:
        check("schema", False, newer_schema_error(rev).message)
    else:
        check("schema", False, f"revision {rev or 'none'}, need {SCHEMA_HEAD}: run `outreach init`")
    return None


def _check_rule_sets(s: Settings, store: Store, check: Check) -> None:
    from outreach_cli.domain.errors import InvalidInput
    from outreach_cli.domain.experiments import parse_arms
    from outreach_cli.store.ruleset_store import list_rule_sets

    infos = list_rule_sets(store)
    listed = ", ".join(f"{i.name} v{i.version}" for i in infos)
    check("rule sets", bool(infos), listed or "none: run `outreach init`")
    default = s.default_rule_set
    if not default:
        return
    try:  # a plain name, or weighted A/B arms (standard:70,gentle:30)
        arms = parse_arms(default, flag="default_rule_set").names
    except InvalidInput as exc:
        check("default rule set", False, exc.message)
    else:
        check("default rule set", set(arms) <= {i.name for i in infos}, default)


def _check_secret(s: Settings, store: Store, check: Check) -> None:
    """The same resolution as every command's (`resolve_secret`): configured, else stored."""
    with store.read() as conn:
        stored = store.get_meta(conn, "secret")
    link = s.payment_link(stored)
    problems = link.problems()
    detail = "; ".join(problems) if problems else f"{link.source} {mask_secret(link.secret)}"
    check("payment-link secret", not problems, detail)


def _check_messaging(s: Settings, check: Check) -> None:
    """SMS, calls and email: the problems `run-outreach` would refuse to start with."""
    from outreach_cli.store.database import mask_url

    t = s.twilio
    for channel in ("sms", "call"):
        if s.channels.provider(channel) != "twilio":
            check(f"{channel} provider", True, "sandbox (no network)")
            continue
        problems = t.problems_for(channel)
        account = f"account {mask_secret(t.account_sid)}, token {mask_secret(t.auth_token)}"
        detail = "twilio: " + "; ".join(problems) if problems else f"twilio at {t.base_url}, {account}"
        check(f"{channel} provider", not problems, detail)
    if s.smtp.used:
        problems = s.smtp.problems()
        detail = "smtp: " + "; ".join(problems) if problems else f"smtp {mask_url(s.smtp.url or '')}"
        check("email provider", not problems, detail)
    else:
        check("email provider", True, "sandbox (no network)")


def _check_mail(s: Settings, check: Check) -> None:
    if s.channels.mail != "outbox":
        check("mail provider", True, "sandbox")
        return
    out = Path(s.channels.mail_outbox)
    parent = out if out.exists() else out.parent if str(out.parent) else Path(".")
    ok = os.access(parent if str(parent) else ".", os.W_OK)
    check("mail provider", ok, f"outbox {out.absolute()}" + ("" if ok else " is not writable"))


def _check_practice(s: Settings, check: Check) -> None:
    from outreach_cli.channels.base import practice_identity_fix, practice_identity_problem

    ch = s.channels
    real = [f"{m} ({ch.provider(m)})" for m in METHODS if ch.provider(m) != "sandbox"]
    problem = practice_identity_problem(s.practice_name, s.practice_phone)
    if problem is None:
        check("practice", True, f"{s.practice_name}, {s.practice_phone}")
    elif real:
        until = f"until then {', '.join(real)} will not send"
        check("practice", False, f"{problem}: {practice_identity_fix(s.practice_name, s.practice_phone)[0]}; {until}")
    else:
        check("practice", True, f"{problem}; the sandbox shows a made-up practice (real providers would refuse)")


def _check_stripe(st: StripeSettings, check: Check) -> None:
    """Stripe: the key's mode (test or live, from its prefix) and one cheap GET, masked."""
    from outreach_cli.channels.stripe_provider import StripeApi, ping
    from outreach_cli.provider_settings import mask_key

    problems = st.problems()
    if problems:
        check("stripe", False, f"{st.uses}: {'; '.join(problems)}")
        return
    problem = ping(StripeApi.from_settings(st))
    detail = f"{st.uses} at {st.base_url}, {st.mode} mode, key {mask_key(st.api_key)}"
    check("stripe", problem is None, detail + (f": {problem}" if problem else ", reachable"))
    secret = st.webhook_secret
    check(
        "stripe webhook secret",
        True,
        f"{mask_key(secret)}: signed events are verified"
        if secret
        else "not set: ingested Stripe events are not verified",
    )


def _print(a: object, results: list[tuple[bool, str, str]]) -> None:
    from outreach_cli.cli.context import App

    assert isinstance(a, App)
    for ok, name, detail in results:
        mark = "ok  " if ok else "FAIL"
        if a.color:
            from rich.text import Text

            a.out.print(Text.assemble((mark, "green" if ok else "bold red"), f" {name}: {detail}"))
        else:
            a.write(f"{mark} {name}: {detail}\n")
