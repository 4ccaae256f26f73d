"""The rule sets in the database, current versions parsed on first use, looked up by ID or name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, select

from outreach_cli.domain.errors import InvalidInput
from outreach_cli.store.models import (
    rule_set_t,
    rule_set_version_t,
)

if TYPE_CHECKING:
    from outreach_cli.domain.rulesets import RuleSet


class RuleSets:
    """The rule sets in the database. A version's stored JSON is parsed when first asked for
    (`get`, `by_id`): `list` needs only the names and IDs, and skips loading the rule-set code."""

    def __init__(self, conn: Connection) -> None:
        self._rows: dict[int, tuple[str, int, str]] = {}
        self._parsed: dict[int, RuleSet] = {}
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
            self._rows[rid] = (name, version, parsed)
            self.ids[name] = rid

    @property
    def by_id(self) -> dict[int, tuple[str, int, RuleSet]]:
        """ID -> (name, version, parsed rule set), every rule set parsed."""
        return {rid: (name, version, self.get(rid)) for rid, (name, version, _) in self._rows.items()}

    def names(self) -> dict[int, str]:
        """ID -> name, nothing parsed."""
        return {rid: name for rid, (name, _, _) in self._rows.items()}

    def resolve(self, name: str) -> int:
        if name not in self.ids:
            known = ", ".join(sorted(self.ids)) or "none (run `outreach init`)"
            raise InvalidInput(f"unknown rule set {name!r}; known: {known}")
        return self.ids[name]

    def get(self, rule_set_id: int) -> RuleSet:
        rs = self._parsed.get(rule_set_id)
        if rs is None:
            from outreach_cli.domain.rulesets import RuleSet

            rs = self._parsed[rule_set_id] = RuleSet.from_json(self._rows[rule_set_id][2])
        return rs

    def name(self, rule_set_id: int) -> str:
        return self._rows[rule_set_id][0]

    def version(self, rule_set_id: int) -> int:
        return self._rows[rule_set_id][1]
