"""The package's layers, checked by walking every import with ``ast``.

Imports inside functions count: they are how heavy libraries stay lazy, but an import of our
own code inside a function is still a dependency, and a cycle hidden there is still a cycle.
The rule: a module may import its own layer and the layers below it, never one above, and no
group of modules may import each other in a circle. The failure names the modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("zoo", "converters")

# Top to bottom. A module belongs to the layer of the longest prefix that names it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("zoo.cli", "zoo.__main__")),
    ("service", ("zoo.service",)),
    ("integrations", ("zoo.integrations",)),
    ("api", ("zoo", "zoo.api", "zoo.loadprobe", "zoo.ray")),
    ("datasets", ("zoo.datasets",)),
    ("selection", ("zoo.selection",)),
    ("conversion", ("zoo.conversion", "converters")),
    ("registry", ("zoo.registry",)),
    ("engine", ("zoo.engine",)),
    ("remote", ("zoo.remote",)),
    ("store", ("zoo.store",)),
    ("core", ("zoo.core", "zoo.errors", "zoo.data")),
)
RANK = {prefix: (len(LAYERS) - i, name) for i, (name, prefixes) in enumerate(LAYERS) for prefix in prefixes}
MAX_TOP_LEVEL_MODULES = 8


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts and path.name != "__init__.py":
                continue  # alembic loads these by path, not by import
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _ours(name: str) -> str | None:
    """The longest prefix of ``name`` that is one of our modules."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in MODULES:
            return candidate
    return None


def imports_of(module: str) -> set[str]:
    """Every module of ours that ``module`` imports, anywhere in its body."""
    path = MODULES[module]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            names = [f"{target}.{alias.name}" for alias in node.names] or [target]
        else:
            continue
        for name in names:
            ours = _ours(name)
            if ours and ours != module:
                found.add(ours)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def layer_of(module: str) -> tuple[int, str] | None:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        hit = RANK.get(".".join(parts[:end]))
        if hit:
            return hit
    return None


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; returns the components of more than one node."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return components


def test_every_module_belongs_to_a_layer():
    assert [m for m in MODULES if layer_of(m) is None] == []


def test_imports_only_run_downward():
    upward = []
    for module, targets in GRAPH.items():
        here = layer_of(module)
        for target in sorted(targets):
            there = layer_of(target)
            if there[0] > here[0]:
                upward.append(f"{module} ({here[1]}) imports {target} ({there[1]})")
    assert upward == []


def test_no_import_cycles_among_modules():
    assert _strongly_connected(GRAPH) == []


def test_no_import_cycles_among_subpackages():
    def package(m: str) -> str:
        """A module's subpackage; the top-level modules of zoo (api, cli, errors) stand for themselves."""
        if MODULES[m].name == "__init__.py" or m.count(".") == 1 and m.startswith("zoo."):
            return m
        return m.rpartition(".")[0]

    graph: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        graph.setdefault(package(module), set()).update(
            package(t) for t in targets
            if package(t) != package(module) and not package(module).startswith(package(t) + "."))
    assert _strongly_connected(graph) == []


def test_the_top_of_the_package_stays_small():
    top = sorted(p.name for p in (ROOT / "zoo").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize("package", sorted(m for m, p in MODULES.items() if p.name == "__init__.py"))
def test_each_subpackage_says_what_it_is_for(package):
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text()))
    assert doc and len(doc.split()) >= 8, f"{package}/__init__.py needs a docstring naming its layer"


def test_the_checker_catches_cycles_and_upward_imports():
    """The checker itself can fail: a planted cycle and a planted upward edge are found."""
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("zoo.store.home")[0] < layer_of("zoo.service.server")[0]
    assert layer_of("zoo.errors")[0] < layer_of("zoo.store.home")[0]


def test_runtimes_named_by_string_are_engine_modules():
    """``load_backend`` imports runtimes by name, which ``ast`` cannot see as an import."""
    from zoo.engine.backends import BACKENDS

    for fmt, target in BACKENDS.items():
        module = target.partition(":")[0]
        assert module in MODULES and layer_of(module)[1] == "engine", (fmt, target)


def test_no_source_file_is_ignored_by_git():
    """A source file that .gitignore hides is missing from every clean clone (and from CI)."""
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--", *PACKAGES, "tests",
                          "scripts"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert [p for p in out if "__pycache__" not in p and not p.endswith(".pyc")] == []


def test_every_package_folder_has_an_init():
    folders = {p.parent for p in MODULES.values()}
    assert sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").exists()) == []


# Folder names that tools take for output: pytest's default norecursedirs, .gitignore templates and
# structure tools pass them over, so a package or test folder under one of these names goes unseen.
OUTPUT_NAMES = {"build", "dist", "out", "output", "target", "venv", "node_modules"}


def test_no_folder_is_named_like_build_output():
    folders = {p.relative_to(ROOT) for p in MODULES.values()} | {p.relative_to(ROOT) for p in (ROOT / "tests").rglob("*.py")}
    named = sorted(str(f.parent) for f in folders if OUTPUT_NAMES & set(f.parent.parts))
    assert named == [], f"rename these folders: {named}"
