"""Admin commands (SPEC sections 2 and 7): list, act, metrics, show, audit, collections export."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, Terminal
from tests.helpers import PATIENT_HEADER, dump, patient, write_csv


def seed(cli: Cli, tmp_path: Path, n: int, *, amount: str = "100.00", **pkw: Any) -> None:
    write_csv(tmp_path / "p.csv", [patient(f"P{i:05d}", first_name=f"Pat{i}", **pkw) for i in range(n)], PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    write_csv(
        tmp_path / "c.csv", [{"charge_id": f"C{i:05d}", "patient_id": f"P{i:05d}", "amount": amount} for i in range(n)]
    )
    cli.ok("import", "charges", str(tmp_path / "c.csv"))


def rows(r: Any) -> list[dict[str, Any]]:
    return [json.loads(x) for x in r.stdout.splitlines() if x.strip()]


def statuses(cli: Cli) -> dict[int, str]:
    return {r["id"]: r["status"] for r in rows(cli.ok("list", "--status", "all", "--format", "jsonl"))}


def test_list_json_keys_and_formats(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 3)
    r = rows(cli.ok("list", "--format", "jsonl"))
    assert set(r[0]) == {
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
    }
    assert r[0]["created_at"].endswith("Z") and isinstance(r[0]["next_methods"], list)
    # Each link carries its own random 32-character token (not the set's ID, which would be guessable).
    tokens = [x["payment_url"].removeprefix("https://pay.example.com/p/") for x in r]
    assert [re.fullmatch(r"[A-Za-z0-9_-]{32}", t) is not None for t in tokens] == [True] * 3
    assert len(set(tokens)) == 3
    arr = json.loads(cli.ok("list", "--format", "json").stdout)
    assert [x["id"] for x in arr] == [x["id"] for x in r]
    columns = list(r[0])  # the JSON keys, in the order of the TSV and CSV columns

    def line(x: dict[str, Any], sep: str, methods: str) -> str:
        return sep.join(
            [
                str(x["id"]),
                "active",
                "100.00",
                "10000",
                x["patient_id"],
                x["patient_name"],
                "+16175550100",
                x["email"],
                "standard",
                "2026-03-02T14:00:00Z",
                "2026-03-02T14:00:00Z",
                "Statement",
                methods,
                "",
                x["payment_url"],
                "false",
            ]
        )

    tsv = cli.ok("list").stdout.splitlines()  # piped: TSV with header
    assert tsv == ["\t".join(columns)] + [line(x, "\t", "sms,email") for x in r]
    csvout = cli.ok("list", "--format", "csv").stdout.splitlines()
    assert csvout == [",".join(columns)] + [line(x, ",", '"sms,email"') for x in r]
    assert cli.ok("list", "--format", "ids").stdout.split() == [str(x["id"]) for x in r]
    assert cli.ok("list", "--format", "json", "--status", "paid").stdout.strip() == "[]"


@pytest.mark.parametrize("fmt", ["ids", "jsonl", "tsv", "csv"])
def test_list_pipes_into_act(cli: Cli, tmp_path: Path, fmt: str) -> None:
    seed(cli, tmp_path, 6)
    cli.ok("act", "pause", "2", "4")  # some sets paused so the selection is a strict subset
    listed = cli.ok("list", "--status", "active", "--format", fmt).stdout
    r = cli("act", "cancel", "--yes", "-", input=listed)
    assert r.code == 0, r
    st = statuses(cli)
    assert st == {1: "cancelled", 2: "paused", 3: "cancelled", 4: "paused", 5: "cancelled", 6: "cancelled"}


def test_pipeline_as_real_processes(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 4)
    cli.ok("act", "pause", "1")
    env = dict(os.environ, OUTREACH_DATABASE=cli.db, OUTREACH_NOW="2026-03-03T14:00:00Z")
    exe = [sys.executable, "-m", "outreach_cli"]
    lister = subprocess.Popen([*exe, "list", "--status", "active", "--format", "ids"], stdout=subprocess.PIPE, env=env)
    actor = subprocess.run(
        [*exe, "act", "pause", "-"], stdin=lister.stdout, capture_output=True, text=True, env=env, timeout=120
    )
    lister.wait(timeout=60)
    assert actor.returncode == 0, actor.stderr
    assert actor.stderr == "pause: 3 changed, 0 unchanged, 0 ineligible, 0 not found\n"
    assert actor.stdout.splitlines()[1:] == [f"{i}\tpause\tchanged\tactive\tpaused\t" for i in (2, 3, 4)]
    assert set(statuses(cli).values()) == {"paused"}


def test_stdin_forms(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 5)
    text = 'id\tstatus\n# a comment\n\n1\tactive\n{"id": 2, "status": "active"}\n3,active\n3\n"4",x\n'
    r = cli("act", "pause", "-", "--format", "jsonl", input=text)
    assert r.code == 0, r
    assert [x["id"] for x in rows(r)] == [1, 2, 3, 4]
    r = cli("act", "pause", "-", input="1\nfoo\n")
    assert (r.code, r.stderr) == (
        2,
        "error: <stdin>: 1 unreadable line(s); nothing was changed\n"
        "  line 2: not an invoice set ID: 'foo' (IDs are whole numbers)\n",
    )


def test_thousand_write_offs_with_one_unknown(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 999)
    ids = "\n".join(str(i) for i in range(1, 1000)) + "\n123456\n"
    before = dump(cli.db)
    r = cli("act", "write-off", "-", "--yes", input=ids)
    assert r.code == 3, r
    assert r.stdout.splitlines()[1:] == ["123456\twrite-off\tnot-found\t\t\tno invoice set with this ID"]
    assert r.stderr == (
        "write-off: nothing changed: 1 set is ineligible or not found (123456); 999 would change, 0 unchanged,"
        " 0 ineligible, 1 not found; use --skip-ineligible to apply the rest\n"
    )
    assert dump(cli.db) == before

    r = cli(
        "act", "write-off", "-", "--yes", "--skip-ineligible", "--reason", "uncollectable", "--actor", "ann", input=ids
    )
    assert r.code == 3, r.stderr
    assert r.stderr == "write-off: 999 changed, 0 unchanged, 0 ineligible, 1 not found\n"
    audit = rows(cli.ok("audit", "--actor", "ann", "--format", "jsonl"))
    assert len(audit) == 999 and all(a["action"] == "write-off" and a["reason"] == "uncollectable" for a in audit)
    assert set(statuses(cli).values()) == {"written-off"}
    data = json.loads(cli.ok("show", "7", "--format", "json").stdout)
    assert data["amount_outstanding_cents"] == 0 and data["charges"][0]["status"] == "written-off"

    r = cli("act", "write-off", "-", "--yes", input="\n".join(str(i) for i in range(1, 1000)))
    assert (r.code, r.stderr) == (0, "write-off: 0 changed, 999 unchanged, 0 ineligible, 0 not found\n")


def test_dry_run_equals_real_run(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 5)
    cli.ok("act", "cancel", "5", "--yes")
    before = dump(cli.db)
    dry = cli("act", "pause", "1", "2", "3", "4", "5", "--dry-run", "--skip-ineligible", "--format", "jsonl")
    assert dump(cli.db) == before
    real = cli("act", "pause", "1", "2", "3", "4", "5", "--skip-ineligible", "--format", "jsonl")
    assert dry.stdout == real.stdout and dry.code == real.code == 3
    assert dry.stderr.replace(" (dry run)", "").replace("would change", "changed") == real.stderr
    assert dry.stderr == "pause (dry run): 4 would change, 0 unchanged, 1 ineligible, 0 not found\n"
    # And for an all-or-nothing refusal:
    dry = cli("act", "resume", "1", "5", "--dry-run")
    real = cli("act", "resume", "1", "5")
    assert dry.stdout == real.stdout and dry.code == real.code == 3
    assert real.stderr == (
        "resume: nothing changed: 1 set is ineligible or not found (5); 1 would change, 0 unchanged, 1 ineligible,"
        " 0 not found; use --skip-ineligible to apply the rest\n"
    )
    assert dry.stderr == real.stderr.replace("resume:", "resume (dry run):")


def test_confirmation_needed_when_not_interactive(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 2)
    before = dump(cli.db)
    r = cli("act", "cancel", "1")
    assert (r.code, r.stderr) == (5, "aborted: cancel would change 1 set: add --yes to confirm (nothing was changed)\n")
    assert dump(cli.db) == before
    r = cli("act", "collections", "--status", "active")
    assert (r.code, r.stderr) == (
        5,
        "aborted: collections would change 2 sets: add --yes to confirm (nothing was changed)\n",
    )
    cli.ok("act", "pause", "1")  # pause needs no confirmation


def test_interactive_prompt(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 2)
    cli.terminal = Terminal(stdin=True, stderr=True)
    prompt = "cancel: 1 invoice set, $100.00 outstanding. Proceed? [y/N] "
    r = cli("act", "cancel", "1", input="n\n")
    assert (r.code, r.stderr) == (5, prompt + "aborted: nothing was changed\n")
    r = cli("act", "cancel", "1", input="y\n")
    assert (r.code, r.stderr) == (0, prompt + "cancel: 1 changed, 0 unchanged, 0 ineligible, 0 not found\n")
    assert statuses(cli)[1] == "cancelled"


def test_no_selector_is_usage_error(cli: Cli) -> None:
    r = cli("act", "pause")
    assert (r.code, r.stderr) == (
        2,
        "error: select sets: give IDs, - to read IDs from stdin, or filters such as --status (there is no implicit 'all')\n",
    )


def test_pause_resume_shifts_schedule(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Weekends allowed so that every step lands at 10:00 local and a 5-day shift stays exact.
    monkeypatch.setenv("OUTREACH_SENDING_WEEKENDS", "true")
    seed(cli, tmp_path, 1)
    before = json.loads(cli.ok("show", "1", "--format", "json", now="2026-03-03T15:00:00Z").stdout)
    cli.ok("act", "pause", "1", now="2026-03-03T15:00:00Z")
    r = cli.ok("act", "resume", "1", now="2026-03-08T15:00:00Z")
    assert r.stderr == "resume: 1 changed, 0 unchanged, 0 ineligible, 0 not found\n"
    after = json.loads(cli.ok("show", "1", "--format", "json", now="2026-03-08T15:00:00Z").stdout)
    from datetime import datetime, timedelta

    def due(d: dict[str, Any]) -> dict[tuple[str, str], datetime]:
        return {
            (s["step"], s["method"]): datetime.fromisoformat(s["due_at"].replace("Z", "+00:00"))
            for s in d["schedule"]
            if s["status"] == "pending" and s["day"] > 0
        }

    b, a = due(before), due(after)
    assert len(b) == 7 and set(b) == set(a)  # days 7, 14, 21, 30, 45 (sms and email), 52
    for k in b:
        assert a[k] - b[k] == timedelta(days=5), k
    assert datetime.fromisoformat(after["anchor_at"].replace("Z", "+00:00")) - datetime.fromisoformat(
        before["anchor_at"].replace("Z", "+00:00")
    ) == timedelta(days=5)


def test_change_ruleset(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 3)
    cli.ok("act", "pause", "2")
    r = cli.ok(
        "act",
        "change-ruleset",
        "1",
        "2",
        "--rule-set",
        "gentle",
        "--yes",
        "--format",
        "jsonl",
        now="2026-03-05T15:00:00Z",
    )
    out = rows(r)
    assert [(x["from_status"], x["to_status"]) for x in out] == [("active", "active"), ("paused", "paused")]
    data = json.loads(cli.ok("show", "1", "--format", "json").stdout)
    assert data["rule_set"] == "gentle" and data["anchor_at"] == "2026-03-05T15:00:00Z"
    r = cli.ok("act", "change-ruleset", "1", "--rule-set", "gentle", "--yes")
    assert r.stderr == "change-ruleset: 0 changed, 1 unchanged, 0 ineligible, 0 not found\n"
    assert r.stdout.splitlines()[1:] == ["1\tchange-ruleset\tunchanged\tactive\tactive\talready on that rule set"]
    r = cli("act", "change-ruleset", "1", "--yes")
    assert (r.code, r.stderr) == (2, "error: change-ruleset needs --rule-set NAME (the new rule set)\n")
    r = cli("act", "change-ruleset", "1", "--rule-set", "nope", "--yes")
    assert (r.code, r.stderr) == (2, "error: unknown rule set 'nope'; known: final-notice, gentle, standard\n")
    r = cli.ok("act", "change-ruleset", "--from-rule-set", "standard", "--rule-set", "final-notice", "--yes")
    assert r.stderr == "change-ruleset: 1 changed, 0 unchanged, 0 ineligible, 0 not found\n"
    assert r.stdout.splitlines()[1:] == ["3\tchange-ruleset\tchanged\tactive\tactive\t"]  # set 3 alone was left


def test_collections_and_export(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 3)
    cli.ok("act", "collections", "1", "3", "--yes")
    r = cli.ok("collections", "export")
    lines = r.stdout.splitlines()
    assert lines == [
        "id,patient_id,first_name,last_name,phone,email,address_line1,address_line2,city,state,postal_code,country,"
        "amount_outstanding,amount_outstanding_cents,escalated_at,payment_after_escalation,paid_after_escalation,"
        "charge_id,service_date,description,charge_amount,charge_outstanding,charge_status",
        *(
            f"{i},P0000{i - 1},Pat{i - 1},Doe,+16175550100,p0000{i - 1}@example.com,1 Main St,,Boston,MA,02118,US,"
            f"100.00,10000,2026-03-02T14:00:00Z,no,,C0000{i - 1},2026-03-02,,100.00,100.00,collections"
            for i in (1, 3)
        ),
    ]
    assert r.stderr == "collections export: 2 sets (now marked exported)\n"
    assert len(cli.ok("collections", "export").stdout.splitlines()) == 1  # already exported
    assert len(cli.ok("collections", "export", "--all").stdout.splitlines()) == 3
    out = tmp_path / "agency.csv"
    cli.ok("act", "collections", "2", "--yes")
    cli.ok("collections", "export", "--out", str(out))
    assert len(out.read_text().splitlines()) == 2


def test_metrics(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 4, amount="$1,000.50")
    cli.ok("act", "pause", "1", "2")
    m = json.loads(cli.ok("metrics", "--format", "json").stdout)
    assert set(m) == {"failed", "expired", "paused", "will-fail"}
    assert m["paused"] == {"count": 2, "amount_outstanding_cents": 200100, "amount_outstanding": "2001.00"}
    m = json.loads(cli.ok("metrics", "--all", "--format", "json", now="2026-04-20T12:00:00Z").stdout)
    assert m["total"]["count"] == 4 and m["active"]["count"] == 2
    aging = {b["bucket"]: b["count"] for b in m["aging"]}
    assert aging == {"0-30": 0, "31-60": 4, "61-90": 0, "91-120": 0, "120+": 0}
    table = cli.ok("metrics").stdout
    assert table.splitlines() == [
        "Status    ┃ Sets ┃ Outstanding",
        "━━━━━━━━━━╇━━━━━━╇━━━━━━━━━━━━",
        "Failed    │    0 │       $0.00",
        "Expired   │    0 │       $0.00",
        "Paused    │    2 │   $2,001.00",
        "Will Fail │    0 │       $0.00",
    ]


def test_show_not_found_and_text(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 1)
    r = cli("show", "99")
    assert (r.code, r.stderr) == (3, "error: no invoice set with ID 99\n")
    txt = cli.ok("show", "1").stdout
    data = json.loads(cli.ok("show", "1", "--format", "json").stdout)
    assert [x.rstrip() for x in txt.splitlines()][:12] == [
        "Invoice set 1  Active  $100.00 outstanding  rule set standard",
        f"  created Mar 2 14:00 (now)   payment link {data['payment_url']}",
        "",
        "Patient Pat0 Doe (P00000)",
        "  phone +16175550100 (mobile)   email p00000@example.com   time zone America/New_York",
        "  address 1 Main St, Boston, MA, 02118",
        "  sms         usable",
        "  call        usable",
        "  email       usable",
        "  mail        usable",
        "  charge_card not usable  no card on file",
        "",
    ]
    sections = [x.strip() for x in txt.splitlines() if x and x[0].isalpha() and "┃" not in x and "│" not in x]
    assert sections == [
        "Invoice set 1  Active  $100.00 outstanding  rule set standard",
        "Patient Pat0 Doe (P00000)",
        "Charges",
        "Schedule",
        "Timeline",
    ]
    rows_of = [x.rstrip() for x in txt.splitlines() if "│" in x]
    assert rows_of[0] == "C00000 │ Mar 2 14:00 │ $100.00 │     $100.00 │ outstanding │"
    assert len(rows_of) == 1 + 9 + 2  # one charge, nine scheduled sends, two events
    assert rows_of[-2:] == [
        "Mar 2 14:00 (now) │ created      │ root  │ - -> Active │ rule set standard",
        "Mar 2 14:00 (now) │ charge_added │ root  │             │ amount $100.00; charge id C00000",
    ]
    assert set(data["patient"]["usable_methods"]) == {"sms", "email", "call", "mail", "charge_card"}
    assert data["patient"]["usable_methods"]["charge_card"] == {"usable": False, "reason": "no card on file"}
    assert [e["kind"] for e in data["timeline"]][:2] == ["created", "charge_added"]


def test_event_log_is_append_only(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 1)
    from sqlalchemy import text

    from outreach_cli.store.database import Store

    s = Store(cli.db)
    for stmt in ("UPDATE event SET actor = 'x'", "DELETE FROM event"):
        with pytest.raises(Exception, match="append-only"):
            with s.engine.begin() as conn:
                conn.execute(text(stmt))
    s.engine.dispose()
