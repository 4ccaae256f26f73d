"""`outreach list`: find invoice sets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from outreach_cli.cli.context import App, get_app
from outreach_cli.cli.options import (
    AmountOpt,
    CreatedOpt,
    DescOpt,
    LimitOpt,
    OffsetOpt,
    RuleSetOpt,
    Search,
    SendTimeOpt,
    SortOpt,
    StatusOpt,
    build_filter,
)
from outreach_cli.cli.output import Format, Formats

if TYPE_CHECKING:
    from outreach_cli.store.database import Store

if TYPE_CHECKING:
    from outreach_cli.cli.output import Clock, Col

FORMATS = Formats((*Formats().allowed, Format.IDS))
TTY_LIMIT = 50
EXPORT_FORMATS = (Format.JSONL, Format.JSON, Format.TSV, Format.CSV)


def register(app: typer.Typer) -> None:
    app.command("list")(list_)


NeedsReviewOpt = Annotated[
    bool,
    typer.Option(
        "--needs-review", help="Only sets whose patient sent a reply a person must read (a refusal without STOP)."
    ),
]


def list_(
    ctx: typer.Context,
    search: Search = None,
    status: StatusOpt = None,
    amount: AmountOpt = None,
    created: CreatedOpt = None,
    send_time: SendTimeOpt = None,
    rule_set: RuleSetOpt = None,
    sort: SortOpt = "next-send",
    desc: DescOpt = False,
    limit: LimitOpt = None,
    offset: OffsetOpt = 0,
    fmt: Annotated[str | None, FORMATS.option()] = None,
    needs_review: NeedsReviewOpt = False,
) -> None:
    """Find invoice sets.

    Search by name, phone or ID; filter by status, amount, dates or rule set.
    All filters combine (AND). Default: the open statuses, soonest next send first, 50 rows on a
    terminal (all when piped). Times in the table are in the practice time zone; JSON, JSONL,
    TSV and CSV carry UTC (`2026-11-26T14:00:00Z`).

    \b
    Examples:
      outreach list --status will-fail --amount 100..
      outreach list --search "garcia" --format json | jq '.[].id'
      outreach list --status failed --format ids | outreach act pause -
    """
    from outreach_cli.cli.output import Clock, emit
    from outreach_cli.store.queries import LIST_COLUMNS, list_sets

    a = get_app(ctx)
    f = FORMATS.resolve(a, fmt)
    user_limit = limit
    if limit == 0:
        limit = None  # 0 = no limit
    elif limit is None and a.env.stdout_isatty:
        limit = TTY_LIMIT
    flt = build_filter(
        a,
        search=search,
        status=status,
        amount=amount,
        created=created,
        send_time=send_time,
        rule_set=rule_set,
        sort=sort,
        desc=desc,
        limit=limit,
        offset=offset,
    )
    flt.needs_review = needs_review
    store = a.store()
    n = export(a, store, flt, f) if f in EXPORT_FORMATS else None
    if n is None:
        rows = list_sets(store, flt, a.context())
        n = emit(a, rows, f, columns=LIST_COLUMNS, table=list_table(Clock(a)))
    if f == Format.TABLE:
        _summary(a, store, flt, n, user_limit)


def _summary(a: App, store: Store, flt: Any, n: int, user_limit: int | None) -> None:
    """The line under the table: how many sets, and how to see the rest."""
    limit, offset = flt.limit, flt.offset
    if (limit is not None and n == limit) or (offset and n):
        from dataclasses import replace

        from outreach_cli.store.queries import count_sets

        total = count_sets(store, replace(flt, limit=None, offset=0))
        # "showing 5 of 5" would read as five sets shown: one set past an offset is "set 5 of 5".
        span = f"{n:,}" if not offset else f"set {offset + 1:,}" if n == 1 else f"{offset + 1:,}-{offset + n:,}"
        if offset + n >= total:
            a.info(f"showing {span} of {total:,} invoice sets")
        elif user_limit is None:
            a.info(f"showing {span} of {total:,} invoice sets; --limit N or --format tsv for all")
        else:
            a.info(f"showing {span} of {total:,} invoice sets; --offset {offset + n} for the next {n:,}")
    else:
        a.info(f"{n:,} invoice set{'' if n == 1 else 's'}")


def export(a: App, store: Store, flt: Any, f: Format) -> int | None:
    """The fast path of `--format jsonl|json|tsv|csv` (core/export.py): rows formatted by the
    query, written a batch at a time. None when it does not apply (Stripe payment links, an odd
    link template): the caller takes the generic path, whose output is the same."""
    from outreach_cli.cli.output import reader_gone
    from outreach_cli.store import export as ex

    delim = {Format.TSV: "\t", Format.CSV: ","}.get(f)
    ctx = a.context()
    rows: Any
    lines: Any = None  # JSON batches, or else TSV/CSV texts
    texts: Any = None
    if delim is None and store.dialect == "postgresql":  # every line made by the query (COPY)
        parts = ex.link_parts(ctx, csv=False)
        if parts is None:
            return None
        rows = lines = ex.pg_json_lines(store, flt, ctx, parts)
    else:
        link = ex.payment_links(ctx, csv=delim is not None, delim=delim or ",")
        if link is None:
            return None
        rows = ex.export_rows(store, flt, delim=delim)
        if delim is None:
            lines = ex.json_batches(rows, link)
        else:
            texts = ex.csv_batches(rows, ex.rule_set_names(store), link, delim)
    try:
        if lines is not None:
            return _write_json(a.env.stdout, lines, f)
        return _write_cells(a.env.stdout, texts, f)
    except BrokenPipeError:
        reader_gone()
        return 0
    finally:
        rows.close()


def _write_json(out: Any, batches: Any, f: Format) -> int:
    """JSON lines, or one JSON array, a batch of rows per write; returns how many rows."""
    n = 0
    for batch in batches:
        if f == Format.JSONL:
            out.write("\n".join(batch) + "\n")
        else:
            out.write(("[\n  " if n == 0 else ",\n  ") + ",\n  ".join(batch))
        n += len(batch)
    if f == Format.JSON:
        out.write("\n]\n" if n else "[]\n")
    return n


def _write_cells(out: Any, texts: Any, f: Format) -> int:
    """The header, then each batch's TSV/CSV text (nothing before the first batch was read, as
    `emit`); returns how many rows."""
    import csv
    import io

    from outreach_cli.store.queries import LIST_COLUMNS

    buf = io.StringIO()
    csv.writer(buf, dialect="excel-tab" if f == Format.TSV else "excel", lineterminator="\n").writerow(LIST_COLUMNS)
    header, n = buf.getvalue(), 0
    for text, rows in texts:
        out.write(header + text if n == 0 else text)
        n += rows
    if n == 0:
        out.write(header)
    return n


def list_table(clock: Clock) -> list[Col]:
    """The `list` table (also the demo's "needing attention"): ID, status and balance always
    shown whole; Reason, Rule set, Phone, Next step, Next send, Patient dropped in that order
    on narrow terminals."""
    from outreach_cli.cli.output import Col, badge, dollars
    from outreach_cli.domain.csvsafe import flat

    def patient(r: Mapping[str, Any]) -> str:
        # One line, as in TSV and CSV: a tab or line break typed into a name must not move the row.
        return flat(f"{r['patient_name']} ({r['patient_id']})")

    def step(r: Mapping[str, Any]) -> str:
        if not r.get("next_step"):
            return ""
        return f"{r['next_step']} ({', '.join(r['next_methods'])})" if r.get("next_methods") else str(r["next_step"])

    return [
        Col("id", "ID", justify="right", keep=True),
        Col("status", "Status", lambda r: badge(r["status"]), keep=True),
        Col(
            "amount_outstanding_cents", "Balance", lambda r: dollars(r["amount_outstanding_cents"]), "right", keep=True
        ),
        Col("patient", "Patient", patient, wrap=True, min_width=20, drop=1),
        Col("next_send_at", "Next send", lambda r: clock(r["next_send_at"]), drop=2),
        Col("next_step", "Next step", step, wrap=True, min_width=24, drop=3),
        Col("phone", "Phone", drop=4),
        Col("rule_set", "Rule set", drop=5),
        Col(
            "status_reason",
            "Reason",
            lambda r: flat(r.get("status_reason")),
            wrap=True,
            min_width=24,
            drop=6,
            optional=True,
        ),
    ]


def print_sets(a: App, rows: Sequence[Mapping[str, Any]], *, title: str | None = None) -> None:
    """Sets as the `list` table (for `demo`)."""
    from outreach_cli.cli.output import Clock, print_table

    print_table(a, rows, list_table(Clock(a)), title=title)
