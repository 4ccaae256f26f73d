"""Printed letters (issue 10, D6): any script prints, own letter text, dated by the tool's clock,
left-aligned; the manifest uses the tool's clock and spreadsheet-safe cells."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfReader

from outreach_cli.channels.base import Message
from outreach_cli.channels.outbox import OutboxProvider
from tests.conftest import Cli
from tests.helpers import patient, seed_patients, sync_rule_set


@pytest.fixture(autouse=True)
def _practice_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real providers (Stripe, the letter outbox) refuse to send without the practice's identity."""
    monkeypatch.setenv("OUTREACH_PRACTICE_NAME", "Riverside Family Medicine")
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "+16175550100")


SMS_TEXT = "Hi {first_name}, pay {balance} now: {url} Reply STOP to opt out."


def letter(tmp_path: Path, first: str, last: str, **kw: Any) -> tuple[str, bytes, list[dict[str, str]]]:
    address = {
        "address_line1": kw.pop("line1", "1 Main St"),
        "address_line2": None,
        "city": kw.pop("city", "Chicago"),
        "state": "IL",
        "postal_code": "60601",
        "country": "US",
    }
    msg = Message(
        send_id=kw.pop("send_id", 7),
        set_id=3,
        method="mail",
        step_title="Statement letter",
        body="Hi there, pay now. Reply STOP to opt out.",
        payment_url="https://pay.example.com/p/abc",
        first_name=first,
        last_name=last,
        address=address,
        balance_cents=5000,
        practice_name="Riverside Family Medicine",
        practice_phone="(617) 555-0100",
        now=kw.pop("now", datetime(2026, 3, 2, 3, 30, tzinfo=UTC)),
        practice_tz="America/New_York",
        **kw,
    )
    out = tmp_path / "outbox"
    res = OutboxProvider(str(out)).send(msg)
    assert res.status == "delivered", res
    pdf = out / f"letter-3-{msg.send_id}.pdf"
    reader = PdfReader(str(pdf))
    text = reader.pages[0].extract_text()
    content = reader.pages[0].get_contents().get_data()  # type: ignore[union-attr]
    with (out / "manifest.csv").open(encoding="utf-8") as fh:
        manifest = list(csv.DictReader(fh))
    return text, content, manifest


def test_D6_letters_print_polish_vietnamese_chinese_and_arabic(tmp_path: Path) -> None:
    text, _, _ = letter(tmp_path, "Łukasz", "Wiśniewski", line1="ul. Żółta 5", send_id=1)
    assert "Łukasz Wiśniewski" in text and "ul. Żółta 5" in text and "?" not in text
    text, _, _ = letter(tmp_path, "Nguyễn Thị", "Minh Khai", send_id=2)
    assert "Nguyễn Thị Minh Khai" in text and "?" not in text
    text, _, _ = letter(tmp_path, "芳", "王", line1="王府井大街 1号", send_id=3)
    # pypdf decodes the CJK font's two-byte codes with a NUL before each character; the PDF maps
    # them to the right characters (ToUnicode), so compare without the NULs.
    plain = text.replace("\x00", "")
    assert "芳 王" in plain and "王府井大街 1号" in plain and "?" not in plain
    text, _, _ = letter(tmp_path, "محمد", "علي", send_id=4)
    assert "?" not in text
    # Shaping joins the letters; extraction gives them in logical or visual order.
    assert "محمد" in text or "محمد"[::-1] in text


def test_D6_letter_has_its_own_text_date_and_left_alignment(tmp_path: Path) -> None:
    text, content, manifest = letter(tmp_path, "Ann", "Lee")
    # Dated in the practice zone by the tool's clock: 03:30Z on March 2 is March 1 in New York.
    assert "March 1, 2026" in text
    assert "Reply STOP" not in text and "Hi there" not in text
    for needle in (
        "Dear Ann Lee,",
        "$50.00",
        "Riverside Family Medicine",
        "https://pay.example.com/p/abc",
        "(617) 555-0100",
    ):
        assert needle in text, (needle, text)
    assert b" Tw" not in content  # no justified (stretched) lines
    assert manifest[0]["created_at"] == "2026-03-02T03:30:00Z"


def test_D6_letter_uses_the_steps_mail_message(tmp_path: Path) -> None:
    text, _, _ = letter(
        tmp_path,
        "Ann",
        "Lee",
        letter_template="Dear {full_name}, kindly remit {balance}.",
        values={"full_name": "Ann Lee", "balance": "$50.00"},
    )
    assert "Dear Ann Lee, kindly remit $50.00." in text


def test_D6_manifest_cells_are_neutralised(tmp_path: Path) -> None:
    _, _, manifest = letter(tmp_path, "=HYPERLINK(1)", "Lee", city="@evil")
    assert manifest[0]["name"] == "'=HYPERLINK(1) Lee" and manifest[0]["city"] == "'@evil"


def test_D6_fallback_letter_from_a_run_carries_no_sms_text(cli: Cli, tmp_path: Path) -> None:
    rs = f'expiry_day = 9\nfallback = ["mail"]\n[[step]]\nday = 0\nmethods = ["sms"]\ntitle = "Text"\nmessage = "{SMS_TEXT}"\n'
    sync_rule_set(cli, tmp_path, "textmail", rs)
    seed_patients(
        cli,
        tmp_path,
        [patient("P1", first_name="Łukasz", last_name="Wiśniewski", phone="+15005550001", address_line1="ul. Żółta 5")],
        rule_set="textmail",
        amount="50.00",
        now="2026-03-02T14:00:00Z",
    )
    cli.ok("run-outreach", now="2026-03-02T14:00:00Z")
    sched = json.loads(cli.ok("show", "1", "--format", "json").stdout)["schedule"]
    assert [(s["method"], s["status"]) for s in sched] == [("sms", "failed"), ("mail", "delivered")], sched
    [pdf] = list(Path("mail-outbox").glob("*.pdf"))
    text = PdfReader(str(pdf)).pages[0].extract_text()
    assert "Łukasz Wiśniewski" in text and "ul. Żółta 5" in text and "March 2, 2026" in text
    assert "Reply STOP" not in text and "Dear Łukasz Wiśniewski," in text
    with (Path("mail-outbox") / "manifest.csv").open(encoding="utf-8") as fh:
        assert next(csv.DictReader(fh))["created_at"] == "2026-03-02T14:00:00Z"


def test_D6_doctor_shows_the_outbox_absolute_path(cli: Cli, tmp_path: Path) -> None:
    r = cli("doctor")
    line = next(x for x in (r.stdout + r.stderr).splitlines() if " mail provider:" in x)
    assert str(tmp_path / "mail-outbox") in line
