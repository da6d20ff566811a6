"""The built-in products' recipes on a REAL runc container (the busybox demo image), through the
PaaS recipe path (paas/exec.py: the prologue on stdin of `/bin/sh -s`, the payload execs) over the
driver's exec: kv-backend and httpd-web installed, configured and started, the demo application
deployed, its page showing the backend's data once the backend allows the web node (403 before),
the burner, a failing recipe's exit code and output, attribute quoting, a timeout, and a resumed
step that collects its finished run instead of running it again.

Both products run in one container (the backend on 8080, the web on 80, the web's BACKENDS =
127.0.0.1): the driver fixture gives containers no NIC, so one container is the whole environment."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from _paas_exec import exec_fn
from test_runc_driver import (  # noqa: F401  # runc_driver: a fixture
    RUNC_MISSING,
    runc_driver,
    spec_for,
)

from cumulo.compute.drivers.runc import RuncDriver
from cumulo.paas import exec as px
from cumulo.paas.products import builtin

pytestmark = pytest.mark.skipif(bool(RUNC_MISSING), reason=RUNC_MISSING or "runc present")


def release(name: str) -> dict[str, Any]:
    return next(p for p in builtin.products() if p["name"] == name)


async def step(fn: px.ExecFn, target: px.Target, name: str, attrs: Mapping[str, str], key: str) -> px.RecipeRun:
    recipe = release(target.product)["recipes"][name]
    package = builtin.payload(target.product, target.version) if name == "install" else None
    if package:  # as the install action does: the package unpacked first, its dir in PAAS_PAYLOAD
        staging = await px.put_payload(fn, package, run=px.run_id(1, key, "payload"), timeout=60)
        recipe = f"export PAAS_PAYLOAD={staging}\n" + recipe
    res = await px.run_recipe(fn, target, name, attrs, recipe, run=px.run_id(1, key), timeout=60)
    assert res.ok, (name, target.product, res)
    if package:
        count = builtin.PAYLOAD_BYTES[target.product] // (256 << 10)
        assert f"{count} assets checked and installed" in res.stdout, res.stdout
    return res


async def fetch(fn: px.ExecFn, url: str) -> tuple[int, str]:
    """GET url from inside the container (busybox wget; its -T segfaults in busybox 1.35): its exit code and body or error."""
    res = await fn(["/bin/busybox", "timeout", "10", "/bin/busybox", "wget", "-q", "-O", "-", url], dict(px.BASE_ENV), b"", 30, 65536)
    return int(res["exit_code"]), str(res["stdout"]) + str(res["stderr"])


async def test_builtin_products_serve_the_demo_application(runc_driver: RuncDriver, tmp_path: Path) -> None:  # noqa: F811
    spec = spec_for(tmp_path, "paas-node")
    await runc_driver.spawn(spec)
    fn = exec_fn(runc_driver, spec.uuid)
    kv = px.Target("kv-backend", "1.0", "backend", "env1-backend-1", "127.0.0.1")
    web = px.Target("httpd-web", "1.0", "web", "env1-web-1", "127.0.0.1")

    # The backend allows another address only: the web node is not a member yet.
    for name in ("install", "configure", "start"):
        await step(fn, kv, name, {"ALLOW_FROM": "10.9.9.9"}, f"{name}:backend:1:kv-backend")
    for name in ("install", "configure", "start"):
        await step(fn, web, name, {"BACKENDS": "127.0.0.1"}, f"{name}:web:1:httpd-web")
    code, body = await fetch(fn, "http://127.0.0.1/")
    assert code == 0 and "no application deployed yet" in body

    # The application: payload exec into the staging dir, then the artifact recipe + httpd-web's deploy.
    run = px.run_id(2, "artifact:web:1:demo")
    staging = await px.put_payload(fn, builtin.demo_app_tarball(), run=run, timeout=60)
    assert re.fullmatch(r"/opt/paas/\.incoming/[0-9a-f]{16}", staging)
    dest = px.artifact_dir(web, release("httpd-web")["metadata"])
    assert dest == "/opt/paas/httpd-web/www"
    recipe = px.artifact_recipe(staging, dest, release("httpd-web")["recipes"]["deploy"])
    res = await px.run_recipe(fn, web, "deploy", {"BACKENDS": "127.0.0.1"}, recipe, run=run, timeout=60)
    assert res.ok, res
    code, body = await fetch(fn, "http://127.0.0.1/index.html")
    assert code == 0 and "Cumulo PaaS demo application" in body, body

    code, page = await fetch(fn, "http://127.0.0.1/cgi-bin/app")
    assert code == 0 and 'class="backend error"' in page and "403" in page, page

    # The web node joins ALLOW_FROM: configure + start (start-or-reload: SIGHUP to the running
    # server, the same pid), and the page shows the data.
    pid = await fn(["/bin/busybox", "cat", "/opt/paas/kv-backend/httpd.pid"], dict(px.BASE_ENV), b"", 30, 4096)
    await step(fn, kv, "configure", {"ALLOW_FROM": "10.9.9.9,127.0.0.1"}, "configure:backend:1:kv-backend:r")
    res = await step(fn, kv, "start", {"ALLOW_FROM": "10.9.9.9,127.0.0.1"}, "start:backend:1:kv-backend:r")
    assert f"(pid {str(pid['stdout']).strip()}) re-reads its configuration" in res.stdout, res.stdout
    code, page = await fetch(fn, "http://127.0.0.1/cgi-bin/app")
    assert code == 0 and 'class="backend ok"' in page, page
    data = re.search(r"<code>(.*)</code>", page)
    assert data is not None
    doc = json.loads(data.group(1).replace("&quot;", '"'))
    assert doc["service"] == "kv-backend" and doc["node"] == "env1-backend-1" and doc["address"] == "127.0.0.1"
    assert doc["hostname"] == "paas-node" and doc["requests"] >= 1

    # The burner answers at once and leaves a CPU burner behind (stdio closed), which ends by itself.
    code, body = await fetch(fn, "http://127.0.0.1/cgi-bin/burn?s=3")
    assert code == 0 and json.loads(body)["burning"] == 3
    ps = await fn(["/bin/busybox", "ps", "-o", "args"], dict(px.BASE_ENV), b"", 30, 65536)
    assert "timeout 3 sh -c" in str(ps["stdout"])

    # The application taken away: its dir emptied (the server keeps serving it: 404 for the page).
    gone = await px.run_recipe(fn, web, "undeploy", {}, px.unartifact_recipe(dest),
                               run=px.run_id(3, "unartifact:web:1:demo"), timeout=60)
    assert gone.ok, gone
    code, body = await fetch(fn, "http://127.0.0.1/cgi-bin/app")
    assert code != 0 and "404" in body, body

    # Stop: nothing answers on 80 any more.
    await step(fn, web, "stop", {}, "stop:web:1:httpd-web")
    code, _ = await fetch(fn, "http://127.0.0.1/")
    assert code != 0


async def test_failures_quoting_timeouts_and_resume(runc_driver: RuncDriver, tmp_path: Path) -> None:  # noqa: F811
    spec = spec_for(tmp_path, "paas-node2")
    await runc_driver.spawn(spec)
    fn = exec_fn(runc_driver, spec.uuid)
    t = px.Target("p1", "2.0", "app", "e-app-1", "10.0.0.5")

    # A failing recipe: its exit code, both outputs, and the StepFailed naming product, step and code.
    res = await px.run_recipe(fn, t, "install", {}, "echo working\necho broken >&2\nexit 7\n",
                              run=px.run_id(1, "install:app:1:p1"), timeout=30)
    assert (res.exit_code, res.timed_out, res.stdout, res.stderr) == (7, False, "working\n", "broken\n")
    err = px.failure(t, res)
    assert err.exit_code == 7 and "install recipe of p1-2.0 on e-app-1 exited 7" in str(err)
    assert err.output.splitlines() == ["working", "broken"]

    # A value with quotes, $, backquotes and newlines stays literal; the PAAS_* variables are there.
    tricky = "it's \"quoted\" $HOME `id` $(id)\nsecond line; rm -rf /"
    res = await px.run_recipe(fn, t, "configure", {"TRICKY": tricky, "EMPTY": ""},
                              'printf "%s|" "$TRICKY" "$EMPTY" "$PAAS_ROOT" "$PAAS_STATE" "$PAAS_PRODUCT" '
                              '"$PAAS_VERSION" "$PAAS_TIER" "$PAAS_NODE" "$PAAS_STEP" "$PAAS_IP" "$(pwd)"\n'
                              'echo "URL=http://$PAAS_IP/x" >> "$PAAS_OUTPUT"\necho "NOTE=a=b" >> "$PAAS_OUTPUT"\n'
                              'env | grep -c "^CUMULO" || true\n',
                              run=px.run_id(1, "configure:app:1:p1"), timeout=30)
    assert res.ok, res
    fields = res.stdout.split("|")
    assert fields[:11] == [tricky, "", "/opt/paas", "/opt/paas/.state/p1", "p1", "2.0", "app", "e-app-1",
                           "configure", "10.0.0.5", "/opt/paas"]
    assert res.outputs == {"URL": "http://10.0.0.5/x", "NOTE": "a=b"}

    # A timeout: the run is killed, timed_out, and the node still serves the next run.
    res = await px.run_recipe(fn, t, "start", {}, "echo begun\nsleep 300\n", run=px.run_id(1, "start:app:1:p1"),
                              timeout=2)
    assert res.timed_out and res.exit_code is None and not res.ok
    assert "timed out" in str(px.failure(t, res))

    # The node's own guard (for when Cumulo is gone) kills a recipe that outlives it: SIGKILL, 137.
    res = await px.run_recipe(fn, t, "start", {}, "echo begun\nsleep 300\n", run=px.run_id(2, "start:app:1:p1"),
                              timeout=60, guard=1)
    assert (res.exit_code, res.timed_out, res.stdout) == (128 + 9, False, "begun\n"), res

    # Resume: the same run id again collects the finished run (a counter shows the recipe ran once).
    counting = 'n=$(cat /tmp/count 2>/dev/null || echo 0); echo $((n + 1)) > /tmp/count; echo "run $((n + 1))"; exit 3\n'
    first = await px.run_recipe(fn, t, "install", {}, counting, run=px.run_id(5, "install:app:1:p1"), timeout=30)
    again = await px.run_recipe(fn, t, "install", {}, counting, run=px.run_id(5, "install:app:1:p1"), timeout=30)
    assert (first.exit_code, first.stdout) == (again.exit_code, again.stdout) == (3, "run 1\n")
    assert "finished in an earlier attempt" in again.stderr
    # ... and a run still in progress (its shell alive) is waited for, not started twice.
    slow = 'sleep 2; n=$(cat /tmp/slow 2>/dev/null || echo 0); echo $((n + 1)) > /tmp/slow; echo "slow $((n + 1))"\n'
    both = await asyncio.gather(*(px.run_recipe(fn, t, "start", {}, slow, run=px.run_id(6, "start:app:1:p1"),
                                                timeout=30) for _ in range(2)))
    assert [r.stdout for r in both] == ["slow 1\n", "slow 1\n"] and all(r.ok for r in both)

    # Cumulo dies mid-exec (the exec cancelled: runc killed, our pipes closed): the recipe goes on in
    # the node; the resumed step waits for it and collects its one run.
    run7 = px.run_id(7, "start:app:1:p1")
    crashed = asyncio.ensure_future(px.run_recipe(fn, t, "start", {}, slow, run=run7, timeout=30))
    lock = f"/opt/paas/.state/p1/steps/{run7}.lock/pid"
    deadline = asyncio.get_running_loop().time() + 30
    while (await fn(["/bin/busybox", "test", "-s", lock], dict(px.BASE_ENV), b"", 30, 4096))["exit_code"] != 0:
        assert asyncio.get_running_loop().time() < deadline and not crashed.done(), "the run never took its lock"
        await asyncio.sleep(0.05)
    crashed.cancel()  # the recipe (2 s) is under way
    with pytest.raises(asyncio.CancelledError):
        await crashed
    resumed = await px.run_recipe(fn, t, "start", {}, slow, run=run7, timeout=30)
    assert resumed.ok and resumed.stdout == "slow 2\n", resumed  # the crashed attempt's run, not a third
