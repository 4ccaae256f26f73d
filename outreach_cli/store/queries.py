"""Read side: `list` filters and sorts, `metrics`, `show`, `audit`, served by indexes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Select,
    String,
    and_,
    case,
    func,
    literal,
    literal_column,
    or_,
    select,
    table,
    type_coerce,
    union_all,
)

from outreach_cli.domain.context import Context
from outreach_cli.domain.errors import InvalidInput, NotFound
from outreach_cli.domain.money import plain_dollars
from outreach_cli.domain.patient_view import contact_of, window_of, zones_of
from outreach_cli.domain.paymentlink import payment_url, payment_url_maker
from outreach_cli.domain.statuses import OPEN, SendStatus, Status
from outreach_cli.domain.timeutil import iso_z
from outreach_cli.store.audit import timeline_event
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import (
    charge_t,
    event_t,
    invoice_set_t,
    patient_t,
    payment_t,
    rule_set_t,
    send_t,
)

if TYPE_CHECKING:  # the views are TypedDicts, for the type checker only (building them costs a read's start)
    from outreach_cli.domain.ranges import CentsRange, TimeRange
    from outreach_cli.domain.views import (
        ChargeView,
        PatientView,
        ScheduleRow,
        SetListRow,
        SetView,
    )
    from outreach_cli.store.database import Store

SORTS = {"next-send", "amount", "created", "patient", "status", "id"}
LIST_COLUMNS = [
    "id",
    "status",
    "amount_outstanding",
    "amount_outstanding_cents",
    "patient_id",
    "patient_name",
    "phone",
    "email",
    "rule_set",
    "created_at",
    "next_send_at",
    "next_step",
    "next_methods",
    "status_reason",
    "payment_url",
    "needs_review",
]


@dataclass
class ListFilter:
    """What `list` (and `act`) select: search, filters, sort and page."""

    search: str | None = None
    statuses: list[Status] = field(default_factory=lambda: list(OPEN))
    amount: CentsRange | None = None
    created: TimeRange | None = None
    send_time: TimeRange | None = None
    rule_sets: list[str] = field(default_factory=list)
    sort: str = "next-send"
    desc: bool = False
    limit: int | None = None
    offset: int = 0
    needs_review: bool = False  # only patients whose reply a person must read (SPEC 13)


def _full_number(raw: str) -> str | None:
    """A complete phone number in any formatting -> E.164 (exact match); else None."""
    from outreach_cli.domain.contacts import parse_phone, phone_is_valid

    try:
        e164 = parse_phone(raw)
    except ValueError:
        return None
    return e164 if phone_is_valid(e164) else None


def _like(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _fts_phrase(word: str) -> str:
    """One word as an FTS5 phrase: with the trigram tokenizer it matches the word as a substring."""
    return '"' + word.replace('"', '""') + '"'


def _fts_rowids(words: list[str]) -> Any:
    """SQLite: the patients whose search text contains every word (each of 3+ characters)."""
    return (
        select(literal_column("rowid"))
        .select_from(table("patient_search"))
        .where(literal_column("patient_search").match(" AND ".join(_fts_phrase(w) for w in words)))
    )


def _contains_all(dialect: str, words: list[str], *, column: Any = None) -> Any:
    """Patients whose search text contains every word (and, with ``column``, whose ``column``
    contains the word too: the exact check the index only narrows down).

    Served by the databases' trigram indexes: SQLite's FTS5 `patient_search` table (words of 3 or
    more characters; shorter ones are checked on the candidates, or by a scan when no word is long
    enough), PostgreSQL's pg_trgm GIN index on search_text.
    """
    checks = [patient_t.c.search_text.like(_like(w), escape="\\") for w in words]
    if column is not None:
        checks += [column.like(_like(w), escape="\\") for w in words]
    if dialect == "sqlite":
        long_words = [w for w in words if len(w) >= 3]
        if long_words:
            fts = _fts_rowids(long_words)
            # A trigram phrase matches exactly the texts containing the word (both are folded to
            # lower case already), so only the short words and ``column`` are checked on the rows.
            checks = [patient_t.c.id.in_(fts)]
            checks += [patient_t.c.search_text.like(_like(w), escape="\\") for w in words if len(w) < 3]
            if column is not None:
                checks += [column.like(_like(w), escape="\\") for w in words]
    elif dialect == "postgresql":
        # pg_trgm serves LIKE with the default escape character (backslash); an explicit ESCAPE
        # clause would hide the pattern from the index.
        checks = [patient_t.c.search_text.like(_like(w)) for w in words]
        if column is not None:
            checks += [column.like(_like(w)) for w in words]
    return and_(*checks)


# A search matching at least this many patients is "broad" (e.g. a common surname): `list`
# then walks the sets in next-send order testing membership, which stops after `--limit` rows,
# instead of fetching and sorting every match (cost ~ limit x sets / matches against ~ matches).
BROAD_SEARCH = 5000


def _fts_query(text: str) -> str | None:
    """The FTS5 query of a name/email/digits search (as _search_clause builds it); None when the
    search does not go through the trigram index (a complete phone number, only short words)."""
    raw = text.strip()
    digits = re.sub(r"\D", "", raw)
    if re.fullmatch(r"[\s()+.\-0-9]+", raw):
        if len(digits) < 4 or (len(digits) >= 7 and _full_number(raw) is not None):
            return None
        return _fts_phrase(digits)
    from outreach_cli.domain.searchtext import search_words  # searches only (unicodedata)

    long_words = [w for w in search_words(raw) if len(w) >= 3]
    return " AND ".join(_fts_phrase(w) for w in long_words) if long_words else None


def _broad_search(conn: Any, text: str) -> bool:
    """SQLite: does the search match at least BROAD_SEARCH patients? (Counts no further.)"""
    q = _fts_query(text)
    if q is None:
        return False
    n = conn.exec_driver_sql(
        "SELECT count(*) FROM (SELECT rowid FROM patient_search WHERE patient_search MATCH ? LIMIT ?)",
        (q, BROAD_SEARCH),
    ).scalar_one()
    return bool(n >= BROAD_SEARCH)


def _walks_next_send(conn: Any, dialect: str, f: ListFilter) -> bool:
    """Whether `list` walks the next-send index (see _base); decided the same way for the plan."""
    if dialect != "sqlite" or f.sort != "next-send" or f.created is not None or f.limit is None:
        return False
    return f.search is None or _broad_search(conn, f.search)


# `exports_by_scan`: from this share of all sets on, reading the whole table in its own order and
# sorting the scheduled sets costs less than walking the next-send index (a random read of the
# table per set): 2.1 s against 5.1 s of CPU for 619,210 scheduled sets of a million.
SCAN_SHARE = 0.25


def exports_by_scan(conn: Any, dialect: str, f: ListFilter) -> bool:
    """Whether an export of every match (no limit) in next-send order reads the table in its own
    order and sorts (SQLite; only a status filter, matching at least SCAN_SHARE of the sets by
    the tally kept for `metrics`) instead of walking the next-send index."""
    if dialect != "sqlite" or f.sort != "next-send" or f.limit is not None or f.offset:
        return False
    others = (f.amount, f.created, f.send_time, f.search)
    if any(x is not None for x in others) or f.rule_sets or f.needs_review:
        return False
    from outreach_cli.store import tally

    per_status, _ = tally.read(conn, [], [])
    total = sum(n for n, _ in per_status.values())
    chosen = sum(per_status.get(s.value, [0, 0])[0] for s in f.statuses)
    return total > 0 and chosen >= SCAN_SHARE * total


def _search_clause(text: str, dialect: str = "sqlite", *, walk: bool = False) -> Any:
    """Name or email (words in any order, any case, accents ignored), phone (any formatting),
    patient ID or set ID.

    Patient matches are found first (the trigram index over search_text, the phone index for a
    complete number, the lower(patient_id) index), then their sets through the patient index:
    cheaper than testing every set's patient.
    """
    raw = text.strip()
    if not raw:
        raise InvalidInput("--search is empty; give a name, phone number, patient ID or invoice set ID")
    digits = re.sub(r"\D", "", raw)
    phone_like = bool(re.fullmatch(r"[\s()+.\-0-9]+", raw))
    full = _full_number(raw) if phone_like and len(digits) >= 7 else None
    if full is not None:
        patients: Any = select(patient_t.c.id).where(patient_t.c.phone == full)
        return invoice_set_t.c.patient_pk.in_(patients)
    low = raw.lower()
    pconds: list[Any] = [func.lower(patient_t.c.patient_id) == low]
    if phone_like:
        if len(digits) >= 4:
            # The digits are in search_text (index-served); the phone itself decides.
            pconds.append(_contains_all(dialect, [digits], column=patient_t.c.phone))
    # Walking the next-send index: no index for these terms either (`+col`, see _base).
    pk = literal_column("+invoice_set.patient_pk") if walk else invoice_set_t.c.patient_pk
    clauses: list[Any] = []
    if not phone_like:
        from outreach_cli.domain.searchtext import search_words

        # Names (accents and word order ignored) and email: every word must appear (AND).
        words = search_words(raw)
        if words and dialect == "sqlite" and all(len(w) >= 3 for w in words):
            # The FTS rowids are the patient IDs: no patient row needs reading.
            clauses.append(pk.in_(_fts_rowids(words)))
        elif words:
            pconds.append(_contains_all(dialect, words))
    clauses.insert(0, pk.in_(select(patient_t.c.id).where(or_(*pconds))))
    if re.fullmatch(r"#?[0-9]{1,18}", raw):
        if dialect == "postgresql":
            # `patient_pk IN (...) OR id = n` keeps PostgreSQL from starting at the few matching
            # patients (it walks every set testing both): one IN over the union of the two does not.
            found = invoice_set_t.alias("found_set")
            patients = select(patient_t.c.id).where(or_(*pconds))
            ids = union_all(
                select(found.c.id).where(found.c.patient_pk.in_(patients)), select(literal(int(raw.lstrip("#"))))
            )
            return invoice_set_t.c.id.in_(ids)
        set_id = literal_column("+invoice_set.id") if walk else invoice_set_t.c.id
        clauses.append(set_id == int(raw.lstrip("#")))
    return or_(*clauses)


def _base(rule_sets: RuleSets, f: ListFilter, *, walk_next_send: bool = False, dialect: str = "sqlite") -> Select[Any]:
    """The filtered query. ``walk_next_send`` (SQLite only): write the filter columns as `+col`,
    which SQLite reads as "do not use an index for this term", so the planner walks the next-send
    index in order and stops after `--limit` matches instead of sorting every match."""

    def c(name: str) -> Any:
        if walk_next_send:
            return literal_column(f"+invoice_set.{name}", type_=invoice_set_t.c[name].type)
        return invoice_set_t.c[name]

    times: list[Any] = [invoice_set_t.c.created_at, invoice_set_t.c.next_send_at]
    if dialect == "sqlite":  # the stored UTC text, turned into ISO by _iso_of_stored (no datetimes)
        times = [type_coerce(t, String).label(t.name) for t in times]
    q = (
        select(
            invoice_set_t.c.id,
            invoice_set_t.c.status,
            invoice_set_t.c.amount_outstanding_cents,
            *times,
            invoice_set_t.c.next_step,
            invoice_set_t.c.next_methods,
            invoice_set_t.c.status_reason,
            invoice_set_t.c.rule_set_id,
            patient_t.c.patient_id,
            patient_t.c.first_name,
            patient_t.c.last_name,
            patient_t.c.phone,
            patient_t.c.email,
            patient_t.c.needs_review,
        )
        .select_from(invoice_set_t)
        .join(patient_t, patient_t.c.id == invoice_set_t.c.patient_pk)
    )
    conds: list[Any] = []
    if set(f.statuses) != set(Status):
        conds.append(c("status").in_([s.value for s in f.statuses]))
    if f.amount is not None:
        if f.amount.low is not None:
            conds.append(c("amount_outstanding_cents") >= f.amount.low)
        if f.amount.high is not None:
            conds.append(c("amount_outstanding_cents") <= f.amount.high)
    for col, rng in ((c("created_at"), f.created), (invoice_set_t.c.next_send_at, f.send_time)):
        if rng is not None:
            if rng.start is not None:
                conds.append(col >= rng.start)
            if rng.end is not None:
                conds.append(col < rng.end)
    if f.rule_sets:
        ids = [rule_sets.resolve(n) for n in f.rule_sets]
        conds.append(c("rule_set_id").in_(ids))
    if f.search is not None:
        conds.append(_search_clause(f.search, dialect, walk=walk_next_send))
    if f.needs_review:
        conds.append(patient_t.c.needs_review.is_(True))
    if conds:
        q = q.where(and_(*conds))
    return q


def _order(q: Select[Any], f: ListFilter) -> Select[Any]:
    if f.sort not in SORTS:
        raise InvalidInput(f"--sort {f.sort!r}: choose one of {', '.join(sorted(SORTS))}")
    col: Any
    if f.sort == "next-send":
        nulls_last = case((invoice_set_t.c.next_send_at.is_(None), 1), else_=0)
        col = invoice_set_t.c.next_send_at
        q = q.order_by(nulls_last, col.desc() if f.desc else col.asc())
    elif f.sort == "patient":
        cols = (func.lower(patient_t.c.last_name), func.lower(patient_t.c.first_name))
        q = q.order_by(*(c.desc() if f.desc else c.asc() for c in cols))
    else:
        col = {
            "amount": invoice_set_t.c.amount_outstanding_cents,
            "created": invoice_set_t.c.created_at,
            "status": invoice_set_t.c.status,
            "id": invoice_set_t.c.id,
        }[f.sort]
        q = q.order_by(col.desc() if f.desc else col.asc())
    idcol = invoice_set_t.c.id
    return q.order_by(idcol.desc() if f.desc else idcol.asc())


def _pages(
    conn: Any, base: Select[Any], f: ListFilter, run: Any = None, size: Any = None, *, scan: bool = False
) -> Iterator[Any]:
    """The rows in order, limit and offset applied, streamed (``run(statement)`` executes one
    statement and iterates its rows; default: SQLAlchemy with a server-side cursor; with
    ``size``, ``run`` yields batches and ``size(batch)`` counts their rows).

    Sorting by next send puts sets with no next send last. Written as one ORDER BY, that needs a
    computed key no index can serve; as two ordered scans (scheduled sets by the next-send index,
    then the rest by ID) each is index-served and `--limit 50` stops after 50 rows. With
    ``scan`` (SQLite, `exports_by_scan`) the next send is written `+col`: the table is read in
    its own order and the scheduled sets sorted.
    """
    if run is None:
        streaming = conn.execution_options(stream_results=True, yield_per=1000)
        run = streaming.execute
    if f.sort != "next-send":
        q = _order(base, f)
        if f.limit is not None:
            q = q.limit(f.limit)
        if f.offset:
            q = q.offset(f.offset)
        yield from run(q)
        return
    col: Any = invoice_set_t.c.next_send_at
    if scan:
        col = literal_column("+invoice_set.next_send_at", type_=col.type)
    idcol = invoice_set_t.c.id
    first = base.where(col.is_not(None)).order_by(
        col.desc() if f.desc else col.asc(), idcol.desc() if f.desc else idcol.asc()
    )

    second = base.where(col.is_(None)).order_by(idcol.desc() if f.desc else idcol.asc())
    if f.offset:
        first = first.offset(f.offset)
    if f.limit is not None:
        first = first.limit(f.limit)
    got = 0
    for r in run(first):
        got += 1 if size is None else size(r)
        yield r
    if f.limit is not None and got >= f.limit:
        return
    offset2 = 0
    if f.offset and got == 0:
        n_first = conn.execute(select(func.count()).select_from(base.where(col.is_not(None)).subquery())).scalar_one()
        offset2 = max(0, f.offset - n_first)
    if offset2:
        second = second.offset(offset2)
    if f.limit is not None:
        second = second.limit(f.limit - got)
    yield from run(second)


def list_sets(store: Store, f: ListFilter, ctx: Context) -> Iterator[SetListRow]:
    """Streams the matching sets as JSON-ready dicts (server-side cursor, flat memory)."""
    if f.sort not in SORTS:
        raise InvalidInput(f"--sort {f.sort!r}: choose one of {', '.join(sorted(SORTS))}")
    with store.read() as conn:
        rule_sets = RuleSets(conn)
        walk = _walks_next_send(conn, store.dialect, f)
        iso = _iso_of_stored if store.dialect == "sqlite" else iso_z
        rows = _pages(conn, _base(rule_sets, f, walk_next_send=walk, dialect=store.dialect), f)
        for r, link in _with_links(conn, ctx, rows):
            yield {
                "id": r.id,
                "status": r.status,
                "amount_outstanding": plain_dollars(r.amount_outstanding_cents),
                "amount_outstanding_cents": r.amount_outstanding_cents,
                "patient_id": r.patient_id,
                "patient_name": f"{r.first_name} {r.last_name}".strip(),
                "phone": r.phone,
                "email": r.email,
                "rule_set": rule_sets.name(r.rule_set_id),
                "created_at": iso(r.created_at),
                "next_send_at": iso(r.next_send_at),
                "next_step": r.next_step,
                "next_methods": r.next_methods.split(",") if r.next_methods else [],
                "status_reason": r.status_reason,
                "payment_url": link,
                "needs_review": bool(r.needs_review),
            }


def _iso_of_stored(v: str | None) -> str | None:
    """SQLite's stored UTC text ('2026-03-02 14:00:00.000000', models.UTCDateTime) as `iso_z`
    writes it ('2026-03-02T14:00:00Z'), by slicing: formatting a datetime per value cost more
    than the rest of a row at a million sets."""
    if v is None:
        return None
    if len(v) == 26 and v[10] == " " and v[19] == ".":
        return f"{v[:10]}T{v[11:19]}Z"  # whole seconds, as iso_z (the fraction is cut, not rounded)
    return iso_z(datetime.fromisoformat(v).replace(tzinfo=UTC))


def _with_links(conn: Any, ctx: Context, rows: Iterator[Any]) -> Iterator[tuple[Any, str | None]]:
    """Each row with its payment link: the HMAC link, or with `payments.provider = "stripe"` the
    current Stripe Checkout link (one query per 500 rows; null until a message created one)."""
    settings = ctx.extra.get("settings")
    if settings is None or settings.values["payments"]["provider"] != "stripe":
        url = payment_url_maker(ctx)
        for r in rows:
            yield r, url(r.id)
        return
    from outreach_cli.store.checkout_links import current_links

    batch: list[Any] = []
    for r in rows:
        batch.append(r)
        if len(batch) >= 500:
            links = current_links(conn, {b.id: b.amount_outstanding_cents for b in batch})
            yield from ((b, links.get(b.id)) for b in batch)
            batch = []
    links = current_links(conn, {b.id: b.amount_outstanding_cents for b in batch}) if batch else {}
    yield from ((b, links.get(b.id)) for b in batch)


def count_sets(store: Store, f: ListFilter) -> int:
    """How many sets match ``f`` (limit and offset ignored): one COUNT on the filtered query."""
    with store.read() as conn:
        base = _base(RuleSets(conn), f).with_only_columns(invoice_set_t.c.id)
        return int(conn.execute(select(func.count()).select_from(base.subquery())).scalar_one())


def selected_ids(store: Store, f: ListFilter) -> list[int]:
    with store.read() as conn:
        base = _base(RuleSets(conn), f, dialect=store.dialect).with_only_columns(
            invoice_set_t.c.id, invoice_set_t.c.next_send_at
        )
        return [r.id for r in _pages(conn, base, f)]


# --- show ------------------------------------------------------------------------------------


@dataclass
class _SetRows:
    """Everything `show` reads for one invoice set, read in one transaction."""

    s: Any
    p: Any
    link: str | None
    charges: list[Any]
    sends: list[Any]
    events: list[Any]
    rs_name: str
    credit_cents: int


def show_set(store: Store, set_id: int, ctx: Context) -> SetView:
    with store.read() as conn:
        rule_sets = RuleSets(conn)
        rows = _read_set_rows(conn, set_id, ctx)
    s, p = rows.s, rows.p
    rs = rule_sets.get(s.rule_set_id)
    from outreach_cli.domain.contacts import usable_methods

    usable = usable_methods(contact_of(p))
    zones = zones_of(p, ctx.practice_tz)
    schedule = [_sent_row(snd) for snd in rows.sends]
    if s.status in [x.value for x in OPEN] and s.status != Status.EXPIRED.value:
        schedule.extend(_planned_rows(s, rs, rows.sends, usable, zones, window_of(p, ctx), ctx))
    return {
        "id": s.id,
        "status": s.status,
        "status_reason": s.status_reason,
        "amount_outstanding_cents": s.amount_outstanding_cents,
        "amount_outstanding": plain_dollars(s.amount_outstanding_cents),
        "rule_set": rows.rs_name,
        "payment_url": rows.link,
        "credit_cents": rows.credit_cents,  # the patient's payments not applied to any charge
        "credit": plain_dollars(rows.credit_cents),
        "created_at": iso_z(s.created_at),
        "anchor_at": iso_z(s.anchor_at),
        "next_send_at": iso_z(s.next_send_at),
        "next_step": s.next_step,
        "patient": _patient_view(p, zones, usable, ctx),
        "charges": [_charge_view(c) for c in rows.charges],
        "schedule": schedule,
        "timeline": [timeline_event(e) for e in rows.events],
    }


def _read_set_rows(conn: Any, set_id: int, ctx: Context) -> _SetRows:
    s = conn.execute(select(invoice_set_t).where(invoice_set_t.c.id == set_id)).first()
    if s is None:
        raise NotFound(f"no invoice set with ID {set_id}")
    p = conn.execute(select(patient_t).where(patient_t.c.id == s.patient_pk)).one()
    link = payment_url(s.id, ctx)
    if ctx.extra.get("settings") is not None and ctx.extra["settings"].values["payments"]["provider"] == "stripe":
        from outreach_cli.store.checkout_links import current_link

        # The Stripe Checkout link for the current balance, once a message has created it.
        link = current_link(conn, s.id, s.amount_outstanding_cents)  # type: ignore[assignment]
    charges = conn.execute(
        select(charge_t).where(charge_t.c.invoice_set_id == set_id).order_by(charge_t.c.created_at, charge_t.c.id)
    ).all()
    sends = conn.execute(
        select(send_t)
        .where(send_t.c.invoice_set_id == set_id)
        .order_by(send_t.c.schedule_gen, send_t.c.step_index, send_t.c.id)
    ).all()
    events = conn.execute(
        select(event_t).where(event_t.c.invoice_set_id == set_id).order_by(event_t.c.at, event_t.c.id)
    ).all()
    rs_name = conn.execute(select(rule_set_t.c.name).where(rule_set_t.c.id == s.rule_set_id)).scalar_one()
    credit_cents = patient_credit(conn, s.patient_pk)
    return _SetRows(s, p, link, charges, sends, events, rs_name, credit_cents)


def patient_credit(conn: Any, patient_pk: int) -> int:
    """The patient's credit: the unapplied cents of all their payments (store/ledger.py keeps it).
    Here, not in the ledger, so that `show` does not load the ledger's writers."""
    return int(
        conn.execute(
            select(func.coalesce(func.sum(payment_t.c.unapplied_cents), 0)).where(payment_t.c.patient_pk == patient_pk)
        ).scalar_one()
    )


def _sent_row(snd: Any) -> ScheduleRow:
    """One schedule row for a send that exists."""
    return {
        "step": snd.step_title,
        "day": snd.step_day,
        "method": snd.method,
        "status": snd.status,
        "due_at": iso_z(snd.due_at),
        "sent_at": iso_z(snd.sent_at),
        "reason": snd.reason,
        "provider_ref": snd.provider_ref,
        "fallback": bool(snd.is_fallback),
        "generation": snd.schedule_gen,
        "attempts": snd.attempts,
        "next_attempt_at": iso_z(snd.next_attempt_at) if snd.status == SendStatus.PENDING else None,
    }


def _planned_rows(
    s: Any, rs: Any, sends: list[Any], usable: dict[str, Any], zones: Any, window: Any, ctx: Context
) -> list[ScheduleRow]:
    """Schedule rows for the steps still to come of an open set: when each goes and why."""
    from outreach_cli.domain.evaluation import step_applies
    from outreach_cli.domain.scheduling import explain, step_due

    rows: list[ScheduleRow] = []
    done = {(snd.step_index, snd.method) for snd in sends if snd.schedule_gen == s.schedule_gen}
    prev: tuple[datetime, str | None] | None = None
    for n, step in enumerate(rs.steps[(s.next_step_index or 0) :]):
        due = step_due(s.anchor_at, step.day)
        start = max(due, ctx.now)
        cap = None
        if n == 0 and s.held_by and s.held_until is not None and s.held_until > start:
            start, cap = s.held_until, s.held_by
        if prev is not None and prev[0] > start:
            start, cap = prev  # steps go in order: never before the step ahead of it
        # When it goes and the rule that decided that moment; no common window never crashes (D7).
        send_at, held_by = explain(start, zones, window) if s.paused_at is None else (None, "paused")
        held_by = cap or held_by
        if send_at is not None:
            prev = (send_at, held_by)
        for m in step.methods:
            if (step.index, m) in done:
                continue
            reason = usable.get(m)
            if not step_applies(step, s.amount_outstanding_cents):
                reason = "balance outside this step's min/max balance (will be skipped)"
            elif s.paused_at is not None:
                reason = "set is paused"
            rows.append(_planned_row(s, step, m, due, send_at, held_by, reason))
    return rows


def _planned_row(
    s: Any, step: Any, method: str, due: datetime, send_at: datetime | None, held_by: str | None, reason: str | None
) -> ScheduleRow:
    return {
        "step": step.title,
        "day": step.day,
        "method": method,
        "status": SendStatus.PENDING,
        "due_at": iso_z(due),
        "send_at": iso_z(send_at),
        "held_by": "opt-out" if reason and "opted out" in reason else held_by,
        "sent_at": None,
        "reason": reason,
        "provider_ref": None,
        "fallback": False,
        "generation": s.schedule_gen,
        "attempts": 0,
        "next_attempt_at": None,
    }


def _patient_view(p: Any, zones: Any, usable: dict[str, Any], ctx: Context) -> PatientView:
    from outreach_cli.domain.contacts import zone_sources

    return {
        "patient_id": p.patient_id,
        "first_name": p.first_name,
        "last_name": p.last_name,
        "phone": p.phone,
        "phone_type": p.phone_type,
        "email": p.email,
        "address": {
            "address_line1": p.address_line1,
            "address_line2": p.address_line2,
            "city": p.city,
            "state": p.state,
            "postal_code": p.postal_code,
            "country": p.country,
        },
        "timezone": zones[0],
        "timezones": list(zones),
        # Why each zone: a moment is allowed only when it is allowed in every one of them.
        "timezone_sources": [
            {"zone": z, "source": why}
            for z, why in zone_sources(
                explicit=p.timezone,
                phone=p.phone,
                postal_code=p.postal_code,
                state=p.state,
                country=p.country,
                practice_tz=ctx.practice_tz,
                phone_tz=p.phone_tz,
            )
        ],
        "needs_review": bool(p.needs_review),
        "sms_opt_out": bool(p.sms_opt_out),
        "call_opt_out": bool(p.call_opt_out),
        "email_opt_out": bool(p.email_opt_out),
        "email_suppressed": bool(p.email_suppressed),
        "email_suppression": p.email_suppressed,
        "card_on_file": bool(p.card_token or (p.stripe_customer_id and p.stripe_payment_method_id)),
        "usable_methods": {m: {"usable": r is None, "reason": r} for m, r in usable.items()},
    }


def _charge_view(c: Any) -> ChargeView:
    return {
        "charge_id": c.charge_id,
        "amount_cents": c.amount_cents,
        "outstanding_cents": c.outstanding_cents,
        "status": c.status,
        "created_at": iso_z(c.created_at),
        "description": c.description,
    }
