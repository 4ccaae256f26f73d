"""Settings and their precedence (SPEC section 9): flag > environment > config file > default.

The config file is `--config FILE`, else `$OUTREACH_CONFIG`, else `./outreach.toml`, else the user
config directory's `outreach/config.toml`. Every key has the variable `OUTREACH_<SECTION>_<KEY>`
(top-level keys: `OUTREACH_<KEY>`). Secrets come only from the environment or an owner-only file.
"""

from __future__ import annotations

import copy
import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from outreach_cli.domain.errors import ConfigError

if TYPE_CHECKING:
    from outreach_cli.provider_settings import SmtpSettings, StripeSettings, TwilioSettings

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
METHODS = ("sms", "call", "email", "mail", "charge_card")

Env = Mapping[str, str]


def _user_config_path(env: Env) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "outreach" / "config.toml"


def _warn(message: str) -> None:
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


# --- the [sending], [channels] and [payments] tables ---------------------------------------------


@dataclass(frozen=True)
class Sending:
    """The [sending] table: window, weekends, holidays, attempts, concurrency, lease."""

    window: str
    weekends: bool
    holidays: tuple[str, ...]
    state_holidays: bool
    max_attempts: int
    concurrency: int
    lease_seconds: int  # how long a claimed step stays claimed before another run may take it

    @classmethod
    def from_values(cls, v: Mapping[str, Any]) -> Sending:
        h = v["holidays"]
        holidays = tuple(e.strip() for e in h.split(",") if e.strip()) if isinstance(h, str) else tuple(h)
        return cls(
            str(v["window"]),
            bool(v["weekends"]),
            holidays,
            bool(v.get("state_holidays", False)),
            int(v["max_attempts"]),
            int(v["concurrency"]),
            int(v.get("lease_seconds", 300)),
        )


@dataclass(frozen=True)
class Channels:
    """The provider of each method (`sandbox`, `twilio`, `smtp`, `outbox`, `stripe`)."""

    sms: str
    call: str
    email: str
    mail: str
    charge_card: str
    mail_outbox: str

    @classmethod
    def from_values(cls, v: Mapping[str, Any]) -> Channels:
        return cls(*(str(v[k]) for k in (*METHODS, "mail_outbox")))

    def provider(self, method: str) -> str:
        return str(getattr(self, method))

    def using(self, kind: str) -> tuple[str, ...]:
        """The methods whose provider is ``kind``."""
        return tuple(m for m in METHODS if self.provider(m) == kind)


@dataclass(frozen=True)
class Payments:
    """The [payments] table: the link template, the provider, Stripe's success page."""

    url_template: str
    provider: str  # link | stripe
    success_url: str

    @classmethod
    def from_values(cls, v: Mapping[str, Any]) -> Payments:
        return cls(str(v["url_template"]), str(v["provider"]), str(v["success_url"]))


@dataclass(frozen=True)
class PaymentLinkSettings:
    """What signs payment links: the template and the secret (`OUTREACH_SECRET` or the config
    file's `secret`, else the one `outreach init` stored in the database)."""

    url_template: str
    secret: str
    source: str  # where the secret came from, for doctor

    def problems(self) -> list[str]:
        if not self.secret:
            return ["payment-link secret missing: run `outreach init` or set OUTREACH_SECRET"]
        return []


# --- the settings object ------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Every setting, read once (`load_settings`). ``values`` keeps the merged tables for the
    sections without their own type yet (`compliance`, `costs`, `report`)."""

    values: dict[str, Any]
    config_path: Path | None = None
    sources: dict[str, str] = field(default_factory=dict)
    env: Env = field(default_factory=dict, repr=False)
    sending: Sending = field(init=False)
    channels: Channels = field(init=False)
    payments: Payments = field(init=False)

    def __post_init__(self) -> None:
        v = self.values
        set_ = object.__setattr__
        set_(self, "sending", Sending.from_values(v["sending"]))
        set_(self, "channels", Channels.from_values(v["channels"]))
        set_(self, "payments", Payments.from_values(v["payments"]))

    # The providers' settings, read from the environment when first asked for (outreach_cli/provider_settings.py).

    @cached_property
    def twilio(self) -> TwilioSettings:
        from outreach_cli.provider_settings import TwilioSettings

        return TwilioSettings.from_env(self.env, self.channels.using("twilio"))

    @cached_property
    def smtp(self) -> SmtpSettings:
        from outreach_cli.provider_settings import SmtpSettings

        return SmtpSettings.from_env(self.env, bool(self.channels.using("smtp")))

    @cached_property
    def stripe(self) -> StripeSettings:
        from outreach_cli.provider_settings import StripeSettings

        return StripeSettings.from_env(
            self.env, charges=self.channels.charge_card == "stripe", links=self.payments.provider == "stripe"
        )

    def get(self, dotted: str) -> Any:
        cur: Any = self.values
        for part in dotted.split("."):
            cur = cur[part]
        return cur

    def override(self, changes: Mapping[str, Any]) -> Settings:
        """A copy with dotted keys replaced (`{"channels.sms": "sandbox"}`), sections rebuilt."""
        values = copy.deepcopy(self.values)
        for dotted, value in changes.items():
            _put(values, dotted, value)
        return replace(self, values=values)

    @property
    def database(self) -> str:
        return database_url(str(self.values["database"]))

    @property
    def timezone(self) -> str:
        return str(self.values["timezone"])

    @property
    def practice_name(self) -> str:
        return str(self.values.get("practice_name") or "")

    @property
    def practice_phone(self) -> str:
        return str(self.values.get("practice_phone") or "")

    @property
    def default_rule_set(self) -> str:
        return str(self.values.get("default_rule_set") or "")

    @property
    def now_text(self) -> str | None:
        """`OUTREACH_NOW`: the clock for every command (the `--now` flag wins)."""
        return self.env.get("OUTREACH_NOW") or None

    @property
    def secret(self) -> str:
        """The configured payment-link secret (`OUTREACH_SECRET`, the config file); "" if none."""
        return str(self.values.get("secret") or "")

    def payment_link(self, stored_secret: str | None) -> PaymentLinkSettings:
        """The configured secret, else the one stored in the database."""
        origin = self.sources.get("secret", "config") if self.secret else "stored in the database"
        return PaymentLinkSettings(self.payments.url_template, self.secret or (stored_secret or ""), origin)

    def provider_problems(self) -> dict[str, list[str]]:
        """What stops each configured real provider, by method; what `run-outreach` refuses."""
        out: dict[str, list[str]] = {}
        for m in self.channels.using("twilio"):
            out[m] = self.twilio.problems_for(m)
        if self.smtp.used:
            out["email"] = self.smtp.problems()
        if self.stripe.charges or self.stripe.links:
            out["stripe"] = self.stripe.problems()
        return out


def resolve_secret(settings: Settings, stored_secret: str | None) -> str:
    """The payment-link secret, resolved in this one place. An empty secret is an error: links
    signed with "" would be guessable."""
    link = settings.payment_link(stored_secret)
    problems = link.problems()
    if problems:
        raise ConfigError(problems[0])
    return link.secret


def _put(values: dict[str, Any], dotted: str, value: Any) -> None:
    cur = values
    parts = dotted.split(".")
    for p in parts[:-1]:
        cur = cur[p]
    cur[parts[-1]] = value


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


def _find_config(config_file: str | None, env: Env, cwd: Path | None) -> tuple[Path | None, bool]:
    """The config file to read (None: none found), and whether it was named explicitly."""
    explicit = config_file or env.get("OUTREACH_CONFIG")
    if explicit:
        path = Path(os.path.expanduser(explicit))
        if path.is_dir():
            raise ConfigError(f"config file {explicit} is a directory; give the path of a .toml file")
        if not path.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return path, True
    for cand in ((cwd or Path.cwd()) / "outreach.toml", _user_config_path(env)):
        try:
            found = cand.is_file()
        except OSError as exc:  # e.g. an unreadable $HOME
            _warn(f"skipping the config file {cand}: {exc.strerror or exc}")
            found = False
        if found:
            return cand, False
    return None, False


def _read_config(path: Path, explicit: bool, env: Env) -> dict[str, Any]:
    import tomllib  # only when there is a file to read

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except PermissionError:
        if explicit or path != _user_config_path(env):
            raise ConfigError(f"cannot read config file {path}: permission denied") from None
        # A service account may not be able to read a home directory's config: that file is
        # a convenience, so it is skipped with a warning instead of stopping every command.
        _warn(f"skipping the user config file {path}: permission denied")
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    if "secret" in data and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"config file {path} holds a secret but is readable by others; run `chmod 600 {path}`")
    return data


def _apply_env(values: dict[str, Any], sources: dict[str, str], env: Env) -> None:
    """`OUTREACH_<SECTION>_<KEY>` and `OUTREACH_<KEY>` over the file and the defaults."""
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


def load_settings(
    *,
    config_file: str | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Env | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Defaults, then the config file, then the environment, then ``overrides`` (flags)."""
    env = dict(os.environ if environ is None else environ)
    values = copy.deepcopy(DEFAULTS)
    sources: dict[str, str] = {}
    path, explicit = _find_config(config_file, env, cwd)
    if path is not None:
        _merge(values, _read_config(path, explicit, env), sources, str(path))
    _apply_env(values, sources, env)
    for dotted, v in (overrides or {}).items():
        if v is not None:
            _put(values, dotted, v)
            sources[dotted] = "command line"
    try:
        _validate(values)
        return Settings(values, path, sources, env)
    except ConfigError as exc:
        # Name where the bad value came from (the config file or the environment variable).
        m = re.match(r"[a-z_][a-z_.]*", exc.message)
        origin = sources.get(m.group(0)) if m else None
        if origin and origin != "command line" and not exc.message.startswith(origin):
            raise ConfigError(f"{origin}: {exc.message}", details=exc.details) from None
        raise


_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")


def _validate(v: dict[str, Any]) -> None:
    from outreach_cli.domain.timeutil import get_zone

    try:
        get_zone(str(v["timezone"]))
    except ValueError as exc:
        raise ConfigError(f"timezone: {exc}") from None
    _validate_window(str(v["sending"]["window"]))
    for ch, allowed in CHANNEL_CHOICES.items():
        if v["channels"][ch] not in allowed:
            raise ConfigError(f"channels.{ch} = {v['channels'][ch]!r}: choose one of {', '.join(allowed)}")
    provider = v["payments"]["provider"]
    if provider not in ("link", "stripe"):
        raise ConfigError(f"payments.provider = {provider!r}: choose one of link, stripe")
    _validate_compliance(v)
    if int(v["sending"]["max_attempts"]) < 1 or int(v["sending"]["concurrency"]) < 1:
        raise ConfigError("sending.max_attempts and sending.concurrency must be at least 1")
    _validate_report(v)


def _validate_window(window: str) -> None:
    from outreach_cli.domain.scheduling import HARD_END, HARD_START

    m = _WINDOW.match(window)
    if not m or not (int(m.group(1)) * 60 + int(m.group(2)) < int(m.group(3)) * 60 + int(m.group(4)) <= 24 * 60):
        raise ConfigError(f"sending.window {window!r}: expected HH:MM-HH:MM with the start before the end")
    start = int(m.group(1)) * 60 + int(m.group(2))
    end = int(m.group(3)) * 60 + int(m.group(4))
    if min(end, HARD_END) - max(start, HARD_START) < 30:
        raise ConfigError(
            f"sending.window {window!r} leaves less than 30 minutes inside 08:00-21:00, when sending is ever allowed"
        )


def _validate_report(v: dict[str, Any]) -> None:
    from decimal import Decimal, InvalidOperation

    days = v["report"]["attribution_days"]
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ConfigError(f"report.attribution_days = {days!r}: expected a whole number of days (0 or more)")
    for key, value in v["costs"].items():
        try:
            ok = not isinstance(value, bool) and Decimal(str(value)).is_finite() and Decimal(str(value)) >= 0
        except InvalidOperation:
            ok = False
        if not ok:
            raise ConfigError(f"costs.{key} = {value!r}: expected an amount in dollars, 0 or more (e.g. 0.0079)")


def _validate_compliance(values: dict[str, Any]) -> None:
    """`sending.holidays` (dates and calendar names) and the `[compliance]` caps."""
    from outreach_cli.domain.scheduling import split_holidays

    sending = values["sending"]
    holidays = sending["holidays"]
    if not isinstance(holidays, (list, str)):
        raise ConfigError('sending.holidays: expected a list such as ["US", "US-MA", "2026-12-24"]')
    try:
        split_holidays(holidays)
    except ValueError as exc:
        raise ConfigError(f"sending.holidays: {exc}") from None
    if not isinstance(sending.get("state_holidays", False), bool):
        raise ConfigError("sending.state_holidays: expected true or false")
    comp = values["compliance"]
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
