"""Run one recipe step of one product on one node (PAAS.md 3.6), through the drivers' exec capability.

The exec is always argv `["/bin/sh", "-s"]` with env only PATH and HOME: everything else (the
resolved attributes, the PAAS_* variables, the recipe) travels on stdin, so nothing a tenant gave
reaches a host command's argv or /proc. stdin is a prologue written here + the recipe text:

- `export`s of the attributes (values quoted by shlex.quote: quotes, `$`, backquotes and newlines
  stay literal), then of PAAS_ROOT (/opt/paas in containers, /mnt/root/paas on QEMU servers),
  PAAS_STATE ($PAAS_ROOT/.state/<product>),
  PAAS_PRODUCT, PAAS_VERSION, PAAS_TIER, PAAS_NODE, PAAS_STEP, PAAS_IP and PAAS_OUTPUT (a file the
  recipe appends `KEY=VALUE` lines to: the product's outputs, read by OUTPUT(tier.product.KEY)).
- A run id per (task, step key, part): the lock dir `$PAAS_STATE/steps/<run>.lock` holds the pid
  of the shell running it; the recipe is written to `<run>.sh` (a here-document with a random
  delimiter) and run by `/bin/sh` from $PAAS_ROOT with stdin /dev/null and its stdout and stderr in
  `<run>.out` / `<run>.err` (files, not the exec's pipes: a daemon that forgets to close stdio
  cannot hold the exec open), under `busybox timeout -s KILL <timeout + 10 s>` (so it cannot
  outlive its timeout even when Cumulo is gone); its exit status goes to `<run>.rc` (written by rename). A resumed step
  (a new attempt after Cumulo died mid-exec) runs the same run id: it waits while the earlier shell
  still lives, and when `<run>.rc` exists it collects that run's result instead of running the
  recipe again. A lock whose pid is gone is stale and taken over.
- After the run the wrapper prints the run's stdout and stderr, then a marker line with a random
  nonce and the first 16 KiB of $PAAS_OUTPUT; `split_outputs` takes them apart.

Payloads (a built-in product's files, an application tarball) go as extra execs with fixed argv:
`/bin/busybox mkdir -p <staging>` then `/bin/busybox tar -xzf - -C <staging>` with the tarball on
stdin, where <staging> is $PAAS_ROOT/.incoming/<hash of the run id>; the recipe that follows moves
the files into place (its destination travels on stdin too).

Every run writes a `paas_exec_records` row (exit code, signal, timed_out, bounded stdout/stderr,
start/end); a template node's skipped install writes one with `skipped_reason`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shlex
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cumulo.db import utcnow
from cumulo.errors import Invalid
from cumulo.paas.engine.base import StepFailed
from cumulo.paas.models import paas_exec_records

if TYPE_CHECKING:
    import datetime as dt

    from cumulo.context import RequestContext
    from cumulo.db import Database
    from cumulo.paas.deps import PaasServices

BASE_ENV = {"PATH": "/bin:/usr/bin:/sbin:/usr/sbin", "HOME": "/root"}
CONTAINER_ROOT = "/opt/paas"  # PAAS_ROOT in containers
VM_ROOT = "/mnt/root/paas"  # PAAS_ROOT in the tiny VM: on its persistent root disk (PAAS.md 3.7)
BUSYBOX = "/bin/busybox"  # in the busybox demo image (image/demo/busybox.py) and the tiny VM
OUTPUT_LIMIT = 65536  # bytes kept of each stream of a run (head + tail, the Exec contract)
OUTPUTS_MAX = 16384  # bytes of $PAAS_OUTPUT read back
MAX_TIMEOUT = 3600.0  # the largest `timeout` a product's metadata may ask
TAIL_LINES = 20  # lines of output a task error shows
GUARD_MARGIN = 10  # seconds the node's own kill of a recipe waits beyond the exec timeout
RECORD_TEXT_MAX = 2 * OUTPUT_LIMIT  # characters of one stream kept in a record
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Names a recipe's environment needs as they are: an attribute may not take them.
RESERVED = frozenset({"PATH", "HOME", "IFS", "ENV", "PS1", "PS2", "PS4", "PWD", "OLDPWD", "SHELL"})
_MARKER = "@@PAAS-OUTPUT-{}@@"

# argv, env, stdin, timeout, output limit -> the ExecResult as JSON (ExecResult.to_dict).
ExecFn = Callable[[list[str], dict[str, str], bytes, float, int], Awaitable[Mapping[str, Any]]]


def check_key(key: str) -> None:
    """An attribute key must be a shell variable name that is not PAAS_* nor a reserved name."""
    if not _KEY.match(key) or key.startswith("PAAS_") or key in RESERVED:
        raise Invalid(f"attribute key {key!r} must be a shell variable name (letters, digits, _), "
                      "not PAAS_* nor one of " + ", ".join(sorted(RESERVED)))


@dataclass(frozen=True)
class Target:
    """Where a recipe runs and what it is about (the PAAS_* variables)."""

    product: str
    version: str
    tier: str
    node: str
    ip: str = ""
    root: str = CONTAINER_ROOT

    @property
    def state(self) -> str:
        return f"{self.root}/.state/{self.product}"

    def product_dir(self) -> str:
        return f"{self.root}/{self.product}"


@dataclass
class RecipeRun:
    """What one run of a recipe gave."""

    step: str
    exit_code: int | None
    signal: int | None = None
    timed_out: bool = False
    stdout: str = ""
    stderr: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def tail(self, lines: int = TAIL_LINES) -> str:
        """The last lines of stdout then stderr (what a task error shows)."""
        text = "\n".join(s.rstrip("\n") for s in (self.stdout, self.stderr) if s.strip())
        return "\n".join(text.splitlines()[-lines:])

    def outcome(self) -> str:
        if self.timed_out:
            return "timed out"
        if self.exit_code is None:
            return f"was killed by signal {self.signal}" if self.signal else "did not run"
        return f"exited {self.exit_code}"


def run_id(task_id: int | None, step_key: str, part: str = "") -> str:
    """A file-name-safe id of one step's run (the same for every attempt of the step)."""
    raw = f"t{task_id or 0}-{step_key}" + (f"-{part}" if part else "")
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", raw)[:100]
    return f"{safe}-{hashlib.sha256(raw.encode()).hexdigest()[:8]}"


def staging_dir(run: str, root: str = CONTAINER_ROOT) -> str:
    """Where a payload is unpacked before its recipe moves it: only hex from us, no tenant text."""
    return f"{root}/.incoming/{hashlib.sha256(run.encode()).hexdigest()[:16]}"


def timeout_for(default: float, metadata: Any) -> float:
    """The product's `timeout` metadata (1..3600 s) when it has one, else the configured default."""
    for item in metadata or []:
        if isinstance(item, Mapping) and item.get("key") == "timeout":
            try:
                value = float(str(item.get("value")))
            except (TypeError, ValueError):
                raise Invalid(f"product metadata timeout must be a number of seconds, not {item.get('value')!r}") from None
            if not 0 < value <= MAX_TIMEOUT:
                raise Invalid(f"product metadata timeout must be between 1 and {int(MAX_TIMEOUT)} seconds")
            return value
    return min(float(default), MAX_TIMEOUT)


def _export(name: str, value: str) -> str:
    if "\0" in value:
        raise Invalid(f"attribute {name} holds a NUL character")
    return f"export {name}={shlex.quote(value)}"


def script(target: Target, step: str, attributes: Mapping[str, str], recipe: str, *, run: str, nonce: str,
           guard: int | None = None, probe_ip: bool = False) -> bytes:
    """The whole stdin of a recipe run: the prologue, the recipe as a here-document, the wrapper.
    `guard`: seconds after which the node itself SIGKILLs the recipe's shell (`busybox timeout`,
    when the node has /bin/busybox), so a recipe cannot outlive its timeout when Cumulo, which kills
    a timed-out exec, is gone. `probe_ip`: an empty PAAS_IP is taken from the node's first global
    IPv4 address (a node's boot script, written before the node had an address: paas/guest.py)."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", run) or not re.fullmatch(r"[0-9a-f]{16,64}", nonce):
        raise ValueError("bad run id or nonce")
    lines = ["umask 022"]
    for key in sorted(attributes):
        check_key(key)
        lines.append(_export(key, str(attributes[key])))
    paas = {"PAAS_ROOT": target.root, "PAAS_STATE": target.state, "PAAS_PRODUCT": target.product,
            "PAAS_VERSION": target.version, "PAAS_TIER": target.tier, "PAAS_NODE": target.node,
            "PAAS_STEP": step, "PAAS_IP": target.ip}
    lines += [_export(k, v) for k, v in paas.items()]
    if probe_ip:
        lines.append('[ -n "$PAAS_IP" ] || PAAS_IP=$(ip -4 -o addr show scope global 2>/dev/null '
                     "| awk '{ sub(\"/.*\", \"\", $4); print $4; exit }')")
    delim = f"PAAS_RECIPE_{nonce}"
    body = recipe if recipe.endswith("\n") else recipe + "\n"
    if any(line == delim for line in body.splitlines()):  # a nonce of 128 random bits: never
        raise ValueError("recipe holds the here-document delimiter")
    lines += [
        f'__r="$PAAS_STATE/steps/{run}"',
        'export PAAS_OUTPUT="$__r.output"',
        'mkdir -p "$PAAS_STATE/steps" || { echo "paas: cannot make $PAAS_STATE/steps" >&2; exit 125; }',
        "__n=0",
        'while ! mkdir "$__r.lock" 2>/dev/null; do',
        '  __pid=$(cat "$__r.lock/pid" 2>/dev/null)',
        '  if [ -n "$__pid" ] && kill -0 "$__pid" 2>/dev/null; then sleep 1; continue; fi',
        "  __n=$((__n + 1))",
        '  if [ -z "$__pid" ] && [ "$__n" -lt 5 ]; then sleep 1; continue; fi',
        '  rm -rf "$__r.lock"',
        "done",
        'echo $$ > "$__r.lock/pid"',
        'if [ -f "$__r.rc" ]; then',
        '  echo "paas: $PAAS_STEP of $PAAS_PRODUCT finished in an earlier attempt: its result is collected" >&2',
        "else",
        '  : > "$PAAS_OUTPUT"',
        f"  cat > \"$__r.sh\" <<'{delim}'",
        body + delim,
        "  __t=",
        *([f'  [ ! -x {BUSYBOX} ] || __t="{BUSYBOX} timeout -s KILL {int(guard)}"'] if guard else []),
        '  (cd "$PAAS_ROOT" && exec $__t /bin/sh "$__r.sh") </dev/null >"$__r.out" 2>"$__r.err"',
        '  echo $? > "$__r.rc.new" && mv -f "$__r.rc.new" "$__r.rc"',
        "fi",
        'rm -rf "$__r.lock"',
        'cat "$__r.out" 2>/dev/null',
        'cat "$__r.err" >&2 2>/dev/null',
        f"printf '\\n%s\\n' '{_MARKER.format(nonce)}'",
        f'head -c {OUTPUTS_MAX} "$PAAS_OUTPUT" 2>/dev/null',
        'exit "$(cat "$__r.rc")"',
    ]
    return ("\n".join(lines) + "\n").encode()


def parse_outputs(text: str) -> dict[str, str]:
    """KEY=VALUE lines (the last of a key wins); other lines are ignored."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and _KEY.match(key):
            out[key] = value
    return out


def split_outputs(stdout: str, nonce: str) -> tuple[str, dict[str, str] | None]:
    """The recipe's own stdout and the outputs after the wrapper's marker (None: no marker, the
    wrapper did not get that far)."""
    marker = "\n" + _MARKER.format(nonce) + "\n"
    at = stdout.rfind(marker)
    if at < 0:
        return stdout, None
    return stdout[:at], parse_outputs(stdout[at + len(marker):])


def _result(step: str, doc: Mapping[str, Any], started: dt.datetime) -> RecipeRun:
    return RecipeRun(
        step=step, exit_code=None if doc.get("exit_code") is None else int(doc["exit_code"]),
        signal=None if doc.get("signal") is None else int(doc["signal"]), timed_out=bool(doc.get("timed_out")),
        stdout=str(doc.get("stdout") or ""), stderr=str(doc.get("stderr") or ""),
        started_at=started, ended_at=utcnow(), seconds=float(doc.get("seconds") or 0.0),
    )


async def run_recipe(exec_fn: ExecFn, target: Target, step: str, attributes: Mapping[str, str], recipe: str, *,
                     run: str, timeout: float, output_limit: int = OUTPUT_LIMIT,
                     extra_env: Mapping[str, str] | None = None, guard: int | None = None) -> RecipeRun:
    """Run `recipe` as step `step` of `target` (see the module docstring); never raises for a
    failing recipe: the RecipeRun says how it ended."""
    nonce = secrets.token_hex(16)
    # the node's own guard outlasts our timeout a little: while Cumulo runs, its timeout wins
    stdin = script(target, step, attributes, recipe, run=run, nonce=nonce,
                   guard=int(timeout) + GUARD_MARGIN if guard is None else guard)
    started = utcnow()
    doc = await exec_fn(["/bin/sh", "-s"], {**BASE_ENV, **(extra_env or {})}, stdin, timeout, output_limit)
    res = _result(step, doc, started)
    res.stdout, outputs = split_outputs(res.stdout, nonce)
    res.outputs = outputs or {}
    return res


async def put_payload(exec_fn: ExecFn, tarball: bytes, *, run: str, timeout: float,
                      root: str = CONTAINER_ROOT) -> str:
    """Unpack a gzipped tarball into this run's staging dir on the node; returns the dir. The
    argv is ours only (busybox and a hex path). StepFailed when the node refuses it."""
    staging = staging_dir(run, root)
    made = await exec_fn([BUSYBOX, "mkdir", "-p", staging], dict(BASE_ENV), b"", timeout, 4096)
    if made.get("exit_code") != 0:
        raise StepFailed(f"cannot make {staging} on the node: {str(made.get('stderr') or '').strip()[-500:]}",
                         exit_code=made.get("exit_code"), output=str(made.get("stderr") or ""))
    res = await exec_fn([BUSYBOX, "tar", "-xzf", "-", "-C", staging], dict(BASE_ENV), tarball, timeout, 16384)
    if res.get("exit_code") != 0 or res.get("timed_out"):
        how = "timed out" if res.get("timed_out") else f"exited {res.get('exit_code')}"
        err = str(res.get("stderr") or "").strip()
        raise StepFailed(f"unpacking the payload ({len(tarball)} bytes) into {staging} {how}: {err[-500:]}",
                         exit_code=res.get("exit_code"), output=err)
    return staging


def artifact_dir(target: Target, metadata: Any) -> str:
    """Where a product's applications go: its `artifact_dir` metadata, relative to the product's
    dir ($PAAS_ROOT/<product>) unless it starts with $PAAS_ROOT or /; default www."""
    value = "www"
    for item in metadata or []:
        if isinstance(item, Mapping) and item.get("key") == "artifact_dir" and str(item.get("value") or "").strip():
            value = str(item["value"]).strip()
    if value.startswith("$PAAS_ROOT"):
        path = target.root + value[len("$PAAS_ROOT"):]
    elif value.startswith("/"):
        path = value
    else:
        path = f"{target.product_dir()}/{value}"
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or not all(re.fullmatch(r"[A-Za-z0-9_.+-]+", p) for p in parts):
        raise Invalid(f"product metadata artifact_dir {value!r} is not a plain path")
    return "/" + "/".join(parts)


def artifact_recipe(staging: str, dest: str, deploy: str = "") -> str:
    """The recipe that puts an unpacked application in place (replacing what was there), then the
    product's own deploy recipe (which sees $PAAS_ARTIFACT_DIR)."""
    # The dir itself stays (a server may have chdir'd into it, as busybox httpd does): its content goes.
    return (f"__src={shlex.quote(staging)}\nexport PAAS_ARTIFACT_DIR={shlex.quote(dest)}\n"
            'mkdir -p "$PAAS_ARTIFACT_DIR" && (cd "$PAAS_ARTIFACT_DIR" && rm -rf ./* ./.[!.]* ./..?*) '
            '&& cp -a "$__src"/. "$PAAS_ARTIFACT_DIR"/ && rm -rf "$__src" '
            '|| { echo "paas: cannot put the application in $PAAS_ARTIFACT_DIR" >&2; exit 1; }\n'
            'echo "application unpacked into $PAAS_ARTIFACT_DIR"\n' + deploy)


def unartifact_recipe(dest: str, undeploy: str = "") -> str:
    """The recipe that empties a product's artifact dir (the dir stays), then the product's own
    undeploy recipe (which sees $PAAS_ARTIFACT_DIR)."""
    return (f"export PAAS_ARTIFACT_DIR={shlex.quote(dest)}\n"
            '[ ! -d "$PAAS_ARTIFACT_DIR" ] || (cd "$PAAS_ARTIFACT_DIR" && rm -rf ./* ./.[!.]* ./..?*) || exit 1\n'
            'echo "application removed from $PAAS_ARTIFACT_DIR"\n' + undeploy)


def failure(target: Target, run: RecipeRun) -> StepFailed:
    """The StepFailed of a failed run: names the recipe, the product and node and how it ended; its
    output is the tail (the engine's task error puts the step key before the message and the tail
    after it)."""
    msg = f"the {run.step} recipe of {target.product}-{target.version} on {target.node} {run.outcome()}"
    return StepFailed(msg, exit_code=run.exit_code, output=run.tail())


def server_exec(services: PaasServices, ctx: RequestContext, server: dict[str, Any]) -> ExecFn:
    """An ExecFn on one server (an instances row) through ComputeService.exec_in_server."""

    async def run(argv: list[str], env: dict[str, str], stdin: bytes, timeout: float, limit: int) -> Mapping[str, Any]:
        return await services.compute.exec_in_server(ctx, server, argv, env=env, stdin=stdin, timeout=timeout,
                                                     output_limit=limit)

    return run


def fake_env(conf_driver: str, attributes: Mapping[str, str]) -> dict[str, str]:
    """The fake driver's test hook: a digits-only CUMULO_FAKE_EXIT attribute becomes the exec's env
    (the fake exec exits with it), only when the local driver is the fake one."""
    value = str(attributes.get("CUMULO_FAKE_EXIT", ""))
    if "fake" in conf_driver.split(",") and value.isdigit() and len(value) <= 3:
        return {"CUMULO_FAKE_EXIT": value}
    return {}


def _clip(text: str) -> str:
    return text if len(text) <= RECORD_TEXT_MAX else text[:4096] + "\n[...]\n" + text[-(RECORD_TEXT_MAX - 4096):]


async def record(db: Database, product_instance_id: str, *, task_id: int | None, step: str, attempt: int,
                 run: RecipeRun | None = None, skipped_reason: str | None = None) -> int:
    """One paas_exec_records row for a run, or for a step skipped with `skipped_reason`."""
    now = utcnow()
    values: dict[str, Any] = {"product_instance_id": product_instance_id, "task_id": task_id, "step": step[:32],
                              "attempt": attempt, "skipped_reason": skipped_reason}
    if run is not None:
        values.update(exit_code=run.exit_code, signal=run.signal, timed_out=run.timed_out, stdout=_clip(run.stdout),
                      stderr=_clip(run.stderr), started_at=run.started_at or now, ended_at=run.ended_at or now)
    else:
        values.update(stdout="", stderr="", started_at=now, ended_at=now)
    async with db.write() as conn:
        res = await conn.execute(sa.insert(paas_exec_records).values(**values))
        return int(res.inserted_primary_key[0]) if res.inserted_primary_key else 0
