"""Rule sets in the database: sync a directory (new versions for changed files), list, show."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from outreach_cli.domain.context import Context
from outreach_cli.domain.errors import InvalidInput
from outreach_cli.domain.rulesets import ValidationReport, load_dir
from outreach_cli.domain.statuses import OPEN
from outreach_cli.store.events import add_events, event_row
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import invoice_set_t, rule_set_t, rule_set_version_t
from outreach_cli.store.reevaluate import refresh_sets


@dataclass
class SyncResult:
    name: str
    outcome: str  # created | updated | unchanged
    version: int


def sync_reports(conn: Connection, reports: list[ValidationReport], ctx: Context) -> list[SyncResult]:
    """All-or-nothing: any invalid file stops the sync before anything is written."""
    bad = [p for r in reports for p in r.errors]
    if bad:
        raise InvalidInput(f"{len(bad)} rule-set problem(s); nothing was synced", details=[str(p) for p in bad])
    results: list[SyncResult] = []
    changed_ids: list[int] = []
    for r in reports:
        rs = r.rule_set
        assert rs is not None
        text = Path(r.source).read_text(encoding="utf-8") if Path(r.source).is_file() else rs.to_json()
        row = conn.execute(select(rule_set_t).where(rule_set_t.c.name == rs.name)).first()
        h = rs.content_hash()
        if row is None:
            rid = conn.execute(
                insert(rule_set_t).returning(rule_set_t.c.id),
                {
                    "name": rs.name,
                    "title": rs.title,
                    "description": rs.description,
                    "current_version": 1,
                    "synced_at": ctx.now,
                },
            ).scalar_one()
            conn.execute(
                insert(rule_set_version_t),
                {
                    "rule_set_id": rid,
                    "version": 1,
                    "content_hash": h,
                    "source_text": text,
                    "parsed_json": rs.to_json(),
                    "created_at": ctx.now,
                },
            )
            results.append(SyncResult(rs.name, "created", 1))
            continue
        current = conn.execute(
            select(rule_set_version_t.c.content_hash).where(
                rule_set_version_t.c.rule_set_id == row.id, rule_set_version_t.c.version == row.current_version
            )
        ).scalar_one()
        if current == h:
            results.append(SyncResult(rs.name, "unchanged", row.current_version))
            continue
        version = row.current_version + 1
        conn.execute(
            insert(rule_set_version_t),
            {
                "rule_set_id": row.id,
                "version": version,
                "content_hash": h,
                "source_text": text,
                "parsed_json": rs.to_json(),
                "created_at": ctx.now,
            },
        )
        conn.execute(
            update(rule_set_t)
            .where(rule_set_t.c.id == row.id)
            .values(current_version=version, title=rs.title, description=rs.description, synced_at=ctx.now)
        )
        changed_ids.append(row.id)
        results.append(SyncResult(rs.name, "updated", version))
    if changed_ids:
        # Pending steps of sets on a changed rule set follow the new version at once.
        sets = list(
            conn.execute(
                select(invoice_set_t.c.id, invoice_set_t.c.patient_pk, invoice_set_t.c.rule_set_id).where(
                    invoice_set_t.c.rule_set_id.in_(changed_ids),
                    invoice_set_t.c.status.in_([s.value for s in OPEN]),
                )
            )
        )
        rule_sets = RuleSets(conn)
        add_events(
            conn,
            [
                event_row(
                    ctx,
                    "rule_set_changed",
                    set_id=sid,
                    patient_pk=ppk,
                    detail={"rule_set": rule_sets.name(rid), "version": rule_sets.version(rid)},
                )
                for sid, ppk, rid in sets
            ],
        )
        refresh_sets(conn, [s[0] for s in sets], ctx, rule_sets)
    return results


def sync_dir(store: Any, directory: Path, ctx: Context) -> list[SyncResult]:
    if not directory.is_dir():
        raise InvalidInput(f"rule-set directory {directory} does not exist")
    reports = load_dir(directory)
    if not reports:
        raise InvalidInput(f"no rule sets (*.toml) in {directory}")
    with store.write() as conn:
        return sync_reports(conn, reports, ctx)


@dataclass
class RuleSetInfo:
    name: str
    title: str
    description: str
    version: int
    open_sets: int
    steps: int
    expiry_day: int
    source_text: str


def list_rule_sets(store: Any) -> list[RuleSetInfo]:
    with store.read() as conn:
        rule_sets = RuleSets(conn)
        counts = dict(
            conn.execute(
                select(invoice_set_t.c.rule_set_id, func.count())
                .where(invoice_set_t.c.status.in_([s.value for s in OPEN]))
                .group_by(invoice_set_t.c.rule_set_id)
            ).all()
        )
        texts = dict(
            conn.execute(
                select(rule_set_t.c.id, rule_set_version_t.c.source_text).join(
                    rule_set_version_t,
                    (rule_set_version_t.c.rule_set_id == rule_set_t.c.id)
                    & (rule_set_version_t.c.version == rule_set_t.c.current_version),
                )
            ).all()
        )
    out = []
    for rid, (name, version, rs) in sorted(rule_sets.by_id.items(), key=lambda kv: kv[1][0]):
        out.append(
            RuleSetInfo(
                name,
                rs.title,
                rs.description,
                version,
                counts.get(rid, 0),
                len(rs.steps),
                rs.expiry_day,
                texts.get(rid, ""),
            )
        )
    return out
