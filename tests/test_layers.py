"""Who may import whom: the library that ships to the Pi never imports the simulators,
the value types import nothing of the layers that use them, and the stores do not
import the exchanges.  A later import that breaks a layer fails here, not on a Pi."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports(path: Path) -> set[str]:
    """The modules `path` imports at run time (not those under `if TYPE_CHECKING:`)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", modules("includes"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_never_imports_the_simulators(path):
    assert not {m for m in imports(path) if m == "simulators" or m.startswith("simulators.")}


def test_the_value_types_import_only_errors_and_money():
    assert {m for m in imports(ROOT / "includes" / "model.py") if m.startswith("includes")} <= {
        "includes.errors", "includes.money"}


@pytest.mark.parametrize("path", modules("includes/storage"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_stores_do_not_import_the_exchanges(path):
    assert not {m for m in imports(path) if m.startswith("includes.platforms")}


def test_the_check_sees_imports_in_functions_and_skips_type_checking_ones(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import simulators.http\n"
                      "def f():\n    from simulators.kraken import KrakenSimulator\n")
    assert imports(source) == {"typing", "simulators.kraken"}
