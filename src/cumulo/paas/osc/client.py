"""A small client of the PaaS API (`/paas/rest/...`) over OSC's keystoneauth session.

The endpoint is the catalog's `paas` entry (e.g. http://127.0.0.1:8774/paas); every path here is
relative to it. `org` is the token's project domain, `vdc` its project. Errors come back in
Pegasus's fault format {"message", "code"}: `PaasError` carries the message and the status.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from keystoneauth1 import session as ks_session

SERVICE_TYPE = "paas"
JSON = {"Accept": "application/json"}
# --wait polls the task every POLL_FIRST s, growing to POLL_MAX s (PAAS.md 3.10).
POLL_FIRST = 1.0
POLL_MAX = 2.0
FINAL = ("SUCCESS", "ERROR", "CANCELLED")


class PaasError(Exception):
    """The API refused a request: `status` the HTTP status, the message the fault's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.message = message


def q(value: str) -> str:
    """A path segment, quoted."""
    return quote(str(value), safe="")


def task_id(task: Mapping[str, Any]) -> str:
    """A Task's id: the last segment of its href (Pegasus keeps the id out of the body)."""
    if task.get("id") is not None:
        return str(task["id"])
    href = str(task.get("href") or "")
    return href.rstrip("/").rsplit("/", 1)[-1]


class PaasClient:
    """Calls of the PaaS API; each returns the decoded JSON answer (None for an empty one)."""

    def __init__(
        self, session: ks_session.Session, *, interface: str | None = None, region_name: str | None = None,
        endpoint_override: str | None = None,
    ) -> None:
        self.session = session
        self.endpoint_filter: dict[str, Any] = {"service_type": SERVICE_TYPE}
        if interface:
            self.endpoint_filter["interface"] = interface
        if region_name:
            self.endpoint_filter["region_name"] = region_name
        self.endpoint_override = endpoint_override
        self._org: str | None = None
        self._vdc: str | None = None

    # -- scope -----------------------------------------------------------------------------

    def _scope(self) -> None:
        auth = self.session.auth
        if auth is None:
            raise PaasError(401, "no authentication: the PaaS API needs a project-scoped token")
        access = auth.get_access(self.session)  # type: ignore[attr-defined]  # every identity plugin has it
        self._vdc = str(access.project_id or "")
        self._org = str(access.project_domain_id or "default")
        if not self._vdc:
            raise PaasError(401, "the token is not scoped to a project (the PaaS API's vdc)")

    @property
    def org(self) -> str:
        if self._org is None:
            self._scope()
        assert self._org is not None
        return self._org

    @property
    def vdc(self) -> str:
        if self._vdc is None:
            self._scope()
        assert self._vdc is not None
        return self._vdc

    # -- transport -------------------------------------------------------------------------

    def request(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        kwargs: dict[str, Any] = {"headers": {**JSON, **(headers or {})}, "raise_exc": False}
        if json is not None:
            kwargs["json"] = json
        if params:
            kwargs["params"] = {k: v for k, v in params.items() if v is not None}
        if self.endpoint_override:
            kwargs["endpoint_override"] = self.endpoint_override
        resp = self.session.request(path, method, endpoint_filter=self.endpoint_filter, **kwargs)
        if resp.status_code >= 400:
            raise PaasError(resp.status_code, _fault_message(resp))
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    # -- paths -----------------------------------------------------------------------------

    def env_path(self, name: str | None = None) -> str:
        base = f"/rest/catalog/org/{q(self.org)}/environment"
        return base if name is None else f"{base}/{q(name)}"

    def instance_path(self, name: str | None = None) -> str:
        base = f"/rest/envInst/org/{q(self.org)}/vdc/{q(self.vdc)}/environmentInstance"
        return base if name is None else f"{base}/{q(name)}"

    def task_path(self, tid: str | None = None) -> str:
        base = f"/rest/vdc/{q(self.vdc)}/task"
        return base if tid is None else f"{base}/{q(tid)}"

    # -- catalogue ---------------------------------------------------------------------------

    def list_products(self) -> list[dict[str, Any]]:
        return _as_list(self.request("GET", "/rest/catalog/productRelease"))

    def get_product(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/rest/catalog/productRelease/{q(name)}"))

    def create_product(self, dto: Mapping[str, Any]) -> Any:
        return self.request("POST", "/rest/catalog/productRelease", json=dict(dto))

    def delete_product(self, name: str) -> None:
        self.request("DELETE", f"/rest/catalog/productRelease/{q(name)}")

    def list_environments(self) -> list[dict[str, Any]]:
        return _as_list(self.request("GET", self.env_path()))

    def get_environment(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", self.env_path(name)))

    def create_environment(self, dto: Mapping[str, Any]) -> Any:
        return self.request("POST", self.env_path(), json=dict(dto))

    def delete_environment(self, name: str) -> None:
        self.request("DELETE", self.env_path(name))

    # -- inventory ---------------------------------------------------------------------------

    @staticmethod
    def _callback(callback: str | None) -> dict[str, str]:
        return {"callback": callback} if callback else {}

    def create_instance(
        self, name: str, environment: str, *, description: str = "", keep_on_failure: bool = False,
        callback: str | None = None,
    ) -> dict[str, Any]:
        body = {"blueprintName": name, "description": description, "environmentDto": {"name": environment},
                "keepOnFailure": keep_on_failure}
        return dict(self.request("POST", self.instance_path(), json=body, headers=self._callback(callback)))

    def list_instances(self) -> list[dict[str, Any]]:
        return _as_list(self.request("GET", self.instance_path()))

    def get_instance(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", self.instance_path(name)))

    def delete_instance(self, name: str, *, callback: str | None = None) -> dict[str, Any]:
        return dict(self.request("DELETE", self.instance_path(name), headers=self._callback(callback)))

    def list_tier_instances(self, instance: str) -> list[dict[str, Any]]:
        return _as_list(self.request("GET", f"{self.instance_path(instance)}/tierInstance"))

    def list_product_instances(self, instance: str, node: str) -> list[dict[str, Any]]:
        path = f"{self.instance_path(instance)}/tierInstance/{q(node)}/productInstance"
        return _as_list(self.request("GET", path))

    def scale(
        self, instance: str, tier: str, *, count: int | None = None, remove: str | None = None,
        use_template: bool = True, callback: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"useTemplate": use_template}
        if count is not None:
            body["count"] = count
        if remove is not None:
            body["remove"] = remove
        path = f"{self.instance_path(instance)}/tier/{q(tier)}/scale"
        return dict(self.request("POST", path, json=body, headers=self._callback(callback)))

    def deploy_application(self, instance: str, dto: Mapping[str, Any], *, callback: str | None = None
                           ) -> dict[str, Any]:
        path = f"{self.instance_path(instance)}/applicationInstance"
        return dict(self.request("POST", path, json=dict(dto), headers=self._callback(callback)))

    def list_applications(self, instance: str) -> list[dict[str, Any]]:
        return _as_list(self.request("GET", f"{self.instance_path(instance)}/applicationInstance"))

    def delete_application(self, instance: str, name: str, *, callback: str | None = None) -> dict[str, Any]:
        path = f"{self.instance_path(instance)}/applicationInstance/{q(name)}"
        return dict(self.request("DELETE", path, headers=self._callback(callback)))

    def reconfigure_tier(self, instance: str, dto: Mapping[str, Any], *, callback: str | None = None
                         ) -> dict[str, Any]:
        """Pegasus's PUT tierInstance (a TierInstanceDto): the Task."""
        path = f"{self.instance_path(instance)}/tierInstance"
        return dict(self.request("PUT", path, json=dict(dto), headers=self._callback(callback)))

    def add_product_instance(self, instance: str, node: str, dto: Mapping[str, Any], *,
                             callback: str | None = None) -> dict[str, Any]:
        path = f"{self.instance_path(instance)}/tierInstance/{q(node)}/productInstance"
        return dict(self.request("POST", path, json=dict(dto), headers=self._callback(callback)))

    def remove_product_instance(self, instance: str, node: str, product: str, *, callback: str | None = None
                                ) -> dict[str, Any]:
        path = f"{self.instance_path(instance)}/tierInstance/{q(node)}/productInstance/{q(product)}"
        return dict(self.request("DELETE", path, headers=self._callback(callback)))

    def list_events(self, instance: str, tier: str | None = None) -> list[dict[str, Any]]:
        return _as_list(self.request("GET", f"{self.instance_path(instance)}/event", params={"tier": tier}))

    # -- tasks -------------------------------------------------------------------------------

    def get_task(self, tid: str) -> dict[str, Any]:
        return dict(self.request("GET", self.task_path(tid)))

    def list_tasks(self, *, states: str | None = None) -> list[dict[str, Any]]:
        return _as_list(self.request("GET", self.task_path(), params={"states": states}))

    def wait_task(
        self, task: Mapping[str, Any], *, timeout: float, on_status: Callable[[dict[str, Any]], None] | None = None,
        sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
    ) -> dict[str, Any]:
        """Poll the task until it is final (every 1 s, growing to 2 s) or `timeout` passes
        (TimeoutError). `on_status` sees the task each time its status changes."""
        tid = task_id(task)
        current = dict(task)
        last = None
        deadline = clock() + timeout
        delay = POLL_FIRST
        while True:
            if current.get("status") != last:
                last = current.get("status")
                if on_status is not None:
                    on_status(current)
            if current.get("status") in FINAL:
                return current
            if clock() >= deadline:
                raise TimeoutError(f"task {tid} is still {last} after {timeout:g} s")
            sleep(min(delay, max(0.0, deadline - clock())))
            delay = min(POLL_MAX, delay * 1.5)
            current = self.get_task(tid)


def _as_list(body: Any) -> list[dict[str, Any]]:
    """A list answer (Pegasus develop unwraps one-element arrays; Cumulo never does, but be tolerant)."""
    if body is None:
        return []
    if isinstance(body, dict):
        return [body]
    return [dict(item) for item in body]


def _fault_message(resp: Any) -> str:
    try:
        body = resp.json()
    except ValueError:
        return str(resp.text or resp.reason or "").strip() or f"HTTP {resp.status_code}"
    if isinstance(body, dict):
        if "message" in body:
            return str(body["message"])
        for value in body.values():  # another family's fault ({"error": {"message"}})
            if isinstance(value, dict) and "message" in value:
                return str(value["message"])
    return str(body)
