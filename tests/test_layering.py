"""Dependencies flow one way, package by package (docs/design.md, "Layout"):

``records`` <- ``envs`` <- ``algorithms.common`` (the run framework) <- ``algorithms.onpolicy`` (the recurrent
on-policy stack) <- the agents (``varibad``, ``rl2``, ``pearl``, ``posterior_sampling``, ``references``) <-
``algorithms.registry`` / ``builder`` / ``cli`` <- ``tools`` (commands that load trained runs) and ``train.py``.
``analysis`` reads files only (``records`` says where and what); ``launch`` drives ``train.py`` and ``analysis``.
A package that reads another's files finds them through an import (``records.locations``), never by a path it
builds itself.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
AGENTS = ("algorithms.varibad", "algorithms.rl2", "algorithms.pearl", "algorithms.posterior_sampling",
          "algorithms.references")
ABOVE_AGENTS = ("algorithms.configs", "algorithms.registry", "algorithms.builder", "algorithms.cli")
ENTRY_POINTS = ("train", "tools", "launch", "benchmarks")
#: the repository's top-level folders that another package might reach into by a path
TOP_LEVEL = frozenset(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")) - {"results"}


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def modules_of(package: str) -> list[Path]:
    target = ROOT / package.replace(".", "/")
    return sorted(target.rglob("*.py")) if target.is_dir() else [target.with_suffix(".py")]


def _is_under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.mark.parametrize(("package", "forbidden"), [
    ("records", ("envs", "algorithms", "analysis", "tools", "launch", "train", "benchmarks")),
    ("envs", ("algorithms", "analysis", "tools", "launch", "train", "benchmarks")),
    ("algorithms.common", ("algorithms.onpolicy", *AGENTS, *ABOVE_AGENTS, *ENTRY_POINTS, "analysis")),
    ("algorithms.onpolicy", (*AGENTS, *ABOVE_AGENTS, *ENTRY_POINTS, "analysis")),
    *[(agent, (*ABOVE_AGENTS, *ENTRY_POINTS, "analysis")) for agent in AGENTS],
    *[(module, (*ENTRY_POINTS, "analysis")) for module in ABOVE_AGENTS],
    ("tools", ("train", "launch", "analysis", "benchmarks")),
    ("analysis", ("algorithms", "envs", "tools", "launch", "train", "benchmarks")),
])
def test_no_module_imports_against_the_dependency_direction(package, forbidden):
    offenders = {}
    for path in modules_of(package):
        bad = sorted(m for m in imported_modules(path) if _is_under(m, forbidden))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert not offenders, f"imports against the dependency direction: {offenders}"


def test_every_module_of_algorithms_is_in_a_layer():
    """A new folder or module under algorithms/ must be placed in a layer above (and so checked)."""
    layered = ("algorithms.common", "algorithms.onpolicy", *AGENTS, *ABOVE_AGENTS, "algorithms")
    for path in (ROOT / "algorithms").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        assert module == "algorithms" or _is_under(module, layered[:-1]), f"{module} is in no layer"


def paths_into_other_folders(path: Path, own: str) -> list[str]:
    """String literals that name another top-level folder and are joined into a path (``x / "benchmarks"``,
    ``Path("algorithms/...")``, ``open("conf/...")``)."""
    found = []

    def other_folder(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            head = node.value.strip("/").split("/")[0]
            if head in TOP_LEVEL and head != own:
                return node.value
        return None

    for node in ast.walk(ast.parse(path.read_text())):
        candidates: list[ast.AST] = []
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            candidates = [node.left, node.right]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in (
                "Path", "open", "joinpath"):
            candidates = list(node.args)
        found += [hit for hit in map(other_folder, candidates) if hit]
    return found


@pytest.mark.parametrize("package", ["records", "envs", "algorithms", "tools", "analysis", "launch", "train"])
def test_file_reads_across_packages_go_through_an_import(package):
    offenders = {}
    for path in modules_of(package):
        if path == ROOT / "records" / "locations.py":  # where those places are declared, once
            continue
        hits = paths_into_other_folders(path, package)
        if hits:
            offenders[str(path.relative_to(ROOT))] = hits
    assert not offenders, f"paths into another package's folder (declare them in records.locations): {offenders}"


def test_the_checkers_see_an_upward_import_and_a_path_into_another_package(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom pathlib import Path\nfrom train import build\n"
                      "DATA = Path(__file__).parents[1] / 'algorithms' / 'references'\nCONF = Path('conf/x.yaml')\n")
    assert "train" in imported_modules(module)
    assert sorted(paths_into_other_folders(module, "analysis")) == ["algorithms", "conf/x.yaml"]
    assert paths_into_other_folders(module, "algorithms") == ["conf/x.yaml"]
