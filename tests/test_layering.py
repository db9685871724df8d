"""The package's layers: no import cycle between subpackages, ``reporting`` never imports ``experiments``, nothing
but the entry points imports ``cli``. Read from the source (every import, including those inside functions)."""

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "robprune"


def _imports() -> dict[str, dict[str, list[str]]]:
    """{importing top-level module: {imported top-level module: [files]}} for robprune's relative and absolute
    imports of itself."""
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        here = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level:
                base = list(rel.parts[:-1])[: len(rel.parts) - node.level] if node.level > 1 else list(rel.parts[:-1])
                parts = base + (node.module.split(".") if node.module else [])
                targets = [parts[0]] if parts else [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("robprune."):
                targets = [node.module.split(".")[1]]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1] for a in node.names if a.name.startswith("robprune.")]
            for target in targets:
                if target != here:
                    edges[here][target].append(str(rel))
    return edges


def _cycles(edges) -> list[list[str]]:
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges.get(node, {})):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    return found


def test_no_import_cycle_between_subpackages():
    edges = _imports()
    cycles = _cycles(edges)
    detail = {" -> ".join(c): [edges[a][b] for a, b in zip(c, c[1:])] for c in cycles}
    assert not cycles, detail


def test_reporting_never_imports_experiments_and_nothing_imports_cli():
    edges = _imports()
    assert "experiments" not in edges["reporting"], edges["reporting"]["experiments"]
    importers = {name for name, targets in edges.items() if "cli" in targets}
    assert importers <= {"__main__"}, {name: edges[name]["cli"] for name in importers}


def test_the_layering_check_sees_a_cycle_when_there_is_one():
    assert _cycles({"a": {"b": ["x"]}, "b": {"a": ["y"]}}) == [["a", "b", "a"]]
    assert _cycles({"a": {"b": ["x"]}, "b": {}}) == []


def test_no_module_over_300_lines():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert not {name: n for name, n in sizes.items() if n > 300}


def test_no_command_module_imports_another():
    found = {}
    for path in (PACKAGE / "cli").glob("cmd_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cmd_"):
                found.setdefault(path.name, []).append(node.module)
    assert not found


def test_stored_per_image_outcomes_are_read_in_one_place():
    """Only evaluation/outcomes.py unpacks stored bits (accuracy.py defines the encoding)."""
    readers = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "unpack_bits(" in p.read_text()}
    assert readers <= {"evaluation/outcomes.py", "evaluation/accuracy.py"}, readers
