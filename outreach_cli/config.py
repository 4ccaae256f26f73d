"""Settings and their precedence (SPEC section 9): flag > environment > config file > default.

The config file is `--config FILE`, else `$OUTREACH_CONFIG`, else `./outreach.toml`, else the user
config directory's `outreach/config.toml`. Every key has the variable `OUTREACH_<SECTION>_<KEY>`
(top-level keys: `OUTREACH_<KEY>`). Secrets come only from the environment or an owner-only file.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from outreach_cli.core.errors import ConfigError

DEFAULTS: dict[str, Any] = {
    "database": "sqlite:///outreach.db",
    "timezone": "UTC",
    # No made-up practice: real providers refuse to send until these are configured (doctor says so).
    "practice_name": "",
    "practice_phone": "",
    "default_rule_set": "standard",
    "rulesets_dir": "rulesets",
    "secret": None,
    "sending": {
        "window": "09:00-17:00",
        "weekends": False,
        "holidays": ["US"],
        "state_holidays": False,
        "max_attempts": 3,
        "concurrency": 8,
        "lease_seconds": 300,
    },
    "channels": {
        "sms": "sandbox",
        "call": "sandbox",
        "email": "sandbox",
        "mail": "outbox",
        "charge_card": "sandbox",
        "mail_outbox": "mail-outbox",
    },
    "payments": {
        "url_template": "https://pay.example.com/p/{token}",
        "provider": "link",
        "success_url": "https://pay.example.com/thanks",
    },
    # `outreach report`: payments are credited to a send delivered this many days before them.
    "report": {"attribution_days": 7},
    # Unit costs in dollars (sub-cent values allowed): per SMS, email, call minute and letter.
    "costs": {"sms": 0.0, "email": 0.0, "call_minute": 0.0, "letter": 0.0},
    # Contact caps (README "Compliance"): per phone number / email address across patient records.
    "compliance": {
        "calls_per_7_days": 7,  # Reg F 12 CFR 1006.14(b)(2)
        "messages_per_7_days": None,  # every channel together; unset = no weekly total
        "states": {"MA": {"calls_per_7_days": 2}},  # 940 CMR 7.04(1)(f)
    },
}

CHANNEL_CHOICES = {
    "sms": ("sandbox", "twilio"),
    "call": ("sandbox", "twilio"),
    "email": ("sandbox", "smtp"),
    "mail": ("outbox", "sandbox"),
    "charge_card": ("sandbox", "stripe"),
}

SECRET_KEYS = {"secret"}


def _user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "outreach" / "config.toml"


def _warn(message: str) -> None:
    import sys

    print(f"warning: {message}", file=sys.stderr)


def _coerce(value: str, like: Any, name: str) -> Any:
    if isinstance(like, bool):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={value!r}: expected true or false")
    if isinstance(like, int):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r}: expected a whole number") from None
    if isinstance(like, list):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def database_url(value: str) -> str:
    """A bare path means SQLite; `sqlite:///x.db` and `postgresql://...` pass through."""
    v = value.strip()
    if "://" not in v:
        return "sqlite:///" + os.path.expanduser(v)
    if v.startswith("sqlite:///~"):
        return "sqlite:///" + os.path.expanduser(v[len("sqlite:///") :])
    if v.startswith("postgres://"):
        v = "postgresql://" + v[len("postgres://") :]
    return v


@dataclass
class Settings:
    values: dict[str, Any]
    config_path: Path | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def get(self, dotted: str) -> Any:
        cur: Any = self.values
        for part in dotted.split("."):
            cur = cur[part]
        return cur

    @property
    def database(self) -> str:
        return database_url(str(self.values["database"]))

    @property
    def timezone(self) -> str:
        return str(self.values["timezone"])

    @property
    def sending(self) -> dict[str, Any]:
        return dict(self.values["sending"])

    @property
    def channels(self) -> dict[str, Any]:
        return dict(self.values["channels"])


def _merge(dst: dict[str, Any], src: dict[str, Any], sources: dict[str, str], origin: str, prefix: str = "") -> None:
    for k, v in src.items():
        key = f"{prefix}{k}"
        if k not in dst and prefix == "compliance.states." and isinstance(v, dict):
            dst[k] = {"calls_per_7_days": None, "messages_per_7_days": None}  # any state may be listed
        if k not in dst:
            raise ConfigError(f"{origin}: unknown setting {key!r}")
        if isinstance(dst[k], dict):
            if not isinstance(v, dict):
                raise ConfigError(f"{origin}: {key} must be a table [{key}]")
            _merge(dst[k], v, sources, origin, key + ".")
        else:
            dst[k] = v
            sources[key] = origin


def load_settings(
    *,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    env = dict(os.environ if environ is None else environ)
    import copy

    values = copy.deepcopy(DEFAULTS)
    sources: dict[str, str] = {}

    path: Path | None = None
    explicit = config_file or env.get("OUTREACH_CONFIG")
    if explicit:
        path = Path(os.path.expanduser(explicit))
        if path.is_dir():
            raise ConfigError(f"config file {explicit} is a directory; give the path of a .toml file")
        if not path.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
    else:
        for cand in ((cwd or Path.cwd()) / "outreach.toml", _user_config_path()):
            try:
                found = cand.is_file()
            except OSError as exc:  # e.g. an unreadable $HOME
                _warn(f"skipping the config file {cand}: {exc.strerror or exc}")
                found = False
            if found:
                path = cand
                break
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except PermissionError:
            if explicit or path != _user_config_path():
                raise ConfigError(f"cannot read config file {path}: permission denied") from None
            # A service account may not be able to read a home directory's config: that file is
            # a convenience, so it is skipped with a warning instead of stopping every command.
            _warn(f"skipping the user config file {path}: permission denied")
            data = {}
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        if "secret" in data:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(
                    f"config file {path} holds a secret but is readable by others; run `chmod 600 {path}`"
                )
        _merge(values, data, sources, str(path))

    for k, v in list(values.items()):
        if isinstance(v, dict):
            for sk, sv in v.items():
                name = f"OUTREACH_{k}_{sk}".upper()
                if name in env:
                    v[sk] = _coerce(env[name], sv, name)
                    sources[f"{k}.{sk}"] = name
        else:
            name = f"OUTREACH_{k}".upper()
            if name in env:
                values[k] = _coerce(env[name], v if v is not None else "", name)
                sources[k] = name

    for dotted, v in (overrides or {}).items():
        if v is None:
            continue
        cur = values
        parts = dotted.split(".")
        for p in parts[:-1]:
            cur = cur[p]
        cur[parts[-1]] = v
        sources[dotted] = "command line"

    settings = Settings(values, path, sources)
    try:
        _validate(settings)
    except ConfigError as exc:
        # Name where the bad value came from (the config file or the environment variable).
        m = re.match(r"[a-z_][a-z_.]*", exc.message)
        origin = sources.get(m.group(0)) if m else None
        if origin and origin != "command line" and not exc.message.startswith(origin):
            raise ConfigError(f"{origin}: {exc.message}", details=exc.details) from None
        raise
    return settings


_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def _validate(s: Settings) -> None:
    from outreach_cli.core.timeutil import get_zone

    try:
        get_zone(s.timezone)
    except ValueError as exc:
        raise ConfigError(f"timezone: {exc}") from None
    window = str(s.sending["window"])
    m = _WINDOW.match(window)
    if not m or not (int(m.group(1)) * 60 + int(m.group(2)) < int(m.group(3)) * 60 + int(m.group(4)) <= 24 * 60):
        raise ConfigError(f"sending.window {window!r}: expected HH:MM-HH:MM with the start before the end")
    start = int(m.group(1)) * 60 + int(m.group(2))
    end = int(m.group(3)) * 60 + int(m.group(4))
    if min(end, 21 * 60) - max(start, 8 * 60) < 30:
        raise ConfigError(
            f"sending.window {window!r} leaves less than 30 minutes inside 08:00-21:00, when sending is ever allowed"
        )
    for ch, allowed in CHANNEL_CHOICES.items():
        if s.channels[ch] not in allowed:
            raise ConfigError(f"channels.{ch} = {s.channels[ch]!r}: choose one of {', '.join(allowed)}")
    provider = s.values["payments"]["provider"]
    if provider not in ("link", "stripe"):
        raise ConfigError(f"payments.provider = {provider!r}: choose one of link, stripe")
    _validate_compliance(s)
    if int(s.sending["max_attempts"]) < 1 or int(s.sending["concurrency"]) < 1:
        raise ConfigError("sending.max_attempts and sending.concurrency must be at least 1")
    _validate_report(s)


def _validate_report(s: Settings) -> None:
    from decimal import Decimal, InvalidOperation

    days = s.values["report"]["attribution_days"]
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ConfigError(f"report.attribution_days = {days!r}: expected a whole number of days (0 or more)")
    for key, value in s.values["costs"].items():
        try:
            ok = not isinstance(value, bool) and Decimal(str(value)).is_finite() and Decimal(str(value)) >= 0
        except InvalidOperation:
            ok = False
        if not ok:
            raise ConfigError(f"costs.{key} = {value!r}: expected an amount in dollars, 0 or more (e.g. 0.0079)")


def _validate_compliance(s: Settings) -> None:
    """`sending.holidays` (dates and calendar names) and the `[compliance]` caps."""
    from outreach_cli.core.scheduling import split_holidays

    holidays = s.sending["holidays"]
    if not isinstance(holidays, (list, str)):
        raise ConfigError('sending.holidays: expected a list such as ["US", "US-MA", "2026-12-24"]')
    try:
        split_holidays(holidays)
    except ValueError as exc:
        raise ConfigError(f"sending.holidays: {exc}") from None
    if not isinstance(s.sending.get("state_holidays", False), bool):
        raise ConfigError("sending.state_holidays: expected true or false")
    comp = s.values["compliance"]
    tables = [("compliance", comp)] + [
        (f"compliance.states.{st}", v) for st, v in (comp.get("states") or {}).items() if isinstance(v, dict)
    ]
    for where, table in tables:
        for key in ("calls_per_7_days", "messages_per_7_days"):
            v = table.get(key)
            if v is None and (key == "messages_per_7_days" or where != "compliance"):
                continue
            if isinstance(v, str) and v.strip().isdigit():
                v = table[key] = int(v.strip())
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{where}.{key} = {v!r}: expected a whole number of at least 1")
    for st in comp.get("states") or {}:
        if not isinstance(comp["states"][st], dict) or len(st) != 2 or not st.isalpha() or st != st.upper():
            raise ConfigError(
                f"compliance.states.{st}: expected a table named by a two-letter state code, e.g. [compliance.states.MA]"
            )
