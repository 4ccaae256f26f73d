"""Admin commands (SPEC sections 2 and 7): list, act, metrics, show, audit, collections export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, Terminal
from tests.helpers import PATIENT_HEADER, patient, write_csv
from tests.integration.test_import import dump


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
    assert r[0]["payment_url"].startswith("https://pay.example.com/p/")
    assert str(r[0]["id"]) not in r[0]["payment_url"].rsplit("/", 1)[1] or len(r[0]["payment_url"]) > 40
    arr = json.loads(cli.ok("list", "--format", "json").stdout)
    assert [x["id"] for x in arr] == [x["id"] for x in r]
    tsv = cli.ok("list").stdout.splitlines()  # piped: TSV with header
    assert tsv[0].split("\t")[:3] == ["id", "status", "amount_outstanding"] and len(tsv) == 4
    csvout = cli.ok("list", "--format", "csv").stdout.splitlines()
    assert csvout[0].startswith("id,status,")
    assert cli.ok("list", "--format", "ids").stdout.split() == [str(x["id"]) for x in r]
    assert cli.ok("list", "--format", "json", "--status", "paid").stdout.strip() == "[]"


def _pipe(cli: Cli, fmt: str, action_args: list[str], input_rows: str) -> Any:
    return cli("act", *action_args, "-", input=input_rows)


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
    assert "pause: 3 changed, 0 unchanged, 0 ineligible" in actor.stderr
    assert set(statuses(cli).values()) == {"paused"}


def test_stdin_forms(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 5)
    text = 'id\tstatus\n# a comment\n\n1\tactive\n{"id": 2, "status": "active"}\n3,active\n3\n"4",x\n'
    r = cli("act", "pause", "-", "--format", "jsonl", input=text)
    assert r.code == 0, r
    assert [x["id"] for x in rows(r)] == [1, 2, 3, 4]
    r = cli("act", "pause", "-", input="1\nfoo\n")
    assert r.code == 2 and "line 2: not an invoice set ID: 'foo'" in r.stderr


def test_thousand_write_offs_with_one_unknown(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 999)
    ids = "\n".join(str(i) for i in range(1, 1000)) + "\n123456\n"
    before = dump(cli.db)
    r = cli("act", "write-off", "-", "--yes", input=ids)
    assert r.code == 3, r
    assert "123456" in r.stdout and "not-found" in r.stdout and "123456" in r.stderr
    assert dump(cli.db) == before

    r = cli(
        "act", "write-off", "-", "--yes", "--skip-ineligible", "--reason", "uncollectable", "--actor", "ann", input=ids
    )
    assert r.code == 3, r.stderr
    assert "999 changed" in r.stderr
    audit = rows(cli.ok("audit", "--actor", "ann", "--format", "jsonl"))
    assert len(audit) == 999 and all(a["action"] == "write-off" and a["reason"] == "uncollectable" for a in audit)
    assert set(statuses(cli).values()) == {"written-off"}
    data = json.loads(cli.ok("show", "7", "--format", "json").stdout)
    assert data["amount_outstanding_cents"] == 0 and data["charges"][0]["status"] == "written-off"

    r = cli("act", "write-off", "-", "--yes", input="\n".join(str(i) for i in range(1, 1000)))
    assert r.code == 0 and "0 changed, 999 unchanged" in r.stderr


def test_dry_run_equals_real_run(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 5)
    cli.ok("act", "cancel", "5", "--yes")
    before = dump(cli.db)
    dry = cli("act", "pause", "1", "2", "3", "4", "5", "--dry-run", "--skip-ineligible", "--format", "jsonl")
    assert dump(cli.db) == before
    real = cli("act", "pause", "1", "2", "3", "4", "5", "--skip-ineligible", "--format", "jsonl")
    assert dry.stdout == real.stdout and dry.code == real.code == 3
    assert dry.stderr.replace(" (dry run)", "").replace("would change", "changed") == real.stderr
    assert "pause (dry run): 4 would change, 0 unchanged, 1 ineligible" in dry.stderr
    # And for an all-or-nothing refusal:
    dry = cli("act", "resume", "1", "5", "--dry-run")
    real = cli("act", "resume", "1", "5")
    assert dry.stdout == real.stdout and dry.code == real.code == 3


def test_confirmation_needed_when_not_interactive(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 2)
    before = dump(cli.db)
    r = cli("act", "cancel", "1")
    assert r.code == 5 and "--yes" in r.stderr
    assert dump(cli.db) == before
    r = cli("act", "collections", "--status", "active")
    assert r.code == 5
    cli.ok("act", "pause", "1")  # pause needs no confirmation


def test_interactive_prompt(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 2)
    cli.terminal = Terminal(stdin=True, stderr=True)
    r = cli("act", "cancel", "1", input="n\n")
    assert r.code == 5 and "Proceed?" in r.stderr
    r = cli("act", "cancel", "1", input="y\n")
    assert r.code == 0 and statuses(cli)[1] == "cancelled"


def test_no_selector_is_usage_error(cli: Cli) -> None:
    r = cli("act", "pause")
    assert r.code == 2 and "no implicit 'all'" in r.stderr


def test_pause_resume_shifts_schedule(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Weekends allowed so that every step lands at 10:00 local and a 5-day shift stays exact.
    monkeypatch.setenv("OUTREACH_SENDING_WEEKENDS", "true")
    seed(cli, tmp_path, 1)
    before = json.loads(cli.ok("show", "1", "--format", "json", now="2026-03-03T15:00:00Z").stdout)
    cli.ok("act", "pause", "1", now="2026-03-03T15:00:00Z")
    r = cli.ok("act", "resume", "1", now="2026-03-08T15:00:00Z")
    assert "resume: 1 changed" in r.stderr
    after = json.loads(cli.ok("show", "1", "--format", "json", now="2026-03-08T15:00:00Z").stdout)
    from datetime import datetime, timedelta

    def due(d: dict[str, Any]) -> dict[tuple[str, str], datetime]:
        return {
            (s["step"], s["method"]): datetime.fromisoformat(s["due_at"].replace("Z", "+00:00"))
            for s in d["schedule"]
            if s["status"] == "pending" and s["day"] > 0
        }

    b, a = due(before), due(after)
    assert b and set(b) == set(a)
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
    assert "1 unchanged" in r.stderr
    r = cli("act", "change-ruleset", "1", "--yes")
    assert r.code == 2 and "--rule-set" in r.stderr
    r = cli("act", "change-ruleset", "1", "--rule-set", "nope", "--yes")
    assert r.code == 2 and "unknown rule set" in r.stderr
    r = cli.ok("act", "change-ruleset", "--from-rule-set", "standard", "--rule-set", "final-notice", "--yes")
    assert "1 changed" in r.stderr


def test_collections_and_export(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 3)
    cli.ok("act", "collections", "1", "3", "--yes")
    r = cli.ok("collections", "export")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("id,patient_id") and len(lines) == 3
    assert lines[1].startswith("1,P00000,") and lines[1].endswith(",C00000,2026-03-02,,100.00,100.00,collections")
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
    assert "Paused" in table and "$2,001.00" in table


def test_show_not_found_and_text(cli: Cli, tmp_path: Path) -> None:
    seed(cli, tmp_path, 1)
    r = cli("show", "99")
    assert r.code == 3 and "no invoice set with ID 99" in r.stderr
    txt = cli.ok("show", "1").stdout
    assert "Invoice set 1" in txt and "Schedule" in txt and "Timeline" in txt
    data = json.loads(cli.ok("show", "1", "--format", "json").stdout)
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
