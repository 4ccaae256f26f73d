"""The package's layers and the direction of their imports.

domain (pure) <- config <- channels <- store <- outreach <- imports <- demo <- cli

A module may import its own layer and the layers before it, never a later one. ``domain``
imports no database, terminal or provider library; no layer but ``cli`` imports typer or rich;
``cli`` uses the store's public functions, never its tables or SQLAlchemy.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "outreach_cli"
ORDER = ["domain", "config", "channels", "store", "outreach", "imports", "demo", "cli"]
RANK = {name: i for i, name in enumerate(ORDER)}
# what a layer may import besides the standard library and the pure third-party helpers
FORBIDDEN_LIBS = {
    "domain": {"sqlalchemy", "typer", "rich", "twilio", "stripe", "smtplib", "fpdf", "psycopg", "requests"},
    "config": {"sqlalchemy", "typer", "rich", "twilio", "stripe"},
    "channels": {"sqlalchemy", "typer", "rich"},
    "store": {"typer", "rich", "twilio", "stripe"},
    "outreach": {"typer", "rich"},
    "imports": {"typer", "rich"},
    "demo": {"typer", "rich"},
    "cli": {"sqlalchemy"},
}
STORE_INTERNALS = {"models", "bulk", "events", "reevaluate"}


# The config layer is two modules: the settings, and the providers' (built on first use).
CONFIG_MODULES = {"config", "provider_settings"}


def layer_of(path: Path) -> str:
    rel = path.relative_to(PKG).parts
    name = rel[0].removesuffix(".py")
    if len(rel) == 1:
        return "config" if name in CONFIG_MODULES else "top"
    return name


def imports_of(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            if node.module in ("outreach_cli", "outreach_cli.store"):
                out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def violations(path: Path) -> list[str]:
    layer = layer_of(path)
    if layer == "top":  # outreach_cli/__init__.py, __main__.py: the entry point
        return []
    found: list[str] = []
    where = path.relative_to(PKG.parent)
    for line, module in imports_of(path):
        parts = module.split(".")
        if parts[0] == "outreach_cli" and len(parts) > 1:
            target = "config" if parts[1] in CONFIG_MODULES else parts[1]
            if target in RANK and RANK[target] > RANK[layer]:
                found.append(f"{where}:{line}: {layer} imports {module} (a later layer)")
            if layer == "cli" and target == "store" and len(parts) > 2 and parts[2] in STORE_INTERNALS:
                found.append(f"{where}:{line}: cli imports store internals ({module})")
        elif parts[0] in FORBIDDEN_LIBS[layer]:
            found.append(f"{where}:{line}: {layer} imports {module}")
    return found


def all_modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_is_in_a_layer() -> None:
    stray = [str(p) for p in all_modules() if layer_of(p) not in RANK and layer_of(p) != "top"]
    assert stray == []
    flat = sorted(str(p) for p in (PKG / "core").rglob("*.py"))
    assert flat == [], "the flat core/ package is gone: put modules in their layer"


def test_imports_point_down_the_layers() -> None:
    found = [v for p in all_modules() for v in violations(p)]
    assert found == []


@pytest.mark.parametrize(
    ("layer", "source", "expected"),
    [
        ("domain", "import sqlalchemy\n", "domain imports sqlalchemy"),
        ("domain", "from outreach_cli.store.queries import list_sets\n", "a later layer"),
        ("domain", "from outreach_cli.provider_settings import SmtpSettings\n", "a later layer"),
        ("store", "from outreach_cli.outreach import engine\n", "a later layer"),
        ("store", "import rich\n", "store imports rich"),
        ("cli", "from outreach_cli.store.models import invoice_set_t\n", "store internals"),
        ("cli", "from outreach_cli.store import models\n", "store internals"),
        ("cli", "from sqlalchemy import select\n", "cli imports sqlalchemy"),
    ],
)
def test_the_layer_check_catches(
    tmp_path: Path, layer: str, source: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_pkg = tmp_path / "outreach_cli"
    (fake_pkg / layer).mkdir(parents=True)
    module = fake_pkg / layer / "probe.py"
    module.write_text(source)
    monkeypatch.setattr(__import__(__name__, fromlist=["PKG"]), "PKG", fake_pkg)
    found = violations(module)
    assert len(found) == 1 and expected in found[0], found


def test_allowed_imports_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_pkg = tmp_path / "outreach_cli"
    (fake_pkg / "outreach").mkdir(parents=True)
    module = fake_pkg / "outreach" / "probe.py"
    module.write_text(
        "import sqlalchemy\nfrom outreach_cli.store.models import send_t\nfrom outreach_cli.domain import money\n"
    )
    monkeypatch.setattr(__import__(__name__, fromlist=["PKG"]), "PKG", fake_pkg)
    assert violations(module) == []
