"""The package's imports go one way (docs/design.md): a module may import only from its own layer or
the layers below it, no module imports itself back through a cycle, and imports sit at the top of
modules except for optional heavy dependencies, each marked with a one-line reason ("# heavy").

The checker reads imports from the source (ast); the fixture tests show it failing on an upward
import, a cycle and an unmarked function-level import planted in a copy of the package.
"""
from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "sembridge_jax"

# Bottom to top. A module belongs to the first layer one of whose prefixes it starts with.
LAYERS = [
    ("foundation", ("sembridge_jax.storage", "sembridge_jax.schema", "sembridge_jax.cli", "sembridge_jax.lines")),
    ("models", ("sembridge_jax.models",)),
    ("hf", ("sembridge_jax.hf",)),
    ("bridge", ("sembridge_jax.bridge",)),
    ("data", ("sembridge_jax.data",)),
    ("training", ("sembridge_jax.training",)),
    ("evaluation", ("sembridge_jax.evaluation",)),
    ("export", ("sembridge_jax.export",)),
    ("api", ("sembridge_jax.api", "sembridge_jax.config")),
    ("pipeline", ("sembridge_jax.pipeline", "sembridge_jax.connector")),
]
CLI = "cli"  # every __main__ module, train.py, evaluate.py and the package facade sembridge_jax/__init__.py
SCRIPTS = ("train.py", "evaluate.py")
# Third-party modules that may be imported inside a function (optional and slow to import).
HEAVY = {"torch", "sentence_transformers", "datasets", "tensorflow_datasets", "matplotlib", "tensorboardX", "bm25s"}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int:
    if module.endswith(".__main__") or module in (PACKAGE, *(Path(s).stem for s in SCRIPTS)):
        return len(LAYERS)
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in tests/test_layering.py")


def layer_name(index: int) -> str:
    return LAYERS[index][0] if index < len(LAYERS) else CLI


def sources(root: Path) -> dict[str, Path]:
    files = {module_name(p, root): p for p in (root / PACKAGE).rglob("*.py")}
    files.update({Path(s).stem: root / s for s in SCRIPTS if (root / s).is_file()})
    return files


def _targets(node: ast.ImportFrom | ast.Import, modules: set[str]) -> list[str]:
    """The package modules an import statement loads (a `from pkg import sub` names the submodule)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    return [n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")]


def check(root: Path) -> list[str]:
    """Every layering problem of the tree at `root`, one line each."""
    files = sources(root)
    modules = set(files)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    problems = []
    for module, path in sorted(files.items()):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text)
        in_function = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                       for n in ast.walk(f)}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or getattr(node, "level", 0):
                continue
            where = f"{path.relative_to(root)}:{node.lineno}"
            if id(node) in in_function:
                roots = {a.name.split(".")[0] for a in node.names} if isinstance(node, ast.Import) else {
                    (node.module or "").split(".")[0]}
                if not roots <= HEAVY or "# heavy" not in lines[node.lineno - 1]:
                    problems.append(f"{where}: import inside a function ({lines[node.lineno - 1].strip()}); "
                                    "move it to the top (only marked heavy optional dependencies may stay)")
            for target in _targets(node, modules):
                if target not in modules:
                    continue
                graph[module].add(target)
                if layer_of(target) > layer_of(module):
                    problems.append(f"{where}: {module} ({layer_name(layer_of(module))}) imports {target} "
                                    f"({layer_name(layer_of(target))}), a higher layer")
    problems += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan), or a self-import."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
            if len(component) > 1 or v in graph[v]:
                out.append(sorted(component) + [sorted(component)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_imports_one_way():
    assert check(REPO) == []


@pytest.fixture()
def copy(tmp_path):
    shutil.copytree(REPO / PACKAGE, tmp_path / PACKAGE, ignore=shutil.ignore_patterns("__pycache__"))
    for s in SCRIPTS:
        shutil.copy(REPO / s, tmp_path / s)
    return tmp_path


def _append(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + line + "\n", encoding="utf-8")


def test_an_upward_import_fails(copy):
    _append(copy / PACKAGE / "models" / "heads.py", "from sembridge_jax.training import trainer")
    assert any("sembridge_jax.models.heads (models) imports sembridge_jax.training.trainer (training)" in p
               for p in check(copy))


def test_a_cycle_fails(copy):
    _append(copy / PACKAGE / "models" / "config.py", "from sembridge_jax.models import build")
    assert any(p.startswith("import cycle:") and "sembridge_jax.models.build" in p for p in check(copy))


def test_an_unmarked_import_inside_a_function_fails(copy):
    _append(copy / PACKAGE / "storage.py", "def late():\n    import json\n    return json")
    assert any("storage.py" in p and "import inside a function" in p for p in check(copy))
