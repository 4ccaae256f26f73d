"""Payment links: an unguessable token per invoice set, and the URL made from it."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

from outreach_cli.domain.context import Context


def payment_token(set_id: int, secret: str) -> str:
    """Unguessable and not revealing the set ID: HMAC-SHA256 of the ID under the secret."""
    mac = hmac.new(secret.encode(), f"invoice-set:{set_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac[:24]).decode().rstrip("=")


def payment_url(set_id: int, ctx: Context) -> str:
    return ctx.url_template.replace("{token}", payment_token(set_id, ctx.secret))


def payment_url_maker(ctx: Context) -> Callable[[int], str]:
    """`payment_url` for many sets: the HMAC key is prepared once and copied per set."""
    keyed = hmac.new(ctx.secret.encode(), digestmod=hashlib.sha256)
    template = ctx.url_template

    def url(set_id: int) -> str:
        mac = keyed.copy()
        mac.update(b"invoice-set:%d" % set_id)
        return template.replace("{token}", base64.urlsafe_b64encode(mac.digest()[:24]).decode().rstrip("="))

    return url
