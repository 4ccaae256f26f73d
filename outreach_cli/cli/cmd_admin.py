"""`outreach metrics`, `show`, `audit` and `collections export`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from outreach_cli.cli.context import App, get_app

coll = typer.Typer(help="Sets escalated to collections.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("metrics")(metrics)
    app.command("show")(show)
    app.command("audit")(audit)
    app.add_typer(coll, name="collections")


def metrics(
    ctx: typer.Context,
    show_all: Annotated[
        bool, typer.Option("--all", help="Every status, totals, and aging buckets of open balances.")
    ] = False,
    fmt: Annotated[str | None, typer.Option("--format", help="table or json.")] = None,
) -> None:
    """What needs attention: the Failed, Expired, Paused and Will Fail cards (count and amount
    outstanding each). --all adds every status, the total and aging (days since creation)."""
    import json

    from outreach_cli.cli.render import resolve_format

    a = get_app(ctx)
    f = resolve_format(a, fmt or "table", allowed=("table", "json"))
    if f == "json":
        from outreach_cli.core.queries import metrics as q

        a.write(json.dumps(q(a.store(), show_all=show_all, now=a.now), indent=2) + "\n")
        return
    print_metrics(a, a.store(), show_all=show_all)


def print_metrics(a: App, store: Any, *, show_all: bool) -> None:
    from rich.table import Table

    from outreach_cli.cli.render import badge
    from outreach_cli.core.money import format_dollars
    from outreach_cli.core.queries import metrics as q

    data = q(store, show_all=show_all, now=a.now)
    t = Table(show_edge=False, pad_edge=False, header_style="bold", title=None)
    t.add_column("Status")
    t.add_column("Sets", justify="right")
    t.add_column("Outstanding", justify="right")
    for key, card in data.items():
        if key in ("total", "aging"):
            continue
        t.add_row(badge(key), f"{card['count']:,}", format_dollars(card["amount_outstanding_cents"]))
    if show_all:
        tot = data["total"]
        t.add_row("Total", f"{tot['count']:,}", format_dollars(tot["amount_outstanding_cents"]))
    a.out.print(t)
    if show_all:
        ag = Table(show_edge=False, pad_edge=False, header_style="bold")
        ag.add_column("Open, days since created")
        ag.add_column("Sets", justify="right")
        ag.add_column("Outstanding", justify="right")
        for b in data["aging"]:
            ag.add_row(b["bucket"], f"{b['count']:,}", format_dollars(b["amount_outstanding_cents"]))
        a.out.print()
        a.out.print(ag)


def print_attention(a: App, store: Any, limit: int = 15) -> None:
    from outreach_cli.cli.cmd_list import _table
    from outreach_cli.core.queries import ListFilter, list_sets
    from outreach_cli.core.statuses import ATTENTION

    per = max(1, limit // len(ATTENTION))
    rows: list[dict[str, Any]] = []
    for status in ATTENTION:  # failed, expired, paused, will-fail: a few of each
        rows.extend(list_sets(store, ListFilter(statuses=[status], sort="amount", desc=True, limit=per), a.context()))
    a.out.print()
    a.out.print(
        f"Sets needing attention (the largest {per} of each; `outreach{f' --db {a.db}' if a.db else ''} list --status failed,expired,paused,will-fail` for all):"
    )
    _table(a, rows)


def show(
    ctx: typer.Context,
    set_id: Annotated[int, typer.Argument(help="Invoice set ID.", metavar="ID", min=1, max=2**63 - 1)],
    fmt: Annotated[str | None, typer.Option("--format", help="table (text) or json.")] = None,
) -> None:
    """One invoice set: status, patient and which methods are usable (with reasons), charges,
    the schedule (past and future steps per method) and the timeline, oldest first."""
    import json

    from outreach_cli.core.queries import show_set

    a = get_app(ctx)
    f = (fmt or "table").lower()
    if f not in ("table", "json"):
        from outreach_cli.core.errors import InvalidInput

        raise InvalidInput(f"--format {fmt!r}: choose table or json")
    store = a.store()
    data = show_set(store, set_id, a.context())
    if f == "json":
        a.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return
    _show_text(a, data)


def _show_text(a: App, d: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    from outreach_cli.cli.render import badge
    from outreach_cli.core.money import format_dollars

    p = d["patient"]
    head = Text.assemble(
        (f"Invoice set {d['id']}  ", "bold"),
        badge(d["status"]),
        f"  {format_dollars(d['amount_outstanding_cents'])} outstanding  rule set {d['rule_set']}",
    )
    a.out.print(head)
    if d["status_reason"]:
        a.out.print(Text(f"  {d['status_reason']}"))
    a.out.print(Text(f"  created {d['created_at']}   payment link {d['payment_url']}"))
    a.out.print(Text(f"\nPatient {p['first_name']} {p['last_name']} ({p['patient_id']})", style="bold"))
    addr = p["address"]
    a.out.print(
        Text(
            f"  phone {p['phone'] or '-'} ({p['phone_type']})   email {p['email'] or '-'}   time zone {', '.join(p['timezones'])}"
        )
    )
    a.out.print(
        Text(
            "  address "
            + (
                ", ".join(
                    v
                    for v in (
                        addr["address_line1"],
                        addr["address_line2"],
                        addr["city"],
                        addr["state"],
                        addr["postal_code"],
                    )
                    if v
                )
                or "-"
            )
        )
    )
    for m, u in p["usable_methods"].items():
        a.out.print(
            Text.assemble(
                f"  {m:<12}", ("usable", "green") if u["usable"] else ("not usable", "red"), f"  {u['reason'] or ''}"
            )
        )
    ct = Table(title="Charges", title_justify="left", show_edge=False, pad_edge=False, header_style="bold")
    for c in ("Charge", "Created", "Amount", "Outstanding", "Status", "Description"):
        ct.add_column(c)
    for c in d["charges"]:
        ct.add_row(
            c["charge_id"],
            c["created_at"],
            format_dollars(c["amount_cents"]),
            format_dollars(c["outstanding_cents"]),
            c["status"],
            c["description"],
        )
    a.out.print()
    a.out.print(ct)
    st = Table(title="Schedule", title_justify="left", show_edge=False, pad_edge=False, header_style="bold")
    for c in ("Day", "Step", "Method", "Status", "Due", "Sent", "Reason"):
        st.add_column(c)
    for s in d["schedule"]:
        st.add_row(
            str(s["day"]),
            s["step"],
            s["method"] + (" (fallback)" if s.get("fallback") else ""),
            s["status"],
            s["due_at"] or "",
            s["sent_at"] or "",
            s["reason"] or "",
        )
    a.out.print()
    a.out.print(st)
    tl = Table(title="Timeline", title_justify="left", show_edge=False, pad_edge=False, header_style="bold")
    for c in ("At", "Event", "Actor", "Change", "Detail"):
        tl.add_column(c)
    for e in d["timeline"]:
        change = f"{e['from_status'] or ''} -> {e['to_status']}" if e["to_status"] else ""
        detail = "; ".join(x for x in (e.get("action"), e.get("reason"), _detail(e.get("detail"))) if x)
        tl.add_row(e["at"], e["kind"], e["actor"] or "", change, detail)
    a.out.print()
    a.out.print(tl)


def _detail(d: Any) -> str:
    if not d:
        return ""
    return ", ".join(f"{k}={v}" for k, v in d.items())


def audit(
    ctx: typer.Context,
    set_id: Annotated[
        int | None, typer.Option("--id", help="Only this invoice set.", metavar="ID", min=1, max=2**63 - 1)
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Time range: 2026-03-01, -7d, today, A..B.", metavar="RANGE")
    ] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only events by this actor.", metavar="NAME")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=0, help="At most N events.")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="table, tsv, csv, json or jsonl.")] = None,
) -> None:
    """The event log (append-only): status changes with actor and reason, sends, replies,
    payments, charges, rule-set changes; oldest first."""
    from outreach_cli.cli.render import resolve_format, write_rows
    from outreach_cli.core.queries import AUDIT_COLUMNS
    from outreach_cli.core.queries import audit as q
    from outreach_cli.core.ranges import parse_time_range
    from outreach_cli.core.timeutil import get_zone

    a = get_app(ctx)
    f = resolve_format(a, fmt, allowed=("table", "tsv", "csv", "json", "jsonl"))
    rng = None
    if since is not None:
        rng = parse_time_range(since, tz=get_zone(a.settings.timezone), now=a.now, flag="--since", single_is_start=True)
    write_rows(a, q(a.store(), set_id=set_id, since=rng, actor=actor, limit=limit), AUDIT_COLUMNS, f)


@coll.command("export")
def export(
    ctx: typer.Context,
    out: Annotated[str, typer.Option("--out", help="CSV file to write, or - for stdout.", metavar="FILE|-")] = "-",
    include_exported: Annotated[
        bool, typer.Option("--all", help="Include sets exported before; mark nothing.")
    ] = False,
) -> None:
    """CSV of the sets in collections not yet exported (patient, contact, address, charges,
    amounts), for the collections agency; marks them exported unless --all."""
    from outreach_cli.core.collections import export as do_export

    a = get_app(ctx)
    store = a.store()
    if out == "-":
        n = do_export(store, a.env.stdout, a.context(), include_exported=include_exported)
    else:
        import os
        import tempfile

        d = os.path.dirname(os.path.abspath(out))
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".collections-", suffix=".csv")
        try:
            with os.fdopen(fd, "w", newline="") as fh:
                n = do_export(store, fh, a.context(), include_exported=include_exported)
            os.replace(tmp, out)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    a.info(
        "collections export: no new sets in collections to export (--all exports every one again)"
        if n == 0 and not include_exported
        else f"collections export: {n:,} set{'' if n == 1 else 's'}"
        + ("" if include_exported else " (now marked exported)")
    )
