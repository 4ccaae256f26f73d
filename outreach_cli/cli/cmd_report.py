"""`outreach report`: which outreach got the practice paid, for what it cost; A/B tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any

import typer

from outreach_cli.cli.context import App, get_app
from outreach_cli.cli.options import RuleSetOpt

FORMATS = ("table", "json", "csv", "html")
DEFAULT_DAYS = 90


def register(app: typer.Typer) -> None:
    app.command("report")(report)


SinceReportOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Sets that entered from this date (practice time zone) or datetime; today, -30d, -2w... "
        "Default: the 90 whole days before --until.",
        metavar="D",
    ),
]

UntilReportOpt = Annotated[
    str | None,
    typer.Option("--until", help="... up to and including this date (or datetime). Default: now.", metavar="D"),
]

StatusReportOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--status",
        help="Only sets now in this status (repeatable or comma-separated; open; all). Default: every status.",
        metavar="S",
    ),
]

ByReportOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--by",
        help="Group by rule-set, step, method or week (comma-separated to nest). Default: rule-set,step.",
        metavar="KEY",
    ),
]

AttributionReportOpt = Annotated[
    str,
    typer.Option(
        "--attribution",
        help="Credit each payment to the last (default) or first send delivered within "
        "report.attribution_days before it; none: unprompted.",
        metavar="last|first",
    ),
]

ExperimentReportOpt = Annotated[
    bool, typer.Option("--experiment", help="Compare the arms of A/B tests (import charges --rule-set a:50,b:50).")
]

FmtReportOpt = Annotated[
    str,
    typer.Option(
        "--format",
        help="table (bars and a sparkline), json, csv or html (one self-contained file).",
        metavar="FORMAT",
    ),
]

OutReportOpt = Annotated[
    str | None,
    typer.Option("--out", help="Write to FILE instead of stdout (html on a terminal: report.html).", metavar="FILE"),
]


def report(
    ctx: typer.Context,
    since: SinceReportOpt = None,
    until: UntilReportOpt = None,
    rule_set: RuleSetOpt = None,
    status: StatusReportOpt = None,
    by: ByReportOpt = None,
    attribution: AttributionReportOpt = "last",
    experiment: ExperimentReportOpt = False,
    fmt: FmtReportOpt = "table",
    out: OutReportOpt = None,
) -> None:
    """What outreach collected, at what cost; A/B tests.

    Follows the invoice sets that entered outreach in the period: messages attempted, delivered
    and failed per method, sets paid (in full, partly), dollars collected, collection rate
    (collected / owed), median days to pay, opt-outs, cost (from [costs]) and dollars collected
    per dollar spent. Each payment is credited to the send delivered within
    report.attribution_days before it; payments with none are "unprompted". Also a funnel per
    rule set and dollars collected per week. Amounts in dollars, dates in the practice time zone.

    \b
    Examples:
      outreach report --since -30d
      outreach report --by method --format csv > by-method.csv
      outreach report --experiment
      outreach report --format html --out report.html
    """
    from outreach_cli.domain.errors import InvalidInput
    from outreach_cli.domain.report import ATTRIBUTIONS

    a = get_app(ctx)
    f = fmt.strip().lower()
    if f not in FORMATS:
        raise InvalidInput(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    mode = attribution.strip().lower()
    if mode not in ATTRIBUTIONS:
        raise InvalidInput(f"--attribution {attribution!r}: choose last or first")
    doc = build(a, since, until, rule_set, status, by, mode, experiment)
    if f == "html" and out is None and a.env.stdout_isatty:
        out = "report.html"  # a page of HTML is no use on a terminal
    if out is not None and out != "-":
        _write_file(a, out, f, doc)
        a.info(f"report written to {out}")
        return
    if f == "json":
        import json

        a.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    elif f == "csv":
        a.write(to_csv(doc))
    elif f == "html":
        from outreach_cli.cli.report_html import render_html

        a.write(render_html(doc, a.settings.values["practice_name"]))
    else:
        render_table(a, doc)


def build(
    a: App,
    since: str | None,
    until: str | None,
    rule_set: list[str] | None,
    status: list[str] | None,
    by: list[str] | None,
    mode: str,
    experiment: bool,
) -> dict[str, Any]:
    """The report's document: read in one transaction, computed by `core.report`."""
    from outreach_cli.domain.report import Costs, Options, Report, parse_by
    from outreach_cli.domain.statuses import parse_status_list
    from outreach_cli.domain.timeutil import get_zone
    from outreach_cli.store.report_queries import read_report

    group_by = parse_by(by)
    tz = get_zone(a.settings.timezone)
    start, end = period(a, since, until)
    statuses = [s.value for s in parse_status_list(status)] if status else None  # None: every status
    names = [x.strip() for r in rule_set or [] for x in r.split(",") if x.strip()]
    s = a.settings.values
    days = int(s["report"]["attribution_days"])
    store = a.store()
    if names:
        from outreach_cli.store.loaded_rulesets import RuleSets

        with store.read() as conn:
            known = RuleSets(conn)
            for n in names:
                known.resolve(n)
    # Its four independent reads side by side, on connections that read one snapshot.
    with store.read_together(4) as conns:
        data = read_report(
            conns[0],
            since=start,
            until=end,
            tz=tz,
            by=group_by,
            experiment=experiment,
            rule_sets=names or None,
            statuses=statuses,
            attribution=mode,
            attribution_days=days,
            others=conns[1:],
        )
    opts = Options(start, end, tz, group_by, mode, days, Costs.from_settings(s["costs"]), experiment)
    return Report(data, opts).as_dict()


def period(a: App, since: str | None, until: str | None) -> tuple[datetime, datetime]:
    """[start, end) in UTC: --since/--until parsed like `list --created` (dates are whole days in
    the practice time zone, inclusive); default the 90 days up to now."""
    from outreach_cli.domain.errors import InvalidInput
    from outreach_cli.domain.ranges import parse_time_range
    from outreach_cli.domain.timeutil import get_zone

    tz = get_zone(a.settings.timezone)
    start: datetime | None = None
    end: datetime | None = None
    for flag, value in (("--since", since), ("--until", until)):
        if value is None:
            continue
        if ".." in value:
            raise InvalidInput(f"{flag} {value!r}: give one date or datetime (a range goes in --since and --until)")
        r = parse_time_range(value, tz=tz, now=a.now, flag=flag)
        if flag == "--since":
            start = r.start
        else:
            end = r.end
    end = end or a.now + timedelta(microseconds=1)  # up to and including now
    if start is None:  # the whole day (practice time zone) 90 days before the end
        first_day = (end - timedelta(microseconds=1)).astimezone(tz).date() - timedelta(days=DEFAULT_DAYS)
        start = datetime.combine(first_day, time(0), tzinfo=tz).astimezone(UTC)
    if start >= end:
        raise InvalidInput(f"--since {since or start.isoformat()!r} is not before --until {until or 'now'!r}")
    assert start is not None
    return start, end


def _write_file(a: App, path: str, fmt: str, doc: dict[str, Any]) -> None:
    import json

    from outreach_cli.domain.errors import InvalidInput

    if fmt == "json":
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    elif fmt == "csv":
        text = to_csv(doc)
    elif fmt == "html":
        from outreach_cli.cli.report_html import render_html

        text = render_html(doc, a.settings.values["practice_name"])
    else:
        from rich.console import Console

        with open_out(path) as fh:
            render_table(a, doc, console=Console(file=fh, width=120, no_color=True, highlight=False))
        return
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise InvalidInput(f"--out {path}: cannot write: {exc.strerror}") from None


def open_out(path: str) -> Any:
    from outreach_cli.domain.errors import InvalidInput

    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"--out {path}: cannot write: {exc.strerror}") from None


# --- csv ---------------------------------------------------------------------------------------


def group_keys(doc: dict[str, Any]) -> list[str]:
    """The row keys of the report's grouping, in --by order (rule-set -> rule_set, ...)."""
    return [dim.replace("-", "_") for dim in doc["by"]]


CSV_METRICS = [
    "sets_entered",
    "owed",
    "messages_attempted",
    "messages_delivered",
    "messages_failed",
    "sets_paid_full",
    "sets_paid_partly",
    "collected",
    "unprompted",
    "collection_rate",
    "median_days_to_pay",
    "opt_outs",
    "cost",
    "collected_per_dollar",
]


def to_csv(doc: dict[str, Any]) -> str:
    """One row per group (the --by grouping), per-method message counts as columns."""
    import csv
    import io

    from outreach_cli.domain.csvsafe import neutralize
    from outreach_cli.domain.money import plain_dollars
    from outreach_cli.domain.report import METHODS

    keys = group_keys(doc)
    if "step" in keys:
        keys.insert(keys.index("step"), "step_day")
    per_method = [f"{m}_{x}" for m in METHODS for x in ("attempted", "delivered", "failed")]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(keys + CSV_METRICS + per_method)
    for g in doc["groups"]:
        vals: dict[str, Any] = dict(g, unprompted=plain_dollars(g["unprompted_cents"]))
        for m in METHODS:
            for x in ("attempted", "delivered", "failed"):
                vals[f"{m}_{x}"] = g["messages"].get(m, {}).get(x, 0)
        if vals.get("collection_rate") is not None:
            vals["collection_rate"] = f"{vals['collection_rate']:.4f}"
        w.writerow(
            [neutralize("" if vals.get(c) is None else str(vals.get(c))) for c in keys + CSV_METRICS + per_method]
        )
    return buf.getvalue()


# --- terminal ------------------------------------------------------------------------------------

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[int]) -> str:
    top = max(values, default=0)
    if top <= 0:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[min(len(SPARKS) - 1, round(v / top * (len(SPARKS) - 1)))] for v in values)


def bar(fraction: float, width: int = 30) -> str:
    """A horizontal bar in eighths of a character."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def render_table(a: App, doc: dict[str, Any], console: Any = None) -> None:
    from rich.text import Text

    from outreach_cli.cli.output import print_table

    con = console or a.out
    p = doc["period"]
    con.print(
        Text(
            f"Effectiveness report: sets that entered {p['since_local'][:10]} to {p['until_local'][:16].replace('T', ' ')} "
            f"({p['timezone']}); payments credited to the {doc['attribution']} send delivered within "
            f"{doc['attribution_days']} days before them",
            style="bold",
        )
    )
    present = [(k, label) for k, label in REPORT_KEYS if k in group_keys(doc)] or [("", "")]
    rows = [{**g, "_labels": _labels(g, present)} for g in doc["groups"]]
    rows.append({**doc["total"], "_labels": ["Total"] + [""] * (len(present) - 1)})
    if console is None:
        print_table(a, rows, report_columns(present), see_all="--format csv or a wider terminal")
    else:
        console.print(simple_table(rows, report_columns(present)))
    _render_methods(con, doc)
    _render_collection_rates(con, doc)
    _render_funnels(con, doc)
    _render_weekly(con, doc)
    if "experiment" in doc:
        render_experiment(con, doc["experiment"])


def _render_methods(con: Any, doc: dict[str, Any]) -> None:
    """Messages attempted, delivered and failed per method, over all rule sets."""
    from rich.table import Table

    methods: dict[str, list[int]] = {}
    for g in doc["rule_sets"]:
        for m, c in g["messages"].items():
            acc = methods.setdefault(m, [0, 0, 0])
            acc[0] += c["attempted"]
            acc[1] += c["delivered"]
            acc[2] += c["failed"]
    if methods:
        mt = Table(title="Messages per method", title_justify="left", show_edge=False, header_style="bold")
        for h in ("Method", "Attempted", "Delivered", "Failed"):
            mt.add_column(h, justify="left" if h == "Method" else "right")
        for m, v in methods.items():
            mt.add_row(m, *(str(x) for x in v))
        con.print()
        con.print(mt)


def _render_collection_rates(con: Any, doc: dict[str, Any]) -> None:
    from outreach_cli.domain.money import format_dollars

    con.print("\n[bold]Collection rate by rule set[/bold] (dollars collected / owed)")
    width = max((len(g["rule_set"]) for g in doc["rule_sets"]), default=8)
    for g in doc["rule_sets"]:
        rate = g["collection_rate"] or 0.0
        con.print(
            f"  {g['rule_set']:<{width}} [green]{bar(rate)}[/green] {_pct(g['collection_rate'])}"
            f"  ({format_dollars(g['collected_cents'])} of {format_dollars(g['owed_cents'])})"
        )


def _render_funnels(con: Any, doc: dict[str, Any]) -> None:
    for rs, steps in doc["funnel"].items():
        con.print(f"\n[bold]Funnel: {rs}[/bold] (sets reaching each step; paid in full before the next)")
        top = max((s["reached"] for s in steps), default=0) or 1
        sw = min(max(len(_step_label(s)) for s in steps), 32)
        # The bar takes what the terminal leaves after the label and the counts (one line each).
        bw = max(6, min(24, con.width - sw - 32))
        for s in steps:
            con.print(
                f"  {_step_label(s)[:sw]:<{sw}} [cyan]{bar(s['reached'] / top, bw):<{bw}}[/cyan] "
                f"{s['reached']:>6} reached, {s['paid_after']:>5} paid"
            )


def _render_weekly(con: Any, doc: dict[str, Any]) -> None:
    from outreach_cli.domain.money import format_dollars

    weeks = doc["weekly"]
    total = sum(w["collected_cents"] for w in weeks)
    if weeks:
        con.print(
            f"\n[bold]Collected per week[/bold] {weeks[0]['week']} .. {weeks[-1]['week']}  "
            f"[yellow]{sparkline([w['collected_cents'] for w in weeks])}[/yellow]  {format_dollars(total)}"
        )


REPORT_KEYS = [("rule_set", "Rule set"), ("step", "Step"), ("method", "Method"), ("week", "Week of")]


def _labels(g: dict[str, Any], present: list[tuple[str, str]]) -> list[str]:
    out: list[str] = []
    for k, _ in present:
        v = g.get(k)
        if k == "step" and g.get("step_day") is not None:
            v = f"day {g['step_day']}: {v}"
        out.append("" if v is None else str(v))
    return out


def report_columns(present: list[tuple[str, str]]) -> list[Any]:
    """The report table: the group, sets, paid, collected and rate are never cut; the message
    counts, cost and ratios give way first on a narrow terminal (named on stderr)."""
    from outreach_cli.cli.output import Col
    from outreach_cli.domain.money import format_dollars

    def num(key: str, head: str, drop: int) -> Col:
        return Col(key, head, lambda g: f"{g[key]:,}", "right", drop=drop)

    def label(i: int) -> Callable[[Mapping[str, Any]], str]:
        return lambda g: str(g["_labels"][i])

    labels = [
        Col(f"_label{i}", head, label(i), wrap=True, min_width=10, keep=i == 0, whole_words=True)
        for i, (_, head) in enumerate(present)
    ]
    return [
        *labels,
        Col("sets_entered", "Sets", lambda g: f"{g['sets_entered']:,}", "right", keep=True),
        num("messages_attempted", "Attempted", 4),
        num("messages_delivered", "Delivered", 5),
        num("messages_failed", "Failed", 6),
        Col("sets_paid_full", "Paid full", lambda g: f"{g['sets_paid_full']:,}", "right", keep=True),
        num("sets_paid_partly", "Partly", 3),
        Col("collected_cents", "Collected", lambda g: format_dollars(g["collected_cents"]), "right", keep=True),
        Col("collection_rate", "Rate", lambda g: _pct(g["collection_rate"]), "right", keep=True),
        Col(
            "median_days_to_pay",
            "Median days",
            lambda g: "-" if g["median_days_to_pay"] is None else f"{g['median_days_to_pay']:.1f}",
            "right",
            drop=7,
        ),
        num("opt_outs", "Opt-outs", 8),
        Col("cost_cents", "Cost", lambda g: format_dollars(g["cost_cents"]), "right", drop=2),
        Col(
            "collected_per_dollar",
            "$ per $",
            lambda g: "-" if g["collected_per_dollar"] is None else f"{g['collected_per_dollar']:.2f}",
            "right",
            drop=9,
        ),
    ]


def simple_table(rows: list[dict[str, Any]], cols: list[Any]) -> Any:
    """The same columns on a given console (HTML/tests): every column, no fitting."""
    from rich.table import Table

    t = Table(show_edge=False, pad_edge=False, header_style="bold")
    for c in cols:
        t.add_column(c.header, justify=c.justify, no_wrap=True)
    for r in rows:
        t.add_row(*(str(c.value(r)) for c in cols))
    return t


def _step_label(s: dict[str, Any]) -> str:
    return s["step"] if s["step_day"] is None else f"day {s['step_day']}: {s['step']}"


def render_experiment(con: Any, exps: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from outreach_cli.domain.money import format_dollars

    if not exps:
        con.print(
            "\n[bold]A/B tests[/bold]: no set in the period was assigned to an arm "
            "(import charges --rule-set standard:50,gentle:50 starts one)"
        )
        return
    for e in exps:
        con.print(f"\n[bold]A/B test {e['experiment']}[/bold] (rate = share of sets paid in full, 95% interval)")
        t = Table(show_edge=False, pad_edge=False, header_style="bold")
        for h in ("Arm", "Sets", "Paid full", "Rate", "95% interval", "Collected", "Dollar rate"):
            t.add_column(h, justify="left" if h == "Arm" else "right", no_wrap=True)
        for arm in e["arms"]:
            ci = arm["paid_full_rate_ci95"]
            t.add_row(
                arm["arm"],
                str(arm["sets"]),
                str(arm["sets_paid_full"]),
                _pct(arm["paid_full_rate"]),
                "-" if ci is None else f"{ci[0] * 100:.1f}% .. {ci[1] * 100:.1f}%",
                format_dollars(arm["collected_cents"]),
                _pct(arm["collection_rate"]),
            )
        con.print(t)
        for c in e["comparisons"]:
            lo, hi = c["difference_ci95"]
            p = "-" if c["p_value"] is None else f"{c['p_value']:.3f}"
            con.print(
                f"  {c['arm']} vs {c['control']}: difference {c['difference'] * 100:+.1f} points "
                f"(95% interval {lo * 100:+.1f} .. {hi * 100:+.1f}), p = {p}"
            )
            con.print(f"  [bold]{c['verdict']}[/bold]")
