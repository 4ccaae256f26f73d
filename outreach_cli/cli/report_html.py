"""`outreach report --format html`: one self-contained page (inline CSS, charts as inline SVG made
by pygal, no script, nothing fetched) that a manager can email to the practice owner."""

from __future__ import annotations

import re
from html import escape
from typing import Any

from outreach_cli.domain.money import format_dollars

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; max-width: 1100px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
p.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
th { background: #f3f4f6; } td.k, th.k { text-align: left; }
tr.total td { font-weight: bold; border-top: 2px solid #999; }
.chart { width: 100%; max-width: 900px; margin: 8px 0 16px; }
.chart svg { width: 100%; height: auto; display: block; }
.verdict { font-weight: bold; }
"""


def _style() -> Any:
    from pygal.style import Style

    return Style(
        background="white",
        plot_background="white",
        foreground="#333",
        foreground_strong="#111",
        foreground_subtle="#888",
        colors=("#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2"),
        font_family="sans-serif",
    )


def _config(**kw: Any) -> dict[str, Any]:
    # js=[]: pygal would otherwise reference its tooltip script on the web.
    base = {
        "js": [],
        "disable_xml_declaration": True,
        "style": _style(),
        "width": 900,
        "height": 320,
        "print_values": True,
        "legend_at_bottom": True,
        "margin": 16,
    }
    base.update(kw)
    return base


def _svg(chart: Any, label: str) -> str:
    # pygal adds an inline <script> holding its tooltip config: useless without its tooltip
    # script, and mail clients distrust scripts. The chart is plain SVG without it.
    svg = re.sub(r"<script\b.*?</script>|<!--.*?-->", "", chart.render(is_unicode=True), flags=re.S)
    return f'<div class="chart" data-chart="{escape(label)}">{svg}</div>'


def collection_chart(rule_sets: list[dict[str, Any]]) -> str:
    import pygal

    chart = pygal.HorizontalBar(
        **_config(
            title="Collection rate by rule set (collected / owed)",
            height=max(180, 70 + 50 * len(rule_sets)),
            range=(0, 100),
            value_formatter=lambda v: f"{v:.1f}%",
            show_legend=False,
        )
    )
    chart.x_labels = [g["rule_set"] for g in rule_sets]
    chart.add("Collection rate", [round((g["collection_rate"] or 0) * 100, 1) for g in rule_sets])
    return _svg(chart, "collection-rate")


def funnel_chart(rule_set: str, steps: list[dict[str, Any]]) -> str:
    import pygal

    chart = pygal.HorizontalBar(
        **_config(
            title=f"Funnel: {rule_set} (sets reaching each step, and paid in full before the next)",
            height=max(200, 90 + 46 * len(steps)),
            value_formatter=lambda v: f"{v:,.0f}",
        )
    )
    # Horizontal bars draw the first label at the bottom: reversed so the funnel reads top-down.
    ordered = list(reversed(steps))
    chart.x_labels = [s["step"] if s["step_day"] is None else f"day {s['step_day']}: {s['step']}" for s in ordered]
    chart.add("Reached", [s["reached"] for s in ordered])
    chart.add("Paid after it", [s["paid_after"] for s in ordered])
    return _svg(chart, f"funnel-{rule_set}")


def weekly_chart(weeks: list[dict[str, Any]]) -> str:
    import pygal

    chart = pygal.Bar(
        **_config(
            title="Dollars collected per week",
            show_legend=False,
            print_values=False,
            x_label_rotation=40,
            value_formatter=lambda v: f"${v:,.2f}",
        )
    )
    chart.x_labels = [w["week"] for w in weeks]
    chart.add("Collected", [w["collected_cents"] / 100 for w in weeks])
    return _svg(chart, "weekly")


def experiment_chart(e: dict[str, Any]) -> str:
    import pygal

    chart = pygal.Bar(
        **_config(
            title=f"A/B test {e['experiment']}: share of sets paid in full",
            range=(0, 100),
            value_formatter=lambda v: f"{v:.1f}%",
            show_legend=False,
        )
    )
    chart.x_labels = [a["arm"] for a in e["arms"]]
    chart.add("Paid in full", [round((a["paid_full_rate"] or 0) * 100, 1) for a in e["arms"]])
    return _svg(chart, f"experiment-{e['experiment']}")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _groups_table(doc: dict[str, Any]) -> str:
    keys = [("rule_set", "Rule set"), ("step", "Step"), ("method", "Method"), ("week", "Week of")]
    by = [dim.replace("-", "_") for dim in doc["by"]]
    present = [(k, label) for k, label in keys if k in by] or [("", "")]
    heads = ["Sets", "Attempted", "Delivered", "Failed", "Paid full", "Partly", "Collected", "Rate"]
    heads += ["Median days", "Opt-outs", "Cost", "$ per $"]
    out = ["<table><tr>"]
    out += [f'<th class="k">{escape(label)}</th>' for _, label in present]
    out += [f"<th>{escape(h)}</th>" for h in heads]
    out.append("</tr>")

    def cells(g: dict[str, Any]) -> list[str]:
        vals = [
            g["sets_entered"],
            g["messages_attempted"],
            g["messages_delivered"],
            g["messages_failed"],
            g["sets_paid_full"],
            g["sets_paid_partly"],
            format_dollars(g["collected_cents"]),
            _pct(g["collection_rate"]),
            "-" if g["median_days_to_pay"] is None else f"{g['median_days_to_pay']:.1f}",
            g["opt_outs"],
            format_dollars(g["cost_cents"]),
            "-" if g["collected_per_dollar"] is None else f"{g['collected_per_dollar']:.2f}",
        ]
        return [f"<td>{escape(str(v))}</td>" for v in vals]

    for g in doc["groups"]:
        out.append("<tr>")
        for k, _ in present:
            v = g.get(k)
            if k == "step" and g.get("step_day") is not None:
                v = f"day {g['step_day']}: {v}"
            out.append(f'<td class="k">{escape("" if v is None else str(v))}</td>')
        out += cells(g)
        out.append("</tr>")
    out.append('<tr class="total">' + '<td class="k">Total</td>' + "<td></td>" * (len(present) - 1))
    out += cells(doc["total"])
    out.append("</tr></table>")
    return "".join(out)


def _experiment_html(exps: list[dict[str, Any]]) -> str:
    if not exps:
        return "<h2>A/B tests</h2><p>No set in the period was assigned to an arm.</p>"
    parts = []
    for e in exps:
        parts.append(f"<h2>A/B test {escape(e['experiment'])}</h2>")
        parts.append(experiment_chart(e))
        rows = [
            "<table><tr><th class='k'>Arm</th><th>Sets</th><th>Paid full</th><th>Rate</th>"
            "<th>95% interval</th><th>Collected</th><th>Dollar rate</th></tr>"
        ]
        for a in e["arms"]:
            ci = a["paid_full_rate_ci95"]
            ci_text = "-" if ci is None else f"{ci[0] * 100:.1f}% .. {ci[1] * 100:.1f}%"
            rows.append(
                f"<tr><td class='k'>{escape(a['arm'])}</td><td>{a['sets']}</td><td>{a['sets_paid_full']}</td>"
                f"<td>{_pct(a['paid_full_rate'])}</td><td>{ci_text}</td>"
                f"<td>{format_dollars(a['collected_cents'])}</td><td>{_pct(a['collection_rate'])}</td></tr>"
            )
        rows.append("</table>")
        parts.append("".join(rows))
        for c in e["comparisons"]:
            p = "-" if c["p_value"] is None else f"{c['p_value']:.3f}"
            lo, hi = c["difference_ci95"]
            parts.append(
                f"<p>{escape(c['arm'])} vs {escape(c['control'])}: difference {c['difference'] * 100:+.1f} points "
                f"(95% interval {lo * 100:+.1f} .. {hi * 100:+.1f}), p = {p}</p>"
                f"<p class='verdict'>{escape(c['verdict'])}</p>"
            )
    return "".join(parts)


def render_html(doc: dict[str, Any], practice_name: str) -> str:
    p = doc["period"]
    body = [
        f"<h1>{escape(practice_name)}: outreach effectiveness</h1>",
        f"<p class='sub'>Invoice sets that entered outreach from {escape(p['since_local'][:10])} to "
        f"{escape(p['until_local'][:16].replace('T', ' '))} ({escape(p['timezone'])}). Each payment is credited to the "
        f"{escape(doc['attribution'])} send delivered within {doc['attribution_days']} days before it; "
        "payments with none are unprompted.</p>",
        collection_chart(doc["rule_sets"]),
        weekly_chart(doc["weekly"]),
        "<h2>By " + escape(", ".join(doc["by"])) + "</h2>",
        _groups_table(doc),
        "<h2>Funnels</h2>",
    ]
    body += [funnel_chart(rs, steps) for rs, steps in doc["funnel"].items()]
    if "experiment" in doc:
        body.append(_experiment_html(doc["experiment"]))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(practice_name)}: outreach report</title><style>{CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )
