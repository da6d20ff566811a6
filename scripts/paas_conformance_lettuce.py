"""A minimal stand-in for Lettuce 0.2.19 (Python 2 only), enough to run Pegasus's acceptance features.

scripts/paas_conformance.py copies this file into the suite's venv and runs it there, once per feature
directory (Lettuce loads the terrain.py and steps.py of the directory it is given, so each directory
gets a fresh process and a fresh step registry):

    python paas_conformance_lettuce.py <properties.json> <suite root> <feature dir> [--skip-tag skip ...]

It imports itself as the module `lettuce` (`from lettuce import step, world, before, after`), reads the
properties file into `world.config` (what lettuce_tools did), imports the directory's terrain.py and
steps.py, and runs every *.feature file of the directory: Background steps first, Scenario Outlines
expanded per Examples row (one result per row, as Lettuce counts them), tables as `step.hashes`. Steps
match the sentence with the registered regex (the whole sentence; Lettuce's `re.search` otherwise).
Hooks: before/after .all, .each_feature, .each_scenario, .each_step. One line per scenario on
stdout, RESULT and then the JSON {"feature", "scenario", "status": passed|failed|skipped, "reason", "ran": [the steps that passed]}.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULT = "@@paas-conformance-result "  # the steps print too (dicts among them): results carry this prefix


class _World:
    """Lettuce's `world`: a bag of attributes shared by steps and hooks."""


world: Any = _World()
STEPS: list[tuple[re.Pattern[str], Callable[..., Any]]] = []
HOOKS: dict[str, list[Callable[..., Any]]] = {}


def step(regex: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(func: Callable[..., Any]) -> Callable[..., Any]:
        STEPS.append((re.compile(regex), func))
        return func
    return register


class _HookSet:
    def __init__(self, when: str) -> None:
        self.when = when

    def __getattr__(self, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(func: Callable[..., Any]) -> Callable[..., Any]:
            HOOKS.setdefault(f"{self.when}.{what}", []).append(func)
            return func
        return register


before = _HookSet("before")
after = _HookSet("after")


def run_hooks(name: str, *args: Any) -> None:
    for func in HOOKS.get(name, []):
        func(*args)


class Step:
    def __init__(self, sentence: str, table: list[list[str]]) -> None:
        self.sentence = sentence
        self.hashes = [dict(zip(table[0], row, strict=False)) for row in table[1:]] if table else []
        self.multiline = ""


class Scenario:
    def __init__(self, name: str, tags: list[str], steps: list[tuple[str, list[list[str]]]]) -> None:
        self.name, self.tags, self.steps = name, tags, steps


class Feature:
    def __init__(self, name: str, tags: list[str]) -> None:
        self.name, self.tags = name, tags
        self.background: list[tuple[str, list[list[str]]]] = []
        self.scenarios: list[Scenario] = []


STEP_WORDS = ("Given ", "When ", "Then ", "And ", "But ")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip()[1:-1].split("|")]


def parse(path: Path) -> Feature:
    """Feature, Background, Scenario, Scenario Outline + Examples, tags, tables, # comments."""
    feature = Feature(path.stem, [])
    tags: list[str] = []
    target: list[tuple[str, list[list[str]]]] | None = None
    outline: tuple[str, list[str], list[tuple[str, list[list[str]]]]] | None = None
    examples: list[list[str]] | None = None

    def close_outline() -> None:
        nonlocal outline, examples
        if outline is not None and examples:
            name, otags, steps = outline
            for n, row in enumerate(examples[1:], 1):
                values = dict(zip(examples[0], row, strict=False))

                def fill(text: str, values: dict[str, str] = values) -> str:
                    return re.sub(r"<([^<>]+)>", lambda m: values.get(m.group(1), m.group(0)), text)
                feature.scenarios.append(Scenario(
                    f"{name} [example {n}: {' | '.join(row)}]", otags,
                    [(fill(s), [[fill(c) for c in r] for r in t]) for s, t in steps]))
        outline, examples = None, None

    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            tags += [t.lstrip("@") for t in line.split()]
        elif line.startswith("Feature:"):
            feature.name, feature.tags, tags = line[8:].strip(), tags, []
        elif line.startswith("Background:"):
            target = feature.background
        elif line.startswith("Scenario Outline:") or line.startswith("Scenario:"):
            close_outline()
            name = line.split(":", 1)[1].strip()
            steps: list[tuple[str, list[list[str]]]] = []
            if line.startswith("Scenario Outline:"):
                outline = (name, feature.tags + tags, steps)
            else:
                feature.scenarios.append(Scenario(name, feature.tags + tags, steps))
            target, tags = steps, []
        elif line.startswith("Examples:"):
            if outline is None and feature.scenarios and feature.scenarios[-1].steps is target:
                plain = feature.scenarios.pop()  # Lettuce runs a Scenario with Examples as an outline
                outline = (plain.name, plain.tags, plain.steps)
            examples, target = [], None
        elif line.startswith("|"):
            if examples is not None and target is None:
                examples.append(_cells(line))
            elif target:
                target[-1][1].append(_cells(line))
        elif line.startswith(STEP_WORDS) and target is not None:
            target.append((line.split(" ", 1)[1], []))
    close_outline()
    return feature


def run_step(sentence: str, table: list[list[str]]) -> None:
    for regex, func in STEPS:
        m = regex.fullmatch(sentence) or regex.search(sentence)
        if m:
            obj = Step(sentence, table)
            run_hooks("before.each_step", obj)
            func(obj, *m.groups())
            run_hooks("after.each_step", obj)
            return
    raise LookupError(f"undefined step: {sentence}")


def load(path: Path, name: str) -> None:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def main() -> int:
    props, root, fdir = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    skip_tags = set(sys.argv[5::2]) if len(sys.argv) > 4 else {"skip"}
    sys.modules["lettuce"] = sys.modules[__name__]
    world.config = json.loads(props.read_text())
    sys.path.insert(0, str(root))

    def emit(feature: str, scenario: str, status: str, reason: str = "", ran: list[str] | None = None) -> None:
        print(RESULT + json.dumps({"feature": feature, "scenario": scenario, "status": status, "reason": reason,
                          "ran": ran or []}), flush=True)

    features = [parse(p) for p in sorted(fdir.glob("*.feature"))]
    try:
        for mod in ("terrain", "steps"):
            if (fdir / f"{mod}.py").exists():
                load(fdir / f"{mod}.py", f"{fdir.name}_{mod}")
        run_hooks("before.all")
    except Exception as exc:  # noqa: BLE001 - every scenario of the directory fails with the reason
        for f in features:
            for s in f.scenarios:
                emit(f.name, s.name, "failed", f"loading the steps: {exc!r}")
        return 0
    for f in features:
        try:
            run_hooks("before.each_feature", f)
        except Exception as exc:  # noqa: BLE001
            for s in f.scenarios:
                emit(f.name, s.name, "failed", f"before.each_feature hook: {exc!r}")
            continue
        for s in f.scenarios:
            if skip_tags & set(s.tags):
                emit(f.name, s.name, "skipped", "tagged @" + ",@".join(sorted(skip_tags & set(s.tags))))
                continue
            status, reason, ran = "passed", "", []
            try:
                run_hooks("before.each_scenario", s)
                for sentence, table in f.background + s.steps:
                    try:
                        run_step(sentence, table)
                        ran.append(sentence)
                    except Exception as exc:
                        where = traceback.extract_tb(exc.__traceback__)[-1]
                        raise AssertionError(f"step '{sentence}': {type(exc).__name__}: {exc} "
                                             f"({Path(where.filename).name}:{where.lineno})") from exc
            except Exception as exc:  # noqa: BLE001
                status, reason = "failed", str(exc)
            try:
                run_hooks("after.each_scenario", s)
            except Exception as exc:  # noqa: BLE001
                if status == "passed":
                    status, reason = "failed", f"after.each_scenario hook: {exc!r}"
            emit(f.name, s.name, status, reason[:3000], ran)
        try:
            run_hooks("after.each_feature", f)
        except Exception as exc:  # noqa: BLE001
            print(f"after.each_feature hook of {f.name}: {exc!r}", file=sys.stderr)
    run_hooks("after.all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
