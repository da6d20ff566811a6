"""Print every import between cumulo packages that runs up the layers, and every import circle.

The layers, top to bottom (the same as the import-linter `layers` contract in pyproject.toml):

    1. cli
    2. runtime, runtime_roles, runtime_procs, runtime_volumes, schema, dev
    3. the front doors over the services (occi, paas)
    3b. the service packages (compute, identity, image, monitoring, ...)
    4. scheduler
    5. placement, hosts
    6. web, db, bus, host, netplane, blockstore, oci, metrics
    7. policy, catalog, conf, errors, context

A module may import from its own layer or any layer below it. `TYPE_CHECKING` imports count here
(import-linter's own contract leaves them out). A circle is a set of two or more modules that import
each other, directly or through others (a strongly connected component of the module graph).

    .venv/bin/python scripts/import_graph.py        # prints nothing but a summary line when clean

Exits 1 when it finds anything, so `scripts/test.sh` can run it.
"""

from __future__ import annotations

import sys

import grimp

LAYERS: list[set[str]] = [
    {"cli"},
    {"runtime", "runtime_roles", "runtime_procs", "runtime_volumes", "schema", "dev"},
    {"occi", "paas"},
    {"compute", "identity", "image", "monitoring", "network", "volume"},
    {"scheduler"},
    {"placement", "hosts"},
    {"web", "db", "bus", "host", "netplane", "blockstore", "oci", "metrics"},
    {"policy", "catalog", "conf", "errors", "context"},
]


def top_package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(module: str) -> int | None:
    top = top_package(module)
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    return None


def circles(graph: grimp.ImportGraph, modules: list[str]) -> list[list[str]]:
    """Strongly connected components of two or more modules (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    for root in modules:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            succ = edges.get(node, [])
            if i < len(succ):
                work.append((node, i + 1))
                nxt = succ[i]
                if nxt not in edges:
                    continue
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def main() -> int:
    graph = grimp.build_graph("cumulo", exclude_type_checking_imports=False)
    modules = sorted(graph.modules)
    problems = 0
    unknown = sorted({top_package(m) for m in modules if m != "cumulo" and layer_of(m) is None})
    for top in unknown:
        print(f"package cumulo.{top} is in no layer (add it to LAYERS and to pyproject's contract)")
        problems += 1
    for importer in modules:
        li = layer_of(importer)
        if li is None:
            continue
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            lj = layer_of(imported)
            if lj is not None and lj < li:
                for d in graph.get_import_details(importer=importer, imported=imported):
                    print(f"up: {importer}:{d['line_number']} imports {imported}  ({d['line_contents']})")
                problems += 1
    for comp in circles(graph, modules):
        print(f"circle of {len(comp)}: " + " -> ".join(comp))
        problems += 1
    print(f"import_graph: {len(modules)} modules, {problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
