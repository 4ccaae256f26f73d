"""The suite's own layout: no test module imports another (shared code lives in conftest.py,
helpers.py, sending.py, fakes/, reliability/harness.py and integration/plans.py), so each test
module can run, move or be deleted on its own."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imported_test_modules(source: str) -> list[str]:
    """The `test_*` modules that `source` imports, by dotted name."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        found += [n for n in names if n.rsplit(".", 1)[-1].startswith("test_")]
    return found


def test_no_test_module_imports_another() -> None:
    offenders = {
        str(path.relative_to(TESTS)): names
        for path in sorted(TESTS.rglob("*.py"))
        if (names := imported_test_modules(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_the_check_sees_each_form_of_import() -> None:
    assert imported_test_modules("from tests.integration.test_import import dump") == ["tests.integration.test_import"]
    assert imported_test_modules("from tests.integration import test_engine") == ["tests.integration.test_engine"]
    assert imported_test_modules("import tests.cli.test_output as o") == ["tests.cli.test_output"]
    assert imported_test_modules("from .test_report import AB") == [".test_report"]
    assert imported_test_modules("def f():\n    from tests.cli.test_output import terminal\n") == [
        "tests.cli.test_output"
    ]
    assert imported_test_modules("from tests.helpers import dump\nimport tests.sending") == []
