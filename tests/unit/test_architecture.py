"""The package's shape (issue 13): its modules import each other without cycles, none grows past ~400 lines
without saying why, and only pictrace.index.layout spells out the index's S3 layout."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "pictrace" / "pictrace"
MAX_LINES = 400
# the index's key names: nowhere but in pictrace/index/layout.py
LAYOUT = re.compile(r"(entries|keys|failures|changes|segments|vector-failures)/|manifest\.json|\.npz\b")


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Module name -> file, for every module of a package (the pictrace package by default)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules this module imports, at any level (function bodies and TYPE_CHECKING included)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and target != "pictrace":
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_package_imports_form_a_dag() -> None:
    edges = graph()
    assert "pictrace.index.layout" in edges and "pictrace.index.segments" in edges["pictrace.index.compaction"]
    assert find_cycle(edges) is None, f"import cycle: {' -> '.join(find_cycle(edges) or [])}"


def test_the_index_modules_import_only_downwards() -> None:
    """layout < store < packed < rows < segments < compaction, alloc < memory < vectors < backend: nothing imports
    upwards."""
    order = ["layout", "store", "packed", "rows", "segments", "compaction", "alloc", "memory", "vectors", "backend"]
    rank = {f"pictrace.index.{m}": n for n, m in enumerate(order)}
    edges = graph()
    for module, targets in edges.items():
        if module in rank:
            upward = [t for t in targets if t in rank and rank[t] >= rank[module]]
            assert not upward, f"{module} imports {upward}"
    below = {t for m, ts in edges.items() if not m.startswith("pictrace.index") for t in ts}
    assert "pictrace.index" not in below  # callers import the modules, not the package


def test_no_module_is_over_400_lines_unless_its_docstring_says_why() -> None:
    long = {}
    for name, path in modules().items():
        lines = len(path.read_text().splitlines())
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and "400 lines" not in docstring:
            long[name] = lines
    assert not long, f"modules over {MAX_LINES} lines without a reason in their docstring: {long}"


def test_the_index_layout_is_spelled_out_in_layout_only() -> None:
    """String literals naming index keys (docstrings aside) appear in pictrace/index/layout.py alone."""
    found = []
    for name, path in modules().items():
        if name == "pictrace.index.layout":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if LAYOUT.search(node.value):
                    found.append(f"{name}:{node.lineno}: {node.value[:60]!r}")
    assert not found, "index layout outside pictrace.index.layout:\n" + "\n".join(found)


def test_the_layout_test_would_catch_a_hand_parsed_key() -> None:
    assert LAYOUT.search("index/entries/") and LAYOUT.search("manifest.json") and LAYOUT.search(".npz")
    assert not LAYOUT.search("images/") and not LAYOUT.search("model.json")


BENCH = PACKAGE.parents[2] / "bench"


def test_the_bench_and_the_package_import_each_other_without_cycles_and_no_phase_imports_runner_or_report() -> None:
    """Issue 29: bench/ is a harness whose phases return typed results (bench.results); the runner (bench.run, and
    bench.alone for one phase) calls them and the report (bench.report.*) renders what they return, so no phase
    imports either, and nothing imports in a circle."""
    found = {**modules(), **modules(BENCH)}
    edges = {name: imports(name, path, set(found)) for name, path in found.items()}
    assert "bench.phases.large_ingest" in edges and "bench.run" in edges and "bench.report.goals" in edges
    assert find_cycle(edges) is None, f"import cycle: {' -> '.join(find_cycle(edges) or [])}"
    above = {"bench.run", "bench.alone"} | {name for name in edges if name.startswith("bench.report")}
    upward = {name: sorted(edges[name] & above) for name in edges if name.startswith("bench.phases")}
    assert not {k: v for k, v in upward.items() if v}, upward
    results = edges["bench.results"] & above
    assert not results, f"bench.results imports {results}"


def test_no_bench_module_is_over_400_lines_and_no_module_name_has_two_homes() -> None:
    """Issue 29: the bench's modules are small, and each module name has one home (no bench.x beside bench.phases.x)."""
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules(BENCH).items()}
    assert not {k: v for k, v in sizes.items() if v > MAX_LINES}, sizes
    leaves = [name.rpartition(".")[2] for name in sizes if name != "bench"]
    assert len(leaves) == len(set(leaves)), sorted({n for n in leaves if leaves.count(n) > 1})


def test_the_bench_is_at_most_4500_lines() -> None:
    """Issue 29: bench/ at most 4,500 lines of Python in all (`wc -l`: every line counts)."""
    total = sum(len(path.read_text().splitlines()) for path in BENCH.rglob("*.py"))
    assert total <= 4500, f"bench/ is {total:,} lines of Python"
