"""Compute (Nova v2.1): the HTTP API (api/), the API-side services (service/), the conductor
(conductor/), the compute agent (agent/) and its drivers (drivers/); the shared kernel (models,
states, instances, actions, rpc, specs, events) sits at the top of the package."""
