"""Money is integer cents everywhere; these parse and format dollars exactly (no floats)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_DOLLARS = r"^\s*(-)?\s*\$?\s*(-)?\s*([0-9][0-9,]*)?(?:\.([0-9]*))?\s*$"  # compiled on first use


def parse_dollars(text: str) -> int:
    """'$1,234.56' -> 123456. Raises ValueError with a readable reason."""
    raw = str(text).strip()
    m = re.match(_DOLLARS, raw)
    if not raw or not m or (m.group(3) is None and not m.group(4)):
        raise ValueError(f"not an amount: {text!r} (use dollars like 120.50 or $1,200.00)")
    whole = m.group(3) or "0"
    if "," in whole and not re.fullmatch(r"[0-9]{1,3}(,[0-9]{3})*", whole):
        raise ValueError(f"misplaced thousands separator in {text!r}")
    frac = m.group(4) or ""
    if len(frac) > 2 and set(frac[2:]) != {"0"}:
        raise ValueError(f"more than two decimal places in {text!r} (amounts are in whole cents)")
    try:
        cents = int(Decimal(whole.replace(",", "") + "." + (frac or "0")) * 100)
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None
    if m.group(1) or m.group(2):
        cents = -cents
    return cents


def parse_cents(text: str | int) -> int:
    if isinstance(text, int):
        return text
    raw = str(text).strip().replace(",", "")
    if not re.fullmatch(r"-?[0-9]+", raw):
        raise ValueError(f"not a whole number of cents: {text!r}")
    return int(raw)


def format_dollars(cents: int) -> str:
    """123456 -> '$1,234.56' (tables, messages)."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}${whole:,}.{frac:02d}"


def plain_dollars(cents: int) -> str:
    """123456 -> '1234.56' (JSON `amount_outstanding`)."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"
