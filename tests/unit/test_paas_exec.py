"""paas/exec.py without a guest: the prologue (quoted exports, PAAS_* variables, the lock and .rc
markers), outputs read back, the payload execs' argv, timeouts and limits from product metadata,
artifact dirs, the StepFailed of a failed run. The script also runs in the host's busybox sh with a
temporary PAAS_ROOT (a unit stand-in for the guest; tests/contract/test_paas_recipes_runc.py runs
it in a real container)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from cumulo.errors import Invalid
from cumulo.paas import exec as px

T = px.Target("kv-backend", "1.0", "backend", "shop-backend-1", "10.0.0.7")
NONCE = "ab" * 16


def test_the_prologue_quotes_every_value_and_exports_the_paas_variables() -> None:
    text = px.script(T, "configure", {"B": "it's $HOME `id`\nnext", "A": "plain"}, "echo hi", run="r1",
                     nonce=NONCE).decode()
    lines = text.splitlines()
    assert lines[0] == "umask 022"
    assert lines[1] == "export A=plain"  # sorted by key
    assert "export B='it'\"'\"'s $HOME `id`\nnext'" in text  # single quotes: nothing expands
    for name, value in (("PAAS_ROOT", "/opt/paas"), ("PAAS_STATE", "/opt/paas/.state/kv-backend"),
                        ("PAAS_PRODUCT", "kv-backend"), ("PAAS_VERSION", "1.0"), ("PAAS_TIER", "backend"),
                        ("PAAS_NODE", "shop-backend-1"), ("PAAS_STEP", "configure"), ("PAAS_IP", "10.0.0.7")):
        assert f"export {name}={value}" in lines
    assert 'export PAAS_OUTPUT="$__r.output"' in lines
    assert '__r="$PAAS_STATE/steps/r1"' in lines
    # the recipe goes in a quoted here-document whose delimiter holds the nonce
    assert f"  cat > \"$__r.sh\" <<'PAAS_RECIPE_{NONCE}'" in lines
    at = lines.index(f"  cat > \"$__r.sh\" <<'PAAS_RECIPE_{NONCE}'")
    assert lines[at + 1:at + 3] == ["echo hi", f"PAAS_RECIPE_{NONCE}"]
    assert lines[-1] == 'exit "$(cat "$__r.rc")"'
    assert '  (cd "$PAAS_ROOT" && exec $__t /bin/sh "$__r.sh") </dev/null >"$__r.out" 2>"$__r.err"' in lines
    assert not any("timeout -s KILL" in line for line in lines)  # no guard asked
    guarded = px.script(T, "configure", {}, "true", run="r1", nonce=NONCE, guard=70).decode().splitlines()
    assert '  [ ! -x /bin/busybox ] || __t="/bin/busybox timeout -s KILL 70"' in guarded


@pytest.mark.parametrize("key", ["1A", "A-B", "PATH", "HOME", "IFS", "PAAS_ROOT", "PAAS_X", "", "A B", "x" * 200])
def test_attribute_keys_must_be_plain_variable_names(key: str) -> None:
    with pytest.raises(Invalid, match="shell variable name"):
        px.script(T, "install", {key: "v"}, "true", run="r", nonce=NONCE)


def test_a_nul_in_a_value_is_refused() -> None:
    with pytest.raises(Invalid, match="NUL"):
        px.script(T, "install", {"A": "a\0b"}, "true", run="r", nonce=NONCE)


def test_outputs_come_back_after_the_marker() -> None:
    marker = f"\n@@PAAS-OUTPUT-{NONCE}@@\n"
    out, outputs = px.split_outputs("hello\nworld" + marker + "A=1\nnot a pair\nB=x=y\nA=2\n9X=no\n", NONCE)
    assert out == "hello\nworld" and outputs == {"A": "2", "B": "x=y"}
    assert px.split_outputs("no marker\n", NONCE) == ("no marker\n", None)


def test_run_ids_and_staging_dirs_are_safe_and_stable() -> None:
    a = px.run_id(12, "install:web:1:httpd-web")
    assert a == px.run_id(12, "install:web:1:httpd-web") and a != px.run_id(13, "install:web:1:httpd-web")
    assert a.startswith("t12-install_web_1_httpd-web-") and all(c.isalnum() or c in "_.-" for c in a)
    assert px.run_id(1, "x", "configure") != px.run_id(1, "x", "start")
    weird = px.run_id(1, "a/../b;$(rm -rf /)")
    assert "/" not in weird and "$" not in weird and ";" not in weird
    staging = px.staging_dir(a)
    assert staging.startswith("/opt/paas/.incoming/") and len(staging.rsplit("/", 1)[1]) == 16


def test_timeouts_from_metadata_and_their_limits() -> None:
    assert px.timeout_for(300, []) == 300
    assert px.timeout_for(9999, None) == 3600
    assert px.timeout_for(300, [{"key": "timeout", "value": "45"}]) == 45
    for bad in ("0", "3601", "soon", "-1"):
        with pytest.raises(Invalid, match="timeout"):
            px.timeout_for(300, [{"key": "timeout", "value": bad}])


def test_artifact_dirs() -> None:
    web = px.Target("httpd-web", "1.0", "web", "n", "")
    assert px.artifact_dir(web, []) == "/opt/paas/httpd-web/www"
    assert px.artifact_dir(web, [{"key": "artifact_dir", "value": "htdocs/app"}]) == "/opt/paas/httpd-web/htdocs/app"
    assert px.artifact_dir(web, [{"key": "artifact_dir", "value": "$PAAS_ROOT/site"}]) == "/opt/paas/site"
    assert px.artifact_dir(web, [{"key": "artifact_dir", "value": "/srv/www/"}]) == "/srv/www"
    for bad in ("../etc", "/a/../../b", "a b", "$(id)", "/", "a;b"):
        with pytest.raises(Invalid, match="artifact_dir"):
            px.artifact_dir(web, [{"key": "artifact_dir", "value": bad}])


def test_the_fake_exit_hook_only_on_the_fake_driver() -> None:
    assert px.fake_env("fake", {"CUMULO_FAKE_EXIT": "3"}) == {"CUMULO_FAKE_EXIT": "3"}
    assert px.fake_env("runc", {"CUMULO_FAKE_EXIT": "3"}) == {}
    assert px.fake_env("fake", {"CUMULO_FAKE_EXIT": "3; reboot"}) == {}


class Recorder:
    """An ExecFn that records what it was asked and answers as told."""

    def __init__(self, *answers: Mapping[str, Any]) -> None:
        self.calls: list[tuple[list[str], dict[str, str], bytes, float, int]] = []
        self.answers = list(answers)

    async def __call__(self, argv: list[str], env: dict[str, str], stdin: bytes, timeout: float,
                       limit: int) -> Mapping[str, Any]:
        self.calls.append((argv, env, stdin, timeout, limit))
        return self.answers.pop(0) if self.answers else {"exit_code": 0, "stdout": "", "stderr": ""}


async def test_a_run_sends_only_path_and_home_and_fails_with_the_tail() -> None:
    rec = Recorder({"exit_code": 4, "stdout": "".join(f"line {i}\n" for i in range(40)), "stderr": "bad thing\n"})
    res = await px.run_recipe(rec, T, "install", {"SECRET": "s3cr3t"}, "exit 4", run="r9", timeout=12)
    argv, env, stdin, timeout, limit = rec.calls[0]
    assert b'__t="/bin/busybox timeout -s KILL 22"' in stdin  # the node's guard: our timeout + 10 s
    assert argv == ["/bin/sh", "-s"] and env == px.BASE_ENV and timeout == 12 and limit == px.OUTPUT_LIMIT
    assert b"export SECRET=s3cr3t" in stdin and "s3cr3t" not in " ".join(argv + list(env.values()))
    assert not res.ok and res.exit_code == 4
    err = px.failure(T, res)
    assert str(err) == "the install recipe of kv-backend-1.0 on shop-backend-1 exited 4"
    assert err.exit_code == 4 and err.output.splitlines()[-1] == "bad thing"
    assert len(err.output.splitlines()) == px.TAIL_LINES
    timed = px.RecipeRun(step="start", exit_code=None, signal=9, timed_out=True)
    assert "start recipe of kv-backend-1.0 on shop-backend-1 timed out" in str(px.failure(T, timed))


async def test_payloads_go_by_busybox_tar_with_our_argv_only() -> None:
    rec = Recorder()
    staging = await px.put_payload(rec, b"tarball-bytes", run=px.run_id(3, "artifact:web:1:my app;rm"), timeout=30)
    assert [c[0] for c in rec.calls] == [["/bin/busybox", "mkdir", "-p", staging],
                                         ["/bin/busybox", "tar", "-xzf", "-", "-C", staging]]
    assert rec.calls[1][2] == b"tarball-bytes" and "app" not in staging
    failing = Recorder({"exit_code": 0}, {"exit_code": 1, "stderr": "tar: invalid magic\n"})
    with pytest.raises(px.StepFailed, match="invalid magic") as got:
        await px.put_payload(failing, b"junk", run="r", timeout=30)
    assert got.value.exit_code == 1


BUSYBOX = shutil.which("busybox")


@pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed")
async def test_the_script_runs_in_busybox_sh_collects_a_finished_run_and_keeps_values_literal(tmp_path: Path) -> None:
    async def local(argv: list[str], env: dict[str, str], stdin: bytes, timeout: float, limit: int) -> Mapping[str, Any]:
        assert argv == ["/bin/sh", "-s"]
        done = await asyncio.to_thread(subprocess.run, [str(BUSYBOX), "sh", "-s"], input=stdin, capture_output=True,
                                       env={**env, "PATH": f"{Path(str(BUSYBOX)).parent}:/bin:/usr/bin"},
                                       timeout=timeout, check=False)
        return {"exit_code": done.returncode, "stdout": done.stdout.decode(), "stderr": done.stderr.decode()}

    t = px.Target("p", "1", "t", "n", "10.1.1.1", root=str(tmp_path))
    tricky = "a'b\"c $X `true` $(false)\n\\n end"
    recipe = 'printf "%s" "$V"\necho "K=$PAAS_NODE" >> "$PAAS_OUTPUT"\necho ran >> "$PAAS_ROOT/count"\nexit 5\n'
    first = await px.run_recipe(local, t, "install", {"V": tricky}, recipe, run="r1", timeout=30)
    assert (first.exit_code, first.stdout, first.outputs) == (5, tricky, {"K": "n"})
    again = await px.run_recipe(local, t, "install", {"V": "other"}, recipe, run="r1", timeout=30)
    assert (again.exit_code, again.stdout) == (5, tricky) and "earlier attempt" in again.stderr
    assert (tmp_path / "count").read_text() == "ran\n"  # the recipe ran once
    assert sorted(p.name for p in (tmp_path / ".state" / "p" / "steps").iterdir()) == [
        "r1.err", "r1.out", "r1.output", "r1.rc", "r1.sh"]  # the lock is gone
