"""docs/operations.md checked against the product: every `cumulo ...` command it shows parses with
the real command line, every flag it names exists on that command, every settings file it shows
loads, and the Settings tables name exactly what conf.py accepts (issue 14, acceptance 5: an
operator's guide that is true)."""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import fields
from pathlib import Path

import pytest

from cumulo import conf
from cumulo.cli.main import _parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
TEXT = DOC.read_text()
# Placeholders the guide writes in upper case, with a value of the right type for the parser.
PLACEHOLDERS = {"N": "2", "NAME": "cmp1", "HOST": "cmp1", "ADDR": "0.0.0.0", "DIR": "/tmp/x", "FILE": "/tmp/x.yaml",
                "URL": "amqp://u@h/v", "DRIVERS": "runc", "LEVEL": "info"}


def _code_lines() -> list[str]:
    """Lines of fenced and indented code blocks, continuation lines joined."""
    out: list[str] = []
    fenced = False
    pending = ""
    for raw in TEXT.splitlines():
        if raw.startswith("```"):
            fenced = not fenced
            continue
        if not (fenced or raw.startswith("    ")):
            continue
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        out.append(line)
    return out


def _argv(line: str) -> list[str] | None:
    """The cumulo argv of a shell line (env assignments, a venv path and a comment dropped)."""
    line = line.replace("[", " ").replace("]", " ")
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # prose with an apostrophe: `--driver <the module's drivers>`
        words = line.split()
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words.pop(0)
    if not words or Path(words[0]).name != "cumulo":
        return None
    return words[1:]


def _commands() -> list[list[str]]:
    found = [a for a in map(_argv, _code_lines()) if a]
    return [a for a in found if a and a[0] != "is"]


def _inline_commands() -> list[list[str]]:
    """`cumulo <command> ... --flag ...` spans of the prose and tables."""
    spans = re.findall(r"`((?:\.venv/bin/)?cumulo [^`]*--[^`]*)`", TEXT)
    return [a for a in (_argv(s) for s in spans) if a]


def _subparser(argv: list[str]) -> tuple[argparse.ArgumentParser, list[str]]:
    """The (sub)parser that takes the options of argv, descending through sub-commands."""
    parser = _parser()
    path: list[str] = []
    rest = list(argv)
    while rest:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or rest[0] not in subs[0].choices:
            break
        path.append(rest.pop(0))
        parser = subs[0].choices[path[-1]]
    return parser, path


def test_the_guide_shows_commands() -> None:
    roles = {a[0] for a in _commands()}
    assert {"up", "api", "conductor", "scheduler", "compute", "dev", "admin"} <= roles, roles


@pytest.mark.parametrize("argv", _commands(), ids=lambda a: " ".join(a)[:60])
def test_a_command_in_a_code_block_parses(argv: list[str]) -> None:
    words = [PLACEHOLDERS.get(w, w) for w in argv]
    try:
        _parser().parse_args(words)
    except SystemExit as exc:  # argparse's error (printed to stderr)
        pytest.fail(f"`cumulo {' '.join(argv)}` does not parse (exit {exc.code})")


@pytest.mark.parametrize("argv", _inline_commands(), ids=lambda a: " ".join(a)[:60])
def test_every_flag_the_prose_names_exists(argv: list[str]) -> None:
    parser, path = _subparser(argv)
    assert path, argv
    options = {o for a in parser._actions for o in a.option_strings}
    named = {w.split("=")[0] for w in argv if w.startswith("--")}
    assert named <= options, f"cumulo {' '.join(path)}: no {sorted(named - options)}"


def _settings_files() -> list[str]:
    blocks = re.findall(r"```yaml\n(.*?)```", TEXT, re.S)
    return [b for b in blocks if b.startswith(("# cumulo.yaml", "# /etc/cumulo/"))]


@pytest.mark.parametrize("n", range(2))
def test_the_settings_files_shown_load(n: int, tmp_path: Path) -> None:
    files = _settings_files()
    assert len(files) == 2
    path = tmp_path / "cloud.yaml"
    path.write_text(files[n])
    settings = conf.load(path, env={})
    if n == 1:  # the multi-machine file names every key a split cloud shares
        for key in ("database", "transport", "api_url", "l3_host", "volume_host"):
            assert getattr(settings, key), key


def _table_names(heading: str) -> set[str]:
    """The backticked names in the first column of the table after `heading`."""
    start = TEXT.index(heading)
    names: set[str] = set()
    in_table = False
    for line in TEXT[start:].splitlines()[1:]:
        if line.startswith("|"):
            in_table = True
            first = line.split("|")[1]
            names.update(re.findall(r"`([a-z0-9_]+)`", first))
        elif in_table:
            break
    return names


def test_the_settings_table_names_every_setting() -> None:
    documented = _table_names("## Settings\n") - {"extra"}
    known = {f.name for f in fields(conf.Settings) if f.init} - {"extra"}
    assert documented <= known, f"documented but not settings: {sorted(documented - known)}"
    assert known <= documented, f"settings the table lacks: {sorted(known - documented)}"


def test_every_extra_key_documented_is_accepted(tmp_path: Path) -> None:
    documented = _table_names("Less common knobs") - {"extra"}
    assert {"scheduler_filters", "conductor_sweep_interval", "runc_stop_grace"} <= documented
    path = tmp_path / "extra.yaml"
    path.write_text("extra:\n" + "".join(f"  {k}: null\n" for k in sorted(documented)))
    conf.load(path, env={})  # an unknown extra key is an error naming it
