"""imitlib's import graph (imports inside functions included) has no cycle and runs the one way
docs/ARCHITECTURE.md states (its ``import-layers`` block)."""

from __future__ import annotations

import re
from pathlib import Path

from imitlib import dag

ARCHITECTURE = Path(__file__).resolve().parent.parent / "docs" / "ARCHITECTURE.md"


def layers() -> list[tuple[str, list[str]]]:
    """(layer name, module patterns) from the ``import-layers`` block, top layer first."""
    text = ARCHITECTURE.read_text()
    block = re.search(r"```import-layers\n(.*?)```", text, re.S)
    assert block, f"{ARCHITECTURE} has no ```import-layers block"
    out = []
    for line in block.group(1).splitlines():
        if line.strip():
            name, _, patterns = line.partition(":")
            out.append((name.strip(), patterns.split()))
    return out


def layer_of(module: str, table: list[tuple[str, list[str]]]) -> int | None:
    """The layer naming the module exactly, else the one whose ``prefix.*`` is the longest match."""
    for index, (_, patterns) in enumerate(table):
        if module in patterns:
            return index
    best, length = None, -1
    for index, (_, patterns) in enumerate(table):
        for pattern in patterns:
            if pattern.endswith(".*") and module.startswith(pattern[:-1]) and len(pattern) > length:
                best, length = index, len(pattern)
    return best


def cycles(graph: dict[str, tuple[str, ...]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), sorted."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_graph_sees_imports_inside_functions(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg import b\n    return b\n")
    (package / "b.py").write_text("from . import a\n")
    graph = dag.import_graph(package)
    assert graph["pkg.a"] == ("pkg.b",) and graph["pkg.b"] == ("pkg.a",)
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_imitlib_has_no_import_cycle():
    assert cycles(dag.import_graph()) == []


def test_every_module_has_a_layer_and_imports_only_its_own_layer_or_below():
    table = layers()
    graph = dag.import_graph()
    unplaced = sorted(m for m in graph if layer_of(m, table) is None)
    assert not unplaced, f"modules missing from the import-layers block of {ARCHITECTURE.name}: {unplaced}"
    upward = [f"{m} ({table[layer_of(m, table)][0]}) imports {t} ({table[layer_of(t, table)][0]})"
              for m, targets in graph.items() for t in targets if layer_of(t, table) < layer_of(m, table)]
    assert not upward, "imports against the documented direction:\n" + "\n".join(upward)


def test_stage_modules_are_the_dag_s_and_import_no_other_stage():
    table = dict(layers())
    assert sorted(table["stages"]) == sorted(spec.module for spec in dag.STAGES)
    graph = dag.import_graph()
    crossing = [(m, t) for m in table["stages"] for t in graph[m] if t in table["stages"]]
    assert not crossing, f"a stage module imports another stage module: {crossing}"
