"""The package's layout: the library never imports the benchmark (bmclib.bench), no import
cycles (imports inside functions counted), no private name imported across modules."""
import ast
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "bmclib"


def _imports() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """module -> the bmclib modules it imports anywhere in its body; and (module, from, name)
    for every private name imported from another module. An import of a ``bmclib`` module that
    does not exist (a wrong relative import) is recorded as ``(module, target, "<missing>")``."""
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph, private = {m: set() for m in mods}, []
    for m, p in mods.items():
        here = m.split(".") if p.name == "__init__.py" else m.split(".")[:-1]
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else (node.module or "")
                if base.startswith("bmclib") and base not in mods:
                    private.append((m, base, "<missing>"))
                for a in node.names:
                    target = f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                    if target in mods and target != m:
                        graph[m].add(target)
                        if target == base and a.name.startswith("_") and not a.name.startswith("__"):
                            private.append((m, base, a.name))
            elif isinstance(node, ast.Import):
                graph[m].update(a.name for a in node.names if a.name in mods and a.name != m)
    return graph, private


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)
    return cycles


def test_no_import_cycles_and_no_private_imports():
    graph, private = _imports()
    assert len(graph) > 40 and sum(map(len, graph.values())) > 150  # the scan sees the package
    assert _cycles(graph) == []
    assert private == []


def test_the_library_never_imports_the_benchmark():
    graph, _ = _imports()
    lib = [m for m in graph if not m.startswith("bmclib.bench")]
    assert "bmclib.train" in lib and "bmclib.bench.experiment" in graph
    assert [(m, t) for m in lib for t in graph[m] if t.startswith("bmclib.bench")] == []


def test_the_scan_finds_a_cycle_and_a_private_import(tmp_path, monkeypatch):
    """The checks above can fail: a fake package with a function-level cycle and a private import."""
    pkg = tmp_path / "bmclib"
    (pkg / "bench").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "bench" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .b import _hidden\n")
    (pkg / "b.py").write_text("from .bench import x\n_hidden = 1\n")
    (pkg / "bench" / "x.py").write_text("from ..a import f\n")
    (pkg / "c.py").write_text("def g():\n    from .nowhere import thing\n")
    monkeypatch.setattr(sys.modules[__name__], "PKG", pkg)
    graph, private = _imports()
    assert sorted(private) == [("bmclib.a", "bmclib.b", "_hidden"), ("bmclib.c", "bmclib.nowhere", "<missing>")]
    assert _cycles(graph) and ("bmclib.bench" in graph["bmclib.b"] or "bmclib.bench.x" in graph["bmclib.b"])


@pytest.mark.parametrize("name", ["cli", "train", "losses", "audit", "lifting", "evaluate"])
def test_library_modules_import_without_the_benchmark(name):
    import subprocess
    import sys

    code = f"import sys, bmclib.{name}; bad = sorted(m for m in sys.modules if m.startswith('bmclib.bench')); " \
           "print(bad); raise SystemExit(1 if bad else 0)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
