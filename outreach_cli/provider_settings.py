"""The provider settings (Twilio, SMTP, Stripe): read from the environment only, secrets never
sitting in the config file. Apart from `config` so that commands that send nothing (every read)
never build these classes: `Settings.twilio`, `.smtp` and `.stripe` make them on first use."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

Env = Mapping[str, str]

TWILIO_BASE_URL = "https://api.twilio.com"
TWILIO_TIMEOUT_S = 15.0
STRIPE_BASE_URL = "https://api.stripe.com"
STRIPE_TIMEOUT_S = 20.0
SMTP_URL_SHAPE = "smtp://[user:pass@]host[:port] or smtps://..."
_STRIPE_KEY = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9]{8,}$")


def _seconds(env: Env, name: str, default: float) -> tuple[float, str | None]:
    """A timeout in seconds from ``env``, and the problem when it is not a number."""
    text = env.get(name) or ""
    if not text:
        return default, None
    try:
        return float(text), None
    except ValueError:
        return default, f"{name} must be a number of seconds"


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str | None = None
    auth_token: str | None = None
    from_number: str | None = None
    messaging_service_sid: str | None = None
    base_url: str = TWILIO_BASE_URL
    timeout: float = TWILIO_TIMEOUT_S
    timeout_problem: str | None = None
    methods: tuple[str, ...] = ()  # the channels configured to use Twilio

    @classmethod
    def from_env(cls, env: Env, methods: tuple[str, ...] = ()) -> TwilioSettings:
        timeout, bad = _seconds(env, "OUTREACH_TWILIO_TIMEOUT", TWILIO_TIMEOUT_S)
        return cls(
            env.get("TWILIO_ACCOUNT_SID") or None,
            env.get("TWILIO_AUTH_TOKEN") or None,
            env.get("TWILIO_FROM_NUMBER") or None,
            env.get("TWILIO_MESSAGING_SERVICE_SID") or None,
            (env.get("OUTREACH_TWILIO_BASE_URL") or TWILIO_BASE_URL).rstrip("/"),
            timeout,
            bad,
            methods,
        )

    def problems_for(self, method: str) -> list[str]:
        """What stops Twilio carrying ``method`` (sms or call). A messaging-service SID sends SMS
        only: a call needs TWILIO_FROM_NUMBER."""
        creds = (("TWILIO_ACCOUNT_SID", self.account_sid), ("TWILIO_AUTH_TOKEN", self.auth_token))
        missing = [name for name, value in creds if not value]
        if not (self.from_number or (self.messaging_service_sid and method == "sms")):
            missing.append("TWILIO_FROM_NUMBER" + (" or TWILIO_MESSAGING_SERVICE_SID" if method == "sms" else ""))
        out = ["needs " + ", ".join(missing)] if missing else []
        return out + ([self.timeout_problem] if self.timeout_problem else [])

    def problems(self) -> list[str]:
        return [f"channels.{m} = twilio: {p}" for m in self.methods for p in self.problems_for(m)]


@dataclass(frozen=True)
class SmtpSettings:
    url: str | None = None
    sender: str | None = None
    used: bool = False

    @classmethod
    def from_env(cls, env: Env, used: bool = False) -> SmtpSettings:
        return cls(env.get("OUTREACH_SMTP_URL") or None, env.get("OUTREACH_EMAIL_FROM") or None, used)

    def problems(self) -> list[str]:
        from urllib.parse import urlparse

        missing = [n for n, v in (("OUTREACH_SMTP_URL", self.url), ("OUTREACH_EMAIL_FROM", self.sender)) if v is None]
        if missing:
            return ["needs " + ", ".join(missing)]
        try:
            u = urlparse(str(self.url))
            ok = u.scheme in ("smtp", "smtps") and bool(u.hostname) and (u.port or 0) >= 0
        except ValueError:  # a port that is not a number
            ok = False
        return [] if ok else [f"OUTREACH_SMTP_URL must look like {SMTP_URL_SHAPE}"]


@dataclass(frozen=True)
class StripeSettings:
    api_key: str | None = None
    base_url: str = STRIPE_BASE_URL
    timeout: float = STRIPE_TIMEOUT_S
    timeout_problem: str | None = None
    webhook_secret: str | None = None
    charges: bool = False  # channels.charge_card = "stripe"
    links: bool = False  # payments.provider = "stripe"

    @classmethod
    def from_env(cls, env: Env, *, charges: bool = False, links: bool = False) -> StripeSettings:
        timeout, bad = _seconds(env, "OUTREACH_STRIPE_TIMEOUT", STRIPE_TIMEOUT_S)
        base = (env.get("OUTREACH_STRIPE_BASE_URL") or STRIPE_BASE_URL).rstrip("/")
        return cls(
            env.get("STRIPE_API_KEY") or None, base, timeout, bad, env.get("STRIPE_WEBHOOK_SECRET"), charges, links
        )

    @property
    def mode(self) -> str | None:
        """'test' or 'live' from the key's prefix (sk_test_, rk_live_, ...); None when not a key."""
        m = _STRIPE_KEY.match(self.api_key or "")
        return m.group(2) if m else None

    @property
    def uses(self) -> str:
        return ", ".join(n for n, on in (("charge_card", self.charges), ("payment links", self.links)) if on)

    def problems(self) -> list[str]:
        if not self.api_key:
            return ["STRIPE_API_KEY is not set"]
        if self.mode is None:
            return [f"STRIPE_API_KEY {mask_key(self.api_key)} is not a sk_/rk_ test or live key"]
        return [self.timeout_problem] if self.timeout_problem else []


def mask_key(key: str | None) -> str:
    """A Stripe key or secret as it may be shown: its kind and last four characters."""
    if not key:
        return "(not set)"
    m = re.match(r"^((?:sk|rk|whsec)_(?:test_|live_)?)", key)
    prefix = m.group(1) if m else ""
    return f"{prefix}****{key[-4:]}" if len(key) > len(prefix) + 8 else f"{prefix}****"
