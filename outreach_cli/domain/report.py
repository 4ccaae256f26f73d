"""The effectiveness report: what got the practice paid, for what it cost. Pure: rows in, figures out.

Definitions (the README's "Reports and A/B tests" repeats them for the billing team):
- The report follows the invoice sets that *entered* outreach in the period (created in
  [since, until)) and counts what happened to them before `until`: sends, payments, opt-outs.
- Owed = the total of a set's charges (void charges excluded). Collected = payments applied to
  the set's charges; write-offs, collections and voids are not payments and never count. A refund
  (a negative payment allocation) takes back the most recent collected dollars of its set.
- Collection rate = collected / owed. Paid in full: collected reached owed (median days to pay is
  measured from entry to that payment); paid partly: something but not all.
- Messages: attempted = the provider was called (sent, delivered, failed, unknown, or retrying);
  skipped methods are not attempts. Cost = unit cost per attempt from `[costs]`; a call costs
  `call_minute` x its minutes, one minute per attempt as no duration is recorded.
- Attribution: each payment goes to the last (`first`: the first) send delivered to its set within
  `attribution_days` before it, both ends inclusive ([paid_at - N days, paid_at]); with none it is
  "unprompted". Opt-outs (STOP replies, email complaints/unsubscribes) are attributed the same way.
- Funnel: a set reached a step when that step came due for it (any method sent or skipped); it
  "paid after" the step when it was paid in full after reaching it and before reaching its next
  step.
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from outreach_cli.domain import experiments
from outreach_cli.domain.money import plain_dollars
from outreach_cli.domain.statuses import SendStatus
from outreach_cli.domain.timeutil import iso_z

BY_CHOICES = ("rule-set", "step", "method", "week")
DEFAULT_BY = ("rule-set", "step")
ATTRIBUTIONS = ("last", "first")
METHODS = ("sms", "email", "call", "mail", "charge_card")
ATTEMPTED = frozenset({SendStatus.SENT, SendStatus.DELIVERED, SendStatus.FAILED, SendStatus.UNKNOWN})
REACHED = ATTEMPTED | {SendStatus.SKIPPED}
UNPROMPTED = "(unprompted)"
NO_SEND = "(no send yet)"
OPT_OUT_KINDS = ("reply", "email_complaint", "email_unsubscribe")


@dataclass(slots=True)  # built per row: slots, not frozen, keep it cheap
class SetRow:
    id: int
    rule_set: str
    status: str
    created_at: datetime
    owed_cents: int
    arm: str | None = None
    experiment: str | None = None


@dataclass(slots=True)
class SendRow:
    set_id: int
    step_day: int
    step_title: str
    method: str
    status: str
    attempts: int
    at: datetime | None  # sent_at, else finished_at, else due_at
    minutes: float | None = None  # a call's recorded duration, when a provider reports one


@dataclass(slots=True)
class PaymentRow:
    set_id: int
    payment_id: str
    paid_at: datetime
    cents: int  # applied to this set's charges; negative: a refund


@dataclass(slots=True)
class OptOutRow:
    set_id: int
    at: datetime
    kind: str


@dataclass(frozen=True)
class Costs:
    sms: Decimal = Decimal(0)
    email: Decimal = Decimal(0)
    call_minute: Decimal = Decimal(0)
    letter: Decimal = Decimal(0)

    @classmethod
    def from_settings(cls, values: dict[str, Any]) -> Costs:
        return cls(**{k: Decimal(str(values.get(k, 0) or 0)) for k in ("sms", "email", "call_minute", "letter")})

    def of(self, send: SendRow) -> Decimal:
        """Dollars one attempted send cost."""
        return self.unit(send.method) * cost_units(send)

    def unit(self, method: str) -> Decimal:
        """Dollars per attempt (a call: per minute)."""
        if method == "sms":
            return self.sms
        if method == "email":
            return self.email
        if method == "call":
            return self.call_minute
        if method == "mail":
            return self.letter
        return Decimal(0)  # charge_card: processor fees are not modelled


ONE = Decimal(1)


def cost_units(send: SendRow) -> Decimal:
    """What an attempt's unit cost is multiplied by: its minutes for a call (one when no provider
    reports a duration), else one."""
    if send.method == "call" and send.minutes is not None:
        return Decimal(str(send.minutes))
    return ONE


@dataclass(frozen=True)
class Options:
    since: datetime
    until: datetime
    tz: ZoneInfo
    by: tuple[str, ...] = DEFAULT_BY
    attribution: str = "last"
    attribution_days: int = 7
    costs: Costs = field(default_factory=Costs)
    experiment: bool = False


@dataclass
class ReportInput:
    """Either every row of the sets in scope (``tallies`` None: the counts are made from the rows),
    or the counts made by the database (``tallies``) plus the rows of only the sets that have
    payments or opt-outs, which is all the attribution needs (`report_queries`)."""

    sets: list[SetRow]
    sends: list[SendRow]
    payments: list[PaymentRow]
    opt_outs: list[OptOutRow]
    steps: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # rule set -> (day, title)
    tallies: Tallies | None = None
    # The money of the sets whose payments are not in ``payments``, attributed by the database
    # (`report_queries.paid_facts`): made for ``paid_for`` (attribution, days), or when asked.
    paid: PaidFacts | Callable[[int, str], PaidFacts] | None = None
    paid_for: tuple[str | None, int | None] = (None, None)


# --- attribution -----------------------------------------------------------------------------

StepKey = tuple[int, str]  # (day, title); UNPROMPTED/NO_SEND use day 10**6 so they sort last


class Touch(NamedTuple):  # built per send and per payment: a tuple is cheapest
    step: StepKey
    method: str


UNPROMPTED_TOUCH = Touch((10**6, UNPROMPTED), UNPROMPTED)
NO_SEND_TOUCH = Touch((10**6 - 1, NO_SEND), NO_SEND)


# --- counts over every set in scope ----------------------------------------------------------

Fine = tuple[str, date | None, StepKey | None, str | None]  # rule set, week, step, method
TOUCH_DIMS = ("step", "method")
PROJECTIONS: tuple[tuple[str, ...], ...] = ((), ("step",), ("method",), ("step", "method"))
_DIM_INDEX = {"rule-set": 0, "week": 1, "step": 2, "method": 3}


def projection(by: tuple[str, ...]) -> tuple[str, ...]:
    """The touch dimensions of a grouping: which distinct touches of a set its "sets" count."""
    return tuple(d for d in TOUCH_DIMS if d in by)


def fine_key(st_rule_set: str, week: date | None, touch: Touch | None, proj: tuple[str, ...]) -> Fine:
    return (
        st_rule_set,
        week,
        touch.step if touch is not None and "step" in proj else None,
        touch.method if touch is not None and "method" in proj else None,
    )


@dataclass(slots=True)
class MsgTally:
    attempted: int = 0
    delivered: int = 0
    failed: int = 0
    units: Decimal = Decimal(0)  # the sum of cost_units: attempts, a call's minutes


@dataclass
class Tallies:
    """Counts over every set in scope at the finest grouping (rule set, week, step, method), which
    the report rolls up to any --by: additive, because a set has one rule set and one week and a
    send one step and one method. The exception is "sets entered" (and their owed) of step and
    method rows, where a set counts once per distinct touch it reached: those are kept per
    projection (`entered[("step",)]`: per distinct step; `entered[()]`: each set once).
    ``weeks`` False: the week is not filled in (None), so no grouping by week can be made."""

    entered: dict[tuple[str, ...], dict[Fine, list[int]]]  # projection -> key -> [sets, owed cents]
    messages: dict[Fine, MsgTally]  # attempted sends, by their own step and method
    arms: dict[tuple[str, str], list[int]]  # (experiment, arm) -> [sets, owed cents]
    weeks: bool = True


@dataclass
class PaidFacts:
    """What the payments of some sets come to, by the same rules as `Report`: made by the database
    for every set in scope without a refund (`report_queries`), or by `Report` from payment rows;
    the report adds the two."""

    facts: dict[Fine, Acc] = field(default_factory=dict)  # collected, unprompted, paid sets, days to pay
    paid_after: dict[str, dict[StepKey | None, int]] = field(default_factory=dict)  # rule set -> last step
    weekly: dict[date, int] = field(default_factory=dict)  # week -> collected cents
    arms: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # arm -> [paid in full, collected]

    def add(self, other: PaidFacts) -> None:
        for k, f in other.facts.items():
            a = self.facts.get(k) or self.facts.setdefault(k, Acc())
            a.collected += f.collected
            a.unprompted += f.unprompted
            a.paid_full += f.paid_full
            a.paid_partly += f.paid_partly
            a.days_to_pay += f.days_to_pay
            a.opt_outs += f.opt_outs
        for rs, steps in other.paid_after.items():
            mine = self.paid_after.setdefault(rs, {})
            for step, n in steps.items():
                mine[step] = mine.get(step, 0) + n
        for wk, cents in other.weekly.items():
            self.weekly[wk] = self.weekly.get(wk, 0) + cents
        for arm, (paid, collected) in other.arms.items():
            a2 = self.arms.setdefault(arm, [0, 0])
            a2[0] += paid
            a2[1] += collected


def tally_rows(data: ReportInput, until: datetime, tz: ZoneInfo) -> Tallies:
    """The tallies of a ReportInput that holds every row of the sets in scope (the reference the
    database's GROUP BY queries in `report_queries` reproduce)."""
    sets = {s.id: s for s in data.sets}
    weeks = {set_id: week_of(st.created_at, tz) for set_id, st in sets.items()}
    reached: dict[int, set[Touch]] = defaultdict(set)
    messages: dict[Fine, MsgTally] = defaultdict(MsgTally)
    for s in data.sends:
        st = sets.get(s.set_id)
        if st is None or (s.at is not None and s.at >= until):
            continue
        touch = Touch((s.step_day, s.step_title), s.method)
        if s.status in REACHED:
            reached[s.set_id].add(touch)
        if s.status in ATTEMPTED:
            m = messages[(st.rule_set, weeks[s.set_id], touch.step, touch.method)]
            m.attempted += 1
            if s.status == SendStatus.DELIVERED:
                m.delivered += 1
            elif s.status == SendStatus.FAILED:
                m.failed += 1
            m.units += cost_units(s)
    entered: dict[tuple[str, ...], dict[Fine, list[int]]] = {p: defaultdict(lambda: [0, 0]) for p in PROJECTIONS}
    arms: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for set_id, st in sets.items():
        touches = reached.get(set_id) or {NO_SEND_TOUCH}
        for p in PROJECTIONS:
            for k in {fine_key(st.rule_set, weeks[set_id], t, p) for t in touches}:
                e = entered[p][k]
                e[0] += 1
                e[1] += st.owed_cents
        if st.experiment and st.arm:
            a = arms[(st.experiment, st.arm)]
            a[0] += 1
            a[1] += st.owed_cents
    return Tallies({p: dict(v) for p, v in entered.items()}, dict(messages), dict(arms))


class Attributor:
    """The delivered sends of each set, sorted by time, searched by bisection."""

    def __init__(
        self,
        sends: Iterable[SendRow],
        days: int,
        mode: str,
        only: set[int] | None = None,
        channels: set[int] | None = None,
    ) -> None:
        """``only``: the sets anything is attributed for (those with payments or opt-outs);
        ``channels``: those that also need their sends per channel (those with opt-outs)."""
        per_set: dict[Any, list[tuple[datetime, SendRow]]] = defaultdict(list)
        for s in sends:
            if s.status == SendStatus.DELIVERED and s.at is not None and (only is None or s.set_id in only):
                per_set[s.set_id].append((s.at, s))
                # opt-outs answer a channel
                if s.method in ("sms", "email") and (channels is None or s.set_id in channels):
                    per_set[(s.set_id, s.method)].append((s.at, s))
        self.times: dict[Any, list[datetime]] = {}
        self.rows: dict[Any, list[SendRow]] = {}
        for key, items in per_set.items():
            items.sort(key=lambda x: x[0])
            self.times[key] = [t for t, _ in items]
            self.rows[key] = [r for _, r in items]
        self.window = timedelta(days=days)
        self.mode = mode

    def send_for(self, key: Any, at: datetime) -> SendRow | None:
        times = self.times.get(key)
        if not times:
            return None
        lo = bisect.bisect_left(times, at - self.window)  # first send at or after the window's start
        hi = bisect.bisect_right(times, at)  # sends at or before the payment
        if lo >= hi:
            return None
        return self.rows[key][hi - 1 if self.mode == "last" else lo]

    def touch(self, set_id: int, at: datetime, method: str | None = None) -> Touch:
        """The send credited with a fact at ``at``; ``method``: only sends of that channel."""
        s = self.send_for(set_id if method is None else (set_id, method), at)
        return UNPROMPTED_TOUCH if s is None else Touch((s.step_day, s.step_title), s.method)


# --- facts -----------------------------------------------------------------------------------


@dataclass
class Acc:
    sets: int = 0
    owed: int = 0
    attempted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    delivered: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    cost: Decimal = Decimal(0)
    paid_full: int = 0
    paid_partly: int = 0
    collected: int = 0
    unprompted: int = 0
    days_to_pay: list[float] = field(default_factory=list)
    opt_outs: int = 0


@dataclass
class SetOutcome:
    collected: int = 0
    paid_full_at: datetime | None = None
    last_touch: Touch | None = None  # of the completing payment (paid in full) or the last one
    payments: list[tuple[datetime, int, Touch]] = field(default_factory=list)  # net of refunds


def _net_payments(rows: list[PaymentRow]) -> list[tuple[datetime, int]]:
    """Positive payments in time order, refunds taken from the most recent ones."""
    kept: list[list[Any]] = []
    for p in sorted(rows, key=lambda r: (r.paid_at, r.payment_id)):
        if p.cents >= 0:
            kept.append([p.paid_at, p.cents])
            continue
        back = -p.cents
        for item in reversed(kept):
            take = min(back, item[1])
            item[1] -= take
            back -= take
            if back == 0:
                break
    return [(t, c) for t, c in kept if c > 0]


def week_of(at: datetime, tz: ZoneInfo) -> date:
    d = at.astimezone(tz).date()
    return d - timedelta(days=d.weekday())


class Report:
    def __init__(self, data: ReportInput, opts: Options) -> None:
        self.opts = opts
        self.tallies = data.tallies if data.tallies is not None else tally_rows(data, opts.until, opts.tz)
        self.sets = {s.id: s for s in data.sets}  # every set, or those with refunds or opt-outs
        self._fact_cache: dict[Fine, Acc] | None = None
        self.steps = data.steps
        until = opts.until
        self.sends = [s for s in data.sends if s.set_id in self.sets and (s.at is None or s.at < until)]
        pays: dict[int, list[PaymentRow]] = defaultdict(list)
        for p in data.payments:
            if p.set_id in self.sets and p.paid_at < until:
                pays[p.set_id].append(p)
        with_opt_outs = {o.set_id for o in data.opt_outs}
        self.attr = Attributor(
            self.sends, opts.attribution_days, opts.attribution, set(pays) | with_opt_outs, with_opt_outs
        )
        self.outcomes = {set_id: self._outcome(self.sets[set_id], rows) for set_id, rows in pays.items()}
        # A STOP reply answers a text; an email complaint or unsubscribe answers an email.
        self.opt_outs = [
            (o, self.attr.touch(o.set_id, o.at, "sms" if o.kind == "reply" else "email"))
            for o in data.opt_outs
            if o.set_id in self.sets and o.at < until
        ]
        self.paid = self._paid_facts()
        if callable(data.paid):
            self.paid.add(data.paid(opts.attribution_days, opts.attribution))
        elif data.paid is not None:
            if data.paid_for != (opts.attribution, opts.attribution_days):
                raise ValueError(f"the payments were attributed for {data.paid_for}, not for this report")
            self.paid.add(data.paid)

    def _outcome(self, st: SetRow, rows: list[PaymentRow]) -> SetOutcome:
        out = SetOutcome()
        for at, cents in _net_payments(rows):
            touch = self.attr.touch(st.id, at)
            out.payments.append((at, cents, touch))
            before = out.collected
            out.collected += cents
            out.last_touch = touch
            if st.owed_cents > 0 and before < st.owed_cents <= out.collected and out.paid_full_at is None:
                out.paid_full_at = at
        if out.paid_full_at is not None:
            out.last_touch = next(t for a, _, t in out.payments if a == out.paid_full_at)
        return out

    # --- grouping ---

    def aggregate(self, by: tuple[str, ...]) -> dict[tuple[Any, ...], Acc]:
        t = self.tallies
        if "week" in by and not t.weeks:
            raise ValueError("the tallies were made without weeks")
        idx = [_DIM_INDEX[d] for d in by]
        accs: dict[tuple[Any, ...], Acc] = defaultdict(Acc)
        for fine, (n, owed) in t.entered[projection(by)].items():
            a = accs[tuple(fine[i] for i in idx)]
            a.sets += n
            a.owed += owed
        costs = self.opts.costs
        for fine, m in t.messages.items():
            a = accs[tuple(fine[i] for i in idx)]
            method = fine[3]
            assert method is not None
            a.attempted[method] += m.attempted
            if m.delivered:
                a.delivered[method] += m.delivered
            if m.failed:
                a.failed[method] += m.failed
            a.cost += costs.unit(method) * m.units
        for fine, f in self._facts().items():
            a = accs[tuple(fine[i] for i in idx)]
            a.collected += f.collected
            a.unprompted += f.unprompted
            a.paid_full += f.paid_full
            a.paid_partly += f.paid_partly
            a.days_to_pay += f.days_to_pay
            a.opt_outs += f.opt_outs
        return dict(accs)

    def _week(self, st: SetRow) -> date | None:
        return week_of(st.created_at, self.opts.tz) if self.tallies.weeks else None

    def _paid_facts(self) -> PaidFacts:
        """The money facts of the sets whose payment rows the report holds (`PaidFacts`)."""
        facts: dict[Fine, Acc] = defaultdict(Acc)
        weekly: dict[date, int] = defaultdict(int)
        arms: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for set_id, out in self.outcomes.items():
            st = self.sets[set_id]
            week = self._week(st)
            for at, cents, touch in out.payments:
                a = facts[(st.rule_set, week, touch.step, touch.method)]
                a.collected += cents
                weekly[week_of(at, self.opts.tz)] += cents
                if touch == UNPROMPTED_TOUCH:
                    a.unprompted += cents
            if st.experiment and st.arm:
                arms[(st.experiment, st.arm)][0] += 1 if out.paid_full_at else 0
                arms[(st.experiment, st.arm)][1] += out.collected
            if out.collected <= 0 or out.last_touch is None:
                continue
            t = out.last_touch
            a = facts[(st.rule_set, week, t.step, t.method)]
            if out.paid_full_at is not None:
                a.paid_full += 1
                a.days_to_pay.append(max(0.0, (out.paid_full_at - st.created_at).total_seconds() / 86400))
            else:
                a.paid_partly += 1
        return PaidFacts(dict(facts), self._paid_after(), dict(weekly), dict(arms))

    def _paid_after(self) -> dict[str, dict[StepKey | None, int]]:
        """Per rule set, the sets paid in full after each step (None: before any step): the last
        step a set reached at or before the payment that completed it."""
        first_reach: dict[int, dict[StepKey, datetime]] = defaultdict(dict)
        for s in self.sends:
            if s.status in REACHED:
                at = s.at or self.opts.until
                k = (s.step_day, s.step_title)
                cur = first_reach[s.set_id].get(k)
                if cur is None or at < cur:
                    first_reach[s.set_id][k] = at
        out: dict[str, dict[StepKey | None, int]] = defaultdict(lambda: defaultdict(int))
        for set_id, outcome in self.outcomes.items():
            paid_at = outcome.paid_full_at
            if paid_at is None:
                continue
            reach = sorted(first_reach.get(set_id, {}).items(), key=lambda kv: (kv[1], kv[0]))
            last: StepKey | None = None
            for k, at in reach:
                if at <= paid_at:
                    last = k
            out[self.sets[set_id].rule_set][last] += 1
        return {rs: dict(v) for rs, v in out.items()}

    def _facts(self) -> dict[Fine, Acc]:
        """Money, paid sets and opt-outs at the finest grouping (made once, rolled up per --by)."""
        if self._fact_cache is not None:
            return self._fact_cache
        facts = PaidFacts()
        facts.add(PaidFacts(facts=self.paid.facts))  # a copy: the opt-outs are added to it
        for o, touch in self.opt_outs:
            st = self.sets[o.set_id]
            key = (st.rule_set, self._week(st), touch.step, touch.method)
            a = facts.facts.get(key) or facts.facts.setdefault(key, Acc())
            a.opt_outs += 1
        self._fact_cache = facts.facts
        return self._fact_cache

    # --- output ---

    def group_rows(self, by: tuple[str, ...]) -> list[dict[str, Any]]:
        accs = self.aggregate(by)
        rows = []
        for key in sorted(accs, key=_sort_key):
            row: dict[str, Any] = {}
            for dim, v in zip(by, key, strict=True):
                if dim == "rule-set":
                    row["rule_set"] = v
                elif dim == "week":
                    row["week"] = v.isoformat()
                elif dim == "step":
                    row["step"] = v[1]
                    row["step_day"] = v[0] if v[1] not in (UNPROMPTED, NO_SEND) else None
                else:
                    row["method"] = v
            row.update(metrics(accs[key]))
            rows.append(row)
        return rows

    def funnel(self) -> dict[str, list[dict[str, Any]]]:
        """Per rule set: each step, the sets that reached it and those paid in full after it
        (before their next step). The first entry is the sets paid before any step."""
        by_rs: dict[str, dict[StepKey, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        entered: dict[str, int] = defaultdict(int)
        for (rs, *_), (n, _owed) in self.tallies.entered[()].items():
            entered[rs] += n
        for rs in entered:
            steps = by_rs[rs]
            for k in self.steps.get(rs, []):
                steps[k]
        for (rs, _week, step, _method), (n, _owed) in self.tallies.entered[("step",)].items():
            if step is not None and step != NO_SEND_TOUCH.step:
                by_rs[rs][step][0] += n
        before_first: dict[str, int] = defaultdict(int)
        for rs, paid in self.paid.paid_after.items():
            for last, n in paid.items():
                if last is None:
                    before_first[rs] += n
                else:
                    by_rs[rs][last][1] += n
        out: dict[str, list[dict[str, Any]]] = {}
        for rs in sorted(by_rs):
            entries = [{"step": "(entered)", "step_day": None, "reached": entered[rs], "paid_after": before_first[rs]}]
            for k in sorted(by_rs[rs]):
                reached, paid_n = by_rs[rs][k]
                entries.append({"step": k[1], "step_day": k[0], "reached": reached, "paid_after": paid_n})
            out[rs] = entries
        return out

    def weekly(self) -> list[dict[str, Any]]:
        """Dollars collected per week (Monday, practice time zone) across the period."""
        per_week = self.paid.weekly
        start = week_of(self.opts.since, self.opts.tz)
        end = week_of(self.opts.until - timedelta(microseconds=1), self.opts.tz)
        weeks = []
        d = start
        while d <= end:
            weeks.append({"week": d.isoformat(), "collected_cents": per_week.get(d, 0)})
            d += timedelta(days=7)
        return weeks

    def experiment(self) -> list[dict[str, Any]]:
        """Each experiment among the sets: its arms and each arm against the first (the control)."""
        return experiment_rows(self.tallies.arms, self.paid.arms)

    def as_dict(self) -> dict[str, Any]:
        o = self.opts
        total = metrics(self.aggregate(()).get((), Acc()))
        doc: dict[str, Any] = {
            "period": {
                # UTC with Z like every time in JSON; the practice-local forms beside them.
                "since": iso_z(o.since),
                "until": iso_z(o.until),
                "since_local": o.since.astimezone(o.tz).isoformat(timespec="seconds"),
                "until_local": o.until.astimezone(o.tz).isoformat(timespec="seconds"),
                "timezone": o.tz.key,
            },
            "by": list(o.by),
            "attribution": o.attribution,
            "attribution_days": o.attribution_days,
            "groups": self.group_rows(o.by),
            "rule_sets": self.group_rows(("rule-set",)),
            "total": total,
            "funnel": self.funnel(),
            "weekly": [dict(w, collected=plain_dollars(w["collected_cents"])) for w in self.weekly()],
        }
        if o.experiment:
            doc["experiment"] = self.experiment()
        return doc


def experiment_rows(
    entered: dict[tuple[str, str], list[int]], paid: dict[tuple[str, str], list[int]]
) -> list[dict[str, Any]]:
    """Per experiment, its arms (``entered``: [sets, owed]; ``paid``: [paid in full, collected])
    and each arm against the first (the control)."""
    per_exp: dict[str, dict[str, list[int]]] = defaultdict(dict)  # spec -> arm -> [sets, owed]
    for (spec, arm_name), counts in entered.items():
        per_exp[spec][arm_name] = counts
    result = []
    for spec in sorted(per_exp):
        order = [n for n, _ in experiments.parse_arms(spec).arms]
        arms = [_arm(name, *per_exp[spec].get(name, [0, 0]), *paid.get((spec, name), [0, 0])) for name in order]
        control = arms[0]
        comparisons = []
        for arm in arms[1:]:
            c = experiments.two_proportions(
                arm["sets_paid_full"], arm["sets"], control["sets_paid_full"], control["sets"]
            )
            comparisons.append(
                {
                    "arm": arm["arm"],
                    "control": control["arm"],
                    "difference": c.difference,
                    "difference_ci95": list(c.ci),
                    "p_value": c.p_value,
                    "enough_data": c.enough,
                    "verdict": verdict(arm["arm"], control["arm"], c),
                }
            )
        result.append({"experiment": spec, "arms": arms, "comparisons": comparisons})
    return result


def _arm(name: str, n: int, owed: int, paid: int, collected: int) -> dict[str, Any]:
    ci = experiments.wilson_interval(paid, n)
    return {
        "arm": name,
        "sets": n,
        "sets_paid_full": paid,
        "paid_full_rate": paid / n if n else None,
        "paid_full_rate_ci95": list(ci) if ci else None,
        "owed_cents": owed,
        "collected_cents": collected,
        "collected": plain_dollars(collected),
        "collection_rate": collected / owed if owed else None,
    }


def _sort_key(key: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((1, str(v)) if isinstance(v, str) and v.startswith("(") else (0, v) for v in key)


def metrics(a: Acc) -> dict[str, Any]:
    cost_cents = int((a.cost * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    methods = sorted(set(a.attempted) | set(a.delivered) | set(a.failed), key=_method_order)
    return {
        "sets_entered": a.sets,
        "owed_cents": a.owed,
        "owed": plain_dollars(a.owed),
        "messages_attempted": sum(a.attempted.values()),
        "messages_delivered": sum(a.delivered.values()),
        "messages_failed": sum(a.failed.values()),
        "messages": {
            m: {"attempted": a.attempted.get(m, 0), "delivered": a.delivered.get(m, 0), "failed": a.failed.get(m, 0)}
            for m in methods
        },
        "sets_paid_full": a.paid_full,
        "sets_paid_partly": a.paid_partly,
        "collected_cents": a.collected,
        "collected": plain_dollars(a.collected),
        "unprompted_cents": a.unprompted,
        "collection_rate": a.collected / a.owed if a.owed else None,
        "median_days_to_pay": round(statistics.median(a.days_to_pay), 1) if a.days_to_pay else None,
        "opt_outs": a.opt_outs,
        "cost_cents": cost_cents,
        "cost": plain_dollars(cost_cents),
        "collected_per_dollar": round(a.collected / cost_cents, 2) if cost_cents else None,
    }


def _method_order(m: str) -> int:
    return METHODS.index(m) if m in METHODS else len(METHODS)


def verdict(arm: str, control: str, c: experiments.Comparison) -> str:
    if not c.enough:
        return f"Too small to tell {arm} from {control}: {c.why_not}. Keep the experiment running."
    assert c.p_value is not None
    if c.p_value < 0.05:
        better, worse = (arm, control) if c.difference > 0 else (control, arm)
        return (
            f"{better} gets more sets paid in full than {worse}: {abs(c.difference) * 100:.1f} points "
            f"(p = {c.p_value:.3f})."
        )
    return f"No clear difference between {arm} and {control} (p = {c.p_value:.2f}); the gap may be chance."


def parse_by(values: list[str] | None) -> tuple[str, ...]:
    from outreach_cli.domain.errors import InvalidInput

    if not values:
        return DEFAULT_BY
    out: list[str] = []
    for v in values:
        for part in v.split(","):
            p = part.strip().lower().replace("_", "-")
            if p == "ruleset":
                p = "rule-set"
            if p not in BY_CHOICES:
                raise InvalidInput(f"--by {v!r}: choose from {', '.join(BY_CHOICES)} (comma-separated for nesting)")
            if p not in out:
                out.append(p)
    return tuple(out)


def week_bucket_seconds(tz: ZoneInfo, since: datetime, until: datetime) -> int:
    """The coarsest UTC bucket (3600 or 60 seconds) that never straddles the start of a week of
    ``tz`` between ``since`` and ``until``, so the database can group times by hour (or minute) and
    each bucket still falls in exactly one week; 0 when neither does (group by the exact time).

    A bucket of g seconds is safe when the zone's offset is a multiple of g and it changes only at
    UTC multiples of g: local midnights then fall on bucket edges. The offset is sampled daily and
    each change located to the second (zones change their offset at most once a day)."""
    if until - since > timedelta(days=366 * 300):
        return 0
    offsets: set[int] = set()
    changes: list[datetime] = []

    def off(at: datetime) -> int:
        o = at.astimezone(tz).utcoffset()
        return int(o.total_seconds()) if o is not None else 0

    at, prev = since, off(since)
    offsets.add(prev)
    while at < until:
        nxt = min(at + timedelta(days=1), until)
        cur = off(nxt)
        if cur != prev:
            lo, hi = at, nxt  # off(lo) == prev, off(hi) == cur: find the first second of cur
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(microsecond=0) if mid.replace(microsecond=0) > lo else mid
                if off(mid) == prev:
                    lo = mid
                else:
                    hi = mid
            changes.append(hi)
            offsets.add(cur)
            prev = cur
        at = nxt
    for g in (3600, 60):
        if all(o % g == 0 for o in offsets) and all(int(c.timestamp()) % g == 0 for c in changes):
            return g
    return 0
