"""`outreach report` and A/B assignment through the real CLI, on SQLite and PostgreSQL.

Every figure below is computed by hand from this timeline (sandbox providers, rule set `ab`:
day 0 sms "Text", day 3 email "Email"; costs sms $0.05, email $0.02; window 7 days):

  T0  2026-03-02 14:00Z  sets A $100, B $200, C $80 (invalid phone), D $50, E $30 enter; the
                         Text step goes out: sms delivered to A B D E, failed for C.
      2026-03-02 13:00Z  C pays $80 (paid_at before its set and before any send: unprompted)
      2026-03-04 14:00Z  A pays $40 (sms 2 days earlier: Text)          D is written off
  T1  2026-03-05 14:00Z  the Email step: delivered to A B E (C paid, D written off)
      2026-03-06 14:00Z  E pays $30 (sms and email in window: last -> Email, first -> Text)
      2026-03-12 14:00Z  A pays $60 (exactly 7 days after the email: the window's inclusive edge)
      2026-03-12 14:00:01Z  B pays $50 (1 s past the window: unprompted)
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, terminal, write
from tests.helpers import AB_CONFIG, AB_RULE_SET, PATIENT_HEADER, patient, sync_rule_set, write_csv

REPORT_NOW = "2026-03-20T00:00:00Z"


def _payments(cli: Cli, tmp: Path, name: str, rows: list[tuple[str, str, str, str]], now: str) -> None:
    p = write_csv(tmp / name, [{"payment_id": i, "patient_id": p, "amount": a, "paid_at": at} for i, p, a, at in rows])
    cli.ok("import", "payments", str(p), now=now)


def scenario(cli: Cli, tmp: Path) -> Path:
    cfg = write(tmp / "outreach.toml", AB_CONFIG)
    sync_rule_set(cli, tmp, "ab", AB_RULE_SET)
    # Distinct phones: the contact caps count per phone number across patient records.
    people = [patient(x, phone=f"(617) 555-01{i:02d}") for i, x in enumerate("ABDE", 1)]
    people += [patient("C", phone="+15005550001")]
    write_csv(tmp / "p.csv", people, PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp / "p.csv"))
    charges = [("CA", "A", "100.00"), ("CB", "B", "200.00"), ("CC", "C", "80.00"), ("CD", "D", "50.00")]
    charges.append(("CE", "E", "30.00"))
    write_csv(tmp / "c.csv", [{"charge_id": c, "patient_id": p, "amount": a} for c, p, a in charges])
    cli.ok("import", "charges", str(tmp / "c.csv"), "--rule-set", "ab")
    cli.ok("run-outreach")
    _payments(
        cli,
        tmp,
        "pay1.csv",
        [("PC", "C", "80.00", "2026-03-02T13:00:00Z"), ("PA1", "A", "40.00", "2026-03-04T14:00:00Z")],
        "2026-03-04T14:00:00Z",
    )
    d_id = _set_ids(cli)["D"]
    cli.ok("act", "write-off", str(d_id), "--yes", now="2026-03-04T14:00:00Z")
    cli.ok("run-outreach", now="2026-03-05T14:00:00Z")
    _payments(cli, tmp, "pay2.csv", [("PE", "E", "30.00", "2026-03-06T14:00:00Z")], "2026-03-06T14:00:00Z")
    _payments(
        cli,
        tmp,
        "pay3.csv",
        [("PA2", "A", "60.00", "2026-03-12T14:00:00Z"), ("PB", "B", "50.00", "2026-03-12T14:00:01Z")],
        "2026-03-13T14:00:00Z",
    )
    return cfg


def _set_ids(cli: Cli) -> dict[str, int]:
    rows = json.loads(cli.ok("list", "--status", "all", "--format", "json").stdout)
    return {r["patient_id"]: r["id"] for r in rows}


def report(cli: Cli, cfg: Path, *args: str) -> dict[str, Any]:
    r = cli.ok("--config", str(cfg), "report", "--since", "2026-03-01", "--format", "json", *args, now=REPORT_NOW)
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def _rows(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["step"]: g for g in doc["groups"]}


def test_report_figures_last_touch(cli: Cli, tmp_path: Path) -> None:
    cfg = scenario(cli, tmp_path)
    doc = report(cli, cfg)
    assert doc["by"] == ["rule-set", "step"]
    assert [(g["rule_set"], g["step"]) for g in doc["groups"]] == [
        ("ab", "Text"),
        ("ab", "Email"),
        ("ab", "(unprompted)"),
    ]
    text, email, unprompted = (_rows(doc)[k] for k in ("Text", "Email", "(unprompted)"))
    # Text: reached by all five sets (C's failed sms is an attempt), A's $40 credited to it.
    assert text["sets_entered"] == 5 and text["owed_cents"] == 46000
    assert text["messages"] == {"sms": {"attempted": 5, "delivered": 4, "failed": 1}}
    assert (text["collected_cents"], text["sets_paid_full"], text["sets_paid_partly"]) == (4000, 0, 0)
    assert text["collection_rate"] == 4000 / 46000
    assert (text["cost_cents"], text["collected_per_dollar"]) == (25, 160.0)
    # Email: A's $60 at exactly 7 days (inclusive edge) and E's $30 (last touch).
    assert email["sets_entered"] == 3 and email["owed_cents"] == 33000
    assert email["messages"] == {"email": {"attempted": 3, "delivered": 3, "failed": 0}}
    assert (email["collected_cents"], email["sets_paid_full"], email["sets_paid_partly"]) == (9000, 2, 0)
    assert email["median_days_to_pay"] == 7.0  # A 10 days, E 4 days
    assert (email["cost_cents"], email["collected_per_dollar"]) == (6, 1500.0)
    # Unprompted: C paid before any send, B paid 1 s after the window closed.
    assert (unprompted["collected_cents"], unprompted["unprompted_cents"]) == (13000, 13000)
    assert (unprompted["sets_paid_full"], unprompted["sets_paid_partly"], unprompted["sets_entered"]) == (1, 1, 0)
    assert unprompted["median_days_to_pay"] == 0.0
    # Totals: D's written-off $50 is owed but never collected.
    t = doc["total"]
    assert (t["sets_entered"], t["owed_cents"], t["collected_cents"]) == (5, 46000, 26000)
    assert (t["sets_paid_full"], t["sets_paid_partly"], t["median_days_to_pay"]) == (3, 1, 4.0)
    assert (t["messages_attempted"], t["messages_delivered"], t["messages_failed"]) == (8, 7, 1)
    assert (t["cost_cents"], t["cost"], t["collected_per_dollar"]) == (31, "0.31", 838.71)
    assert doc["rule_sets"][0]["collection_rate"] == 26000 / 46000
    assert doc["weekly"] == [
        {"week": "2026-02-23", "collected_cents": 0, "collected": "0.00"},
        {"week": "2026-03-02", "collected_cents": 15000, "collected": "150.00"},
        {"week": "2026-03-09", "collected_cents": 11000, "collected": "110.00"},
        {"week": "2026-03-16", "collected_cents": 0, "collected": "0.00"},
    ]


def test_report_first_touch_moves_es_payment(cli: Cli, tmp_path: Path) -> None:
    cfg = scenario(cli, tmp_path)
    rows = _rows(report(cli, cfg, "--attribution", "first"))
    assert (rows["Text"]["collected_cents"], rows["Text"]["sets_paid_full"]) == (7000, 1)
    assert (rows["Email"]["collected_cents"], rows["Email"]["sets_paid_full"]) == (6000, 1)
    assert rows["Text"]["median_days_to_pay"] == 4.0 and rows["Email"]["median_days_to_pay"] == 10.0


def test_report_by_method_and_week_and_filters(cli: Cli, tmp_path: Path) -> None:
    cfg = scenario(cli, tmp_path)
    by_method = {g["method"]: g for g in report(cli, cfg, "--by", "method")["groups"]}
    assert set(by_method) == {"sms", "email", "(unprompted)"}
    assert (by_method["sms"]["collected_cents"], by_method["email"]["collected_cents"]) == (4000, 9000)
    weeks = report(cli, cfg, "--by", "week")["groups"]
    assert [(g["week"], g["sets_entered"], g["collected_cents"]) for g in weeks] == [("2026-03-02", 5, 26000)]
    # Status filter: only the written-off set D.
    d = report(cli, cfg, "--by", "rule-set", "--status", "written-off")
    assert (d["total"]["sets_entered"], d["total"]["owed_cents"], d["total"]["collected_cents"]) == (1, 5000, 0)
    # The period follows entry: nothing entered from 2026-03-03 on.
    later = report(cli, cfg, "--by", "rule-set")
    assert later["total"]["sets_entered"] == 5
    r = cli.ok("--config", str(cfg), "report", "--since", "2026-03-03", "--format", "json", now=REPORT_NOW)
    assert json.loads(r.stdout)["total"]["sets_entered"] == 0
    # --until before the payments: only what had happened by then (A's $40, C's $80).
    early = report(cli, cfg, "--until", "2026-03-04", "--by", "rule-set")
    assert early["total"]["collected_cents"] == 12000
    assert early["period"]["until"] == "2026-03-05T00:00:00Z"
    assert early["period"]["until_local"] == "2026-03-05T00:00:00+00:00"


def test_funnel_sums_agree_with_audit(cli: Cli, tmp_path: Path) -> None:
    cfg = scenario(cli, tmp_path)
    doc = report(cli, cfg)
    funnel = {s["step"]: s for s in doc["funnel"]["ab"]}
    assert [(s["step"], s["reached"], s["paid_after"]) for s in doc["funnel"]["ab"]] == [
        ("(entered)", 5, 1),  # C paid before its first send
        ("Text", 5, 0),
        ("Email", 3, 2),
    ]
    events = json.loads(cli.ok("audit", "--format", "json").stdout)
    reached: dict[str, set[int]] = defaultdict(set)
    for e in events:
        if e["kind"] == "send":
            reached[e["detail"]["step"]].add(e["id"])
    assert {k: len(v) for k, v in reached.items()} == {"Text": funnel["Text"]["reached"], "Email": 3}
    paid = sum(s["paid_after"] for s in doc["funnel"]["ab"])
    assert paid == doc["total"]["sets_paid_full"]
    statuses = json.loads(cli.ok("list", "--status", "paid", "--format", "json").stdout)
    assert len(statuses) == paid


def test_report_formats_and_bad_input(cli: Cli, tmp_path: Path) -> None:
    cfg = scenario(cli, tmp_path)
    base = ["--config", str(cfg), "report", "--since", "2026-03-01"]
    table = cli.ok(*base, now=REPORT_NOW).stdout
    # 56.5% = 26000 / 46000 collected; Email's rate 9000 / 33000 (A, B, E reached it); cost 5 sms, 3 emails
    assert table.splitlines() == [
        "Effectiveness report: sets that entered 2026-03-01 to 2026-03-20 00:00 (UTC); payments credited to the"
        " last send delivered within 7 days before them",
        "Rule set ┃ Step         ┃ Sets ┃ Attempted ┃ Delivered ┃ Failed ┃ Paid full ┃ Partly ┃ Collected ┃  Rate ┃"
        " Median days ┃ Opt-outs ┃  Cost ┃ $ per $",
        "━━━━━━━━━╇━━━━━━━━━━━━━━╇━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━╇"
        "━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━╇━━━━━━━━",
        "ab       │ day 0: Text  │    5 │         5 │         4 │      1 │         0 │      0 │    $40.00 │  8.7% │"
        "           - │        0 │ $0.25 │  160.00",
        "ab       │ day 3: Email │    3 │         3 │         3 │      0 │         2 │      0 │    $90.00 │ 27.3% │"
        "         7.0 │        0 │ $0.06 │ 1500.00",
        "ab       │ (unprompted) │    0 │         0 │         0 │      0 │         1 │      1 │   $130.00 │     - │"
        "         0.0 │        0 │ $0.00 │       -",
        "Total    │              │    5 │         8 │         7 │      1 │         3 │      1 │   $260.00 │ 56.5% │"
        "         4.0 │        0 │ $0.31 │  838.71",
        "",
        "Messages per method                      ",
        " Method ┃ Attempted ┃ Delivered ┃ Failed ",
        "━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━",
        " sms    │         5 │         4 │      1 ",
        " email  │         3 │         3 │      0 ",
        "",
        "Collection rate by rule set (dollars collected / owed)",
        "  ab █████████████████ 56.5%  ($260.00 of $460.00)",
        "",
        "Funnel: ab (sets reaching each step; paid in full before the next)",
        "  (entered)    ████████████████████████      5 reached,     1 paid",
        "  day 0: Text  ████████████████████████      5 reached,     0 paid",
        "  day 3: Email ██████████████▍               3 reached,     2 paid",
        "",
        "Collected per week 2026-02-23 .. 2026-03-16  ▁█▆▁  $260.00",
    ]
    rows = cli.ok(*base, "--format", "csv", now=REPORT_NOW).stdout.splitlines()
    methods = ("sms", "email", "call", "mail", "charge_card")
    assert rows == [
        "rule_set,step_day,step,sets_entered,owed,messages_attempted,messages_delivered,messages_failed,"
        "sets_paid_full,sets_paid_partly,collected,unprompted,collection_rate,median_days_to_pay,opt_outs,cost,"
        "collected_per_dollar," + ",".join(f"{m}_{x}" for m in methods for x in ("attempted", "delivered", "failed")),
        "ab,0,Text,5,460.00,5,4,1,0,0,40.00,0.00,0.0870,,0,0.25,160.0,5,4,1" + ",0" * 12,
        "ab,3,Email,3,330.00,3,3,0,2,0,90.00,0.00,0.2727,7.0,0,0.06,1500.0,0,0,0,3,3,0" + ",0" * 9,
        "ab,,(unprompted),0,0.00,0,0,0,1,1,130.00,130.00,,0.0,0,0.00,," + ",".join(["0"] * 15),
    ]
    html_path = tmp_path / "r.html"
    cli.ok(*base, "--format", "html", "--out", str(html_path), now=REPORT_NOW)
    html = html_path.read_text(encoding="utf-8")
    assert html.count("<svg") == 3 and "<script" not in html and "<link" not in html
    for bad, message in (
        (["--by", "colour"], "--by 'colour': choose from rule-set, step, method, week (comma-separated for nesting)"),
        (["--attribution", "middle"], "--attribution 'middle': choose last or first"),
        (["--format", "xml"], "--format 'xml': choose one of table, json, csv, html"),
        (["--rule-set", "nope"], "unknown rule set 'nope'; known: ab, final-notice, gentle, standard"),
        (
            ["--since", "2026-13-01"],
            "--since '2026-13-01': month must be in 1..12; accepted forms: A..B with dates (2026-03-01), datetimes"
            " (2026-03-01T14:30, ...Z or +02:00), today, yesterday, tomorrow, -7d, +3d, -2w; open ends allowed"
            " (2026-03-01.., ..today); a single value means that whole day",
        ),
        (["--since", "2026-03-10", "--until", "2026-03-01"], "--since '2026-03-10' is not before --until '2026-03-01'"),
    ):
        r = cli(*base, *bad, now=REPORT_NOW)
        assert (r.code, r.stderr) == (2, f"error: {message}\n"), r


def test_bad_costs_config_is_a_configuration_error(cli: Cli, tmp_path: Path) -> None:
    cfg = write(tmp_path / "bad.toml", "[costs]\nsms = -1\n")
    r = cli("--config", str(cfg), "report")
    assert (r.code, r.stderr) == (
        4,
        f"error: {cfg}: costs.sms = -1: expected an amount in dollars, 0 or more (e.g. 0.0079)\n",
    )
    cfg = write(tmp_path / "bad2.toml", "[report]\nattribution_days = 'week'\n")
    r = cli("--config", str(cfg), "report")
    assert (r.code, r.stderr) == (
        4,
        f"error: {cfg}: report.attribution_days = 'week': expected a whole number of days (0 or more)\n",
    )


# --- A/B assignment on import -------------------------------------------------------------------


def test_weighted_rule_set_assignment_is_recorded_and_stable(cli: Cli, tmp_path: Path) -> None:
    from outreach_cli.domain.experiments import assign, parse_arms

    people = [patient(f"P{i:03d}") for i in range(60)]
    write_csv(tmp_path / "p.csv", people, PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    charges = [{"charge_id": f"C{i:03d}", "patient_id": f"P{i:03d}", "amount": "10.00"} for i in range(60)]
    write_csv(tmp_path / "c.csv", charges)
    cli.ok("import", "charges", str(tmp_path / "c.csv"), "--rule-set", "standard:50,gentle:50")
    first = {r["id"]: r["rule_set"] for r in json.loads(cli.ok("list", "--format", "json").stdout)}
    arms = parse_arms("standard:50,gentle:50")
    assert first == {sid: assign(sid, arms) for sid in first}
    assert set(first.values()) == {"standard", "gentle"}
    # Re-importing (and new charges joining the same sets, under other weights) reshuffles nothing.
    cli.ok("import", "charges", str(tmp_path / "c.csv"), "--rule-set", "standard:50,gentle:50")
    more = [{"charge_id": f"D{i:03d}", "patient_id": f"P{i:03d}", "amount": "5.00"} for i in range(60)]
    write_csv(tmp_path / "d.csv", more)
    cli.ok("import", "charges", str(tmp_path / "d.csv"), "--rule-set", "gentle:1,standard:99")
    again = {r["id"]: r["rule_set"] for r in json.loads(cli.ok("list", "--format", "json").stdout)}
    assert again == first
    # The arm is on the set's created event, and the experiment report compares the arms.
    sid = next(iter(first))
    created = next(e for e in json.loads(cli.ok("show", str(sid), "--format", "json").stdout)["timeline"])
    assert created["kind"] == "created"
    assert {k: created["detail"][k] for k in ("experiment", "arm", "rule_set")} == {
        "experiment": "standard:50,gentle:50",
        "arm": first[sid],
        "rule_set": first[sid],
    }
    exp = json.loads(cli.ok("report", "--experiment", "--format", "json").stdout)["experiment"]
    assert [(a["arm"], a["sets"]) for a in exp[0]["arms"]] == [
        ("standard", list(first.values()).count("standard")),
        ("gentle", list(first.values()).count("gentle")),
    ]
    verdict = "Too small to tell gentle from standard: fewer than 30 sets in an arm. Keep the experiment running."
    assert exp[0]["comparisons"][0]["enough_data"] is False
    assert exp[0]["comparisons"][0]["verdict"] == verdict
    table = cli.ok("report", "--experiment").stdout
    n_standard, n_gentle = (list(first.values()).count(arm) for arm in ("standard", "gentle"))  # 29 and 31
    assert table.split("\n\n")[-1].splitlines() == [
        "A/B test standard:50,gentle:50 (rate = share of sets paid in full, 95% interval)",
        "Arm      ┃ Sets ┃ Paid full ┃ Rate ┃  95% interval ┃ Collected ┃ Dollar rate",
        "━━━━━━━━━╇━━━━━━╇━━━━━━━━━━━╇━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━",
        f"standard │ {n_standard:4} │         0 │ 0.0% │ 0.0% .. 11.7% │     $0.00 │        0.0%",
        f"gentle   │ {n_gentle:4} │         0 │ 0.0% │ 0.0% .. 11.0% │     $0.00 │        0.0%",
        "  gentle vs standard: difference +0.0 points (95% interval +0.0 .. +0.0), p = -",
        f"  {verdict}",
    ]


def test_default_rule_set_weights_from_config(cli: Cli, tmp_path: Path) -> None:
    cfg = write(tmp_path / "o.toml", 'default_rule_set = "gentle:1,final-notice:1"\n')
    write_csv(tmp_path / "p.csv", [patient(f"P{i}") for i in range(20)], PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    write_csv(tmp_path / "c.csv", [{"charge_id": f"C{i}", "patient_id": f"P{i}", "amount": "9"} for i in range(20)])
    cli.ok("--config", str(cfg), "import", "charges", str(tmp_path / "c.csv"))
    used = {r["rule_set"] for r in json.loads(cli.ok("list", "--format", "json").stdout)}
    assert used == {"gentle", "final-notice"}


def test_bad_weights_exit_2_and_write_nothing(cli: Cli, tmp_path: Path) -> None:
    write_csv(tmp_path / "p.csv", [patient("P1")], PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    write_csv(tmp_path / "c.csv", [{"charge_id": "C1", "patient_id": "P1", "amount": "9"}])
    forms = "expected NAME, or NAME:WEIGHT,NAME:WEIGHT,... with whole-number weights (e.g. standard:70,gentle:30)"
    for spec, message in (
        (
            "standard:0,gentle:50",
            f"--rule-set 'standard:0,gentle:50': weight '0' of 'standard' must be a whole number above 0; {forms}",
        ),
        (
            "standard:1.5,gentle:50",
            f"--rule-set 'standard:1.5,gentle:50': weight '1.5' of 'standard' must be a whole number above 0; {forms}",
        ),
        (
            "standard:-2,gentle:1",
            f"--rule-set 'standard:-2,gentle:1': weight '-2' of 'standard' must be a whole number above 0; {forms}",
        ),
        ("standard,gentle:1", f"--rule-set 'standard,gentle:1': 'standard' needs NAME:WEIGHT; {forms}"),
        ("standard:1,standard:2", "--rule-set 'standard:1,standard:2': rule set 'standard' is named twice"),
        ("nope:50,gentle:50", "unknown rule set 'nope'; known: final-notice, gentle, standard"),
    ):
        r = cli("import", "charges", str(tmp_path / "c.csv"), "--rule-set", spec)
        assert (r.code, r.stderr) == (2, f"error: {message}\n"), spec
    assert json.loads(cli.ok("list", "--status", "all", "--format", "json").stdout) == []


@pytest.mark.parametrize("columns", [80, 120])
def test_report_table_never_cuts_amounts_or_rates(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, columns: int
) -> None:
    cfg = scenario(cli, tmp_path)
    terminal(cli, monkeypatch, columns)
    r = cli.ok("--config", str(cfg), "report", "--since", "2026-03-01", "--by", "rule-set,step", now=REPORT_NOW)
    lines = r.stdout.splitlines()
    assert "…" not in r.stdout
    assert max(len(x) for x in lines) <= columns, r.stdout
    header = next(x for x in lines if "Sets" in x and "Collected" in x)
    for head in ("Rule set", "Sets", "Paid full", "Collected", "Rate"):
        assert head in header
    shown = {
        80: "Rule set ┃ Step         ┃ Sets ┃ Paid full ┃ Partly ┃ Collected ┃  Rate ┃  Cost",
        120: "Rule set ┃ Step         ┃ Sets ┃ Attempted ┃ Delivered ┃ Failed ┃ Paid full ┃ Partly ┃ Collected ┃"
        "  Rate ┃  Cost",
    }
    assert header == shown[columns]
    total = json.loads(
        cli.ok("--config", str(cfg), "report", "--since", "2026-03-01", "--format", "json", now=REPORT_NOW).stdout
    )["total"]
    assert plain_total(total["collected_cents"]) in r.stdout
    hidden = {80: "$ per $, Opt-outs, Median days, Failed, Delivered, Attempted", 120: "$ per $, Opt-outs, Median days"}
    assert r.stderr == f"({hidden[columns]} hidden at {columns} columns; --format csv or a wider terminal shows them)\n"


def plain_total(cents: int) -> str:
    return f"${cents // 100:,}.{cents % 100:02d}"
