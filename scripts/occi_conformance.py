"""Run pOCCI (CESNET's OCCI compliance suite, 1.0.3 from PyPI, in its own venv) against /occi.

    .venv/bin/python scripts/occi_conformance.py                        # a fresh `cumulo up` per rendering
    .venv/bin/python scripts/occi_conformance.py --endpoint http://127.0.0.1:8080/occi --user demo \
        --password secret [--mime-type text/occi]                      # an existing cloud

What it does, in order:
  1. makes the suite's venv (--venv, default $HOME/pocci-venv) when it is missing: `pip install pycurl`;
     pOCCI 1.0.3's sdist is unpacked by `pip download --no-clean` (its setup.py cannot build: the sdist
     lacks the README.md it opens, and it asks for setuptools' removed use_2to3); its `pOCCI` package
     is copied into the venv and ported to Python 3 there, nothing else changed but what is listed in
     PORT below (2to3; global regex flags moved to the front; locations resolved by RFC 3986, the one
     suite fix: docs/conformance.md says why). pOCCI speaks text/plain, text/occi+plain and text/occi
     (its JSON renderer is an empty class);
  2. without --endpoint, for each rendering: starts `cumulo up` (runc containers, no external link)
     in a temp state dir on a free loopback port; gives the demo user its project as default project
     (pOCCI speaks HTTP Basic and cannot send X-Auth-Project); makes the fixtures pOCCI's tests take
     as given (a running busybox compute, a 1 GiB storage: "requires existing compute machine", its
     docs say) through /occi;
  3. writes pOCCI's config (~/.pOCCI.cfg of a temp HOME): the endpoint, Basic credentials, the
     rendering, and `occi.tests.category` = the busybox image's os_tpl mixin (a compute needs an image
     here, as in Nova: the category pOCCI lists, creates in and deletes from);
  4. runs `pOCCI -f json` (its default test set: 14 tests; --tests names others, e.g. the 3 it skips),
     prints a table and keeps each run's JSON in --workspace;
  4b. with --parse: pOCCI's message parser (pOCCI-parse) reads our renderings of the query interface,
     a collection, a compute, a networkinterface and a storage in text/plain and text/occi;
  5. deletes every server, stops the cloud by its pid and removes its state and network data plane.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
POCCI = "pOCCI==1.0.3"
RENDERINGS = ("text/plain", "text/occi+plain", "text/occi")
SKIPPED_BY_DEFAULT = ("OCCI/CORE/CREATE/001", "OCCI/CORE/CREATE/006", "OCCI/INFRA/CREATE/005")
OS_TPL = "http://schemas.openstack.org/template/os#"
INFRA = "http://schemas.ogf.org/occi/infrastructure#"

# (file, old, new): every change made to pOCCI besides 2to3. The regex flags are Python 3.11's rule
# (a global flag must lead the pattern; Python 2 took it anywhere). location_url: pOCCI joins its
# endpoint and a rendered location by string concatenation, which works only for a server at the
# root of its host rendering root-relative locations; OCCI 1.2's text rendering gives a category's
# location as a URI (GFD.229 §3.1), so it is resolved as RFC 3986 says.
PORT: list[tuple[str, str, str]] = [
    ("render_text.py", "r'^(?i)", "r'(?i)^"),
    ("render_text.py", "r'^((?i)x-occi-location|location)", "r'(?i)^(x-occi-location|location)"),
    ("CORE.py", "def gen_id(prefix):", "def location_url(location):\n"
     "    return urllib.parse.urljoin(occi_config['url'], location)\n\n\ndef gen_id(prefix):"),
]
LOCATION_JOIN = re.compile(r"occi_config\['url'\] \+ (\w+)\['location'\]")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_suite(venv: Path) -> Path:
    """The venv's python, with pycurl installed and the ported pOCCI package in venv/src."""
    python = venv / "bin" / "python"
    if (venv / "src" / "pOCCI" / ".ported").exists():
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # noqa: S603
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "pycurl"], check=True)  # noqa: S603
    with tempfile.TemporaryDirectory(prefix="pocci-sdist-") as tmp:
        # the build fails (see the docstring) but --no-clean keeps the unpacked sdist
        subprocess.run([str(venv / "bin" / "pip"), "download", "-q", "--no-deps", "--no-binary", ":all:",  # noqa: S603
                        "--no-clean", "-d", tmp, POCCI], env={**os.environ, "TMPDIR": tmp}, capture_output=True)
        found = sorted(Path(tmp).glob("pip-download-*/pocci_*/pOCCI/CORE.py"))
        if not found:
            raise SystemExit(f"pip download {POCCI} gave no source tree")
        dest = venv / "src" / "pOCCI"
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(found[0].parent, dest)
    # lib2to3 is in Python <= 3.12: this script's interpreter (the project's venv, 3.11) runs it
    subprocess.run([sys.executable, "-W", "ignore", "-m", "lib2to3", "-w", "-n", "-j", "1", str(dest)],  # noqa: S603
                   check=True, capture_output=True)
    for name, old, new in PORT:
        path = dest / name
        text = path.read_text()
        if old not in text:
            raise SystemExit(f"pOCCI port: {old!r} not found in {name}")
        path.write_text(text.replace(old, new))
    core = dest / "CORE.py"
    core.write_text(LOCATION_JOIN.sub(r"location_url(\1['location'])", core.read_text()))
    (dest / ".ported").write_text("2to3 + PORT of scripts/occi_conformance.py\n")
    return python


class Cloud:
    """A throwaway `cumulo up`: runc containers, no host link, loopback."""

    def __init__(self, root: Path) -> None:
        self.root, self.state, self.port = root, root / "state", free_port()
        self.log = open(root / "cumulo.log", "wb")  # noqa: SIM115
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "CUMULO_METRICS_PORT": "0"}
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "cumulo.cli.main", "up", "--state-dir", str(self.state), "--port",
             str(self.port), "--driver", "runc", "--no-external"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 120
        while b"Cumulo is ready" not in (root / "cumulo.log").read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"cumulo up did not start; see {root / 'cumulo.log'}")
            time.sleep(0.2)
        clouds = yaml.safe_load((self.state / "clouds.yaml").read_text())["clouds"]
        self.admin, self.demo = clouds["cumulo"]["auth"], clouds["cumulo-demo"]["auth"]
        self.base = f"http://127.0.0.1:{self.port}"

    def token(self, auth: dict[str, Any]) -> str:
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": auth["username"], "domain": {"name": "Default"}, "password": auth["password"]}}},
            "scope": {"project": {"name": auth["project_name"], "domain": {"name": "Default"}}}}}
        r = httpx.post(f"{self.base}/identity/v3/auth/tokens", json=body, timeout=60)
        r.raise_for_status()
        return r.headers["x-subject-token"]

    def give_demo_its_default_project(self) -> None:
        h = {"X-Auth-Token": self.token(self.admin)}
        ks = f"{self.base}/identity/v3"
        user = httpx.get(f"{ks}/users", params={"name": self.demo["username"]}, headers=h).json()["users"][0]
        project = httpx.get(f"{ks}/projects", params={"name": self.demo["project_name"]}, headers=h).json()
        r = httpx.patch(f"{ks}/users/{user['id']}", headers=h,
                        json={"user": {"default_project_id": project["projects"][0]["id"]}})
        r.raise_for_status()

    def stop(self) -> None:
        try:
            h = {"X-Auth-Token": self.token(self.admin)}
            servers = f"{self.base}/compute/v2.1/servers"
            for s in httpx.get(servers, params={"all_tenants": "1"}, headers=h).json()["servers"]:
                httpx.delete(f"{servers}/{s['id']}", headers=h)
            deadline = time.monotonic() + 120
            while (httpx.get(servers, params={"all_tenants": "1"}, headers=h).json()["servers"]
                   and time.monotonic() < deadline):
                time.sleep(0.5)
        finally:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
            sys.path.insert(0, str(ROOT / "src"))
            from cumulo.network.agent.plumbing import remove_registered

            asyncio.run(remove_registered(str(self.state.resolve())))


def busybox_os_tpl(endpoint: str, auth: tuple[str, str]) -> dict[str, str]:
    r = httpx.get(f"{endpoint}/-/", auth=auth, headers={"Accept": "text/plain"}, timeout=60)
    r.raise_for_status()
    for line in r.text.splitlines():
        m = re.match(r'Category: ([\w.-]+); scheme="([^"]+)"; class="mixin"; title="busybox ', line)
        if m and m.group(2) == OS_TPL:
            return {"term": m.group(1), "scheme": OS_TPL, "class": "mixin"}
    raise SystemExit("no busybox os_tpl in the query interface")


def make_fixtures(endpoint: str, auth: tuple[str, str], os_tpl: dict[str, str]) -> None:
    """A running busybox compute and a 1 GiB storage, made through /occi (text/plain)."""
    h = {"Content-Type": "text/plain", "Accept": "text/plain"}
    compute = (f'Category: compute; scheme="{INFRA}"; class="kind"\r\n'
               f'Category: {os_tpl["term"]}; scheme="{OS_TPL}"; class="mixin"\r\n'
               'X-OCCI-Attribute: occi.core.title="pocci-fixture"\r\n')
    r = httpx.post(f"{endpoint}/compute/", auth=auth, headers=h, content=compute, timeout=60)
    r.raise_for_status()
    storage = (f'Category: storage; scheme="{INFRA}"; class="kind"\r\n'
               'X-OCCI-Attribute: occi.core.title="pocci-fixture"\r\nX-OCCI-Attribute: occi.storage.size=1\r\n')
    httpx.post(f"{endpoint}/storage/", auth=auth, headers=h, content=storage, timeout=60).raise_for_status()
    deadline = time.monotonic() + 120
    while 'occi.compute.state="active"' not in httpx.get(r.headers["location"], auth=auth, headers=h).text:
        if time.monotonic() > deadline:
            raise SystemExit("the fixture compute did not become active")
        time.sleep(0.5)


def run_pocci(python: Path, venv: Path, endpoint: str, user: str, password: str, mime: str,
              os_tpl: dict[str, str] | None, tests: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pocci-home-") as home:
        lines = ["[main]", f"url = {endpoint!r}", "authtype = 'basic'", f"user = {user!r}", f"passwd = {password!r}",
                 f"mimetype = {mime!r}", "outputformat = 'json'", "curlverbose = False",
                 "connectiontimeout = 60", "timeout = 120"]
        if os_tpl:
            lines.append(f"occi.tests.category = {os_tpl!r}")
        Path(home, ".pOCCI.cfg").write_text("\n".join(lines) + "\n")
        argv = [str(python), "-m", "pOCCI.pOCCI", "-f", "json"] + (["-t", ",".join(tests)] if tests else [])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800,  # noqa: S603
                              env={**os.environ, "HOME": home, "PYTHONPATH": str(venv / "src")})
    try:
        result: dict[str, Any] = json.loads(done.stdout[done.stdout.index("{"):])
    except ValueError:
        raise SystemExit(f"pOCCI exited {done.returncode}:\n{done.stdout}\n{done.stderr}") from None
    result["stderr"] = done.stderr
    return result


def parse_check(python: Path, venv: Path, endpoint: str, auth: tuple[str, str]) -> list[tuple[str, str]]:
    """pOCCI's message parser (pOCCI-parse, its "local mode" compliance check of OCCI messages) over
    our renderings: the query interface, a collection, a compute, its networkinterface, a storage, in
    text/plain and text/occi. [(what, "OK" | the parser's error)]."""
    h = {"Accept": "text/plain"}
    computes = httpx.get(f"{endpoint}/compute/", auth=auth, headers={"Accept": "text/uri-list"}).text.split()
    storages = httpx.get(f"{endpoint}/storage/", auth=auth, headers={"Accept": "text/uri-list"}).text.split()
    compute = httpx.get(computes[0], auth=auth, headers=h).text
    nic = re.findall(r'self="([^"]+)"', compute)[0]
    cases = [("query interface", f"{endpoint}/-/", "categories"), ("collection", f"{endpoint}/compute/", "entities"),
             ("compute", computes[0], "resource"), ("networkinterface", nic, "resource"),
             ("storage", storages[0], "resource")]
    out = []
    for what, url, kind in cases:
        for mime in ("text/plain", "text/occi"):
            r = httpx.get(url, auth=auth, headers={"Accept": mime})
            text = r.text if mime == "text/plain" else "".join(f"{k}: {v}\r\n" for k, v in r.headers.multi_items())
            done = subprocess.run([str(python), "-m", "pOCCI.pOCCI_parse", "-t", kind, "-i", mime],  # noqa: S603
                                  input=text, capture_output=True, text=True,
                                  env={**os.environ, "HOME": "/nonexistent", "PYTHONPATH": str(venv / "src")})
            ok = done.returncode == 0 and not done.stderr.strip()
            out.append((f"{what} ({mime})", "OK" if ok else done.stderr.strip()[:300] or f"exit {done.returncode}"))
    return out


def one_run(args: argparse.Namespace, python: Path, mime: str, tests: list[str]) -> dict[str, Any]:
    """pOCCI once: against --endpoint, or against a fresh cloud (with the fixtures) thrown away after."""
    tmp = Path(tempfile.mkdtemp(prefix="cumulo-pocci-"))
    cloud = None
    try:
        if args.endpoint:
            endpoint, auth = args.endpoint.rstrip("/"), (args.user, args.password or "")
            os_tpl = ({"term": args.os_tpl, "scheme": OS_TPL, "class": "mixin"} if args.os_tpl
                      else busybox_os_tpl(endpoint, auth))
        else:
            cloud = Cloud(tmp)
            cloud.give_demo_its_default_project()
            endpoint, auth = f"{cloud.base}/occi", (cloud.demo["username"], cloud.demo["password"])
            os_tpl = busybox_os_tpl(endpoint, auth)
            make_fixtures(endpoint, auth, os_tpl)
            if args.parse:
                for what, verdict in parse_check(python, args.venv.resolve(), endpoint, auth):
                    print(f"  pOCCI-parse {what:<32} {verdict}")
        return run_pocci(python, args.venv.resolve(), endpoint, auth[0], auth[1], mime, os_tpl, tests)
    finally:
        if cloud is not None:
            cloud.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venv", type=Path, default=Path.home() / "pocci-venv")
    ap.add_argument("--endpoint", help="an existing OCCI endpoint (http://host:port/occi); default: fresh clouds")
    ap.add_argument("--user", default="demo")
    ap.add_argument("--password")
    ap.add_argument("--mime-type", action="append", choices=RENDERINGS, help="default: all three")
    ap.add_argument("--os-tpl", help="term of the os_tpl mixin for occi.tests.category (--endpoint only; "
                                     "default: the busybox image's)")
    ap.add_argument("--tests", help="comma list of pOCCI tests (default: its default set of 14; the 3 it skips "
                                    "by default: " + ",".join(SKIPPED_BY_DEFAULT) + ")")
    ap.add_argument("--isolated", action="store_true",
                    help="each test alone on its own fresh cloud (pOCCI's tests share state in their fixed order: "
                         "DELETE/001 deletes the first entity it lists, MISC/001 suspends the first compute, ...)")
    ap.add_argument("--parse", action="store_true",
                    help="also check our renderings with pOCCI's message parser (pOCCI-parse), on each fresh cloud")
    ap.add_argument("--workspace", type=Path, default=ROOT / "occi-conformance-ws")
    args = ap.parse_args()
    python = ensure_suite(args.venv.resolve())
    args.workspace.mkdir(parents=True, exist_ok=True)
    tests = args.tests.split(",") if args.tests else []
    if args.isolated and not tests:
        listed = subprocess.run([str(python), "-m", "pOCCI.pOCCI", "-l"], capture_output=True, text=True,  # noqa: S603
                                env={**os.environ, "PYTHONPATH": str(args.venv.resolve() / "src")}, check=True)
        tests = [t for t in listed.stdout.split() if t not in SKIPPED_BY_DEFAULT]
    failed = 0
    for mime in args.mime_type or RENDERINGS:
        if args.isolated:
            runs = [one_run(args, python, mime, [test]) for test in tests]
            result = {"tests": [t for r in runs for t in r["tests"]], "passed": sum(r["passed"] for r in runs),
                      "failed": sum(r["failed"] for r in runs), "stderr": "".join(r["stderr"] for r in runs)}
        else:
            result = one_run(args, python, mime, tests)
        mode = "-isolated" if args.isolated else ""
        out = args.workspace / f"pocci-{mime.replace('/', '_')}{mode}.json"
        out.write_text(json.dumps(result, indent=2))
        print(f"\n## {mime}{' (each test on its own cloud)' if args.isolated else ''}: "
              f"{result['passed']} passed, {result['failed']} failed  ({out})")
        for t in result["tests"]:
            print(f"  {t['name']:<24} {t['status']:<5} {'; '.join(t.get('reason', []))[:300]}")
        failed += result["failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
