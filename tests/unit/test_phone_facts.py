"""One parse per phone (issue 13): `phone_facts` answers exactly as the three calls it replaces
(`parse_phone`, then `phone_is_valid` and `phone_zones` of the E.164 form, each parsing again)."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from phonenumbers import timezone as ptz

from outreach_cli.domain import contacts


def _old_parse(text: str) -> str:
    try:
        num = phonenumbers.parse(text, "US")
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number") from None
    if not phonenumbers.is_possible_number(num):
        raise ValueError("not a possible phone number (wrong number of digits)")
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def _old_valid(e164: str) -> bool:
    try:
        return bool(phonenumbers.is_valid_number(phonenumbers.parse(e164, None)))
    except phonenumbers.NumberParseException:
        return False


def _old_zones(e164: str) -> tuple[str, ...]:
    try:
        num = phonenumbers.parse(e164, None)
        zones = ptz.time_zones_for_number(num)
        country_wide = ptz._country_level_time_zones_for_number(num)
    except phonenumbers.NumberParseException:
        return ()
    if not phonenumbers.is_number_geographical(num) or (len(zones) > 1 and set(zones) == set(country_wide)):
        return ()
    return tuple(sorted(z for z in zones if z != "Etc/Unknown" and contacts._known_zone(z)))


FIXED = [
    "(617) 555-0100",
    "+1 617 555 0100",
    "617.555.0100 ext. 12",
    "1-617-555-0100",
    "+1 (208) 555-1306",  # an area code spanning two zones
    "(907) 555-0100",
    "808-555-0100",
    "1-800-555-0100",  # toll-free
    "(888) 555-0100",
    "+1 900 555 0100",
    "555-0100",  # local only
    "155-0100",
    "(123) 456-7890",  # not a valid area code
    "(211) 555-0100",
    "+1 787 555 0100",  # Puerto Rico
    "+1 416 555 0100",  # Canada
    "+1 876 555 0100",  # Jamaica
    "+44 20 7946 0958",
    "+44 7911 123456",
    "+49 30 123456",
    "+52 1 55 1234 5678",  # Mexico, mobile with the old "1"
    "+52 55 1234 5678",
    "+54 9 11 1234 5678",  # Argentina, mobile "9"
    "+39 06 1234 5678",  # Italy: leading zero kept
    "+61 2 9374 4000",
    "+7 495 123 45 67",
    "+81 3 1234 5678",
    "+86 10 1234 5678",
    "+800 1234 5678",  # non-geographic
    "+882 34 1234 5678",
    "011 44 20 7946 0958",
    "",
    "abc",
    "12",
    "+1 617 555 0100 0100",
    "+999 123 456",
]


def _sample() -> list[str]:
    rnd = random.Random(13)
    out = list(FIXED)
    for _ in range(3000):
        area = rnd.randrange(100, 1000)
        line = rnd.randrange(0, 10_000_000)
        digits = f"{area}{line:07d}"
        out.append(
            rnd.choice(
                (
                    f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
                    f"+1{digits}",
                    f"1{digits}",
                    digits[3:],
                    f"+{rnd.randrange(20, 999)} {digits}",
                    f"+44 {digits[:9]}",
                )
            )
        )
    return out


def _old(text: str) -> tuple[str, bool, tuple[str, ...]] | str:
    try:
        e164 = _old_parse(text)
    except ValueError as exc:
        return str(exc)
    return e164, _old_valid(e164), _old_zones(e164)


def _new(text: str) -> tuple[str, bool, tuple[str, ...]] | str:
    try:
        f = contacts.phone_facts(text)
    except ValueError as exc:
        return str(exc)
    assert f.zone == (f.zones[0] if len(f.zones) == 1 else None)
    return f.e164, f.valid, f.zones


def test_one_parse_answers_as_the_three_calls() -> None:
    sample = _sample()
    kinds = {"valid": 0, "invalid": 0, "no zone": 0, "two zones": 0, "rejected": 0}
    for text in sample:
        old = _old(text)
        assert _new(text) == old, text
        if isinstance(old, str):
            kinds["rejected"] += 1
            continue
        kinds["valid" if old[1] else "invalid"] += 1
        kinds["two zones"] += len(old[2]) > 1
        kinds["no zone"] += not old[2]
    assert all(kinds.values()), kinds  # the sample covers every kind


@pytest.mark.parametrize("text", FIXED)
def test_stored_numbers_answer_as_before(text: str) -> None:
    """The cached E.164 path (`phone_is_valid`, `phone_zones`, `e164_facts`) equals the old calls."""
    for e164 in (text, _old(text)[0] if not isinstance(_old(text), str) else "+16175550100"):
        if not e164:
            continue
        assert contacts.phone_is_valid(e164) == _old_valid(e164)
        assert contacts.phone_zones(e164) == _old_zones(e164)
        zones = _old_zones(e164)
        assert contacts.e164_facts(e164) == (_old_valid(e164), zones[0] if len(zones) == 1 else None)


def test_the_stored_phone_zone_gives_the_zones_parsing_the_number_gives() -> None:
    """`patient.phone_tz` (written from `phone_facts` at import) stands in for parsing the number
    when zones are worked out; every sampled number must give the same zones and sources both ways."""
    places = [(None, None, None), ("02139", "MA", None), (None, "CA", None), ("99501", "TX", "US"), (None, None, "CA")]
    checked = 0
    for text in _sample():
        try:
            facts = contacts.phone_facts(text)
        except ValueError:
            continue
        for postal, state, country in places:
            common = {"explicit": None, "phone": facts.e164, "postal_code": postal, "state": state}
            common |= {"country": country, "practice_tz": "America/New_York"}
            parsed = contacts.zones_for(**common), contacts.zone_sources(**common)
            stored = (
                contacts.zones_for(**common, phone_tz=facts.zone),
                contacts.zone_sources(**common, phone_tz=facts.zone),
            )
            assert stored == parsed, text
            checked += 1
    assert checked > 5000
