"""The `outbox` mail provider: a print-ready PDF letter per send plus a row in manifest.csv,
for the practice's print-and-mail vendor (SPEC section 5).

Letters print any name or address: the text is set in Noto Sans (Latin, Greek, Cyrillic,
Vietnamese), with Noto Sans Arabic (shaped right to left by HarfBuzz) and Noto Sans CJK as
fallbacks. The fonts come from Python packages (dependencies), never from the system, so a fresh
machine prints the same letter. The CJK font is large, so it is loaded only for letters that
need it.

A letter has its own text: the step's `mail` message when the rule set has one (or the step's
message when the step is a letter-only step written for paper), else a standard letter built
from the practice name, the balance, the payment link and the step title. SMS wording ("Reply
STOP") never reaches paper. Letters are dated in the practice time zone by the tool's clock
(`--now`), and set left-aligned.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import threading
from datetime import UTC
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from outreach_cli.core.channels.base import DELIVERED, FAILED, Message, ProviderOutcome
from outreach_cli.core.csvsafe import neutralize
from outreach_cli.core.money import format_dollars
from outreach_cli.core.timeutil import Clock, utcnow

MANIFEST_COLUMNS = [
    "file",
    "send_id",
    "invoice_set_id",
    "name",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "country",
    "balance",
    "created_at",
]
_lock = threading.Lock()

# Scripts set in a fallback font. Arabic (and the other right-to-left scripts) need shaping.
_RTL = re.compile(r"[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufeff]")
_CJK = re.compile(
    r"[\u1100-\u11ff\u2e80-\u9fff\ua960-\ua97f\uac00-\ud7ff\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff]"
)

STANDARD_LETTER = (
    "Dear {full_name},\n\n"
    "Our records show a balance of {balance} on your account with {practice_name} ({step_title}).\n\n"
    "Please pay securely online at the address below.{call_us}\n\n"
    "If you have already paid, thank you, and please disregard this letter.\n\n"
    "Sincerely,\n{practice_name}"
)


@lru_cache(maxsize=1)
def font_paths() -> dict[str, str]:
    """The packaged fonts: regular text, Arabic, CJK."""
    import fontpkg_noto_sans
    import fontpkg_noto_sans_arabic
    import noto_cjk_sans_jp_regular

    return {
        "text": str(fontpkg_noto_sans.ROOT / "files" / "NotoSans[wdth,wght].ttf"),
        "arabic": str(fontpkg_noto_sans_arabic.ROOT / "files" / "NotoSansArabic[wdth,wght].ttf"),
        "cjk": str(noto_cjk_sans_jp_regular.FONT_PATH),
    }


def letter_text(msg: Message) -> str:
    """The letter's body: the step's mail message if the rule set gave one, else the standard one."""
    if msg.letter_template:
        from outreach_cli.core.rulesets import render

        return render(msg.letter_template, msg.values)
    phone = msg.practice_phone
    values = {
        "full_name": f"{msg.first_name} {msg.last_name}".strip() or "Patient",
        "balance": format_dollars(msg.balance_cents),
        "practice_name": msg.practice_name,
        "step_title": msg.step_title,
        "call_us": f" For questions or a payment plan, call us at {phone}." if phone else "",
    }
    text = STANDARD_LETTER
    for k, v in values.items():
        text = text.replace("{" + k + "}", v)
    return text


def letter_date(msg: Message, clock: Clock = utcnow) -> str:
    """The tool's clock (`--now`, carried by the message) in the practice zone; ``clock`` only
    when the message carries none."""
    now = msg.now or clock()
    try:
        local = now.astimezone(ZoneInfo(msg.practice_tz or "UTC"))
    except (KeyError, ValueError):
        local = now.astimezone(UTC)
    return f"{local:%B} {local.day}, {local.year}"


def address_lines(msg: Message) -> list[str]:
    """The recipient block: name, street lines, city/state/ZIP, and the country outside the US."""
    a = msg.address
    state_zip = " ".join(x for x in (a.get("state"), a.get("postal_code")) if x)
    address = [
        f"{msg.first_name} {msg.last_name}".strip(),
        a.get("address_line1") or "",
        a.get("address_line2") or "",
        ", ".join(x for x in (a.get("city"), state_zip) if x),
    ]
    if a.get("country") and a.get("country") not in ("US", "USA"):
        address.append(str(a["country"]))
    return address


def render_letter(msg: Message, path: Path, clock: Clock = utcnow) -> None:
    from fpdf import FPDF

    address = address_lines(msg)
    body = letter_text(msg)
    heading = f"{msg.step_title}: balance due {format_dollars(msg.balance_cents)}"
    everything = "\n".join([msg.practice_name, msg.practice_phone, *address, heading, body])

    fonts = font_paths()
    # fpdf2 logs the characters a font lacks (an emoji in a name): patient data stays out of logs.
    logging.getLogger("fpdf").setLevel(logging.ERROR)
    pdf = FPDF(format="Letter", unit="pt")
    pdf.set_auto_page_break(auto=True, margin=54)
    pdf.set_margins(72, 54, 72)
    pdf.add_font("Text", "", fonts["text"])
    fallbacks = []
    if _RTL.search(everything):
        pdf.add_font("Arabic", "", fonts["arabic"])
        fallbacks.append("Arabic")
    if _CJK.search(everything):
        pdf.add_font("CJK", "", fonts["cjk"])
        fallbacks.append("CJK")
    if fallbacks:
        pdf.set_fallback_fonts(fallbacks)
    pdf.add_page()
    pdf.set_xy(72, 54)

    def line(text: str, size: float, height: float) -> None:
        pdf.set_font("Text", "", size)
        # Right-to-left scripts are shaped (joined letters, visual order); other lines are not,
        # so their text extracts exactly as written.
        pdf.set_text_shaping(bool(_RTL.search(text)))
        pdf.multi_cell(0, height, text, align="L", new_x="LMARGIN", new_y="NEXT")

    line(msg.practice_name, 15, 19)
    if msg.practice_phone:
        line(msg.practice_phone, 10, 14)
    pdf.ln(8)
    line(letter_date(msg, clock), 10, 14)
    pdf.ln(28)
    for text in address:
        if text.strip(" ,"):
            line(text, 12, 15)
    pdf.ln(30)
    line(heading, 13, 18)
    pdf.ln(8)
    for para in body.split("\n"):
        if para.strip():
            line(para, 11, 15)
        else:
            pdf.ln(8)
    pdf.ln(10)
    line("Pay securely online:", 11, 15)
    line(msg.payment_url, 11, 15)
    pdf.output(str(path))


class OutboxProvider:
    name = "outbox"

    def __init__(self, directory: str, clock: Clock = utcnow) -> None:
        self.dir = Path(directory).absolute()
        self.clock = clock

    def send(self, msg: Message) -> ProviderOutcome:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            name = f"letter-{msg.set_id}-{msg.send_id}.pdf"
            tmp = self.dir / (name + ".tmp")
            render_letter(msg, tmp, self.clock)
            os.replace(tmp, self.dir / name)
            a = msg.address
            created = (msg.now or self.clock()).astimezone(UTC)
            with _lock:
                manifest = self.dir / "manifest.csv"
                new = not manifest.exists()
                with manifest.open("a", newline="", encoding="utf-8") as fh:
                    w = csv.writer(fh)
                    if new:
                        w.writerow(MANIFEST_COLUMNS)
                    row: list[Any] = [
                        name,
                        msg.send_id,
                        msg.set_id,
                        f"{msg.first_name} {msg.last_name}".strip(),
                        a.get("address_line1") or "",
                        a.get("address_line2") or "",
                        a.get("city") or "",
                        a.get("state") or "",
                        a.get("postal_code") or "",
                        a.get("country") or "",
                        format_dollars(msg.balance_cents),
                        created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    ]
                    w.writerow([neutralize(v) if isinstance(v, str) else v for v in row])
        except OSError as exc:
            return ProviderOutcome(FAILED, None, "outbox", f"cannot write the letter: {exc.strerror}")
        return ProviderOutcome(DELIVERED, name)

    def lookup(self, provider_ref: str | None, msg: Message) -> ProviderOutcome | None:
        name = f"letter-{msg.set_id}-{msg.send_id}.pdf"
        if (self.dir / name).exists():
            return ProviderOutcome(DELIVERED, name)
        return self.send(msg)
