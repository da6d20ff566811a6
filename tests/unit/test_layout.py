"""The shape of the code: layers without upward imports or circles, modules under 600 lines, and the
layout in docs/architecture.md generated from the tree (every module with a docstring)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args],  # noqa: S603
                          capture_output=True, text=True, timeout=120, check=False)


def test_no_import_runs_up_the_layers_and_no_circle() -> None:
    r = run("import_graph.py")
    assert r.returncode == 0, r.stdout
    assert r.stdout.strip().endswith("0 problem(s)")


def test_no_module_over_600_lines() -> None:
    r = run("module_sizes.py")
    assert r.returncode == 0, r.stdout


def test_architecture_layout_matches_the_tree() -> None:
    r = run("layout.py", "--check")
    assert r.returncode == 0, r.stdout


def test_layout_check_notices_a_module_missing_from_the_doc(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import layout
    finally:
        sys.path.pop(0)
    block, _missing = layout.layout()
    stale = block.replace("\n  runtime.py", "\n", 1)
    assert stale != block  # runtime.py is listed
    assert layout.current_block(f"x\n{layout.BEGIN}\n{stale}\n{layout.END}\ny") != block


def test_test_module_basenames_are_unique() -> None:
    """pytest imports test modules by basename (rootdir mode): two of one name stop the whole run."""
    seen: dict[str, Path] = {}
    clashes = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name in ("conftest.py", "__init__.py"):
            continue
        if path.name in seen:
            clashes.append(f"{seen[path.name].relative_to(ROOT)} and {path.relative_to(ROOT)}")
        seen[path.name] = path
    assert clashes == []
