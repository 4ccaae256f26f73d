"""`outreach doctor`: check configuration, database, rule sets and providers, sending nothing."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import typer

from outreach_cli.cli.context import get_app


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
    from outreach_cli.core.errors import ConfigError, OutreachError

    a = get_app(ctx)
    results: list[tuple[bool, str, str]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        results.append((ok, name, detail))

    try:
        s = a.settings
        check(
            "config", True, f"{s.config_path or 'no config file'}; timezone {s.timezone}, window {s.sending['window']}"
        )
    except OutreachError as exc:
        check("config", False, exc.message)
        _print(a, results)
        raise typer.Exit(4) from None

    from outreach_cli.core.store import KNOWN_REVISIONS, SCHEMA_HEAD, mask_url, newer_schema_error, open_store

    store = None
    try:
        store = open_store(s.database, check_schema=False, create=False)
        rev = store.current_revision()
        check("database", True, f"{mask_url(s.database)} reachable" + (" (read-only)" if store.readonly else ""))
        if rev == SCHEMA_HEAD:
            check("schema", True, f"revision {rev}")
        elif rev is not None and rev not in KNOWN_REVISIONS:
            check("schema", False, newer_schema_error(rev).message)
            store = None
        else:
            check("schema", False, f"revision {rev or 'none'}, need {SCHEMA_HEAD}: run `outreach init`")
            store = None
    except OutreachError as exc:
        check("database", False, exc.message)
        store = None

    if store is not None:
        from outreach_cli.core.ruleset_store import list_rule_sets

        infos = list_rule_sets(store)
        check(
            "rule sets", bool(infos), ", ".join(f"{i.name} v{i.version}" for i in infos) or "none: run `outreach init`"
        )
        default = str(s.values.get("default_rule_set") or "")
        if default:
            from outreach_cli.core.errors import InvalidInput
            from outreach_cli.core.experiments import parse_arms

            try:  # a plain name, or weighted A/B arms (standard:70,gentle:30)
                arms = parse_arms(default, flag="default_rule_set").names
            except InvalidInput as exc:
                check("default rule set", False, exc.message)
            else:
                check("default rule set", set(arms) <= {i.name for i in infos}, default)
        with store.read() as conn:
            stored = store.get_meta(conn, "secret")
        env_secret = os.environ.get("OUTREACH_SECRET") or s.values.get("secret")
        check(
            "payment-link secret",
            bool(env_secret or stored),
            f"{'OUTREACH_SECRET' if env_secret else 'stored in the database'} {mask_secret(env_secret or stored)}"
            if (env_secret or stored)
            else "missing: run `outreach init` or set OUTREACH_SECRET",
        )

    ch = s.channels
    for channel in ("sms", "call"):
        if ch[channel] == "twilio":
            sid = os.environ.get("TWILIO_ACCOUNT_SID")
            tok = os.environ.get("TWILIO_AUTH_TOKEN")
            sender = os.environ.get("TWILIO_FROM_NUMBER") or os.environ.get("TWILIO_MESSAGING_SERVICE_SID")
            missing = [
                n
                for n, v in (
                    ("TWILIO_ACCOUNT_SID", sid),
                    ("TWILIO_AUTH_TOKEN", tok),
                    ("TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID", sender),
                )
                if not v
            ]
            base = os.environ.get("OUTREACH_TWILIO_BASE_URL", "https://api.twilio.com")
            check(
                f"{channel} provider",
                not missing,
                f"twilio at {base}, account {mask_secret(sid)}, token {mask_secret(tok)}"
                if not missing
                else "twilio: missing " + ", ".join(missing),
            )
        else:
            check(f"{channel} provider", True, "sandbox (no network)")
    if ch["email"] == "smtp":
        url = os.environ.get("OUTREACH_SMTP_URL")
        sender = os.environ.get("OUTREACH_EMAIL_FROM")
        missing = [n for n, v in (("OUTREACH_SMTP_URL", url), ("OUTREACH_EMAIL_FROM", sender)) if not v]
        from outreach_cli.core.store import mask_url as _m

        check(
            "email provider",
            not missing,
            f"smtp {_m(url or '')}" if not missing else "smtp: missing " + ", ".join(missing),
        )
    else:
        check("email provider", True, "sandbox (no network)")
    if ch["mail"] == "outbox":
        out = Path(str(ch["mail_outbox"]))
        parent = out if out.exists() else out.parent if str(out.parent) else Path(".")
        ok = os.access(parent if str(parent) else ".", os.W_OK)
        check("mail provider", ok, f"outbox {out.absolute()}" + ("" if ok else " is not writable"))
    else:
        check("mail provider", True, "sandbox")
    if ch["charge_card"] == "stripe" or s.values["payments"]["provider"] == "stripe":
        _check_stripe(check, ch["charge_card"] == "stripe", s.values["payments"]["provider"] == "stripe")
    else:
        check("charge_card provider", True, "sandbox")
    from outreach_cli.core.channels.base import practice_identity_problem

    real = [f"{m} ({ch[m]})" for m in ("sms", "call", "email", "mail", "charge_card") if ch[m] != "sandbox"]
    problem = practice_identity_problem(
        str(s.values.get("practice_name") or ""), str(s.values.get("practice_phone") or "")
    )
    if problem is None:
        check("practice", True, f"{s.values['practice_name']}, {s.values['practice_phone']}")
    elif real:
        check(
            "practice",
            False,
            f"{problem}: set practice_name and practice_phone; until then {', '.join(real)} will not send",
        )
    else:
        check("practice", True, f"{problem}; the sandbox shows a made-up practice (real providers would refuse)")
    _print(a, results)
    if not all(ok for ok, _, _ in results):
        raise typer.Exit(int(ConfigError.exit_code))


def _check_stripe(check: Callable[[str, bool, str], None], charges: bool, links: bool) -> None:
    """Stripe: the key's mode (test or live, from its prefix) and one cheap GET, masked."""
    from outreach_cli.core.channels.stripe_provider import DEFAULT_BASE_URL, StripeApi, key_mode, mask_key, ping

    uses = ", ".join(n for n, on in (("charge_card", charges), ("payment links", links)) if on)
    key = os.environ.get("STRIPE_API_KEY")
    base = os.environ.get("OUTREACH_STRIPE_BASE_URL") or DEFAULT_BASE_URL
    mode = key_mode(key)
    if not key:
        check("stripe", False, f"{uses}: STRIPE_API_KEY is not set")
        return
    if mode is None:
        check("stripe", False, f"{uses}: STRIPE_API_KEY {mask_key(key)} is not a sk_/rk_ test or live key")
        return
    problem = ping(StripeApi.from_env())
    detail = f"{uses} at {base}, {mode} mode, key {mask_key(key)}"
    check("stripe", problem is None, detail + (f": {problem}" if problem else ", reachable"))
    secret = os.environ.get("STRIPE_WEBHOOK_SECRET")
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
