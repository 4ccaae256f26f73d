"""The rule sets in the database, current versions parsed, looked up by ID or name."""

from __future__ import annotations

from sqlalchemy import Connection, select

from outreach_cli.domain.errors import InvalidInput
from outreach_cli.domain.rulesets import RuleSet
from outreach_cli.store.models import (
    rule_set_t,
    rule_set_version_t,
)


class RuleSets:
    """The rule sets in the database, current versions parsed."""

    def __init__(self, conn: Connection) -> None:
        self.by_id: dict[int, tuple[str, int, RuleSet]] = {}
        self.ids: dict[str, int] = {}
        rows = conn.execute(
            select(
                rule_set_t.c.id, rule_set_t.c.name, rule_set_t.c.current_version, rule_set_version_t.c.parsed_json
            ).join(
                rule_set_version_t,
                (rule_set_version_t.c.rule_set_id == rule_set_t.c.id)
                & (rule_set_version_t.c.version == rule_set_t.c.current_version),
            )
        ).all()
        for rid, name, version, parsed in rows:
            self.by_id[rid] = (name, version, RuleSet.from_json(parsed))
            self.ids[name] = rid

    def resolve(self, name: str) -> int:
        if name not in self.ids:
            known = ", ".join(sorted(self.ids)) or "none (run `outreach init`)"
            raise InvalidInput(f"unknown rule set {name!r}; known: {known}")
        return self.ids[name]

    def get(self, rule_set_id: int) -> RuleSet:
        return self.by_id[rule_set_id][2]

    def name(self, rule_set_id: int) -> str:
        return self.by_id[rule_set_id][0]

    def version(self, rule_set_id: int) -> int:
        return self.by_id[rule_set_id][1]
