"""Dependencies flow one way: ``envs`` <- ``algorithms`` <- ``train.py``; ``analysis`` reads files only."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


@pytest.mark.parametrize(("package", "forbidden"), [
    ("algorithms", ("train",)),
    ("envs", ("train", "algorithms", "analysis")),
    ("analysis", ("train", "algorithms", "envs")),
])
def test_no_module_imports_against_the_dependency_direction(package, forbidden):
    offenders = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = sorted(m for m in imported_modules(path) if m.split(".")[0] in forbidden)
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert not offenders, f"imports against the dependency direction: {offenders}"


def test_the_checker_sees_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom train import build\n")
    assert "train" in imported_modules(module)
