"""Every rule-set validation error of SPEC section 3, each from a bad file; messages name the
file, the step and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from outreach_cli.domain.rulesets import load_dir, load_file, shipped_dir, sms_segments

GOOD_STEP = """
[[step]]
day = 0
methods = ["sms"]
title = "Hello"
message = "Hi {first_name}, pay {url}"
"""


def _file(tmp_path: Path, body: str, name: str = "bad") -> Path:
    p = tmp_path / f"{name}.toml"
    p.write_text(body, encoding="utf-8")
    return p


CASES = [
    ("not toml", "expiry_day = \n", None, None, "not valid TOML"),
    ("no expiry", GOOD_STEP, None, "expiry_day", "required"),
    ("expiry not after last", "expiry_day = 0\n" + GOOD_STEP, None, "expiry_day", "after the last step"),
    ("no steps", "expiry_day = 10\n", None, "step", "at least one"),
    ("day not int", 'expiry_day = 10\n[[step]]\nday = 1.5\nmethods=["mail"]\n', "step 1", "day", "whole number"),
    ("day negative", 'expiry_day = 10\n[[step]]\nday = -1\nmethods=["mail"]\n', "step 1", "day", ">= 0"),
    ("days not increasing", "expiry_day = 10\n" + GOOD_STEP + GOOD_STEP, "step 2 (day 0)", "day", "strictly increase"),
    (
        "methods empty",
        "expiry_day = 10\n[[step]]\nday = 0\nmethods = []\n",
        "step 1 (day 0)",
        "methods",
        "at least one method",
    ),
    (
        "unknown method",
        'expiry_day = 10\n[[step]]\nday = 0\nmethods = ["fax"]\n',
        "step 1 (day 0)",
        "methods",
        "unknown method 'fax'",
    ),
    (
        "repeated method",
        'expiry_day = 10\n[[step]]\nday = 0\nmethods = ["mail", "mail"]\n',
        "step 1 (day 0)",
        "methods",
        "appears twice",
    ),
    (
        "sms without message",
        'expiry_day = 10\n[[step]]\nday = 0\nmethods = ["sms"]\n',
        "step 1 (day 0)",
        "message",
        "required for sms",
    ),
    (
        "call without message",
        'expiry_day = 10\n[[step]]\nday = 0\nmethods = ["call"]\n',
        "step 1 (day 0)",
        "message",
        "required for call",
    ),
    (
        "sms without first_name",
        'expiry_day = 10\n[[step]]\nday = 0\nmethods = ["sms"]\nmessage = "Pay {url}"\n',
        "step 1 (day 0)",
        "message",
        "{first_name}",
    ),
    (
        "email without url",
        'expiry_day = 10\n[[step]]\nday = 0\nmethods = ["email"]\nmessage = "Hi {first_name}"\n',
        "step 1 (day 0)",
        "message",
        "{url}",
    ),
    (
        "unknown placeholder",
        'expiry_day = 10\n[[step]]\nday = 0\nmethods = ["sms"]\nmessage = "Hi {first_name} {diagnosis} {url}"\n',
        "step 1 (day 0)",
        "message",
        "unknown placeholder {diagnosis}",
    ),
    (
        "bad min_balance",
        'expiry_day = 10\n[[step]]\nday = 0\nmethods = ["mail"]\nmin_balance = "lots"\n',
        "step 1 (day 0)",
        "min_balance",
        "not an amount",
    ),
    (
        "min above max",
        'expiry_day = 10\n[[step]]\nday = 0\nmethods = ["mail"]\nmin_balance = "50"\nmax_balance = "10"\n',
        "step 1 (day 0)",
        "min_balance",
        "above max_balance",
    ),
    (
        "unknown step key",
        'expiry_day = 10\n[[step]]\nday = 0\nmethods = ["mail"]\ndelay = 3\n',
        "step 1 (day 0)",
        "delay",
        "unknown key",
    ),
    (
        "unknown fallback",
        'expiry_day = 10\nfallback = ["pigeon"]\n' + GOOD_STEP,
        None,
        "fallback",
        "unknown method 'pigeon'",
    ),
]


@pytest.mark.parametrize("label,body,step,field,needle", CASES, ids=[c[0] for c in CASES])
def test_validation_error_names_file_step_field(
    tmp_path: Path, label: str, body: str, step: str | None, field: str | None, needle: str
) -> None:
    report = load_file(_file(tmp_path, body))
    assert report.rule_set is None
    messages = [str(p) for p in report.errors]
    hit = [m for m in messages if needle in m]
    assert hit, messages
    m = hit[0]
    assert m.startswith(str(tmp_path / "bad.toml")), m
    if step:
        assert f": {step}" in m, m
    if field:
        assert f": {field}:" in m or m.endswith(f": {field}") or f"{field}: " in m, m


def test_shipped_rule_sets_are_valid() -> None:
    reports = load_dir(shipped_dir())
    assert {r.name for r in reports} >= {"standard", "gentle", "final-notice"}
    for r in reports:
        assert not r.errors, [str(p) for p in r.errors]
        assert r.rule_set is not None


def test_final_notice_ends_with_mail_and_charge_card() -> None:
    rs = load_file(shipped_dir() / "final-notice.toml").rule_set
    assert rs is not None
    assert "mail" in rs.steps[-2].methods and rs.steps[-1].methods == ("charge_card",)


def test_sms_segments() -> None:
    assert sms_segments("a" * 160) == ("GSM-7", 160, 1)
    assert sms_segments("a" * 161) == ("GSM-7", 161, 2)
    assert sms_segments("a" * 306) == ("GSM-7", 306, 2)
    assert sms_segments("a" * 307)[2] == 3
    assert sms_segments("€" * 80) == ("GSM-7", 160, 1)  # extension characters count twice
    assert sms_segments("é" * 10)[0] == "GSM-7"
    assert sms_segments("ü" * 70)[0] == "GSM-7"
    assert sms_segments("ç" + "a" * 69) == ("UCS-2", 70, 1)  # ç is not GSM-7 (only Ç is)
    assert sms_segments("😀" * 35) == ("UCS-2", 70, 1)  # surrogate pairs count as two
    assert sms_segments("ç" + "a" * 70) == ("UCS-2", 71, 2)


def test_long_sms_warns_with_segments(tmp_path: Path) -> None:
    body = (
        'expiry_day = 10\n[[step]]\nday = 0\nmethods = ["sms"]\nmessage = "Hi {first_name}, '
        + "x" * 300
        + ' {url} Reply STOP to opt out."\n'
    )
    report = load_file(_file(tmp_path, body, "long"))
    assert report.rule_set is not None  # a warning, not an error
    assert report.segments[0].segments >= 3
    assert any("segments" in str(w) and "step 1" in str(w) for w in report.warnings)


def test_unicode_message_counts_ucs2(tmp_path: Path) -> None:
    body = 'expiry_day = 10\n[[step]]\nday = 0\nmethods = ["sms"]\nmessage = "Hola {first_name}, pague aquí ç {url} Reply STOP to opt out."\n'
    report = load_file(_file(tmp_path, body, "es"))
    assert report.segments[0].encoding == "UCS-2"
