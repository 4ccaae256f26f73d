"""Rule sets in the database: sync a directory (new versions for changed files), list, show."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, func, insert, select, update

from outreach_cli.domain.context import Context
from outreach_cli.domain.errors import InvalidInput
from outreach_cli.domain.rulesets import RuleSet, ValidationReport, load_dir
from outreach_cli.domain.statuses import OPEN
from outreach_cli.store.events import add_events, event_row
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import invoice_set_t, rule_set_t, rule_set_version_t
from outreach_cli.store.reevaluate import refresh_sets

if TYPE_CHECKING:
    from outreach_cli.store.database import Store


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
        if row is None:
            results.append(_create_rule_set(conn, rs, text, ctx))
            continue
        result = _update_rule_set(conn, row, rs, text, ctx)
        if result.outcome == "updated":
            changed_ids.append(row.id)
        results.append(result)
    if changed_ids:
        _follow_new_versions(conn, changed_ids, ctx)
    return results


def _version_row(rule_set_id: int, version: int, rs: RuleSet, text: str, ctx: Context) -> dict[str, Any]:
    return {
        "rule_set_id": rule_set_id,
        "version": version,
        "content_hash": rs.content_hash(),
        "source_text": text,
        "parsed_json": rs.to_json(),
        "created_at": ctx.now,
    }


def _create_rule_set(conn: Connection, rs: RuleSet, text: str, ctx: Context) -> SyncResult:
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
    conn.execute(insert(rule_set_version_t), _version_row(rid, 1, rs, text, ctx))
    return SyncResult(rs.name, "created", 1)


def _update_rule_set(conn: Connection, row: Any, rs: RuleSet, text: str, ctx: Context) -> SyncResult:
    """A new version when the content changed; "unchanged" otherwise."""
    current = conn.execute(
        select(rule_set_version_t.c.content_hash).where(
            rule_set_version_t.c.rule_set_id == row.id, rule_set_version_t.c.version == row.current_version
        )
    ).scalar_one()
    if current == rs.content_hash():
        return SyncResult(rs.name, "unchanged", row.current_version)
    version = row.current_version + 1
    conn.execute(insert(rule_set_version_t), _version_row(row.id, version, rs, text, ctx))
    conn.execute(
        update(rule_set_t)
        .where(rule_set_t.c.id == row.id)
        .values(current_version=version, title=rs.title, description=rs.description, synced_at=ctx.now)
    )
    return SyncResult(rs.name, "updated", version)


def _follow_new_versions(conn: Connection, changed_ids: list[int], ctx: Context) -> None:
    """Pending steps of sets on a changed rule set follow the new version at once."""
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
                set_id=set_id,
                patient_pk=ppk,
                detail={"rule_set": rule_sets.name(rid), "version": rule_sets.version(rid)},
            )
            for set_id, ppk, rid in sets
        ],
    )
    refresh_sets(conn, [s[0] for s in sets], ctx, rule_sets)


def sync_dir(store: Store, directory: Path, ctx: Context) -> list[SyncResult]:
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


def list_rule_sets(store: Store) -> list[RuleSetInfo]:
    with store.read() as conn:
        rule_sets = RuleSets(conn)
        counts: dict[int, int] = dict(
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
