"""The `openstack paas` OSC plugin: found through its entry points as OSC finds it, every command
loads, the real `openstack` CLI lists and parses them, the plugin pulls in nothing of Cumulo's server
side, env.yaml/product.yaml become Pegasus's DTOs (and bad files are refused naming the problem),
and the client's paths, faults and --wait polling against a recording session."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import stevedore
import yaml
from cliff.command import Command
from cliff.display import DisplayCommandBase
from osc_lib import exceptions

from cumulo.paas.osc import envfile, instances, plugin
from cumulo.paas.osc.client import PaasClient, PaasError, task_id

BIN = Path(sys.executable).parent
COMMANDS = {
    "paas product list", "paas product show", "paas product create", "paas product delete",
    "paas environment list", "paas environment show", "paas environment create", "paas environment delete",
    "paas environment instance create", "paas environment instance list", "paas environment instance show",
    "paas environment instance delete", "paas tier instance list", "paas tier scale", "paas product instance list",
    "paas product instance add", "paas product instance remove", "paas tier reconfigure",
    "paas application deploy", "paas application list", "paas application delete", "paas task show",
    "paas task list", "paas event list",
}


def test_the_plugin_is_found_as_osc_finds_it() -> None:
    mgr = stevedore.ExtensionManager("openstack.cli.extension")
    [ext] = [e for e in mgr if e.name == "paas"]
    assert ext.entry_point.module == "cumulo.paas.osc.plugin"
    assert ext.plugin is plugin
    # What openstackclient/common/clientmanager.py and shell.py read from the module.
    assert plugin.API_NAME == "paas"
    assert plugin.API_VERSION_OPTION == "os_paas_api_version"
    assert plugin.DEFAULT_API_VERSION == "1"
    assert isinstance(plugin.API_VERSIONS, tuple) and "1" in plugin.API_VERSIONS
    assert plugin.check_api_version("1") is True
    assert plugin.check_api_version("2") is False


def test_every_command_entry_point_loads() -> None:
    eps = entry_points(group="openstack.paas.v1")
    names = {ep.name.replace("_", " ") for ep in eps}
    assert names == COMMANDS
    for ep in eps:
        cls = ep.load()
        assert isinstance(cls, type) and issubclass(cls, Command), ep
        assert cls.__doc__, f"{ep.name} has no help text"
        # Lists and shows take -f json (the system tests' harness relies on it); deletes of catalogue rows do not.
        assert issubclass(cls, DisplayCommandBase) == (not ep.name.endswith(("product_delete", "environment_delete")))


def test_the_openstack_cli_lists_and_parses_the_commands() -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONWARNINGS": "ignore", "HOME": "/nonexistent"}
    done = subprocess.run([str(BIN / "openstack"), "help", "paas"], capture_output=True, text=True, timeout=120,  # noqa: S603
                          env=env, check=False)
    listed = {line.strip() for line in done.stdout.splitlines() if line.strip().startswith("paas ")}
    assert listed == COMMANDS, done.stdout + done.stderr
    done = subprocess.run([str(BIN / "openstack"), "paas", "tier", "scale", "--help"], capture_output=True,  # noqa: S603
                          text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr
    for flag in ("--count", "--remove", "--no-template", "--wait", "--timeout", "--callback"):
        assert flag in done.stdout
    done = subprocess.run([str(BIN / "openstack"), "--help"], capture_output=True, text=True, timeout=120,  # noqa: S603
                          env=env, check=False)
    assert "--os-paas-api-version" in done.stdout


def test_the_plugin_imports_nothing_of_the_server_side() -> None:
    code = (
        "import sys, importlib.metadata as m\n"
        "for ep in m.entry_points(group='openstack.paas.v1'): ep.load()\n"
        "import cumulo.paas.osc.plugin\n"
        "print(sorted(n for n in sys.modules if n.startswith(('cumulo', 'sqlalchemy', 'starlette', 'alembic'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)  # noqa: S603
    loaded = json.loads(done.stdout.replace("'", '"'))
    outside = [n for n in loaded if n not in ("cumulo", "cumulo.paas") and not n.startswith("cumulo.paas.osc")]
    assert outside == [], outside


# -- env.yaml and product.yaml ---------------------------------------------------------------

ENV = """
name: shop
description: two tiers
tiers:
  - name: backend
    image: busybox
    flavor: m1.tiny
    products:
      - name: kv-backend
        version: "1.0"
        attributes:
          ALLOW_FROM: MEMBERS(web)
          PORT: {value: 8080, description: the port}
  - name: web
    image: busybox
    flavour: m1.small
    min: 1
    max: 3
    floatingip: true
    networks: [private, {name: other, subnets: [{name: s1, cidr: 10.1.0.0/24}]}]
    depends_on: [backend]
    keypair: k1
    products: ["httpd-web:1.0"]
    policies:
      - {name: up, metric: cpu, comparison: gt, threshold: 70, period: 5, evaluationPeriods: 2,
         adjustment_type: change_in_capacity, scaling_adjustment: 1, cooldown: 10}
"""


def test_env_yaml_becomes_an_environment_dto() -> None:
    dto = envfile.environment_dto(yaml.safe_load(ENV))
    assert dto["name"] == "shop" and dto["description"] == "two tiers"
    backend, web = dto["tierDtos"]
    assert backend == {
        "name": "backend", "image": "busybox", "flavour": "m1.tiny", "minimumNumberInstances": 1,
        "maximumNumberInstances": 1, "initialNumberInstances": 1, "floatingip": "false",
        "productReleaseDtos": [{"productName": "kv-backend", "version": "1.0", "attributes": [
            {"key": "ALLOW_FROM", "value": "MEMBERS(web)", "type": "MEMBERS"},
            {"key": "PORT", "value": "8080", "type": "Plain", "description": "the port"},
        ]}],
        "networkDto": [], "metadatas": [], "scalingPolicies": [],
    }
    assert (web["minimumNumberInstances"], web["initialNumberInstances"], web["maximumNumberInstances"]) == (1, 1, 3)
    assert web["floatingip"] == "true" and web["keypair"] == "k1"
    assert web["productReleaseDtos"] == [{"productName": "httpd-web", "version": "1.0", "attributes": []}]
    assert web["networkDto"] == [{"networkName": "private", "subNetworkDto": []},
                                 {"networkName": "other", "subNetworkDto": [{"subnetName": "s1", "cidr": "10.1.0.0/24"}]}]
    assert web["metadatas"] == [{"key": "dep", "value": "backend"}]
    assert web["scalingPolicies"] == [{"name": "up", "metric": "cpu", "comparison": "gt", "threshold": 70, "period": 5,
                                       "evaluationPeriods": 2, "adjustmentType": "change_in_capacity",
                                       "scalingAdjustment": 1, "cooldown": 10}]
    assert envfile.environment_dto(yaml.safe_load(ENV), name="other")["name"] == "other"
    # A file that already is an EnvironmentDto goes as it is.
    assert envfile.environment_dto(dto) == dto


@pytest.mark.parametrize(("text", "message"), [
    ("tiers: [{name: a, image: i, flavor: f}]", "a name is required"),
    ("name: e\ntiers: []", "at least one tier"),
    ("name: e\ntiers: [{name: a, flavor: f}]", "tier a: an image is required"),
    ("name: e\ntiers: [{name: a, image: i}]", "tier a: a flavor is required"),
    ("name: e\ntiers: [{name: a, image: i, flavor: f, min: two}]", "tier a.min: expected a whole number"),
    ("name: e\ntiers: [{name: a, image: i, flavor: f, sizes: 3}]", "unknown key(s) sizes"),
    ("name: e\ntiers: [{name: a, image: i, flavor: f, products: [httpd-web]}]", "<name>:<version>"),
    ("name: e\ntiers: [{name: a, image: i, flavor: f, products: [{name: p}]}]", "a product needs a name and a version"),
    ("name: e\ntiers: [{name: a, image: i, flavor: f, floatingip: maybe}]", "expected true or false"),
    ("name: e\ntiers: [{name: a, image: i, flavor: f}, {name: a, image: i, flavor: f}]", "tier a is there twice"),
    ("name: e\ntiers: [{name: a, image: i, flavor: f, policies: [{name: up, metric: cpu, bogus: 1}]}]",
     "unknown key(s) bogus"),
    ("name: e\ntiers: [{name: a, image: i, flavor: f, products: [{name: p, version: 1, attributes: {K: [1]}}]}]",
     "tier a.products[0].attributes.K: expected a string"),
    ("- just\n- a list", "expected a mapping"),
])
def test_bad_env_files_are_refused_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(envfile.EnvFileError) as err:
        envfile.environment_dto(yaml.safe_load(text))
    assert message in str(err.value)


def test_files_that_cannot_be_read_or_parsed(tmp_path: Path) -> None:
    with pytest.raises(envfile.EnvFileError, match="No such file"):
        envfile.load_environment(tmp_path / "absent.yaml")
    (tmp_path / "bad.yaml").write_text("tiers: [unclosed")
    with pytest.raises(envfile.EnvFileError, match="not YAML"):
        envfile.load_environment(tmp_path / "bad.yaml")


def test_product_yaml_with_recipe_files(tmp_path: Path) -> None:
    (tmp_path / "start.sh").write_text("echo start\n")
    (tmp_path / "p.yaml").write_text(
        "name: my-web\nversion: 1.0\nmetadata: {open_ports: 80}\nattributes: {GREETING: hi}\n"
        "recipes:\n  install: |\n    exit 0\n  start: {file: start.sh}\n  deploy: 'tar x'\n"
    )
    dto = envfile.load_product(tmp_path / "p.yaml")
    assert dto == {
        "productName": "my-web", "version": "1.0", "productDescription": "",
        "metadatas": [{"key": "open_ports", "value": "80"}],
        "attributes": [{"key": "GREETING", "value": "hi", "type": "Plain"}],
        "recipes": {"install": "exit 0\n", "start": "echo start\n", "deploy": "tar x"},
    }
    (tmp_path / "q.yaml").write_text("name: q\nversion: '1'\nrecipes: {build: x}\n")
    with pytest.raises(envfile.EnvFileError, match="unknown recipe 'build'"):
        envfile.load_product(tmp_path / "q.yaml")
    (tmp_path / "r.yaml").write_text("name: r\nversion: '1'\nrecipes: {install: {file: missing.sh}}\n")
    with pytest.raises(envfile.EnvFileError, match="missing.sh"):
        envfile.load_product(tmp_path / "r.yaml")


# -- the client against a recording session --------------------------------------------------


class Resp:
    def __init__(self, status: int, body: Any = None) -> None:
        self.status_code = status
        self.body = body
        self.content = b"" if body is None else json.dumps(body).encode()
        self.text = self.content.decode()
        self.reason = ""

    def json(self) -> Any:
        if self.body is None:
            raise ValueError("no body")
        return self.body


class Session:
    def __init__(self, answers: list[Resp]) -> None:
        self.answers = answers
        self.calls: list[dict[str, Any]] = []
        access = SimpleNamespace(project_id="p1", project_domain_id="default")
        self.auth = SimpleNamespace(get_access=lambda _s: access)

    def request(self, url: str, method: str, **kw: Any) -> Resp:
        self.calls.append({"url": url, "method": method, **kw})
        return self.answers.pop(0)


def _task(status: str, tid: int = 7, **extra: Any) -> dict[str, Any]:
    return {"href": f"http://h/paas/rest/vdc/p1/task/{tid}", "status": status, "description": "deploy", **extra}


def test_client_paths_scope_and_callback() -> None:
    s = Session([Resp(202, _task("RUNNING")), Resp(200, []), Resp(202, _task("QUEUED", 8))])
    c = PaasClient(s, interface="public", region_name="RegionOne")  # type: ignore[arg-type]
    task = c.create_instance("i1", "shop", keep_on_failure=True, callback="http://127.0.0.1:9/cb")
    assert task_id(task) == "7"
    call = s.calls[0]
    assert call["url"] == "/rest/envInst/org/default/vdc/p1/environmentInstance" and call["method"] == "POST"
    assert call["endpoint_filter"] == {"service_type": "paas", "interface": "public", "region_name": "RegionOne"}
    assert call["json"] == {"blueprintName": "i1", "description": "", "environmentDto": {"name": "shop"},
                            "keepOnFailure": True}
    assert call["headers"]["callback"] == "http://127.0.0.1:9/cb" and call["raise_exc"] is False
    assert c.list_events("i1", "web") == [] and s.calls[1]["params"] == {"tier": "web"}
    c.scale("i 1", "web", remove="i1-web-2", use_template=False)
    assert s.calls[2]["url"] == "/rest/envInst/org/default/vdc/p1/environmentInstance/i%201/tier/web/scale"
    assert s.calls[2]["json"] == {"useTemplate": False, "remove": "i1-web-2"}


def test_client_faults_carry_the_apis_message() -> None:
    s = Session([Resp(400, {"message": "tier dependency cycle: a -> b -> a", "code": 400}), Resp(404, None)])
    c = PaasClient(s)  # type: ignore[arg-type]
    with pytest.raises(PaasError) as err:
        c.create_environment({"name": "e"})
    assert err.value.status == 400 and "tier dependency cycle: a -> b -> a (HTTP 400)" == str(err.value)
    with pytest.raises(PaasError, match=r"HTTP 404"):
        c.get_environment("e")


def test_wait_polls_until_final_and_reports_each_status() -> None:
    s = Session([Resp(200, _task("RUNNING")), Resp(200, _task("RUNNING")), Resp(200, _task("SUCCESS"))])
    c = PaasClient(s)  # type: ignore[arg-type]
    seen: list[str] = []
    slept: list[float] = []
    now = [0.0]

    def sleep(d: float) -> None:
        slept.append(d)
        now[0] += d

    done = c.wait_task(_task("QUEUED"), timeout=60, on_status=lambda t: seen.append(t["status"]), sleep=sleep,
                       clock=lambda: now[0])
    assert done["status"] == "SUCCESS" and seen == ["QUEUED", "RUNNING", "SUCCESS"]
    assert slept[0] == 1.0 and max(slept) == 2.0  # 1 s growing to 2 s
    assert all(call["url"] == "/rest/vdc/p1/task/7" for call in s.calls)
    stuck = Session([Resp(200, _task("RUNNING"))] * 100)
    with pytest.raises(TimeoutError, match="still RUNNING"):
        PaasClient(stuck).wait_task(_task("RUNNING"), timeout=5, sleep=sleep, clock=lambda: now[0])  # type: ignore[arg-type]


def _command(cls: type[Any], session: Session, argv: list[str]) -> tuple[Any, Any]:
    app = SimpleNamespace(client_manager=SimpleNamespace(paas=PaasClient(session)))  # type: ignore[arg-type]
    cmd = cls(app, None)
    return cmd, cmd.get_parser("openstack paas").parse_args(argv)


def test_wait_fails_with_the_tasks_error(capsys: pytest.CaptureFixture[str]) -> None:
    error = {"message": "install:web:1:bad: exit 3\nno disk", "majorErrorCode": "install", "minorErrorCode": 3,
             "step": "install:web:1:bad", "output": "no disk"}
    s = Session([Resp(202, _task("RUNNING")), Resp(200, _task("ERROR", error=error))])
    cmd, parsed = _command(instances.CreateInstance, s, ["i1", "--environment", "shop", "--wait", "--timeout", "30"])
    with pytest.raises(exceptions.CommandError, match="task 7 ERROR: install:web:1:bad: exit 3\nno disk"):
        cmd.take_action(parsed)
    assert capsys.readouterr().err.splitlines() == ["task 7: RUNNING", "task 7: ERROR"]
    s = Session([Resp(202, _task("SUCCESS", result={"href": "http://h/x"}))])
    cmd, parsed = _command(instances.CreateInstance, s, ["i1", "--environment", "shop", "--wait"])
    columns, row = cmd.take_action(parsed)
    shown: Mapping[str, Any] = dict(zip(columns, row, strict=True))
    assert shown["id"] == "7" and shown["status"] == "SUCCESS" and shown["result"] == "http://h/x"


def test_product_instance_list_shows_steps_and_skips() -> None:
    body = [{"productReleaseDto": {"productName": "httpd-web", "version": "1.0"}, "status": "INSTALLED", "steps": [
        {"step": "install", "status": "SKIPPED", "skippedReason": "template image abc"},
        {"step": "configure", "status": "DONE", "exitCode": 0, "output": "a\nb\n"},
    ]}]
    cmd, parsed = _command(instances.ListProductInstance, Session([Resp(200, body)]), ["i1", "i1-web-2", "--long"])
    columns, rows = cmd.take_action(parsed)
    rows = [dict(zip(columns, r, strict=True)) for r in rows]
    assert [(r["Step"], r["Step Status"], r["Exit Code"], r["Skipped Reason"]) for r in rows] == [
        ("install", "SKIPPED", None, "template image abc"), ("configure", "DONE", 0, None)]
    assert rows[1]["Output"] == "a\nb"


def test_make_client_uses_the_osc_session() -> None:
    session = Session([])
    inst = SimpleNamespace(session=session, interface="internal", region_name="R",
                           _cli_options=SimpleNamespace(config={"paas_url": "http://x/paas"}))
    c = plugin.make_client(inst)
    assert c.session is session and c.endpoint_filter == {"service_type": "paas", "interface": "internal",
                                                          "region_name": "R"}
    assert c.endpoint_override == "http://x/paas"


def test_create_commands_send_the_files_dto_and_refuse_bad_files(tmp_path: Path) -> None:
    from cumulo.paas.osc import catalogue

    (tmp_path / "env.yaml").write_text(ENV)
    created = {"name": "shop", "description": "", "tierDtos": [{"name": "web", "productReleaseDtos": [
        {"productName": "httpd-web", "version": "1.0"}], "minimumNumberInstances": 1, "maximumNumberInstances": 3}]}
    s = Session([Resp(204), Resp(200, created)])  # the create answers no body: the command GETs the environment
    cmd, parsed = _command(catalogue.CreateEnvironment, s, ["--file", str(tmp_path / "env.yaml")])
    columns, row = cmd.take_action(parsed)
    shown = dict(zip(columns, row, strict=True))
    assert shown["name"] == "shop" and s.calls[0]["url"] == "/rest/catalog/org/default/environment"
    assert (s.calls[1]["method"], s.calls[1]["url"]) == ("GET", "/rest/catalog/org/default/environment/shop")
    assert s.calls[0]["json"]["tierDtos"][1]["name"] == "web"
    assert shown["tiers"].machine_readable()[0]["products"] == ["httpd-web-1.0"]
    (tmp_path / "bad.yaml").write_text("name: e\ntiers: [{name: a, flavor: f}]")
    s = Session([])
    cmd, parsed = _command(catalogue.CreateEnvironment, s, ["--file", str(tmp_path / "bad.yaml")])
    with pytest.raises(exceptions.CommandError, match="tier a: an image is required"):
        cmd.take_action(parsed)
    assert s.calls == []  # nothing was sent


def test_product_create_shows_the_release_the_catalogue_holds(tmp_path: Path) -> None:
    """The create answers 204 and no body (Pegasus's): the command GETs the release and prints it."""
    from cumulo.paas.osc import catalogue

    (tmp_path / "p.yaml").write_text("name: my-web\nversion: '1.0'\nrecipes: {install: 'exit 0'}\n")
    held = {"productName": "my-web", "version": "1.0", "builtin": False, "recipes": {"install": "exit 0"}}
    s = Session([Resp(204), Resp(200, held)])
    cmd, parsed = _command(catalogue.CreateProduct, s, ["--file", str(tmp_path / "p.yaml")])
    shown = dict(zip(*cmd.take_action(parsed), strict=True))
    assert (shown["name"], shown["version"], shown["builtin"]) == ("my-web", "1.0", False)
    assert [(c["method"], c["url"]) for c in s.calls] == [
        ("POST", "/rest/catalog/productRelease"), ("GET", "/rest/catalog/productRelease/my-web-1.0")]


def test_scale_and_application_refusals_before_any_request(tmp_path: Path) -> None:
    s = Session([])
    cmd, parsed = _command(instances.ScaleTier, s, ["i1", "web", "--count", "-1"])
    with pytest.raises(exceptions.CommandError, match="--count"):
        cmd.take_action(parsed)
    big = tmp_path / "app.tar.gz"
    big.write_bytes(b"\0" * (instances.MAX_INLINE_ARTIFACT + 1))
    cmd, parsed = _command(instances.DeployApplication, s, ["i1", "--product", "httpd-web", "--file", str(big)])
    with pytest.raises(exceptions.CommandError, match="limited to"):
        cmd.take_action(parsed)
    assert s.calls == []
    with pytest.raises(SystemExit):  # --count and --remove exclude each other
        _command(instances.ScaleTier, s, ["i1", "web", "--count", "2", "--remove", "n"])


def test_application_deploy_carries_the_tarball_inline(tmp_path: Path) -> None:
    import base64

    app = tmp_path / "demo-app.tar.gz"
    app.write_bytes(b"tarball bytes")
    s = Session([Resp(202, _task("QUEUED"))])
    cmd, parsed = _command(instances.DeployApplication, s, ["i1", "--product", "httpd-web-1.0", "--file", str(app)])
    columns, row = cmd.take_action(parsed)
    assert dict(zip(columns, row, strict=True))["status"] == "QUEUED"
    body = s.calls[0]["json"]
    assert s.calls[0]["url"].endswith("/environmentInstance/i1/applicationInstance")
    assert body["applicationName"] == "demo-app" and body["version"] == "1.0"
    [art] = body["artifactsDto"]
    assert art["productReleaseDto"] == {"productName": "httpd-web", "version": "1.0"}
    assert art["path"] == "data:application/gzip;base64," + base64.b64encode(b"tarball bytes").decode()
