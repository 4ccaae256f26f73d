"""Patient contact data: phone and email checks, time zones, usable methods (SPEC section 4).

Pure: a ``Contact`` in, decisions with reasons out. The libraries used (phonenumbers,
email-validator) do no I/O here (no DNS).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:  # loaded where a number is parsed: `show` reads the stored facts (25 ms less)
    import phonenumbers

US_STATE_ZONES = {
    "AL": "America/Chicago",
    "AK": "America/Anchorage",
    "AZ": "America/Phoenix",
    "AR": "America/Chicago",
    "CA": "America/Los_Angeles",
    "CO": "America/Denver",
    "CT": "America/New_York",
    "DE": "America/New_York",
    "DC": "America/New_York",
    "FL": "America/New_York",
    "GA": "America/New_York",
    "HI": "Pacific/Honolulu",
    "ID": "America/Boise",
    "IL": "America/Chicago",
    "IN": "America/Indiana/Indianapolis",
    "IA": "America/Chicago",
    "KS": "America/Chicago",
    "KY": "America/New_York",
    "LA": "America/Chicago",
    "ME": "America/New_York",
    "MD": "America/New_York",
    "MA": "America/New_York",
    "MI": "America/Detroit",
    "MN": "America/Chicago",
    "MS": "America/Chicago",
    "MO": "America/Chicago",
    "MT": "America/Denver",
    "NE": "America/Chicago",
    "NV": "America/Los_Angeles",
    "NH": "America/New_York",
    "NJ": "America/New_York",
    "NM": "America/Denver",
    "NY": "America/New_York",
    "NC": "America/New_York",
    "ND": "America/Chicago",
    "OH": "America/New_York",
    "OK": "America/Chicago",
    "OR": "America/Los_Angeles",
    "PA": "America/New_York",
    "RI": "America/New_York",
    "SC": "America/New_York",
    "SD": "America/Chicago",
    "TN": "America/Chicago",
    "TX": "America/Chicago",
    "UT": "America/Denver",
    "VT": "America/New_York",
    "VA": "America/New_York",
    "WA": "America/Los_Angeles",
    "WV": "America/New_York",
    "WI": "America/Chicago",
    "WY": "America/Denver",
    "PR": "America/Puerto_Rico",
    "VI": "America/St_Thomas",
    "GU": "Pacific/Guam",
    "AS": "Pacific/Pago_Pago",
    "MP": "Pacific/Saipan",
}

PHONE_TYPES = ("mobile", "landline", "voip", "unknown")


def parse_phone(text: str, region: str = "US") -> str:
    """Any common format -> E.164. Raises ValueError naming the problem (never the number)."""
    return _parse(text, region)[0]


@dataclass(frozen=True)
class PhoneFacts:
    """What the import needs of a phone number, from one parse: E.164, validity, time zones."""

    e164: str
    valid: bool
    zones: tuple[str, ...]

    @property
    def zone(self) -> str | None:
        """The number's time zone when it has exactly one (as ``phone_zone``)."""
        return self.zones[0] if len(self.zones) == 1 else None


def phone_facts(text: str, region: str = "US") -> PhoneFacts:
    """``parse_phone``, ``phone_is_valid`` and ``phone_zones`` of a phone number in any common format,
    with one parse. Raises ValueError as ``parse_phone`` does."""
    e164, num = _parse(text, region)
    if num.country_code != 1:
        # Re-parsing the E.164 form may strip a national prefix elsewhere; phone_is_valid and
        # phone_zones judge that form, so outside the NANP the facts come from it.
        return PhoneFacts(e164, *_e164_facts(e164))
    # A possible NANP number re-parses to itself (a leading "1" of its national number stays:
    # stripping it leaves too few digits), so the parse above is the one they would make.
    return PhoneFacts(e164, *_facts(num))


def _parse(text: str, region: str) -> tuple[str, phonenumbers.PhoneNumber]:
    import phonenumbers

    try:
        num = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ValueError("not a phone number") from None
    if not phonenumbers.is_possible_number(num):
        raise ValueError("not a possible phone number (wrong number of digits)")
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164), num


def _facts(num: phonenumbers.PhoneNumber) -> tuple[bool, tuple[str, ...]]:
    """(is_valid_number, phone_zones) with one number-type match (both libphonenumber calls
    derive from it: a number is valid when its type is known; its zones are the geographical ones)."""
    import phonenumbers
    from phonenumbers import timezone as ptz
    from phonenumbers.phonenumberutil import is_number_type_geographical

    ntype = phonenumbers.number_type(num)
    # is_valid_number is exactly `number_type(...) != UNKNOWN` for the number's own region.
    valid = ntype != phonenumbers.PhoneNumberType.UNKNOWN
    if not is_number_type_geographical(ntype, num.country_code or 0):
        return valid, ()  # toll-free, personal and unknown prefixes say nothing about where the patient is
    zones = ptz.time_zones_for_geographical_number(num)
    if len(zones) > 1 and set(zones) == set(ptz._country_level_time_zones_for_number(num)):
        return valid, ()
    return valid, tuple(sorted(z for z in zones if z != "Etc/Unknown" and _known_zone(z)))


def phone_is_valid(e164: str | None) -> bool:
    return bool(e164) and _e164_facts(e164)[0]


def phone_zones(e164: str | None) -> tuple[str, ...]:
    """Every time zone libphonenumber gives for the number (an area code may span several)."""
    if not e164:
        return ()
    return _e164_facts(e164)[1]


def e164_facts(e164: str) -> tuple[bool, str | None]:
    """(``phone_is_valid``, ``phone_zone``) of a stored number, from one parse."""
    valid, zones = _e164_facts(e164)
    return valid, zones[0] if len(zones) == 1 else None


@lru_cache(maxsize=65536)
def _e164_facts(e164: str) -> tuple[bool, tuple[str, ...]]:
    import phonenumbers

    try:
        num = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False, ()
    return _facts(num)


def phone_zone(e164: str | None) -> str | None:
    """The phone number's time zone when it has exactly one."""
    zones = phone_zones(e164)
    return zones[0] if len(zones) == 1 else None


def _is_us(country: str | None) -> bool:
    return not country or country.strip().upper() in ("US", "USA", "UNITED STATES")


@lru_cache(maxsize=1)
def _zip_data() -> dict[str, tuple[str, str]]:
    """US ZIP code -> (IANA zone, state), from the table packaged with outreach (`zipdata`: the
    `zipcodes` package's data, a few milliseconds to read instead of the package's 0.2 s)."""
    from outreach_cli.domain.zipdata import read_table

    return read_table(_known_zone)


def _zip_zones() -> dict[str, str]:
    return {z: tz for z, (tz, _) in _zip_data().items()}


def _zip_row(postal_code: str | None, country: str | None) -> tuple[str, str] | None:
    if not postal_code or not _is_us(country):
        return None
    digits = postal_code.strip().split("-")[0].strip()
    if not digits.isdigit() or len(digits) > 5:
        return None
    code = digits.zfill(5)
    if _zip_data.cache_info().currsize == 0 and next(_lookups) < 16:
        # The first few codes (`show`'s one patient) are found in the table's text; past those
        # (an import, a forecast) the whole table is read once.
        from outreach_cli.domain.zipdata import find_code

        return find_code(code, _known_zone)
    return _zip_data().get(code)


_lookups = itertools.count()


@lru_cache(maxsize=1024)
def _known_zone(name: str) -> bool:
    if "/" not in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def zip_zone(postal_code: str | None, country: str | None = None) -> str | None:
    """The zone of a US ZIP code (ZIP+4 and 4-digit ZIPs that lost a leading zero accepted)."""
    row = _zip_row(postal_code, country)
    return row[0] if row else None


def state_zone(state: str | None, country: str | None = None) -> str | None:
    if not state or not _is_us(country):
        return None
    return US_STATE_ZONES.get(state.strip().upper())


def address_zone(state: str | None, country: str | None, postal_code: str | None = None) -> str | None:
    """The address's zone: from the ZIP code, else from the state."""
    return zip_zone(postal_code, country) or state_zone(state, country)


def zone_sources(
    *,
    explicit: str | None,
    phone: str | None,
    postal_code: str | None,
    state: str | None,
    country: str | None,
    practice_tz: str,
    phone_tz: str | None = None,
) -> list[tuple[str, str]]:
    """Every zone the patient's data points to, with why: [(zone, source)], primary first.

    A moment is allowed only when it is allowed in every one of them (Reg F 1006.6(b)(1)(i):
    convenient at the consumer's location, judged in every zone the data points to).
    """
    out: list[tuple[str, str]] = []
    if explicit:
        out.append((explicit, "timezone column"))
    pz = _phone_zones(phone, phone_tz)
    for z in pz:
        area = _area_code(phone)
        out.append((z, f"phone area code {area}" if area else "phone number"))
    row = _zip_row(postal_code, country)
    st = (state or "").strip().upper()
    sz = state_zone(state, country)
    if row:
        out.append((row[0], f"ZIP code {postal_code}"))
        if sz and st and row[1] and st != row[1]:
            # The ZIP code and the state disagree: either may be the wrong one, so both count.
            out.append((sz, f"state {st} (ZIP code {postal_code} is in {row[1]})"))
    elif sz:
        out.append((sz, f"state {st}"))
    if not out:
        out.append((practice_tz, "practice time zone (no location data)"))
    return out


def _phone_zones(phone: str | None, phone_tz: str | None) -> tuple[str, ...]:
    """The phone's zones: its one zone as stored with the number (``patient.phone_tz``, written
    from ``phone_facts`` whenever the number is imported), else the number's zones, parsed (a
    number spanning several zones stores none)."""
    if phone and phone_tz:
        return (phone_tz,)
    return phone_zones(phone)


def _area_code(e164: str | None) -> str | None:
    if e164 and e164.startswith("+1") and len(e164) == 12:
        return e164[2:5]
    return None


def zones_for(
    *,
    explicit: str | None,
    phone: str | None,
    postal_code: str | None,
    state: str | None,
    country: str | None,
    practice_tz: str,
    phone_tz: str | None = None,
) -> tuple[str, ...]:
    """The distinct zones of ``zone_sources``, primary first."""
    return _zones_for(explicit, phone, postal_code, state, country, practice_tz, phone_tz)


@lru_cache(maxsize=65536)
def _zones_for(
    explicit: str | None,
    phone: str | None,
    postal_code: str | None,
    state: str | None,
    country: str | None,
    practice_tz: str,
    phone_tz: str | None,
) -> tuple[str, ...]:
    sources = zone_sources(
        explicit=explicit,
        phone=phone,
        postal_code=postal_code,
        state=state,
        country=country,
        practice_tz=practice_tz,
        phone_tz=phone_tz,
    )
    pz = _phone_zones(phone, phone_tz)
    address = zip_zone(postal_code, country) or state_zone(state, country)
    # The primary zone (local day, display) as SPEC section 4 orders it: the timezone column, the
    # phone's zone when it has exactly one, the address's zone; every other zone is intersected.
    primary = explicit or (pz[0] if len(pz) == 1 else None) or address or sources[0][0]
    out = [primary]
    for z, _ in sources:
        if z not in out:
            out.append(z)
    return tuple(out)


def check_email(text: str) -> str:
    """Syntax check (no DNS) and normalisation. Raises ValueError with the reason.

    email-validator decides. Most of its time goes to the domain (IDNA rules, character by
    character), and a practice's patients share a few hundred domains, so a plain address (an
    ASCII dot-atom before the @-sign, nothing email-validator would rewrite) takes the verdict on
    its domain from a cache; anything else (quotes, Unicode, a display name, a special mailbox
    name, lengths near a limit, any problem) goes through ``validate_email`` whole.
    tests/unit/test_email_check.py checks the two agree on generated addresses."""
    local, at, domain = text.rpartition("@")
    if at and 0 < len(local) <= 64 and domain.isascii() and _plain_local(local):
        ascii_domain = _checked_domain(domain)
        if ascii_domain is not None and len(local) + 1 + len(ascii_domain) <= 254:
            return f"{local}@{ascii_domain}"
    return _validate_email(text)


def _plain_local(local: str) -> bool:
    from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, DOT_ATOM_TEXT

    return bool(DOT_ATOM_TEXT.match(local)) and local.lower() not in CASE_INSENSITIVE_MAILBOX_NAMES


@lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> str | None:
    """The normalised domain when email-validator accepts ``a@domain`` with an ASCII result, else None."""
    try:
        normalized = _validate_email("a@" + domain)
    except ValueError:
        return None
    result = normalized.partition("@")[2]
    return result if result.isascii() else None


def _validate_email(text: str) -> str:
    import email_validator
    from email_validator import EmailNotValidError, validate_email

    # `.invalid` addresses are syntactically fine and are the sandbox's bounce trigger (SPEC
    # section 5); they fail at the provider, as a bounce, not at import. email-validator documents
    # editing this list to allow a special-use domain.
    if "invalid" in email_validator.SPECIAL_USE_DOMAIN_NAMES:
        email_validator.SPECIAL_USE_DOMAIN_NAMES.remove("invalid")
    try:
        info = validate_email(text, check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return str(info.normalized)


def email_is_valid(text: str | None) -> bool:
    if not text:
        return False
    try:
        check_email(text)
    except ValueError:
        return False
    return True


def mask_phone(e164: str | None) -> str:
    """'+16175550100' -> '+1******0100' (logs and errors never carry a full number)."""
    if not e164:
        return ""
    digits = e164.lstrip("+")
    if len(digits) <= 6:
        return "+" + "*" * len(digits)
    return "+" + digits[:1] + "*" * (len(digits) - 5) + digits[-4:]


def mask_email(email: str | None) -> str:
    """'jane@example.com' -> 'j***@example.com'."""
    if not email:
        return ""
    local, _, domain = email.partition("@")
    return (local[:1] + "***@" + domain) if domain else local[:1] + "***"


def mask_name(name: str | None) -> str:
    return (name[:1] + "***") if name else ""


@dataclass(frozen=True)
class Contact:
    """The parts of a patient that decide which methods are usable."""

    phone: str | None = None
    phone_type: str = "unknown"
    email: str | None = None
    address_line1: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    address_invalid: bool = False
    sms_opt_out: bool = False
    call_opt_out: bool = False
    email_opt_out: bool = False
    email_suppressed: str | None = None  # bounced | complained
    card_token: str | None = None
    stripe_card: bool = False  # a Stripe customer and saved payment method
    phone_valid: bool | None = None  # precomputed; None = compute
    email_valid: bool | None = None


def usable_methods(c: Contact) -> dict[str, str | None]:
    """Each method -> None when usable, else the reason it is not."""
    phone_ok = c.phone_valid if c.phone_valid is not None else phone_is_valid(c.phone)
    email_ok = c.email_valid if c.email_valid is not None else email_is_valid(c.email)
    out: dict[str, str | None] = {}
    if not c.phone:
        out["sms"] = out["call"] = "no phone number"
    elif not phone_ok:
        out["sms"] = out["call"] = "phone number is not valid"
    else:
        out["sms"] = (
            "phone is a landline"
            if c.phone_type == "landline"
            else "patient opted out of SMS"
            if c.sms_opt_out
            else None
        )
        out["call"] = "patient opted out of calls" if c.call_opt_out else None
    if not c.email:
        out["email"] = "no email address"
    elif not email_ok:
        out["email"] = "email address is not valid"
    elif c.email_suppressed:
        out["email"] = f"email address suppressed ({c.email_suppressed})"
    elif c.email_opt_out:
        out["email"] = "patient opted out of email"
    else:
        out["email"] = None
    missing = [
        label
        for label, v in (
            ("address line 1", c.address_line1),
            ("city", c.city),
            ("state", c.state),
            ("postal code", c.postal_code),
        )
        if not (v and v.strip())
    ]
    if missing:
        out["mail"] = "no valid postal address (missing " + ", ".join(missing) + ")"
    elif c.address_invalid:
        out["mail"] = "postal address marked invalid"
    else:
        out["mail"] = None
    out["charge_card"] = None if (c.card_token or c.stripe_card) else "no card on file"
    return out
