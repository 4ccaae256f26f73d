"""Rule sets: the TOML format, validation, placeholders and SMS segment counts (SPEC section 3).

Pure: text in, a ``RuleSet`` or a list of ``Problem`` out.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from outreach_cli.domain.money import parse_dollars

METHODS = ("sms", "email", "call", "mail", "charge_card")
MESSAGE_METHODS = ("sms", "email", "call")
PLACEHOLDERS = (
    "first_name",
    "last_name",
    "full_name",
    "balance",
    "url",
    "practice_name",
    "practice_phone",
    "invoice_id",
)
REQUIRED_IN_SMS_EMAIL = ("first_name", "url")
# Patterns compiled on first use (re caches them): a read command that never renders a message
# or checks a rule set does not pay for them.
_PLACEHOLDER = r"\{([^{}]*)\}"
_TOP_KEYS = {"title", "description", "expiry_day", "fallback", "fallback_messages", "step"}
_STEP_KEYS = {"day", "methods", "title", "message", "messages", "min_balance", "max_balance"}
TEMPLATE_METHODS = ("sms", "email", "call", "mail")  # methods that carry words
_OPT_OUT_LINE = r"(?i)reply\s+stop"
# Built-in words for a fallback whose rule set gives none valid for the method (a safety net:
# validation asks for [fallback_messages] first).
DEFAULT_MESSAGES = {
    "sms": "Hi {first_name}, {practice_name} shows a balance of {balance}. Pay securely: {url} Reply STOP to opt out.",
    "email": "Hi {first_name}, {practice_name} shows a balance of {balance} on your account. Pay securely: {url}",
    "call": "Hello {first_name}, this is {practice_name} about your balance of {balance}. "
    "Please use the payment link we sent, or call us at {practice_phone}. Thank you.",
    "mail": "Dear {full_name}, our records show a balance of {balance}. Please pay at {url} or call {practice_phone}.",
}
# A name outside GSM-7 turns a whole SMS into UCS-2: segments are also counted with these.
MAX_VALUES_NON_GSM = {
    "first_name": "Łukasz-Józefína",
    "last_name": "Wiśniewski-Żółkiewska",
    "full_name": "Łukasz-Józefína Wiśniewski-Żółkiewska",
}

# Realistic maximum values, used to count SMS segments (SPEC section 3).
MAX_VALUES = {
    "first_name": "Maximiliana-Josephine",
    "last_name": "Vandenberghe-Castellanos",
    "full_name": "Maximiliana-Josephine Vandenberghe-Castellanos",
    "balance": "$99,999.99",
    "url": "https://pay.example.com/p/" + "x" * 32,
    "practice_name": "Riverside Family Medicine & Pediatrics",
    "practice_phone": "(617) 555-0100",
    "invoice_id": "99999999",
}


@dataclass(frozen=True)
class Step:
    """One step of a rule set: its day, methods and words."""

    index: int
    day: int
    methods: tuple[str, ...]
    title: str
    message: str
    min_balance_cents: int | None = None
    max_balance_cents: int | None = None
    messages: tuple[tuple[str, str], ...] = ()  # [step.messages]: per-method words

    def label(self) -> str:
        return f'step "{self.title}" (day {self.day})'


@dataclass(frozen=True)
class RuleSet:
    """A parsed rule set: its steps, expiry and fallback methods."""

    name: str
    title: str
    description: str
    expiry_day: int
    fallback: tuple[str, ...]
    steps: tuple[Step, ...]
    fallback_messages: tuple[tuple[str, str], ...] = ()  # [fallback_messages]: per-method words

    def template(self, step: Step | None, method: str) -> str:
        """The words a send of ``method`` for ``step`` carries: the step's own message for the
        method, else (a fallback) the rule set's fallback message for it, else the step's message
        when it is valid for the method, else the built-in words for the method."""
        found = template_for(self, step, method)
        return found if found is not None else DEFAULT_MESSAGES.get(method, DEFAULT_MESSAGES["sms"])

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RuleSet:
        d = json.loads(text)
        steps = tuple(
            Step(
                index=s["index"],
                day=s["day"],
                methods=tuple(s["methods"]),
                title=s["title"],
                message=s["message"],
                min_balance_cents=s.get("min_balance_cents"),
                max_balance_cents=s.get("max_balance_cents"),
                messages=tuple((m, t) for m, t in s.get("messages") or ()),
            )
            for s in d["steps"]
        )
        return cls(
            name=d["name"],
            title=d["title"],
            description=d["description"],
            expiry_day=d["expiry_day"],
            fallback=tuple(d["fallback"]),
            steps=steps,
            fallback_messages=tuple((m, t) for m, t in d.get("fallback_messages") or ()),
        )

    def content_hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()


@dataclass
class Problem:
    """One problem a rule-set check found, and where."""

    where: str  # "file: step 2 (day 7): field"
    message: str
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        return (
            f"{self.where}: {self.severity}: {self.message}"
            if self.severity == "warning"
            else f"{self.where}: {self.message}"
        )


@dataclass
class SegmentInfo:
    """How many SMS segments a step's message takes, in which encoding."""

    step: int
    title: str
    encoding: str
    characters: int
    segments: int


@dataclass
class ValidationReport:
    """What checking one rule-set file found: the rule set when valid, its problems, its SMS segments."""

    name: str
    source: str
    rule_set: RuleSet | None
    problems: list[Problem] = field(default_factory=list)
    segments: list[SegmentInfo] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


# --- SMS segments -------------------------------------------------------------------------

_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = set("^{}\\[~]|€\f")


def sms_segments(text: str) -> tuple[str, int, int]:
    """(encoding, length in encoding units, segments): GSM-7 160/153, else UCS-2 70/67."""
    if all(c in _GSM_BASIC or c in _GSM_EXT for c in text):
        n = sum(2 if c in _GSM_EXT else 1 for c in text)
        return "GSM-7", n, 1 if n <= 160 else math.ceil(n / 153)
    n = len(text.encode("utf-16-le")) // 2
    return "UCS-2", n, 1 if n <= 70 else math.ceil(n / 67)


# --- rendering ------------------------------------------------------------------------------


def placeholders_in(message: str) -> list[str]:
    return re.findall(_PLACEHOLDER, message)


def render(message: str, values: dict[str, str]) -> str:
    return re.sub(_PLACEHOLDER, lambda m: values.get(m.group(1), m.group(0)), message)


def template_problem(method: str, message: str) -> str | None:
    """Why ``message`` cannot be sent by ``method``, or None: sms and email carry {first_name}
    and {url}, sms the opt-out line ("Reply STOP ..."); a call or a letter never says "Reply STOP"."""
    found = set(placeholders_in(message))
    if method in ("sms", "email"):
        missing = [p for p in REQUIRED_IN_SMS_EMAIL if p not in found]
        if missing:
            return f"{method} messages must contain " + " and ".join("{" + p + "}" for p in missing)
    if method == "sms" and not re.search(_OPT_OUT_LINE, message):
        return 'sms messages must carry the opt-out line ("Reply STOP to opt out.")'
    if method in ("call", "mail") and re.search(_OPT_OUT_LINE, message):
        return f'a {"letter" if method == "mail" else "call"} must not say "Reply STOP"'
    return None


def template_for(rs: RuleSet, step: Step | None, method: str) -> str | None:
    """step.messages[method] -> rule set fallback_messages[method] (when the method is not one of
    the step's own) -> step.message when valid for the method -> None."""
    own = dict(step.messages).get(method) if step else None
    if own:
        return own
    if step is None or method not in step.methods:
        fb = dict(rs.fallback_messages).get(method)
        if fb:
            return fb
    if step is not None and step.message.strip() and template_problem(method, step.message) is None:
        return step.message
    return None


def worst_segments(message: str) -> tuple[str, int, int]:
    """Segments with realistic long values, and with names outside GSM-7 (they force UCS-2):
    the worse of the two."""
    a = sms_segments(render(message, MAX_VALUES))
    if not any(p in placeholders_in(message) for p in MAX_VALUES_NON_GSM):
        return a
    b = sms_segments(render(message, {**MAX_VALUES, **MAX_VALUES_NON_GSM}))
    return b if b[2] > a[2] else a


def _messages_table(raw: Any, where: str, err: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if raw is None:
        return out
    if not isinstance(raw, dict):
        err(where, 'must be a table of per-method messages, e.g. sms = "..."')
        return out
    for m, text in raw.items():
        if m not in TEMPLATE_METHODS:
            err(f"{where}: {m}", f"not a method with words (known: {', '.join(TEMPLATE_METHODS)})")
        elif not isinstance(text, str) or not text.strip():
            err(f"{where}: {m}", "must be a non-empty string")
        else:
            for ph in placeholders_in(text):
                if ph not in PLACEHOLDERS:
                    err(
                        f"{where}: {m}",
                        f"unknown placeholder {{{ph}}} (allowed: "
                        + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                        + ")",
                    )
            out[m] = text
    return out


# --- parsing and validation -----------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


DEFAULT_CAPS: dict[str, Any] = {
    "calls_per_7_days": 7,
    "messages_per_7_days": None,
    "states": {"MA": {"calls_per_7_days": 2}},
}


def max_in_7_days(days: list[int]) -> int:
    """The most of these step days that fall in any 7 consecutive days."""
    return max((sum(1 for d in days if a <= d < a + 7) for a in days), default=0)


def _cap_warnings(report: ValidationReport, source: str, steps: list[Step], caps: dict[str, Any] | None) -> None:
    """A rule set that alone would exceed a contact cap: its sends would be held (README "Compliance")."""
    caps = caps if caps is not None else DEFAULT_CAPS
    call_days = [s.day for s in steps if "call" in s.methods]
    msg_days = [s.day for s in steps for m in s.methods if m in TEMPLATE_METHODS]
    calls = max_in_7_days(call_days)
    limits = [("", caps.get("calls_per_7_days"), caps.get("messages_per_7_days"))] + [
        (f" in {st}", v.get("calls_per_7_days"), v.get("messages_per_7_days"))
        for st, v in sorted((caps.get("states") or {}).items())
        if isinstance(v, dict)
    ]
    for where, call_cap, msg_cap in limits:
        if call_cap is not None and calls > int(call_cap):
            report.problems.append(
                Problem(
                    source,
                    f"up to {calls} calls in 7 days exceed the cap{where} of {call_cap} "
                    "(compliance.calls_per_7_days): later calls will be held",
                    "warning",
                )
            )
        msgs = max_in_7_days(msg_days)
        if msg_cap is not None and msgs > int(msg_cap):
            report.problems.append(
                Problem(
                    source,
                    f"up to {msgs} messages in 7 days exceed the cap{where} of {msg_cap} "
                    "(compliance.messages_per_7_days): later messages will be held",
                    "warning",
                )
            )


Err = Callable[[str, str], None]


def parse_text(text: str, *, name: str, source: str, caps: dict[str, Any] | None = None) -> ValidationReport:
    """Parse and validate one rule-set file's text. The report holds every problem found."""
    report = ValidationReport(name=name, source=source, rule_set=None)
    problems = report.problems

    def err(where: str, msg: str) -> None:
        problems.append(Problem(f"{source}: {where}" if where else source, msg))

    import tomllib  # only where a rule set file is read

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        err("", f"not valid TOML: {exc}")
        return report

    title, description, expiry = _parse_header(data, name, err)
    fallback = _parse_fallback(data.get("fallback", []), err)
    fallback_messages = _parse_fallback_messages(data.get("fallback_messages"), err)
    draft_rs = RuleSet(name, "", "", 0, tuple(fallback), (), tuple(sorted(fallback_messages.items())))
    steps, last_day = _parse_steps(_raw_steps(data, err), draft_rs, report, err)

    _cap_warnings(report, source, steps, caps)

    if isinstance(expiry, int) and last_day is not None and expiry <= last_day:
        err("expiry_day", f"must be after the last step's day ({last_day}), got {expiry}")

    if not report.errors:
        assert _is_int(expiry)
        report.rule_set = RuleSet(
            name=name,
            title=title,
            description=description,
            expiry_day=int(expiry),
            fallback=tuple(fallback),
            steps=tuple(steps),
            fallback_messages=tuple(sorted(fallback_messages.items())),
        )
    return report


def _parse_header(data: dict[str, Any], name: str, err: Err) -> tuple[str, str, Any]:
    """Unknown top-level keys, title, description and expiry_day (None when missing or invalid)."""
    for key in sorted(set(data) - _TOP_KEYS):
        err(key, f"unknown key (known: {', '.join(sorted(_TOP_KEYS))})")

    title = data.get("title", name)
    if not isinstance(title, str) or not title.strip():
        err("title", "must be a non-empty string")
        title = name
    description = data.get("description", "")
    if not isinstance(description, str):
        err("description", "must be a string")
        description = ""

    expiry = data.get("expiry_day")
    if expiry is None:
        err("expiry_day", "required: the day the cycle ends (after the last step)")
    elif not _is_int(expiry) or expiry < 0:
        err("expiry_day", f"must be a whole number of days >= 0, got {expiry!r}")
        expiry = None
    return title, description, expiry


def _parse_fallback(fallback_raw: Any, err: Err) -> list[str]:
    fallback: list[str] = []
    if not isinstance(fallback_raw, list):
        err("fallback", "must be a list of methods")
        return fallback
    for m in fallback_raw:
        if m not in METHODS:
            err("fallback", f"unknown method {m!r} (known: {', '.join(METHODS)})")
        elif m in fallback:
            err("fallback", f"method {m!r} listed twice")
        else:
            fallback.append(m)
    return fallback


def _parse_fallback_messages(raw: Any, err: Err) -> dict[str, str]:
    fallback_messages = _messages_table(raw, "fallback_messages", err)
    for m, text in fallback_messages.items():
        why = template_problem(m, text)
        if why:
            err(f"fallback_messages: {m}", why)
    return fallback_messages


def _raw_steps(data: dict[str, Any], err: Err) -> list[dict[str, Any]]:
    raw_steps = data.get("step")
    if raw_steps is None or raw_steps == []:
        err("step", "at least one [[step]] is required")
        return []
    if not isinstance(raw_steps, list) or not all(isinstance(s, dict) for s in raw_steps):
        err("step", "must be an array of tables ([[step]])")
        return []
    return raw_steps


def _parse_steps(
    raw_steps: list[dict[str, Any]], draft_rs: RuleSet, report: ValidationReport, err: Err
) -> tuple[list[Step], int | None]:
    """Every [[step]] in order; returns the steps and the last valid day seen."""
    steps: list[Step] = []
    prev_day: int | None = None
    for i, raw in enumerate(raw_steps, start=1):
        day = raw.get("day")
        where = f"step {i}" + (f" (day {day})" if _is_int(day) else "")
        for key in sorted(set(raw) - _STEP_KEYS):
            err(f"{where}: {key}", f"unknown key (known: {', '.join(sorted(_STEP_KEYS))})")
        day = _check_step_day(day, prev_day, where, err)
        if _is_int(day):
            prev_day = day
        step = _parse_step(i, raw, day, where, draft_rs, err)
        steps.append(step)
        _add_sms_segments(report, i, where, step, draft_rs)
    return steps, prev_day


def _check_step_day(day: Any, prev_day: int | None, where: str, err: Err) -> Any:
    """The step's day, or None when it is not a whole number >= 0."""
    if day is None:
        err(f"{where}: day", "required")
    elif not _is_int(day) or day < 0:
        err(f"{where}: day", f"must be a whole number >= 0, got {day!r}")
        return None
    elif prev_day is not None and day <= prev_day:
        err(f"{where}: day", f"days must strictly increase (previous step is day {prev_day})")
    return day


def _parse_step(i: int, raw: dict[str, Any], day: Any, where: str, draft_rs: RuleSet, err: Err) -> Step:
    methods = _parse_step_methods(raw.get("methods"), where, err)
    step_title, message = _parse_step_texts(raw, i, where, err)
    step_messages = _messages_table(raw.get("messages"), f"{where}: messages", err)
    _check_step_words(where, methods, message, step_messages, err)
    draft = Step(i - 1, 0, tuple(methods), "", message, messages=tuple(sorted(step_messages.items())))
    _check_fallback_words(where, draft, draft_rs, err)
    lo, hi = _parse_step_bounds(raw, where, err)
    return Step(
        index=i - 1,
        day=day if _is_int(day) else 0,
        methods=tuple(methods),
        title=step_title,
        message=message,
        min_balance_cents=lo,
        max_balance_cents=hi,
        messages=tuple(sorted(step_messages.items())),
    )


def _parse_step_methods(methods_raw: Any, where: str, err: Err) -> list[str]:
    methods: list[str] = []
    if methods_raw is None or methods_raw == []:
        err(f"{where}: methods", f"at least one method is required ({', '.join(METHODS)})")
    elif not isinstance(methods_raw, list):
        err(f"{where}: methods", 'must be a list, e.g. ["sms", "email"]')
    else:
        for m in methods_raw:
            if m not in METHODS:
                err(f"{where}: methods", f"unknown method {m!r} (known: {', '.join(METHODS)})")
            elif m in methods:
                err(f"{where}: methods", f"method {m!r} appears twice in one step")
            else:
                methods.append(m)
    return methods


def _parse_step_texts(raw: dict[str, Any], i: int, where: str, err: Err) -> tuple[str, str]:
    """The step's title and message."""
    step_title = raw.get("title", f"Step {i}")
    if not isinstance(step_title, str) or not step_title.strip():
        err(f"{where}: title", "must be a non-empty string")
        step_title = f"Step {i}"
    message = raw.get("message", "")
    if not isinstance(message, str):
        err(f"{where}: message", "must be a string")
        message = ""
    return step_title, message


def _check_step_words(where: str, methods: list[str], message: str, step_messages: dict[str, str], err: Err) -> None:
    """Placeholders in the message, the per-method messages, and a message for each method."""
    for ph in placeholders_in(message):
        if ph not in PLACEHOLDERS:
            err(
                f"{where}: message",
                f"unknown placeholder {{{ph}}} (allowed: " + ", ".join("{" + p + "}" for p in PLACEHOLDERS) + ")",
            )
    for m, text in step_messages.items():
        why = template_problem(m, text)
        if why:
            err(f"{where}: messages: {m}", why)
    for m in methods:
        if m not in TEMPLATE_METHODS or m in step_messages:
            continue
        if m in MESSAGE_METHODS and not message.strip():
            err(f"{where}: message", f"required for {m} (or give [step.messages] {m})")
        elif message.strip() and (m in MESSAGE_METHODS or m == "mail"):
            why = template_problem(m, message)
            if why:
                err(f"{where}: message", why + f" (or give [step.messages] {m})")


def _check_fallback_words(where: str, draft: Step, draft_rs: RuleSet, err: Err) -> None:
    """Each sms/email fallback the step does not use itself needs valid words."""
    for m in draft_rs.fallback:
        if m in draft.methods or m not in ("sms", "email"):
            continue
        if template_for(draft_rs, draft, m) is None:
            err(
                f"{where}: fallback {m}",
                f"no valid {m} message for this step's fallback to {m}: give [fallback_messages] {m} "
                f"or [step.messages] {m} ({template_problem(m, draft.message) or 'the step has no message'})",
            )


def _parse_step_bounds(raw: dict[str, Any], where: str, err: Err) -> tuple[int | None, int | None]:
    """min_balance and max_balance in cents (None when absent or invalid)."""
    bounds: dict[str, int | None] = {"min_balance": None, "max_balance": None}
    for key in bounds:
        if key in raw:
            v = raw[key]
            try:
                if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                    raise ValueError(f"not an amount: {v!r}")
                cents = parse_dollars(str(v)) if not _is_int(v) else int(v) * 100
                if cents < 0:
                    raise ValueError("must not be negative")
                bounds[key] = cents
            except ValueError as exc:
                err(f"{where}: {key}", f'{exc} (write it in dollars, e.g. "25.00")')
    lo, hi = bounds["min_balance"], bounds["max_balance"]
    if lo is not None and hi is not None and lo > hi:
        err(f"{where}: min_balance", "is above max_balance")
    return lo, hi


def _add_sms_segments(report: ValidationReport, i: int, where: str, step: Step, draft_rs: RuleSet) -> None:
    """Record the step's SMS segment count; warn when it exceeds 2 with long values."""
    draft = Step(i - 1, 0, step.methods, "", step.message, messages=step.messages)
    sms_text = template_for(draft_rs, draft, "sms") if "sms" in step.methods else None
    if not sms_text:
        return
    enc, n, segs = worst_segments(sms_text)
    g_enc, g_n, g_segs = sms_segments(render(sms_text, MAX_VALUES))
    report.segments.append(SegmentInfo(i, step.title, enc, n, segs))
    if (g_enc, g_n) != (enc, n):
        report.segments[-1].encoding = f"{enc} with a non-GSM name ({g_segs} {g_enc})"
    enc, n, segs = g_enc, g_n, g_segs
    if segs > 2:
        report.problems.append(
            Problem(
                f"{report.source}: {where}: message",
                f"sms is {segs} segments ({enc}, {n} characters with long values); keep it to 2",
                "warning",
            )
        )


_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


def load_file(path: Path, caps: dict[str, Any] | None = None) -> ValidationReport:
    name = path.stem
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return ValidationReport(name, source, None, [Problem(source, "not UTF-8 text")])
    except OSError as exc:
        return ValidationReport(name, source, None, [Problem(source, f"cannot read: {exc.strerror}")])
    report = parse_text(text, name=name, source=source, caps=caps)
    if not re.match(_NAME, name):
        report.problems.insert(
            0, Problem(source, f"file name {name!r} is not a usable rule-set name (letters, digits, - _ .)")
        )
        report.rule_set = None
    return report


def load_dir(directory: Path, caps: dict[str, Any] | None = None) -> list[ValidationReport]:
    return [load_file(p, caps) for p in sorted(directory.glob("*.toml"))]


def shipped_dir() -> Path:
    """The rule sets shipped with the package (the repo's `rulesets/`)."""
    import outreach_rulesets

    return Path(outreach_rulesets.__file__).parent
