"""The `outbox` mail provider: a print-ready PDF letter per send plus a row in manifest.csv,
for the practice's print-and-mail vendor (SPEC section 5)."""

from __future__ import annotations

import csv
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

from outreach_cli.core.channels.base import DELIVERED, FAILED, Message, Outcome
from outreach_cli.core.money import format_dollars

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


def _latin1(text: str) -> str:
    # The core PDF fonts are Latin-1; anything else is replaced rather than failing the letter.
    return text.encode("latin-1", errors="replace").decode("latin-1")


def render_letter(msg: Message, path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF(format="Letter", unit="pt")
    pdf.set_auto_page_break(auto=True, margin=54)
    pdf.add_page()
    pdf.set_margins(72, 54, 72)
    pdf.set_xy(72, 54)
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(0, 18, _latin1(msg.practice_name), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    if msg.practice_phone:
        pdf.cell(0, 14, _latin1(msg.practice_phone), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(36)
    a = msg.address
    lines = [
        f"{msg.first_name} {msg.last_name}".strip(),
        a.get("address_line1") or "",
        a.get("address_line2") or "",
        f"{a.get('city') or ''}, {a.get('state') or ''} {a.get('postal_code') or ''}".strip(),
    ]
    if a.get("country") and a.get("country") not in ("US", "USA"):
        lines.append(str(a["country"]))
    pdf.set_font("Helvetica", "", 12)
    for line in lines:
        if line.strip(" ,"):
            pdf.cell(0, 15, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(30)
    pdf.set_font("Helvetica", "B", 13)
    pdf.cell(
        0,
        18,
        _latin1(f"{msg.step_title}: balance due {format_dollars(msg.balance_cents)}"),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.ln(8)
    pdf.set_font("Helvetica", "", 11)
    pdf.multi_cell(0, 15, _latin1(msg.body))
    pdf.ln(10)
    pdf.set_font("Helvetica", "B", 11)
    pdf.multi_cell(0, 15, _latin1(f"Pay securely online: {msg.payment_url}"))
    pdf.output(str(path))


class OutboxProvider:
    name = "outbox"

    def __init__(self, directory: str) -> None:
        self.dir = Path(directory)

    def send(self, msg: Message) -> Outcome:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            name = f"letter-{msg.set_id}-{msg.send_id}.pdf"
            tmp = self.dir / (name + ".tmp")
            render_letter(msg, tmp)
            os.replace(tmp, self.dir / name)
            a = msg.address
            with _lock:
                manifest = self.dir / "manifest.csv"
                new = not manifest.exists()
                with manifest.open("a", newline="", encoding="utf-8") as fh:
                    w = csv.writer(fh)
                    if new:
                        w.writerow(MANIFEST_COLUMNS)
                    w.writerow(
                        [
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
                            datetime.now(UTC).isoformat(),
                        ]
                    )
        except OSError as exc:
            return Outcome(FAILED, None, "outbox", f"cannot write the letter: {exc.strerror}")
        return Outcome(DELIVERED, name)

    def lookup(self, provider_ref: str | None, msg: Message) -> Outcome | None:
        name = f"letter-{msg.set_id}-{msg.send_id}.pdf"
        if (self.dir / name).exists():
            return Outcome(DELIVERED, name)
        return self.send(msg)
