"""The written dependency order holds: docs/architecture.md's `layers` block, checked against every
import (top-level and inside functions) of the platform's modules, and no import cycles."""

from __future__ import annotations

import ast
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("accounts", "marketplace", "suppliers", "orders", "billing")
ARCHITECTURE = ROOT / "docs" / "architecture.md"


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported project module
    path: Path
    line: int


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _project_files(packages: tuple[str, ...]) -> list[Path]:
    files = []
    for package in packages:
        files += [p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]
    return sorted(files)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def project_imports(packages: tuple[str, ...], known: set[str]) -> list[Import]:
    """Every import of a project module, as the most specific module that exists."""
    found = []
    for path in _project_files(packages):
        module = _module_name(path)
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(module, path.name == "__init__.py", node)
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    targets.append(candidate if candidate in known else base)
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target.split(".")[0] in packages:
                    found.append(Import(module, target, path, node.lineno))
    return found


def written_layers() -> list[tuple[str, list[str]]]:
    """The `layers` block of docs/architecture.md, lowest first."""
    match = re.search(r"```layers\n(.*?)```", ARCHITECTURE.read_text(), re.DOTALL)
    assert match, "docs/architecture.md has no ```layers block"
    layers = []
    for line in match.group(1).splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, patterns = line.partition(":")
            layers.append((name.strip(), patterns.split()))
    return layers


def layer_of(module: str, layers: list[tuple[str, list[str]]]) -> int | None:
    """Index of the module's layer: an exact name wins, then the longest `x.*`, then `*.name`."""
    best: tuple[int, int] | None = None  # (specificity, layer index)
    for index, (_, patterns) in enumerate(layers):
        for pattern in patterns:
            if pattern == module:
                score = 10_000
            elif pattern.endswith(".*") and (module == pattern[:-2] or module.startswith(pattern[:-1])):
                score = 1_000 + len(pattern)
            elif pattern.startswith("*.") and (
                module.endswith(pattern[1:]) or f".{pattern[2:].rstrip('.*')}." in f".{module}."
            ):
                score = len(pattern)
            else:
                continue
            if best is None or score > best[0]:
                best = (score, index)
    return None if best is None else best[1]


def _known_modules() -> set[str]:
    return {_module_name(p) for p in _project_files((*APPS, "agent"))}


def test_every_module_has_a_written_place():
    layers = written_layers()
    missing = sorted(m for m in _known_modules() if not m.startswith("agent") and layer_of(m, layers) is None)
    assert not missing, f"modules missing from docs/architecture.md's layers: {missing}"


def test_imports_follow_the_written_order():
    layers = written_layers()
    known = _known_modules()
    wrong = []
    for imp in project_imports(APPS, known):
        if imp.target.startswith("agent"):
            wrong.append(f"{imp.path.relative_to(ROOT)}:{imp.line}: {imp.source} imports the host agent")
            continue
        source_layer, target_layer = layer_of(imp.source, layers), layer_of(imp.target, layers)
        if source_layer is not None and target_layer is not None and target_layer > source_layer:
            wrong.append(
                f"{imp.path.relative_to(ROOT)}:{imp.line}: {imp.source} ({layers[source_layer][0]}) imports "
                f"{imp.target} ({layers[target_layer][0]}), which comes later in docs/architecture.md"
            )
    assert not wrong, "imports against the written order:\n" + "\n".join(wrong)


def test_the_agent_imports_nothing_of_the_platform():
    imports = [i for i in project_imports(("agent", *APPS), _known_modules()) if i.source.startswith("agent")]
    wrong = [f"{i.path.relative_to(ROOT)}:{i.line}: {i.target}" for i in imports if not i.target.startswith("agent")]
    assert not wrong, "the host agent talks to the platform over HTTP only:\n" + "\n".join(wrong)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(edges.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def test_no_import_cycles():
    edges: dict[str, set[str]] = {}
    for imp in project_imports(APPS, _known_modules()):
        if imp.target != imp.source and not imp.source.startswith(f"{imp.target}."):
            edges.setdefault(imp.source, set()).add(imp.target)
    assert _cycles(edges) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from orders.lifecycle import instance_stop\n", "orders.lifecycle"),
        ("def f():\n    from orders import placement\n", "orders.placement"),
        ("import orders.models\n", "orders.models"),
    ],
)
def test_the_checker_sees_top_level_and_function_imports(tmp_path, monkeypatch, source, expected):
    """A planted upward import (a ledger module importing orders) is reported with its file and line."""
    package = tmp_path / "billing"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "ledger.py").write_text(source)
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)
    known = {"billing", "billing.ledger", "orders", "orders.lifecycle", "orders.placement", "orders.models"}
    imports = project_imports(("billing", "orders"), known)
    assert [(i.source, i.target) for i in imports] == [("billing.ledger", expected)]
    layers = written_layers()
    assert layer_of(expected, layers) > layer_of("billing.ledger", layers)


def test_cycles_are_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_mypy_checks_every_domain_module():
    """`[tool.mypy] files` is the layers above the entry points, no more and no less."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    layers = written_layers()
    domain = {
        module
        for module in _known_modules()
        if not module.startswith("agent") and layer_of(module, layers) not in (None, len(layers) - 1)
    }
    checked = {path.removesuffix(".py").replace("/", ".") for path in config["files"]}
    assert checked == domain
