"""Issue 12 / the 2026-11 compliance audit: one test per defect (D1-D9), the revocation
classifier, contact caps across patient records, holiday calendars, per-method messages, and a
property test of the scheduling rule across both 2026 DST changes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outreach_cli.config import DEFAULTS
from outreach_cli.domain.contacts import US_STATE_ZONES, _zip_zones, phone_zones, zip_zone, zones_for
from outreach_cli.domain.rulesets import parse_text
from outreach_cli.domain.scheduling import Window, is_allowed, next_allowed
from outreach_cli.outreach.inbound import classify
from tests.conftest import Cli
from tests.helpers import patient, seed_patients, sync_rule_set

WIDE = '[sending]\nwindow = "08:00-21:00"\nweekends = true\n'
STANDARD_SMS = "Hi {first_name}, {practice_name}: {balance}. Pay: {url} Reply STOP to opt out."


def config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> None:
    p = tmp_path / "cfg.toml"
    p.write_text('timezone = "America/New_York"\n' + text, encoding="utf-8")
    monkeypatch.setenv("OUTREACH_CONFIG", str(p))


def tick(cli: Cli, at: datetime, *extra: str) -> dict[str, Any]:
    return json.loads(cli.ok("run-outreach", "--format", "json", *extra, now=at.isoformat()).stdout)  # type: ignore[no-any-return]


def show(cli: Cli, i: int, at: datetime | None = None) -> dict[str, Any]:
    kw = {"now": at.isoformat()} if at else {}
    return json.loads(cli.ok("show", str(i), "--format", "json", **kw).stdout)  # type: ignore[no-any-return]


def sent(cli: Cli, i: int, at: datetime) -> list[dict[str, Any]]:
    return [s for s in show(cli, i, at)["schedule"] if s["sent_at"]]


DAILY = """title = "Daily SMS"
expiry_day = 30
"""
for _d in range(0, 20):
    DAILY += f'[[step]]\nday = {_d}\nmethods = ["sms"]\ntitle = "D{_d}"\nmessage = "{STANDARD_SMS}"\n'

CALLS = """title = "Daily call"
expiry_day = 30
"""
for _d in range(0, 14):
    CALLS += f'[[step]]\nday = {_d}\nmethods = ["call"]\ntitle = "C{_d}"\nmessage = "Hello {{first_name}}, about {{balance}}."\n'

AUDIT_PATIENTS = [
    patient("Z1", phone="+18505551301", city="Pensacola", state="FL", postal_code="32502"),
    patient("Z6", phone="+12085551306", city="Coeur d'Alene", state="ID", postal_code="83814"),
    patient("Z8", phone="+16155551308", city="Knoxville", state="TN", postal_code="37902"),
]


# --- D1: zones from the ZIP code and every zone of the phone --------------------------------


@pytest.mark.parametrize("every", [60, pytest.param(15, marks=pytest.mark.slow)], ids=["hourly", "quarter-hourly"])
def test_audit_D1_pensacola_coeur_dalene_knoxville_never_outside_8_to_21(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int
) -> None:
    config(monkeypatch, tmp_path, WIDE)
    sync_rule_set(cli, tmp_path, "daily", DAILY)
    seed_patients(cli, tmp_path, AUDIT_PATIENTS, rule_set="daily", amount="100", now="2026-04-07T04:00:00Z")
    zones = {i: show(cli, i)["patient"]["timezones"] for i in (1, 2, 3)}
    assert set(zones[1]) == {"America/Chicago", "America/New_York"}  # ZIP 32502 Central, 850 Eastern
    assert set(zones[2]) == {"America/Los_Angeles", "America/Boise"}  # ZIP 83814 Pacific, 208 both
    assert set(zones[3]) == {"America/New_York", "America/Chicago"}  # ZIP 37902 Eastern, 615 Central
    why = {z["zone"]: z["source"] for z in show(cli, 1)["patient"]["timezone_sources"]}
    assert why["America/Chicago"] == "ZIP code 32502" and why["America/New_York"] == "phone area code 850"
    # tick through two days every `every` minutes, and at the audit's 12:00Z, 14:00Z and 01:45Z
    start, end = datetime(2026, 4, 7, 4, 0, tzinfo=UTC), datetime(2026, 4, 9, 4, 0, tzinfo=UTC)
    ticks = {start + timedelta(minutes=m) for m in range(0, 2 * 24 * 60, every)}
    ticks |= {datetime(2026, 4, d, h, m, tzinfo=UTC) for d in (7, 8) for h, m in ((12, 0), (14, 0))}
    ticks |= {datetime(2026, 4, d, 1, 45, tzinfo=UTC) for d in (8, 9)}
    for t in sorted(ticks):
        tick(cli, t)
    t = end
    for i, p in zip((1, 2, 3), AUDIT_PATIENTS, strict=True):
        rows = sent(cli, i, t)
        assert len(rows) == 2, p["patient_id"]  # one a day
        for r in rows:
            at = datetime.fromisoformat(r["sent_at"].replace("Z", "+00:00"))
            for z in zones[i]:
                local = at.astimezone(ZoneInfo(z))
                assert 8 <= local.hour < 21, (p["patient_id"], z, local)


def test_zone_data_offline() -> None:
    assert zip_zone("32502") == "America/Chicago" and zip_zone("83814-1234") == "America/Los_Angeles"
    assert zip_zone("2118") == zip_zone("02118") == "America/New_York"  # a ZIP that lost its leading zero
    assert phone_zones("+12085551306") == ("America/Boise", "America/Los_Angeles")
    assert phone_zones("+18005550100") == ()  # toll-free says nothing about where the patient is
    # no ZIP data: the state is the fallback; nothing at all: the practice zone
    assert zones_for(explicit=None, phone=None, postal_code=None, state="CA", country="US", practice_tz="UTC") == (
        "America/Los_Angeles",
    )
    assert zones_for(explicit=None, phone=None, postal_code=None, state=None, country=None, practice_tz="UTC") == (
        "UTC",
    )


# Area codes across the country, several spanning two zones (208, 541, 605, 850, 907, 915),
# a Pacific territory (671), toll-free (800); ZIP codes: every one the bundled dataset knows.
US_AREA_CODES = [
    "208",
    "212",
    "219",
    "231",
    "270",
    "305",
    "308",
    "312",
    "352",
    "415",
    "423",
    "502",
    "503",
    "520",
    "541",
    "574",
    "602",
    "605",
    "615",
    "620",
    "671",
    "701",
    "715",
    "785",
    "800",
    "806",
    "808",
    "812",
    "850",
    "906",
    "907",
    "915",
    "928",
    "931",
    "970",
]
ZIPS = sorted(_zip_zones())
STATES = [*sorted(US_STATE_ZONES), None]


@settings(max_examples=400, deadline=None)
@given(
    zip_code=st.one_of(st.none(), st.sampled_from(ZIPS)),
    area=st.one_of(st.none(), st.sampled_from(US_AREA_CODES)),
    state=st.sampled_from(STATES),
    tick_at=st.datetimes(min_value=datetime(2026, 3, 6), max_value=datetime(2026, 3, 10), timezones=st.just(UTC))
    | st.datetimes(min_value=datetime(2026, 10, 30), max_value=datetime(2026, 11, 3), timezones=st.just(UTC)),
    wide=st.booleans(),
)
def test_property_no_send_outside_8_to_21_in_any_zone(
    zip_code: str | None, area: str | None, state: str | None, tick_at: datetime, wide: bool
) -> None:
    """Around both 2026 DST changes: whenever the scheduling function allows a send, and at every
    moment it moves a send to, the local time is 08:00-21:00 in every zone the data points to."""
    phone = f"+1{area}5550123" if area else None
    zones = zones_for(explicit=None, phone=phone, postal_code=zip_code, state=state, country="US", practice_tz="UTC")
    truth = set(phone_zones(phone))
    address = (
        zip_zone(zip_code)
        or zones_for(explicit=None, phone=None, postal_code=None, state=state, country="US", practice_tz="")[0]
    )
    if address:
        truth.add(address)
    if not truth:
        truth.add("UTC")  # no location data: the practice zone
    window = Window.from_settings(
        "00:00-23:59" if wide else "09:00-17:00", True, ["US"], state_holidays=True
    ).for_state(state)
    moments = [tick_at] if is_allowed(tick_at, zones, window) else []
    try:
        moments.append(next_allowed(tick_at, zones, window))
    except ValueError:
        pass  # no common window: never sent (will-fail)
    for m in moments:
        for z in truth:
            local = m.astimezone(ZoneInfo(z))
            assert 8 * 60 <= local.hour * 60 + local.minute < 21 * 60, (zones, z, local)


# --- D2: revocation in any words -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "verdict"),
    [
        ("STOP", "stop"),
        ("Stop.", "stop"),
        ("STOP!", "stop"),
        ("  Stop  ", "stop"),
        ("unsubscribe.", "stop"),
        ("OPT OUT", "stop"),
        ("opt-out please", "stop"),
        ("optout", "stop"),
        ("Stop please", "stop"),
        ("please stop texting me", "stop"),
        ("QUIT", "stop"),
        ("end", "stop"),
        ("I revoke my consent", "stop"),
        ("Cancel", "stop"),
        ("stopall", "stop"),
        ("Remove me from your list", "review"),
        ("don't text me", "review"),
        ("leave me alone", "review"),
        ("wrong number", "review"),
        ("START", "start"),
        ("unstop", "start"),
        ("Yes", "start"),
        ("yes I will pay friday", None),
        ("I stopped by the office", None),
        ("thanks, paid online", None),
    ],
)
def test_audit_D2_revocation_classifier(body: str, verdict: str | None) -> None:
    assert classify(body) == verdict


def test_audit_D2_stop_in_any_words_opts_out_every_record_and_confirms_once(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config(monkeypatch, tmp_path, WIDE)
    sync_rule_set(cli, tmp_path, "daily", DAILY)
    shared = "+16175550150"
    seed_patients(
        cli,
        tmp_path,
        [patient("PARENT", phone=shared), patient("CHILD", phone=shared), patient("OTHER", phone="+16175550151")],
        rule_set="daily",
        amount="50",
        now="2026-03-02T14:00:00Z",
    )
    t0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    tick(cli, t0)
    events = [
        {"type": "inbound_sms", "from": "(617) 555-0150", "body": "Stop please."},
        {"type": "inbound_sms", "from": "(617) 555-0151", "body": "Remove me from your list"},
    ]
    cli.ok(
        "events",
        "ingest",
        "-",
        input="\n".join(json.dumps(e) for e in events),
        now=(t0 + timedelta(hours=1)).isoformat(),
    )
    assert show(cli, 1)["patient"]["sms_opt_out"] is True and show(cli, 2)["patient"]["sms_opt_out"] is True
    other = show(cli, 3)["patient"]
    assert other["sms_opt_out"] is False and other["needs_review"] is True
    listed = json.loads(cli.ok("list", "--needs-review", "--format", "json").stdout)
    assert [r["patient_id"] for r in listed] == ["OTHER"] and listed[0]["needs_review"] is True
    tick(cli, t0 + timedelta(hours=2))
    tick(cli, t0 + timedelta(days=1))
    confirmations = [s for i in (1, 2) for s in show(cli, i)["schedule"] if s["step"] == "Opt-out confirmation"]
    assert len(confirmations) == 1 and confirmations[0]["status"] == "delivered"
    tick(cli, t0 + timedelta(days=2))
    after = [
        s
        for i in (1, 2)
        for s in show(cli, i)["schedule"]
        if s["sent_at"] and s["sent_at"] > "2026-03-02T15:00:00Z" and s["step"] != "Opt-out confirmation"
    ]
    assert after == []  # nothing but the confirmation reached the number after "Stop please."
    skipped = [s for i in (1, 2) for s in show(cli, i)["schedule"] if s["status"] == "skipped"]
    assert skipped and all(s["reason"] == "patient opted out of SMS" for s in skipped)


def test_email_unsubscribe_event_opts_out_of_email(cli: Cli, tmp_path: Path) -> None:
    seed_patients(
        cli,
        tmp_path,
        [patient("E1", email="Ann@Example.com")],
        rule_set="standard",
        amount="50",
        now="2026-03-02T14:00:00Z",
    )
    cli.ok("events", "ingest", "-", input=json.dumps({"type": "email_unsubscribe", "email": "ann@example.com"}))
    p = show(cli, 1)["patient"]
    assert p["email_opt_out"] is True and p["usable_methods"]["email"]["usable"] is False


# --- D3: every channel its own words ------------------------------------------------------


OLD_STANDARD_FALLBACK = """title = "x"
expiry_day = 30
fallback = ["sms"]
[[step]]
day = 0
methods = ["call"]
title = "Reminder call"
message = "Hello {first_name}, this is {practice_name} calling about your balance of {balance}."
"""


def test_audit_D3_fallback_sms_uses_the_sms_template(cli: Cli, tmp_path: Path) -> None:
    report = parse_text(OLD_STANDARD_FALLBACK, name="x", source="x.toml")
    assert report.rule_set is None and any("fallback sms" in str(p) for p in report.errors)
    fixed = OLD_STANDARD_FALLBACK.replace(
        "[[step]]",
        f'[fallback_messages]\nsms = "{STANDARD_SMS}"\nmail = "Dear {{full_name}}, please pay {{url}}."\n[[step]]',
    )
    sync_rule_set(cli, tmp_path, "callfirst", fixed)
    seed_patients(
        cli,
        tmp_path,
        [patient("G1", call_opt_out="true")],
        rule_set="callfirst",
        amount="100",
        now="2026-03-02T14:00:00Z",
    )
    tick(cli, datetime(2026, 3, 2, 14, 0, tzinfo=UTC))
    from outreach_cli.domain.rulesets import RuleSet

    rs = parse_text(fixed, name="x", source="x.toml").rule_set
    assert isinstance(rs, RuleSet)
    assert rs.template(rs.steps[0], "sms") == STANDARD_SMS  # not the call script
    assert "Reply STOP" not in rs.template(rs.steps[0], "mail")
    fb = [s for s in show(cli, 1)["schedule"] if s["fallback"]]
    assert fb and fb[0]["method"] == "sms" and fb[0]["status"] == "delivered"


def test_letters_never_say_reply_stop() -> None:
    bad = OLD_STANDARD_FALLBACK.replace('methods = ["call"]', 'methods = ["mail"]').replace(
        'message = "Hello', 'message = "Reply STOP. Hello'
    )
    report = parse_text(bad, name="x", source="x.toml")
    assert any('must not say "Reply STOP"' in str(p) for p in report.errors)


# --- D4: caps per contact ------------------------------------------------------------------


def test_audit_D4_two_records_sharing_a_phone_get_one_call_a_day_and_at_most_7_a_week(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config(monkeypatch, tmp_path, WIDE)
    sync_rule_set(cli, tmp_path, "calls", CALLS)
    shared = "+12125550502"
    seed_patients(
        cli,
        tmp_path,
        [
            patient("PARENT", phone=shared, state="NY", postal_code="10001"),
            patient("CHILD", phone=shared, state="NY", postal_code="10001"),
        ],
        rule_set="calls",
        amount="100",
        now="2026-03-02T14:00:00Z",
    )
    t = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    for _ in range(14):
        tick(cli, t)
        tick(cli, t + timedelta(hours=2))
        t += timedelta(days=1)
    calls = sorted(s["sent_at"] for i in (1, 2) for s in sent(cli, i, t) if s["method"] == "call")
    days = [c[:10] for c in calls]
    assert len(days) == len(set(days)) == 14  # one call a day to the number, not two
    held = [s for i in (1, 2) for s in show(cli, i, t)["schedule"] if s["status"] == "pending"]
    assert held and all(s["held_by"] in ("cap:one_per_channel_per_day", "cap:calls_per_7_days", None) for s in held)
    times = [datetime.fromisoformat(c.replace("Z", "+00:00")) for c in calls]
    for a in times:
        assert sum(1 for b in times if a <= b < a + timedelta(days=7)) <= 7


def test_massachusetts_two_calls_per_7_days_and_held_by_names_the_cap(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config(monkeypatch, tmp_path, WIDE)
    sync_rule_set(cli, tmp_path, "calls", CALLS)
    seed_patients(
        cli,
        tmp_path,
        [patient("MA1", phone="+16175550160")],
        rule_set="calls",
        amount="100",
        now="2026-03-02T14:00:00Z",
    )
    t = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    for _ in range(4):
        tick(cli, t)
        t += timedelta(days=1)
    calls = [s for s in sent(cli, 1, t) if s["method"] == "call"]
    assert len(calls) == 2
    d = show(cli, 1, t)
    nxt = [s for s in d["schedule"] if s["status"] == "pending"][0]
    assert nxt["held_by"] == "cap:calls_per_7_days"
    assert nxt["send_at"] >= "2026-03-09T13:00:00Z"  # 7 days after the first call
    fc = json.loads(cli.ok("forecast", "--days", "10", "--format", "json", now=t.isoformat()).stdout)
    assert fc[0]["held_by"] == "cap:calls_per_7_days" and fc[0]["due_at"] < fc[0]["send_at"]


def test_rulesets_validate_warns_when_a_rule_set_exceeds_a_cap() -> None:
    report = parse_text(CALLS, name="calls", source="calls.toml")
    assert report.rule_set is not None
    assert [str(w) for w in report.warnings] == [
        "calls.toml: warning: up to 7 calls in 7 days exceed the cap in MA of 2 (compliance.calls_per_7_days):"
        " later calls will be held"
    ]


# --- D5: holidays from a calendar ----------------------------------------------------------


def test_audit_D5_thanksgiving_and_christmas_send_nothing_by_default() -> None:
    w = Window.from_sending(DEFAULTS["sending"])
    ny = ("America/New_York",)
    for day in (datetime(2026, 11, 26, 15, tzinfo=UTC), datetime(2026, 12, 25, 15, tzinfo=UTC)):
        assert not is_allowed(day, ny, w)
    assert next_allowed(datetime(2026, 11, 26, 15, tzinfo=UTC), ny, w) == datetime(2026, 11, 27, 14, tzinfo=UTC)
    explicit = Window.from_settings("09:00-17:00", False, ["2026-12-24"])
    assert not is_allowed(datetime(2026, 12, 24, 15, tzinfo=UTC), ny, explicit)
    ma = Window.from_settings("09:00-17:00", False, ["US"], state_holidays=True)
    patriots = datetime(2026, 4, 20, 15, tzinfo=UTC)
    assert is_allowed(patriots, ny, ma.for_state("NY")) and not is_allowed(patriots, ny, ma.for_state("MA"))


def test_forecast_names_the_holiday(cli: Cli, tmp_path: Path) -> None:
    seed_patients(cli, tmp_path, [patient("H1")], rule_set="standard", amount="100", now="2026-11-25T22:00:00Z")
    fc = json.loads(cli.ok("forecast", "--days", "3", "--format", "json", now="2026-11-25T22:00:00Z").stdout)
    assert fc[0]["held_by"] == "holiday:Thanksgiving Day" and fc[0]["send_at"] == "2026-11-27T14:00:00Z"


# --- D7: no common window -----------------------------------------------------------------


def test_audit_D7_no_common_window_is_will_fail_and_show_and_forecast_work(cli: Cli, tmp_path: Path) -> None:
    seed_patients(
        cli,
        tmp_path,
        [patient("GU", phone="+16715551701", state="NY", postal_code="10001")],
        rule_set="standard",
        amount="100",
        now="2026-03-02T14:00:00Z",
    )
    d = show(cli, 1)
    assert d["status"] == "will-fail" and "no common sending window" in d["status_reason"]
    assert set(d["patient"]["timezones"]) == {"Pacific/Guam", "America/New_York"}
    pending = [s for s in d["schedule"] if s["status"] == "pending"]
    assert pending[0]["send_at"] is None and pending[0]["held_by"].startswith("zones:")
    fc = json.loads(cli.ok("forecast", "--format", "json").stdout)
    assert fc and fc[0]["prediction"] == "will-fail" and "no common sending window" in fc[0]["reason"]


# --- D8: the dry run matches the real run at expiry ---------------------------------------


def test_audit_D8_dry_run_lists_nothing_for_a_set_the_tick_expires(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config(monkeypatch, tmp_path, WIDE)
    short = f'title = "short"\nexpiry_day = 5\n[[step]]\nday = 0\nmethods = ["sms"]\ntitle = "x0"\nmessage = "{STANDARD_SMS}"\n[[step]]\nday = 4\nmethods = ["sms"]\ntitle = "x4"\nmessage = "{STANDARD_SMS}"\n'
    sync_rule_set(cli, tmp_path, "short", short)
    seed_patients(cli, tmp_path, [patient("S1")], rule_set="short", amount="100", now="2026-03-02T14:00:00Z")
    at = datetime(2026, 3, 7, 14, 0, tzinfo=UTC)  # anchor + 5 days, no ticks in between
    dry = cli.ok("run-outreach", "--dry-run", "--format", "json", now=at.isoformat())
    assert "x0" not in dry.stdout and "x4" not in dry.stdout
    real = tick(cli, at)
    assert real["sent"] == 0 and real["expired"] == 1


# --- D9: segments with names outside GSM-7 ------------------------------------------------


def test_audit_D9_segment_estimate_reports_the_worst_case_with_non_gsm_names() -> None:
    text = 'title = "x"\nexpiry_day = 5\n[[step]]\nday = 0\nmethods = ["sms"]\ntitle = "x0"\nmessage = "Hi {first_name}, {practice_name} shows a balance of {balance}. Pay securely: {url} Reply STOP to opt out."\n'
    seg = parse_text(text, name="x", source="x.toml").segments[0]
    assert seg.encoding.startswith("UCS-2 with a non-GSM name") and seg.segments == 3


# --- D6: change-ruleset on an expired set when a newer set is in progress ------------------


def test_audit_D6_change_ruleset_on_expired_set_with_newer_set_is_ineligible(cli: Cli, tmp_path: Path) -> None:
    short = f'title = "short"\nexpiry_day = 5\n[[step]]\nday = 0\nmethods = ["sms"]\ntitle = "x0"\nmessage = "{STANDARD_SMS}"\n'
    sync_rule_set(cli, tmp_path, "short", short)
    seed_patients(cli, tmp_path, [patient("X1")], rule_set="short", amount="100", now="2026-03-02T14:00:00Z")
    tick(cli, datetime(2026, 3, 8, 14, 0, tzinfo=UTC))
    assert show(cli, 1)["status"] == "expired"
    (tmp_path / "c2.csv").write_text("charge_id,patient_id,amount\nC-X1-2,X1,40\n", encoding="utf-8")
    cli.ok("import", "charges", str(tmp_path / "c2.csv"), now="2026-03-09T14:00:00Z")
    args = ("act", "change-ruleset", "1", "--rule-set", "standard", "--yes", "--format", "jsonl")
    dry = cli(*args, "--dry-run", now="2026-03-09T15:00:00Z")
    real = cli(*args, now="2026-03-09T15:00:00Z")
    assert dry.code == real.code == 3, (dry, real)
    assert json.loads(dry.stdout)["result"] == json.loads(real.stdout)["result"] == "ineligible"
    assert json.loads(real.stdout)["reason"] == "patient has in-progress set 2"
    assert show(cli, 1)["status"] == "expired" and show(cli, 2)["status"] == "active"


EMAIL_FALLBACK = f"""title = "email first"
expiry_day = 30
fallback = ["sms"]
[fallback_messages]
sms = "{STANDARD_SMS}"
[[step]]
day = 0
methods = ["email"]
title = "Statement"
message = "Hi {{first_name}}, pay {{url}}"
"""


def test_a_fallback_held_by_a_cap_waits_and_is_never_dropped(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config(monkeypatch, tmp_path, WIDE)
    sync_rule_set(cli, tmp_path, "emailfirst", EMAIL_FALLBACK)
    shared = "+16175550170"
    seed_patients(
        cli,
        tmp_path,
        [patient("A", phone=shared, email=""), patient("B", phone=shared, email="")],
        rule_set="emailfirst",
        amount="60",
        now="2026-03-02T14:00:00Z",
    )
    t0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    tick(cli, t0)
    tick(cli, t0 + timedelta(hours=3))
    a = [s for s in show(cli, 1)["schedule"] if s["fallback"] and s["method"] == "sms"]
    b = [s for s in show(cli, 2)["schedule"] if s["fallback"] and s["method"] == "sms"]
    assert a[0]["status"] == "delivered" and a[0]["sent_at"] == "2026-03-02T14:00:00Z"
    assert b[0]["status"] == "pending" and b[0]["reason"] == "held by cap:one_per_channel_per_day"
    assert show(cli, 2)["status"] == "active"  # waiting, not failed
    tick(cli, t0 + timedelta(days=1))
    b = [s for s in show(cli, 2)["schedule"] if s["fallback"] and s["method"] == "sms"]
    assert b[0]["status"] == "delivered" and b[0]["sent_at"] == "2026-03-03T14:00:00Z"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[sending]\nholidays = ["US", "XX-YY"]\n', "sending.holidays: 'XX-YY' is neither a date"),
        ('[sending]\nholidays = ["2026-02-30"]\n', "sending.holidays: '2026-02-30' is not a real date"),
        ("[compliance]\ncalls_per_7_days = 0\n", "compliance.calls_per_7_days = 0: expected a whole number"),
        ("[compliance.states.NY]\ncalls_per_7_days = -1\n", "compliance.states.NY.calls_per_7_days = -1"),
        ("[compliance.states.Texas]\ncalls_per_7_days = 3\n", "two-letter state code"),
    ],
)
def test_bad_compliance_settings_exit_4_naming_the_key(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, toml: str, message: str
) -> None:
    config(monkeypatch, tmp_path, toml)
    r = cli("list")
    assert r.code == 4 and message in r.stderr, r


def test_state_override_and_calendar_settings_load(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config(
        monkeypatch,
        tmp_path,
        '[sending]\nholidays = ["US-MA", "2026-12-24"]\nstate_holidays = true\n'
        "[compliance]\nmessages_per_7_days = 5\n[compliance.states.NY]\ncalls_per_7_days = 3\n",
    )
    from outreach_cli.config import load_settings

    s = load_settings()
    assert s.values["compliance"]["states"] == {
        "MA": {"calls_per_7_days": 2},
        "NY": {"calls_per_7_days": 3, "messages_per_7_days": None},
    }
    w = Window.from_sending(s.values["sending"])
    assert w.calendars == ("US-MA",) and w.state_holidays and w.holiday(datetime(2026, 12, 24).date()) == "2026-12-24"


def test_a_zip_code_and_state_that_disagree_both_count() -> None:
    # ZIP 02118 is Boston; the state says Arizona: either may be wrong, so both zones count.
    zones = zones_for(explicit=None, phone=None, postal_code="02118", state="AZ", country="US", practice_tz="UTC")
    assert zones == ("America/New_York", "America/Phoenix")
    assert zones_for(explicit=None, phone=None, postal_code="85001", state="AZ", country="US", practice_tz="UTC") == (
        "America/Phoenix",
    )
