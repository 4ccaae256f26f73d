"""A/B tests between rule sets: the weighted `--rule-set standard:70,gentle:30` spec, the
deterministic arm of a new invoice set, and the statistics that compare the arms. Pure.

The arm is a hash of the set ID mapped onto the cumulative weights, so it never depends on the
order of an import or on the time, and re-importing never reshuffles: existing sets keep the arm
recorded on them (only new sets are assigned).

The comparison treats each set as one trial: "paid in full" or not. That binary outcome is what a
two-proportion z-test is valid for (a dollars-based rate is shown beside it, without a test: a few
large balances would dominate it). The maths is the standard library's `statistics.NormalDist`.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from statistics import NormalDist

from outreach_cli.domain.errors import InvalidInput

SPEC_FORMS = "NAME, or NAME:WEIGHT,NAME:WEIGHT,... with whole-number weights (e.g. standard:70,gentle:30)"


@dataclass(frozen=True)
class Arms:
    """The rule sets new invoice sets are spread over. ``spec`` is None for a plain single rule set
    (no experiment)."""

    arms: tuple[tuple[str, int], ...]
    spec: str | None

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.arms]

    @property
    def is_experiment(self) -> bool:
        return self.spec is not None


def parse_arms(text: str, *, flag: str = "--rule-set") -> Arms:
    """`standard` -> one rule set; `standard:70,gentle:30` -> weighted arms (weights are positive
    whole numbers, names distinct). Names are checked against the database by the caller."""
    raw = text.strip()
    if not raw:
        raise InvalidInput(f"{flag}: empty; expected {SPEC_FORMS}")
    if ":" not in raw and "," not in raw:
        return Arms(((raw, 1),), None)
    arms: list[tuple[str, int]] = []
    for part in raw.split(","):
        name, sep, weight = part.strip().partition(":")
        name = name.strip()
        if not name or not sep:
            raise InvalidInput(f"{flag} {text!r}: {part.strip()!r} needs NAME:WEIGHT; expected {SPEC_FORMS}")
        w = weight.strip()
        if not w.isdigit() or int(w) <= 0:
            raise InvalidInput(
                f"{flag} {text!r}: weight {w!r} of {name!r} must be a whole number above 0; expected {SPEC_FORMS}"
            )
        if any(n == name for n, _ in arms):
            raise InvalidInput(f"{flag} {text!r}: rule set {name!r} is named twice")
        arms.append((name, int(w)))
    spec = ",".join(f"{n}:{w}" for n, w in arms)
    return Arms(tuple(arms), spec)


def bucket(set_id: int) -> float:
    """A uniform number in [0, 1) from the set ID alone (SHA-256, so consecutive IDs scatter)."""
    digest = hashlib.sha256(f"outreach-arm:{set_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(set_id: int, arms: Arms) -> str:
    """The arm of a new set: its bucket on the cumulative weights."""
    if len(arms.arms) == 1:
        return arms.arms[0][0]
    total = sum(w for _, w in arms.arms)
    point = bucket(set_id) * total
    acc = 0
    for name, w in arms.arms:
        acc += w
        if point < acc:
            return name
    return arms.arms[-1][0]


# --- comparing the arms ----------------------------------------------------------------------

Z95 = NormalDist().inv_cdf(0.975)
MIN_SETS_PER_ARM = 30
MIN_EXPECTED = 5  # the normal approximation needs n*p and n*(1-p) of at least this in every arm


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval for a proportion (sound for small samples and rates near 0 or 1)."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Comparison:
    difference: float  # rate of the arm minus rate of the control
    ci: tuple[float, float]  # 95 % (unpooled Wald) interval of the difference
    z: float | None
    p_value: float | None
    enough: bool  # False: the sample is too small to tell
    why_not: str | None


def two_proportions(x1: int, n1: int, x2: int, n2: int) -> Comparison:
    """Arm (x1 of n1) against control (x2 of n2): difference, its 95 % interval, and the
    two-sided p-value of the pooled two-proportion z-test."""
    p1 = x1 / n1 if n1 else 0.0
    p2 = x2 / n2 if n2 else 0.0
    diff = p1 - p2
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2) if n1 and n2 else 0.0
    ci = (diff - Z95 * se, diff + Z95 * se)
    why: str | None = None
    if min(n1, n2) < MIN_SETS_PER_ARM:
        why = f"fewer than {MIN_SETS_PER_ARM} sets in an arm"
    else:
        pooled = (x1 + x2) / (n1 + n2)
        if min(n1, n2) * min(pooled, 1 - pooled) < MIN_EXPECTED:
            why = f"fewer than {MIN_EXPECTED} expected paid (or unpaid) sets in an arm"
    if n1 == 0 or n2 == 0:
        return Comparison(diff, ci, None, None, False, why)
    pooled = (x1 + x2) / (n1 + n2)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se0 == 0:
        return Comparison(diff, ci, None, None, False, why or "every set had the same outcome")
    z = diff / se0
    p_value = 2 * (1 - NormalDist().cdf(abs(z)))
    return Comparison(diff, ci, z, p_value, why is None, why)
