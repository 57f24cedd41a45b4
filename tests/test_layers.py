"""The advisor's layers (ARCHITECTURE in README): no import circles inside `advisor/`, no
upward import between layers, `kb` free of `advisor` and `app`, and modules and functions of
a size a reader can hold (issue 14). Imports are read with `ast`, so nothing is executed; an
import under `if TYPE_CHECKING:` is for type checkers only and is not counted."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent

# lower number = lower layer; a module may import its own layer or lower ones only
LAYERS: list[tuple[str, int]] = [
    ("advisor.errors", 0),
    ("advisor.cache", 0),
    ("advisor.advice", 0),
    ("advisor.zoo", 1),
    ("advisor.graph", 2),
    ("advisor.measure", 3),
    ("advisor.agent", 4),
    ("advisor.targets", 5),
    ("advisor.plans", 6),
    ("advisor.validate", 7),
    ("advisor.pipeline", 8),
    ("advisor.progress", 8),
    ("advisor.runs", 9),
    ("advisor.report", 9),
    ("advisor.sweep", 10),
    ("advisor.model", 10),  # the public re-export of advisor.graph's loader
    ("advisor", 10),  # advisor/__init__.py: the public API
]

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
# (module or module:function) -> why it may be longer
SIZE_EXCEPTIONS: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package: str) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((ROOT / package).rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Modules of `known` that `module` imports anywhere (top level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from advisor import cache` imports the module advisor.cache, not advisor
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def _graph(package: str) -> nx.DiGraph:
    mods = _modules(package)
    g = nx.DiGraph()
    g.add_nodes_from(mods)
    for mod, path in mods.items():
        for dep in _imports(mod, path, set(mods)):
            g.add_edge(mod, dep)
    return g


def _layer(module: str) -> int:
    best = None
    for prefix, rank in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best[0])
        ):
            best = (prefix, rank)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best[1]


def test_no_import_cycles_in_advisor():
    g = _graph("advisor")
    # a package's __init__ importing its own submodules (re-exports) is not a cycle of ideas
    g.remove_edges_from(
        [(a, b) for a, b in list(g.edges) if b.startswith(a + ".") or a.startswith(b + ".")]
    )
    cycles = sorted(nx.simple_cycles(g), key=len)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join([*c, c[0]]) for c in cycles)


def test_no_upward_imports_between_layers():
    g = _graph("advisor")
    upward = [
        f"{a} (layer {_layer(a)}) imports {b} (layer {_layer(b)})"
        for a, b in g.edges
        if _layer(b) > _layer(a)
    ]
    assert not upward, "\n".join(upward)


def test_kb_imports_nothing_of_advisor_or_app():
    bad = []
    for path in sorted((ROOT / "kb").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            bad += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("advisor", "app")]
    assert not bad


def test_layer_check_catches_an_upward_import(tmp_path):
    """The checker itself: a graph module importing a plan is reported."""
    assert _layer("advisor.graph.cuts") < _layer("advisor.plans.costs")
    assert _layer("advisor.validate.rank") > _layer("advisor.targets.predict")
    with pytest.raises(AssertionError, match="no layer"):
        _layer("advisor_extra.x")


def _measure() -> dict[str, int]:
    """Lines per module (`mod`) and per function (`mod:func`) in advisor/."""
    sizes = {}
    for mod, path in _modules("advisor").items():
        text = path.read_text(encoding="utf-8")
        sizes[mod] = text.count("\n")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                sizes[f"{mod}:{node.name}"] = max(n, sizes.get(f"{mod}:{node.name}", 0))
    return sizes


def test_modules_and_functions_stay_readable():
    over = [
        f"{key}: {n} lines > {MAX_FUNCTION_LINES if ':' in key else MAX_MODULE_LINES}"
        for key, n in _measure().items()
        if n > (MAX_FUNCTION_LINES if ":" in key else MAX_MODULE_LINES)
        and key not in SIZE_EXCEPTIONS
    ]
    assert not over, "split these (or list them in SIZE_EXCEPTIONS with a reason):\n" + "\n".join(
        over
    )


def test_size_exceptions_are_still_needed():
    """An exception whose module or function shrank below the limit is removed from the list."""
    sizes = _measure()
    stale = [
        key
        for key in SIZE_EXCEPTIONS
        if sizes.get(key, 0) <= (MAX_FUNCTION_LINES if ":" in key else MAX_MODULE_LINES)
    ]
    assert not stale, f"no longer over the limit (remove from SIZE_EXCEPTIONS): {stale}"
