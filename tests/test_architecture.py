"""The layering of docs/ARCHITECTURE.md, checked on the source: no import cycle inside
urdm_plugin, processing/ never imports gui/, core/ never imports qgis or Qt; and the size
rules: a long module says why, no function runs past 100 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "urdm_plugin"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(name: str, path: Path) -> set:
    """Every module ``name`` imports, at module level or inside functions (absolute names;
    ``from . import x`` counts as importing the submodule x when it is one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES)
    return out


GRAPH = {name: {m for m in _imports(name, p) if m in MODULES and m != name} for name, p in MODULES.items()}


def _cycle(graph_in=None):
    """One import cycle among urdm_plugin modules as a list of names, or None.
    (A package's __init__ importing its own submodules lazily is not a cycle: edges from
    a module to its parent package are left out — importing a submodule runs the parent
    __init__ first anyway.)"""
    graph = {n: {m for m in deps if not n.startswith(m + ".")} for n, deps in (graph_in or GRAPH).items()}
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_no_import_cycle():
    assert _cycle() is None, " -> ".join(_cycle())


def test_processing_does_not_import_gui():
    bad = {n: sorted(m for m in GRAPH[n] if m.startswith("urdm_plugin.gui"))
           for n in GRAPH if n.startswith("urdm_plugin.processing")}
    assert {n: m for n, m in bad.items() if m} == {}


def test_core_imports_neither_qgis_nor_qt():
    bad = {}
    for name, path in MODULES.items():
        if name.startswith("urdm_plugin.core"):
            found = sorted(m for m in _imports(name, path) if m.split(".")[0] in ("qgis", "PyQt5", "PyQt6"))
            if found:
                bad[name] = found
    assert bad == {}


def test_the_checks_see_what_they_check():
    """The graph is real: the pipeline imports the tiler, Processing imports qgis_layers."""
    assert "urdm_plugin.core.engine.tiling" in GRAPH["urdm_plugin.core.engine.pipeline"] | \
        GRAPH["urdm_plugin.core.engine.arrays"]
    assert any(m.startswith("urdm_plugin.qgis_layers") for m in GRAPH["urdm_plugin.processing.alg_unmix"])
    assert len(MODULES) > 40


def test_an_injected_cycle_is_found():
    graph = {n: set(d) for n, d in GRAPH.items()}
    graph["urdm_plugin.core.io.units"].add("urdm_plugin.core.bands")  # bands -> io.image -> io.units
    assert _cycle(graph) is not None


def test_every_benchmark_module_compiles():
    """`make bench` imports these only when it runs; a syntax error must fail here first."""
    import py_compile

    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        py_compile.compile(str(path), doraise=True)


#: A module over this many lines states why in its docstring, on a line starting ``Size note:``.
MODULE_LINES = 400
#: No function or method is longer than this (def line to last line, docstring included).
FUNCTION_LINES = 100


def test_a_long_module_says_why():
    bad = {}
    for name, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        n = len(text.splitlines())
        doc = ast.get_docstring(ast.parse(text)) or ""
        if n > MODULE_LINES and not any(ln.strip().startswith("Size note:") for ln in doc.splitlines()):
            bad[name] = n
    assert bad == {}, f"modules over {MODULE_LINES} lines without a 'Size note:' line in their docstring"


def test_no_function_over_100_lines():
    bad = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > FUNCTION_LINES:
                    bad[f"{name}.{node.name}"] = n
    assert bad == {}, f"functions over {FUNCTION_LINES} lines: split them into named steps"
