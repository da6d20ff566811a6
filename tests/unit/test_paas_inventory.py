"""The inventory's reads (paas/inventory.py) that bound what they load: a node's exec records are
read as the tails the views show, however long the recipes' outputs were."""

from __future__ import annotations

from _asgi_ctx import temp_database

from cumulo import conf as conf_mod
from cumulo.db import utcnow
from cumulo.paas.inventory import Inventory
from cumulo.paas.models import (
    paas_env_instances,
    paas_exec_records,
    paas_product_instances,
    paas_tier_instances,
)


async def test_records_read_only_the_tails_asked_for(settings: conf_mod.Settings) -> None:
    long_out = "".join(f"line {i}\n" for i in range(20000))  # ~150 KB
    async with temp_database(settings) as db:
        async with db.write() as conn:
            await conn.execute(paas_env_instances.insert().values(
                id="inst-1", project_id="p", user_id="u", name="i", description="", environment_name="e",
                environment={}, status="INSTALLED", keep_on_failure=False, created_at=utcnow()))
            await conn.execute(paas_tier_instances.insert().values(
                id="node-1", env_instance_id="inst-1", tier="web", replica=1, name="i-web-1", status="INSTALLED"))
            await conn.execute(paas_product_instances.insert().values(
                id="pi-1", tier_instance_id="node-1", env_instance_id="inst-1", product="p", version="1",
                status="INSTALLED", attributes={}))
            for step, out, err in (("install", long_out, "x" * 50), ("configure", "short\n", "")):
                await conn.execute(paas_exec_records.insert().values(
                    product_instance_id="pi-1", step=step, exit_code=0, stdout=out, stderr=err,
                    started_at=utcnow(), ended_at=utcnow()))
        inv = Inventory(db)
        [install, configure] = (await inv.records(["pi-1"], tail=100))["pi-1"]
        assert install["stdout"] == long_out[-100:] and install["stderr"] == "x" * 50
        assert (configure["stdout"], configure["stderr"], configure["step"]) == ("short\n", "", "configure")
        assert (await inv.records(["pi-1"]))["pi-1"][0]["stdout"] == long_out  # whole when no tail is asked
        assert await inv.records([], tail=100) == {}
