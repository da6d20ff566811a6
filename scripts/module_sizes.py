"""Fail when a module under src/ is over 600 lines (the house rule; migration scripts aside).

    .venv/bin/python scripts/module_sizes.py     # prints each offender; exit 1 if any
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 600
EXEMPT = ("src/cumulo/db/migrations/versions/",)


def offenders() -> list[tuple[str, int]]:
    out = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(EXEMPT):
            continue
        lines = len(path.read_text().splitlines())
        if lines > LIMIT:
            out.append((rel, lines))
    return out


def main() -> int:
    bad = offenders()
    for rel, lines in bad:
        print(f"{rel}: {lines} lines (limit {LIMIT}); split it by responsibility")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
