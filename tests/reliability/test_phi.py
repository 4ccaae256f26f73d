"""PHI canary: unique names, phones, emails and message text go through imports (valid and not),
runs with provider failures, bulk actions and event ingestion, all with -v; no canary may appear
unmasked anywhere on stderr (logs and errors)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli, write
from tests.fakes.twilio_server import ACCOUNT, TOKEN, FakeTwilio
from tests.helpers import PATIENT_HEADER, patient, write_csv
from tests.reliability.harness import PRACTICE, T0, z

FIRST, LAST = "Zorblaxine", "Quintavious"
PHONE_DIGITS = "6175550187"
EMAIL = "zorblaxine.canary@example.com"
BODY_WORD = "Xylophonic"
CANARIES = [FIRST, LAST, PHONE_DIGITS, "617) 555-0187", "555-0187", EMAIL, "zorblaxine.canary", BODY_WORD]

RULES = f"""title = "Canary"
expiry_day = 10
fallback = ["email"]
[[step]]
day = 0
methods = ["sms", "call", "email", "mail"]
title = "Statement"
message = "Hi {{first_name}} {{last_name}}, {BODY_WORD} balance {{balance}}: {{url}}"
[step.messages]
sms = "Hi {{first_name}} {{last_name}}, {BODY_WORD} balance {{balance}}: {{url}} Reply STOP to opt out."
"""


def test_no_phi_on_stderr(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeTwilio(fault_rates={"500": 0.3}, seed=3).start()
    try:
        for k, v in dict(
            OUTREACH_CHANNELS_SMS="twilio",
            OUTREACH_CHANNELS_CALL="twilio",
            TWILIO_ACCOUNT_SID=ACCOUNT,
            TWILIO_AUTH_TOKEN=TOKEN,
            TWILIO_FROM_NUMBER=PRACTICE,
            OUTREACH_TWILIO_BASE_URL=fake.base_url,
            OUTREACH_TWILIO_TIMEOUT="2",
        ).items():
            monkeypatch.setenv(k, v)
        errs: list[str] = []

        def run(*args: str, **kw: object) -> None:
            r = cli("-v", *args, **kw)  # type: ignore[arg-type]
            errs.append(r.stderr)

        d = tmp_path / "rs"
        d.mkdir()
        write(d / "canary.toml", RULES)
        run("rulesets", "sync", str(d))
        good = [
            patient("C1", first_name=FIRST, last_name=LAST, phone="(617) 555-0187", email=EMAIL),
            patient(
                "C2", first_name=FIRST, last_name=LAST, phone="+15005550001", email="zorblaxine.canary@mailhost.invalid"
            ),
            patient("C3", first_name=FIRST, last_name=LAST, phone="+15005550009", email=EMAIL),
        ]
        bad = [
            *good,
            patient("C4", first_name=FIRST, last_name=LAST, phone=f"617-555-0187-{FIRST}", email=f"{EMAIL}@x"),
        ]
        write_csv(tmp_path / "bad.csv", bad, PATIENT_HEADER)
        run("import", "patients", str(tmp_path / "bad.csv"))
        run("import", "patients", str(tmp_path / "bad.csv"), "--skip-invalid")
        write_csv(
            tmp_path / "c.csv", [{"charge_id": f"X{i}", "patient_id": f"C{i}", "amount": "12.34"} for i in (1, 2, 3)]
        )
        run("import", "charges", str(tmp_path / "c.csv"), "--rule-set", "canary", now=z(T0))
        for minutes in (0, 10, 40, 130):
            run("run-outreach", now=z(T0.replace(minute=0) + __import__("datetime").timedelta(minutes=minutes)))
        fake.add_inbound(f"+1{PHONE_DIGITS}", PRACTICE, f"STOP {BODY_WORD}", T0)
        run("run-outreach", now=z(T0.replace(hour=17)))
        run(
            "events",
            "ingest",
            "-",
            input=json.dumps({"type": "inbound_sms", "from": f"+1{PHONE_DIGITS}", "body": f"{BODY_WORD} STOP"})
            + "\n"
            + json.dumps({"type": "email_bounce", "email": EMAIL})
            + "\n{broken "
            + FIRST
            + "\n",
        )
        run("act", "pause", "-", input="1\n2\n3\n")
        run("act", "write-off", "1", "2", "3", "99")
        run("act", "cancel", "--search", FIRST, "--yes")
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", "wrong-token")
        run("run-outreach", now=z(T0.replace(hour=18)))
        stderr = "\n".join(errs)
        assert "INFO" in stderr  # -v really was verbose
        # messages really went out with the canary text: C1's (Twilio refuses C2's and C3's test numbers)
        assert len(fake.messages) == 1
        for canary in CANARIES:
            assert canary.lower() not in stderr.lower(), f"PHI canary {canary!r} leaked to stderr"
        assert "wrong-token" not in stderr and TOKEN not in stderr
    finally:
        fake.stop()
